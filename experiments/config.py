"""Typed, frozen config of the experiments area: configs/experiments.yaml.

Read with the features area's loader (`load_config`), so a bad file fails the same way, naming
file and field; nothing is read on import.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AbConfig(_Frozen):
    """A/B analysis of campaigns (treatment vs control) and the sample-size planner."""

    experiment: str = "crm-ltv-ab-tests"  # MLflow experiment of `crm-ltv ab`
    plan_experiment: str = "crm-ltv-ab-plans"  # MLflow experiment of `crm-ltv plan-ab`
    alpha: float = Field(0.05, gt=0, lt=1)  # two-sided significance of tests and intervals
    power: float = Field(0.8, gt=0, lt=1)  # for the minimum detectable effect
    # Fisher's exact test when a cell of the 2x2 table (converted or not, per group) expects
    # fewer customers than this under no effect (Cochran); the two-proportion z-test otherwise.
    exact_test_below: int = Field(5, ge=0)
    # The split the campaigns were sent with: the sample-ratio-mismatch check compares the
    # observed group sizes with it (the sample sends half to treatment: sample.yaml).
    expected_treatment_share: float = Field(0.5, gt=0, lt=1)
    srm_alpha: float = Field(0.001, gt=0, lt=1)  # a mismatch is flagged below this p-value


class CohortConfig(_Frozen):
    """Cohort retention, lifecycle transitions and LTV:CAC by acquisition channel."""

    experiment: str = "crm-ltv-cohorts"  # MLflow experiment of `crm-ltv cohorts`
    max_months: int = Field(12, ge=1)  # months since first purchase in the retention table
    headline_months: tuple[int, ...] = (1, 3, 6, 12)  # retention figures logged as metrics
    transition_months: int = Field(6, ge=1)  # lifecycle transitions: the later cutoff minus this
    value_cohort: Literal["M", "Q", "Y"] = "Y"  # acquisition cohorts of LTV:CAC: month/quarter/year
    ltv_cac_target: float = Field(3.0, gt=0)  # channels under this LTV:CAC are flagged
    # Share of revenue kept after the cost of goods: LTV:CAC and payback compare margin, not
    # revenue, with CAC. 1.0 compares revenue (the sample has no costs): set your shop's.
    gross_margin: float = Field(1.0, gt=0, le=1)


class ExperimentsConfig(_Frozen):
    ab: AbConfig = AbConfig()
    cohorts: CohortConfig = CohortConfig()
