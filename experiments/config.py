"""Typed, frozen config of the experiments area: configs/experiments.yaml.

Read with the features area's loader (`load_config`), so a bad file fails the same way, naming
file and field; nothing is read on import.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from crm_ltv.features.config import FrozenConfig, Seed
from crm_ltv.training.config import AliasName, ExperimentName, ModelName


class AbConfig(FrozenConfig):
    """A/B analysis of campaigns (treatment vs control) and the sample-size planner."""

    experiment: ExperimentName = "crm-ltv-ab-tests"  # MLflow experiment of `crm-ltv ab`
    plan_experiment: ExperimentName = "crm-ltv-ab-plans"  # MLflow experiment of `crm-ltv plan-ab`
    alpha: float = Field(0.05, gt=0, lt=1)  # two-sided significance of tests and intervals
    power: float = Field(0.8, gt=0, lt=1)  # for the minimum detectable effect
    # Fisher's exact test when a cell of the 2x2 table (converted or not, per group) expects
    # fewer customers than this under no effect (Cochran); the two-proportion z-test otherwise.
    exact_test_below: int = Field(5, ge=0)
    # The split the campaigns were sent with: the sample-ratio-mismatch check compares the
    # observed group sizes with it (the sample sends half to treatment: sample.yaml).
    expected_treatment_share: float = Field(0.5, gt=0, lt=1)
    srm_alpha: float = Field(0.001, gt=0, lt=1)  # a mismatch is flagged below this p-value


class BalanceConfig(FrozenConfig):
    """The balance check of `ab` and `uplift` (experiments.balance): treatment and control
    compared on the features at send time; both commands read this one section."""

    # |standardised mean difference| at or over this is a different population (the usual 0.1)
    smd_threshold: float = Field(0.1, gt=0)
    # ... when its rank-test p-value is also under alpha / features compared (Bonferroni): 0.001
    # keeps a randomised campaign of a few thousand contacts from tripping it by chance
    alpha: float = Field(0.001, gt=0, lt=1)


class CohortConfig(FrozenConfig):
    """Cohort retention, lifecycle transitions and LTV:CAC by acquisition channel."""

    experiment: ExperimentName = "crm-ltv-cohorts"  # MLflow experiment of `crm-ltv cohorts`
    max_months: int = Field(12, ge=1)  # months since first purchase in the retention table
    headline_months: tuple[int, ...] = (1, 3, 6, 12)  # retention figures logged as metrics
    transition_months: int = Field(6, ge=1)  # lifecycle transitions: the later cutoff minus this
    value_cohort: Literal["M", "Q", "Y"] = "Y"  # acquisition cohorts of LTV:CAC: month/quarter/year
    ltv_cac_target: float = Field(3.0, gt=0)  # channels under this LTV:CAC are flagged
    # Share of revenue kept after the cost of goods: LTV:CAC and payback compare margin, not
    # revenue, with CAC. 1.0 compares revenue (the sample has no costs): set your shop's.
    gross_margin: float = Field(1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _headlines_in_table(self) -> CohortConfig:
        """A headline month outside the table was left out without a word."""
        outside = [m for m in self.headline_months if not 1 <= m <= self.max_months]
        if outside:
            raise ValueError(
                f"headline_months {outside} are outside 1..max_months ({self.max_months}): "
                "set both (a home's file that sets one keeps the packaged other)"
            )
        return self


class UpliftConfig(FrozenConfig):
    """Uplift models per action from the randomized campaigns (README: "Uplift models")."""

    experiment: ExperimentName = "crm-ltv-uplift"  # MLflow experiment of `crm-ltv uplift`
    model_name: ModelName = "uplift"  # registered model: one bundle with every action
    alias: AliasName = "champion"
    # Held-out customers (by a stable hash of the id; a customer is never on both sides).
    holdout_share: float = Field(0.3, gt=0, lt=1)
    # Days after a send over which the campaigns' converted/revenue count (sample.yaml: 30): the
    # horizon of the value effect, recorded in the bundle.
    response_window_days: int = Field(30, ge=1)
    seed: Seed = 42
    n_jobs: int = Field(2, ge=1)
    n_estimators: int = Field(100, ge=1)
    params: dict[str, float | int | str] = Field(default_factory=dict)  # LightGBM, per learner
    # Every control contact as each action's comparison group: right only when each send drew
    # its action at random against one shared control (the sample's campaigns); a shop's own
    # campaigns are usually targeted per action, so by default each action has its own controls.
    # `crm-ltv uplift --pool-controls` (make experiments, on the sample) sets it per run.
    pool_controls: bool = False
    # Built at send time but not learnt from: RFM scores and segments are quintiles of the
    # population at each send, while the service scores against the churn champion's cut points.
    exclude_features: tuple[str, ...] = (
        "r_score",
        "f_score",
        "m_score",
        "rfm_segment",
        "history_share",
    )
    min_contacts: int = Field(100, ge=1)  # an action with fewer treated contacts gets no model
    # The gate: the mean over actions of this held-out metric must beat a random ranking (0)
    # and the current champion's on the same held-out contacts.
    compare: Literal["qini_coefficient", "auuc_margin"] = "qini_coefficient"
    curve_points: int = Field(50, ge=5)  # points of the Qini and uplift curves in plots/tables

    def learnt_skew(self) -> list[str]:
        """The features built otherwise at send time than by the service that this config
        learns from: a list written by an older `crm-ltv init` replaces the default whole, and
        one from before 2026-12-06 lacks history_share (tester U)."""
        default = type(self).model_fields["exclude_features"].default
        return [name for name in default if name not in self.exclude_features]

    @model_validator(mode="after")
    def _lightgbm_params(self) -> UpliftConfig:
        from crm_ltv.training.config import check_lightgbm_params

        check_lightgbm_params(self.params, "params")
        return self


class OutcomesConfig(FrozenConfig):
    """The service's decisions joined with later transactions (`crm-ltv outcomes`)."""

    response_window_days: int = Field(30, ge=1)  # converted/revenue count this long after as_of
    campaigns_file: str = "data/outcomes/campaigns.csv"  # written, relative to the home


class SimulationConfig(FrozenConfig):
    """A decision history simulated on the sample, when no decision log is given: the service's
    randomization around the priors policy, responses drawn as the generator draws them."""

    customers: int = Field(20_000, ge=10)  # scored customers drawn (all when fewer)
    holdout_share: float = Field(0.1, ge=0, lt=1)
    exploration: float = Field(0.5, gt=0, le=1)  # over every arm: each rival needs support
    seed: Seed = 7


class PolicyEvalConfig(FrozenConfig):
    """Off-policy evaluation of rival policies (`crm-ltv policy-eval`)."""

    experiment: ExperimentName = "crm-ltv-policy-evaluation"  # MLflow experiment
    bootstrap: int = Field(500, ge=50)  # resamples of the customers for the intervals
    alpha: float = Field(0.05, gt=0, lt=1)  # two-sided: 95% intervals
    seed: Seed = 42
    folds: int = Field(5, ge=2)  # DR's outcome model is cross-fitted over folds of customers
    churn_share: float = Field(0.2, gt=0, le=1)  # the churn-risk policy contacts this share
    churn_action: str = "win_back"  # ... with this action
    # a policy is named best only with at least this support (and DR, IPW intervals that meet)
    min_support: float = Field(0.9, gt=0, le=1)
    # fewer customers: the bootstrap intervals look sure (over one: zero width), none is best
    min_customers: int = Field(30, ge=1)
    simulation: SimulationConfig = SimulationConfig()


class ExperimentsConfig(FrozenConfig):
    area: ClassVar[str] = "experiments"  # configs/experiments.yaml

    ab: AbConfig = AbConfig()
    balance: BalanceConfig = BalanceConfig()
    cohorts: CohortConfig = CohortConfig()
    outcomes: OutcomesConfig = OutcomesConfig()
    policy_eval: PolicyEvalConfig = PolicyEvalConfig()
    uplift: UpliftConfig = UpliftConfig()

    @model_validator(mode="after")
    def _one_response_window(self) -> ExperimentsConfig:
        """Uplift learns from the campaigns `crm-ltv outcomes` writes: one window for both."""
        if self.uplift.response_window_days != self.outcomes.response_window_days:
            raise ValueError(
                f"uplift.response_window_days ({self.uplift.response_window_days}) and "
                f"outcomes.response_window_days ({self.outcomes.response_window_days}) must "
                "agree: the uplift models learn from the campaigns outcomes writes"
            )
        return self
