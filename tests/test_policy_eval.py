"""Off-policy evaluation: estimators on fixed logs, coverage of true values on simulated logs
(fixed seeds), the rival policies from serving.nba, and `crm-ltv policy-eval` on the sample."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from crm_ltv.experiments import policy_eval as pe
from crm_ltv.experiments.outcomes import read_decisions
from crm_ltv.experiments.policy_eval_job import (
    logged_history,
    outcome_features,
    sample_true_effects,
)
from crm_ltv.features.config import SampleConfig, load_config
from crm_ltv.features.contract import DataError
from crm_ltv.serving.config import NO_ACTION, NbaConfig
from crm_ltv.serving.holdout import propensity
from crm_ltv.serving.nba import decide
from crm_ltv.serving.policies import (
    arm_costs,
    arms_of,
    best_single_action,
    logging_probabilities,
    policy_customers,
    rival_policies,
)
from crm_ltv.training.tracking import file_sha256
from tests.conftest import CONFIGS, frame, mlflow_client, new_home, run


@pytest.fixture(scope="module")
def nba() -> NbaConfig:
    return load_config(NbaConfig, CONFIGS / "nba.yaml")


def _contexts(n: int, seed: int) -> pd.DataFrame:
    """Customers as the service sees them: scores, segment, stage (a mix of every stage), and
    what the rules read beyond them (purchase days, recency, favourite category)."""
    rng = np.random.default_rng(seed)
    stage = rng.choice(["new", "developing", "loyal", "at-risk", "lapsed"], n)
    segment = rng.choice(
        ["New", "Promising", "Potential Loyalist", "Loyal", "Champions", "At Risk",
         "Can't Lose Them", "Hibernating"], n,
    )  # fmt: skip
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "as_of": datetime(2025, 6, 30),
            "churn_probability": rng.uniform(0.05, 0.95, n),
            "predicted_value": rng.gamma(1.5, 60.0, n),
            "rfm_segment": segment,
            "lifecycle_stage": stage,
            "frequency": rng.integers(1, 6, n),
            "recency_days": rng.integers(0, 200, n),
            "favourite_category": rng.choice(["books", "toys", "(other)", None], n),
        }
    )


def test_ipw_and_dr_by_hand_on_a_tiny_log():
    arms = ("a", NO_ACTION)
    history = pe.LoggedHistory(
        arms,
        action=np.array([0, 1, 0, 1]),
        propensity=np.array([0.5, 0.5, 0.25, 0.75]),
        revenue=np.array([10.0, 4.0, 0.0, 8.0]),
        features=np.zeros((4, 1)),
        costs=np.array([1.0, 0.0]),
    )
    always_a = np.tile([1.0, 0.0], (4, 1))
    flat = np.zeros((4, 2))  # an outcome model predicting 0 everywhere: DR = IPW
    values = pe.row_values(history, always_a, flat)
    # rows: (10/0.5 - 0) - 1, (0 - 4/0.5) - 1, 0 - 1, (0 - 8/0.75) - 1
    expected = np.array([19.0, -9.0, -1.0, -8 / 0.75 - 1])
    np.testing.assert_allclose(values["ipw"], expected)
    np.testing.assert_allclose(values["dr"], expected)
    # A perfect constant model (a: 5, none: 6): DR's direct part plus weighted residuals.
    model = np.tile([5.0, 6.0], (4, 1))
    dr = pe.row_values(history, always_a, model)["dr"]
    np.testing.assert_allclose(
        dr, [-1 + 10 - 1, -1 - (4 - 6) / 0.5 - 1, -1 + (0 - 5) / 0.25 - 1, -1 - (8 - 6) / 0.75 - 1]
    )
    nothing = np.tile([0.0, 1.0], (4, 1))
    assert not pe.row_values(history, nothing, model)["ipw"].any()
    with pytest.raises(ValueError, match="propensity"):
        pe.LoggedHistory(arms, np.array([0]), np.array([0.0]), np.ones(1), np.ones((1, 1)),
                         np.ones(2))  # fmt: skip


def test_rival_policies_are_the_services_decide(nba):
    contexts = _contexts(400, 1)
    policies = rival_policies(contexts, nba, None, churn_share=0.25, churn_action="win_back")
    arms = policies.arms
    assert arms == (*nba.actions, NO_ACTION)
    assert set(policies.probabilities) == {
        "priors", "best_single", "churn_risk", "random", "nothing"
    }  # fmt: skip
    for matrix in policies.probabilities.values():
        assert matrix.shape == (400, len(arms))
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    priors = policies.probabilities["priors"]
    for i, customer in enumerate(policy_customers(contexts)):
        assert arms[priors[i].argmax()] == decide(customer, nba).action
    churn = policies.probabilities["churn_risk"][:, arms.index("win_back")]
    assert churn.sum() == 100
    assert (
        contexts["churn_probability"][churn == 1].min()
        >= contexts["churn_probability"][churn == 0].max()
    )
    assert (policies.probabilities["best_single"][:, :-1].max(axis=0) == 1).sum() == 1
    # With effects (an uplift model's), the uplift policy appears and follows them.
    effects = {"recommendation": np.full(400, 0.5)}
    upl = rival_policies(contexts, nba, effects, 0.25, "win_back").probabilities["uplift"]
    assert (
        upl[:, arms.index("recommendation")].sum() > priors[:, arms.index("recommendation")].sum()
    )


def test_best_single_is_the_action_the_priors_value_most(nba):
    """Customers worth 100 at churn 0.9 (1,000 if they buy), Can't Lose Them: win_back earns
    10% x 1,000 - 4 = 96, ahead of welcome_offer's 48 and vip_invitation's 35."""
    contexts = _contexts(5, 0).assign(
        churn_probability=0.9, predicted_value=100.0, rfm_segment="Can't Lose Them"
    )
    assert best_single_action(policy_customers(contexts), nba) == "win_back"


def test_churn_risk_targets_a_share_of_the_scored_customers_only(nba):
    """Cold starts have no churn probability: half of 4 scored customers is 2, not half of 8."""
    contexts = _contexts(8, 0)
    contexts["churn_probability"] = [0.9, 0.8, 0.7, 0.6, *[np.nan] * 4]
    contexts.loc[4:, "predicted_value"] = np.nan
    policies = rival_policies(contexts, nba, None, churn_share=0.5, churn_action="win_back")
    churn = policies.probabilities["churn_risk"][:, policies.arms.index("win_back")]
    assert churn.tolist() == [1, 1, 0, 0, 0, 0, 0, 0]


def test_logging_probabilities_are_the_services_propensities(nba):
    contexts = _contexts(300, 2)
    logging = logging_probabilities(contexts, nba, share=0.1, exploration=0.3)
    np.testing.assert_allclose(logging.sum(axis=1), 1.0)
    assert (logging > 0).all()  # exploration over every arm: every rival has support
    arms = arms_of(nba)
    for i, customer in enumerate(policy_customers(contexts)[:20]):
        chosen = decide(customer, nba).action
        expected = [propensity(a, chosen, arms, 0.1, 0.3) for a in arms]
        np.testing.assert_allclose(logging[i], expected)


def _simulated(nba, sample, contexts, seed: int):
    """A log drawn from the service's randomization, responses as the generator draws them."""
    rng = np.random.default_rng(seed)
    arms, costs = arms_of(nba), arm_costs(nba)
    types = pd.Series(rng.choice(["new", "regular", "loyal", "lapsing"], len(contexts)))
    true_effect = sample_true_effects(types, arms, sample)
    order_value = rng.gamma(4.0, 55.0 / 4.0, len(contexts))
    baseline = np.where(rng.random(len(contexts)) < 0.3, rng.gamma(2.0, 40.0, len(contexts)), 0.0)
    logging = logging_probabilities(contexts, nba, 0.1, 0.5)
    action = pe.draw_actions(logging, rng)
    revenue = pe.simulate_rewards(action, baseline, true_effect, order_value, 4.0, rng)
    history = pe.LoggedHistory(arms, action, logging[np.arange(len(action)), action], revenue,
                               outcome_features(contexts), costs)  # fmt: skip
    return history, pe.true_arm_values(true_effect, order_value, costs)


def test_intervals_cover_the_true_values_on_simulated_logs(nba):
    """20 logs of 3,000 customers (fixed seeds): every policy's estimates centre on its true
    value and each estimator's 95% intervals of the policies that act (not `nothing`, whose
    [0, 0] always covers) cover it in most logs (expected 95%; asked: 85%)."""
    sample = load_config(SampleConfig, CONFIGS / "sample.yaml")
    contexts = _contexts(3000, 3)
    policies = rival_policies(contexts, nba, None, 0.2, "win_back").probabilities
    acting = [name for name in policies if name != "nothing"]
    covered = {e: [] for e in pe.ESTIMATORS}
    errors = {e: {name: [] for name in policies} for e in pe.ESTIMATORS}
    for seed in range(20):
        history, truth_arms = _simulated(nba, sample, contexts, 100 + seed)
        truth = pe.true_policy_values(policies, truth_arms)
        table = pe.estimate_policies(history, policies, 200, 0.05, seed).set_index("policy")
        for e in pe.ESTIMATORS:
            for name in policies:
                low, high = table.loc[name, f"ci_low_{e}"], table.loc[name, f"ci_high_{e}"]
                if name in acting:
                    covered[e].append(low <= truth[name] <= high)
                errors[e][name].append(table.loc[name, f"estimated_value_{e}"] - truth[name])
    for e in pe.ESTIMATORS:
        assert np.mean(covered[e]) >= 0.85, (e, np.mean(covered[e]))
        for name, err in errors[e].items():  # unbiased: mean error within 4 standard errors
            err = np.array(err)
            assert abs(err.mean()) <= 4 * err.std() / np.sqrt(len(err)) + 1e-9, (e, name)
    # DR is the sharper of the two on these logs (its outcome model takes out the baseline).
    spread = {e: np.mean([np.std(v) for v in errors[e].values()]) for e in pe.ESTIMATORS}
    assert spread["dr"] < spread["ipw"]


def test_support_counts_what_the_logging_policy_could_never_send(nba):
    contexts = _contexts(50, 4)
    history, _ = _simulated(nba, load_config(SampleConfig, CONFIGS / "sample.yaml"), contexts, 0)
    everyone = np.zeros((50, len(history.arms)))
    everyone[:, 0] = 1.0
    mask = np.ones_like(everyone, dtype=bool)
    mask[:25, 0] = False
    table = pe.estimate_policies(history, {"first": everyone}, 50, 0.05, 0, mask)
    assert table.loc[0, "support"] == pytest.approx(0.5)
    assert table.loc[0, "contacted_share"] == 1.0


def test_policy_eval_on_the_sample_covers_the_true_values(trained_home):
    """The command on the session's sample (3,000 customers): every policy but uplift (no
    uplift champion there), its estimates' intervals covering the generator's true values,
    one MLflow child run per policy with the same metrics."""
    home, _ = trained_home
    done = run(home, "policy-eval")
    assert done.returncode == 0, done.stderr
    assert "no uplift champion" in done.stderr
    for name in ("priors", "best_single", "churn_risk", "random", "nothing"):
        assert f"| {name} |" in done.stdout
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    experiment = mlflow.get_experiment_by_name("crm-ltv-policy-evaluation")
    assert "Off-policy evaluation" in experiment.tags["mlflow.note.content"]
    runs = mlflow.search_runs([experiment.experiment_id], output_format="pandas")
    parent = runs[runs["tags.kind"] == "policy-eval"].iloc[0]
    assert "| policy | DR" in parent["tags.mlflow.note.content"]
    sample = home / "data" / "sample"
    read = file_sha256(sample / "transactions.csv", sample / "customers.csv")
    assert parent["tags.data_sha256"] == read
    assert parent["params.uplift_version"] == "none"
    assert parent["params.churn_version"] and parent["params.ltv_version"]  # scored the history
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
    assert sorted(children["tags.policy"]) == sorted(
        ["priors", "best_single", "churn_risk", "random", "nothing"]
    )
    for _, child in children.iterrows():
        # Within 3 bootstrap standard errors of the truth (99.7% each if unbiased, whatever the
        # seed), and the 95% interval about 4 standard errors wide.
        truth = child["metrics.true_value"]
        for e in ("dr", "ipw"):
            value, se = child[f"metrics.estimated_value_{e}"], child[f"metrics.se_{e}"]
            assert abs(value - truth) <= 3 * se + 1e-9, (child["tags.policy"], e, value, se)
            width = child[f"metrics.ci_high_{e}"] - child[f"metrics.ci_low_{e}"]
            assert width == pytest.approx(2 * 1.96 * se, rel=0.25, abs=1e-9)
            assert value == round(value, 4)
    nothing = children[children["tags.policy"] == "nothing"].iloc[0]
    assert nothing["metrics.estimated_value_dr"] == 0 == nothing["metrics.true_value"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent["run_id"], "plots")}
    assert "plots/policy_values.png" in artifacts


def test_policy_eval_on_a_users_file_needs_a_decision_log(tmp_path):
    tx = tmp_path / "tx.csv"
    tx.write_text("customer_id,timestamp,amount\na,2025-01-01,10\nb,2025-01-02,20\n")
    done = run(tmp_path, "policy-eval", "--transactions", str(tx))
    assert done.returncode == 2
    assert "--decisions" in done.stderr and "sample" in done.stderr
    assert not (tmp_path / "mlflow.db").exists()  # said before any tracking work


def test_the_bootstrap_resamples_customers_with_all_their_rows():
    """10 customers with 50 identical rows each: the customer bootstrap's standard error is
    the spread of 10 customer means, not of 500 independent rows (about 7 times smaller)."""
    rng = np.random.default_rng(0)
    per_customer = rng.normal(0.0, 1.0, 10)
    customers = np.repeat(np.arange(10), 50)
    column = per_customer[customers][:, None]
    by_customer = pe.bootstrap_means(column, 2000, 1, customers)[:, 0]
    by_row = pe.bootstrap_means(column, 2000, 1)[:, 0]
    expected = per_customer.std() / np.sqrt(10)
    assert by_customer.std() == pytest.approx(expected, rel=0.1)
    assert by_row.std() < expected / 4
    assert by_customer.mean() == pytest.approx(column.mean(), abs=3 * expected / np.sqrt(2000))


def test_a_one_minus_alpha_interval_cuts_alpha_over_two_off_each_tail():
    """2,000 rows, 2,000 resamples: the bootstrap means are close to normal, so the 90%
    interval spans the 5th to 95th percentiles, +-1.645 standard errors (not +-1.28: the 10th
    to 90th, an 80% interval)."""
    rng = np.random.default_rng(0)
    n = 2000
    history = pe.LoggedHistory(("a", NO_ACTION), rng.integers(0, 2, n), np.full(n, 0.5),
                               rng.gamma(2.0, 5.0, n), rng.normal(size=(n, 2)),
                               np.array([1.0, 0.0]))  # fmt: skip
    always = np.tile([1.0, 0.0], (n, 1))
    table = pe.estimate_policies(history, {"a": always}, 2000, 0.1, seed=3, folds=1)
    z = stats.norm.ppf(0.95)
    for e in pe.ESTIMATORS:
        width = table.loc[0, f"ci_high_{e}"] - table.loc[0, f"ci_low_{e}"]
        assert width == pytest.approx(2 * z * table.loc[0, f"se_{e}"], rel=0.05), e


def test_the_outcome_model_is_cross_fitted_by_customer():
    """A customer's predictions come from a model fitted without their rows: changing their
    revenue changes nobody's prediction in their own fold."""
    rng = np.random.default_rng(5)
    n = 400
    customers = np.repeat(np.arange(100), 4)
    history = pe.LoggedHistory(("a", NO_ACTION), rng.integers(0, 2, n), np.full(n, 0.5),
                               rng.gamma(2.0, 10.0, n), rng.normal(size=(n, 3)),
                               np.array([1.0, 0.0]), customers.astype(str))  # fmt: skip
    codes = pe.customer_codes(history)
    before = pe.cross_fitted_predictions(history, codes, 5, 0)
    mine = codes == codes[0]
    changed = pe.LoggedHistory(history.arms, history.action, history.propensity,
                               np.where(mine, 1000.0, history.revenue), history.features,
                               history.costs, history.customers)  # fmt: skip
    after = pe.cross_fitted_predictions(changed, codes, 5, 0)
    same = (before == after).all(axis=1)
    assert same[mine].all()  # their fold's model never saw the change
    assert not same.all()  # the other folds' models did
    assert same.mean() == pytest.approx(0.2, abs=0.1)  # one fold in five


def test_a_decision_log_gives_customers_candidates_and_left_out_counts(tmp_path, nba):
    """logged_history: windows that overlap left out, each row's candidates from its own
    exploration, rows grouped by customer, one before the transactions left out and counted; a
    policy_action that is no arm fails naming it."""
    arms, costs = arms_of(nba), arm_costs(nba)
    tx = frame([("z", "2025-01-01", 1.0), ("a", "2025-06-20", 50.0), ("b", "2025-06-21", 20.0),
                ("z", "2025-12-31", 1.0)])  # fmt: skip
    common = {"request_id": "r", "propensity": 0.5, "holdout_share": 0.1,
              "eligible_actions": ["win_back", "thank_you"]}  # fmt: skip
    lines = [
        {**common, "customer_id": "a", "as_of": "2025-06-15", "action": "win_back",
         "policy_action": "win_back", "exploration": 0.2},
        {**common, "customer_id": "a", "as_of": "2025-06-20", "action": "win_back",
         "policy_action": "win_back", "exploration": 0.2},  # inside a's window
        {**common, "customer_id": "a", "as_of": "2025-08-01", "action": "no_action",
         "policy_action": "win_back", "holdout": True, "exploration": 0.0},
        {**common, "customer_id": "b", "as_of": "2025-06-15", "action": "win_back",
         "policy_action": "win_back", "exploration": 0.0},
        {**common, "customer_id": "b", "as_of": "2024-12-01", "action": "win_back",
         "policy_action": "win_back", "exploration": 0.0},  # before the transactions
    ]  # fmt: skip
    log = tmp_path / "d.jsonl"
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    history = logged_history(read_decisions(log), tx, arms, costs, 30, log)
    assert history.left_out == {"repeated": 0, "overlapping": 1, "window_not_over": 0,
                                "window_before_the_transactions": 1}  # fmt: skip
    # a log of before 2026-12-05: what the rules read beyond the scores is unknown, and said
    assert history.source.endswith(
        "; the log has no frequency, recency_days, favourite_category (written before "
        "2026-12-05): the rules that read them fail, so the priors and uplift policies send "
        "none of the actions that need them"
    )
    assert list(history.logged.customers) == ["a", "a", "b"]
    assert history.without_transactions == (0, 0)
    assert list(history.logged.revenue) == [50.0, 0.0, 20.0]
    allowed = [{arms[j] for j in np.flatnonzero(row)} for row in history.candidates]
    assert allowed == [{"win_back", "thank_you", NO_ACTION}, {"win_back", NO_ACTION},
                       {"win_back", NO_ACTION}]  # fmt: skip
    # a service without holdout and exploration: no control to compare with, so no_action
    # is not a candidate and a policy's value over it has no support (it was the revenue)
    log.write_text(json.dumps({**lines[3], "holdout_share": 0.0}) + "\n")
    bare = logged_history(read_decisions(log), tx, arms, costs, 30, log)
    assert [arms[j] for j in np.flatnonzero(bare.candidates[0])] == ["win_back"]
    send = np.zeros((1, len(arms)))
    send[0, arms.index("win_back")] = 1.0
    table = pe.estimate_policies(bare.logged, {"send": send}, 20, 0.05, 0, bare.candidates, 1)
    assert table.loc[0, "support"] == 0.0
    # customers with no transaction read revenue 0: evaluated, and counted (not a word before)
    strangers = [{**lines[3], "customer_id": "q"}, {**lines[3], "customer_id": "r"},
                 {**lines[3], "customer_id": "n", "cold_start": True}]  # fmt: skip
    log.write_text("".join(json.dumps(x) + "\n" for x in [lines[3], *strangers]))
    mixed = logged_history(read_decisions(log), tx, arms, costs, 30, log)
    assert len(mixed.logged.customers) == 4 and mixed.without_transactions == (2, 1)
    log.write_text(json.dumps({**lines[3], "policy_action": "sms_blast", "holdout": True,
                               "action": NO_ACTION}) + "\n")  # fmt: skip
    with pytest.raises(DataError, match="line 1: policy_action 'sms_blast' is not an arm"):
        logged_history(read_decisions(log), tx, arms, costs, 30, log)


def test_the_run_names_the_highest_estimate_but_no_winner_when_intervals_overlap():
    from crm_ltv.experiments.policy_eval_job import best_policy_note

    table = pd.DataFrame(
        {
            "policy": ["priors", "uplift", "nothing"],
            "estimated_value_dr": [2.04, 1.71, 0.0],
            "ci_low_dr": [1.12, 0.79, 0.0],
            "ci_high_dr": [2.99, 2.63, 0.0],
            "estimated_value_ipw": [2.03, 1.41, 0.0],
            "ci_low_ipw": [0.85, 0.34, 0.0],
            "ci_high_ipw": [3.09, 2.39, 0.0],
            "support": [1.0, 1.0, 1.0],
        }
    )
    said = best_policy_note(table, 0.9)
    assert said == (
        "Best policy (support >= 90%, DR and IPW intervals overlapping), by DR: priors (2.04); "
        "its interval overlaps that of uplift: the data do not rank them."
    )
    apart = table.assign(ci_low_dr=[2.7, 0.79, 0.0], ci_high_ipw=[3.09, 2.39, 3.1])
    assert best_policy_note(apart, 0.9).endswith("its interval above every other ranked policy's.")
    wide = apart.assign(ci_high_dr=[2.99, 2.63, 3.1])  # a third, wide one reaches it
    assert best_policy_note(wide, 0.9).endswith(
        "overlaps that of nothing: the data do not rank them."
    )
    assert best_policy_note(table.assign(ci_low_dr=float("nan")), 0.9).endswith(
        "no interval to rank it by."
    )


def _tester_table() -> pd.DataFrame:
    """What the tester got from a service's log: random's DR highest at support 29%, its IPW
    interval far below its DR interval; churn_risk's intervals apart too, at full support."""
    return pd.DataFrame(
        {
            "policy": ["random", "churn_risk", "priors", "nothing"],
            "estimated_value_dr": [30.63, 12.0, 4.1, 0.0],
            "ci_low_dr": [7.10, 9.0, 1.2, 0.0],
            "ci_high_dr": [56.13, 15.0, 7.0, 0.0],
            "estimated_value_ipw": [-61.26, 2.0, 3.5, 0.0],
            "ci_low_ipw": [-86.41, 0.5, 0.1, 0.0],
            "ci_high_ipw": [-36.65, 3.5, 6.9, 0.0],
            "support": [0.29, 1.0, 0.95, 1.0],
        }
    )


def test_no_policy_is_named_best_without_support_or_with_dr_and_ipw_apart():
    from crm_ltv.experiments.policy_eval_job import best_policy, best_policy_note

    table = _tester_table()
    best = best_policy(table, 0.9)
    assert best is not None and best["policy"] == "priors"
    assert best_policy_note(table, 0.9) == (
        "Best policy (support >= 90%, DR and IPW intervals overlapping), by DR: priors (4.10), "
        "its interval above every other ranked policy's. Not ranked: random "
        "(support 29.0%, DR 30.63 and IPW -61.26 intervals apart); churn_risk (DR 12.00 and IPW "
        "2.00 intervals apart)."
    )
    assert best_policy(table, 0.96)["policy"] == "nothing"  # priors' 95% is short of it
    alone = table.iloc[:2]
    assert best_policy(alone, 0.9) is None
    assert best_policy_note(alone, 0.9).startswith(
        "No policy is named best: none has support >= 90%, DR and IPW intervals overlapping "
        "(random (support 29.0%"
    )


# MLflow's log_table asks pandas for object columns, which pandas 3 warns about (its own code)
@pytest.mark.filterwarnings("ignore:For backward compatibility, 'str' dtypes")
def test_the_best_policy_tag_follows_support_and_agreement(tmp_path, monkeypatch):
    """A log of `a` and no_action only: `send_b` was never possible, so its DR is the outcome
    model's extrapolation (a's lift, shared by every contact, without a's cost) and its IPW
    the no_action rows' loss. It has the highest DR; the tag names `send_a`, or (none)."""
    from crm_ltv.experiments.config import PolicyEvalConfig
    from crm_ltv.experiments.policy_eval_job import NO_BEST, History, run_policy_eval
    from crm_ltv.features.paths import Paths

    n = 400
    rng = np.random.default_rng(3)
    action = np.tile([0, 2], n // 2)  # a, no_action: b never sent
    revenue = np.where(action == 0, 20.0, 10.0) + rng.normal(0, 1, n)
    logged = pe.LoggedHistory(("a", "b", NO_ACTION), action, np.full(n, 0.5), revenue,
                              rng.normal(size=(n, 1)), np.array([8.0, 0.0, 0.0]))  # fmt: skip
    candidates = np.zeros((n, 3), dtype=bool)
    candidates[:, [0, 2]] = True
    history = History(logged, pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)]}),
                      candidates, "a test log")  # fmt: skip

    names = ["send_a", "send_b", "nothing"]
    probabilities = {name: np.tile(np.eye(3)[i], (n, 1)) for i, name in enumerate(names)}
    rivals = SimpleNamespace(arms=logged.arms, probabilities=probabilities,
                             notes={name: name for name in probabilities})  # fmt: skip

    config = PolicyEvalConfig(bootstrap=50)
    # MLflow exports the tracking URI of the last run made in this process (another test's
    # home), which the project's tracking_uri reads first
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    home = new_home(tmp_path / "home")
    result = run_policy_eval(history, rivals, Paths(home), config)
    table = result.table.set_index("policy")
    assert table["estimated_value_dr"].idxmax() == "send_b"  # what was named before
    assert table.loc["send_b", "support"] == 0.0
    client = mlflow_client(home)
    tags = client.get_run(result.run_id).data.tags
    assert tags["best_policy_dr"] == "send_a"
    assert "Not ranked: send_b (support 0.0%" in tags["mlflow.note.content"]

    rivals.probabilities = {"send_b": probabilities["send_b"]}  # no supported policy left
    again = run_policy_eval(history, rivals, Paths(home), config)
    run_data = client.get_run(again.run_id).data
    assert run_data.tags["best_policy_dr"] == NO_BEST
    assert "best_estimated_value_dr" not in run_data.metrics
    assert "No policy is named best" in run_data.tags["mlflow.note.content"]


def test_rival_policies_read_what_the_rules_read_beyond_the_scores(nba):
    """Purchase days, recency and the favourite category come from the log's columns: a
    one-time buyer gets no recommendation, a repeat buyer does; a log without the columns
    (before 2026-12-05) leaves them unknown, and the rule fails."""
    row = {"customer_id": "c1", "as_of": datetime(2025, 6, 30), "churn_probability": 0.3,
           "predicted_value": 40.0, "rfm_segment": "Potential Loyalist",
           "lifecycle_stage": "developing", "recency_days": 20,
           "favourite_category": "garden"}  # fmt: skip
    contexts = pd.DataFrame([{**row, "frequency": 1}, {**row, "frequency": 3}])
    once, repeat = policy_customers(contexts)
    assert (once.frequency, repeat.frequency, repeat.favourite_category) == (1, 3, "garden")
    assert [decide(c, nba).action for c in (once, repeat)] == [NO_ACTION, "recommendation"]
    [old] = policy_customers(pd.DataFrame([row]).drop(columns=["recency_days"]))
    assert old.frequency is None and old.recency_days is None
    assert decide(old, nba).action == NO_ACTION


def _half_held_out_log(tmp_path: Path, customers: int) -> tuple[Path, Path]:
    """A decision log of `customers` customers at one date, every other one held out from
    win_back, and transactions covering their windows."""
    tx, log = tmp_path / "tx.csv", tmp_path / "d.jsonl"
    rows = [(f"c{i}", "2025-06-20", 10.0 * (i % 3)) for i in range(customers)]
    frame([("z", "2025-01-02", 1.0), *rows, ("z", "2025-09-30", 1.0)]).to_csv(tx, index=False)
    lines = [
        {"customer_id": f"c{i}", "as_of": "2025-06-15",
         "action": NO_ACTION if i % 2 else "win_back", "policy_action": "win_back",
         "holdout": bool(i % 2), "explored": False, "propensity": 0.5, "holdout_share": 0.5,
         "exploration": 0.0, "churn_probability": 0.5, "predicted_value": 40.0,
         "rfm_segment": "At Risk", "lifecycle_stage": "at-risk"}
        for i in range(customers)
    ]  # fmt: skip
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return log, tx


def test_a_log_of_too_few_customers_names_no_best_policy(tmp_path):
    """One counted decision gave zero-width "95% intervals" and a best policy, with no word:
    under policy_eval.min_customers the command warns and names none, in the run too."""
    from crm_ltv.experiments.policy_eval_job import NO_BEST

    home = new_home(tmp_path / "home")
    log, tx = _half_held_out_log(tmp_path, 1)
    done = run(home, "policy-eval", "--decisions", str(log), "--transactions", str(tx),
               "--window-days", "30")  # fmt: skip
    assert done.returncode == 0, done.stderr
    why = (
        "1 customer in the evaluated decisions, under policy_eval.min_customers (30): bootstrap "
        "intervals over so few understate the uncertainty (over one customer they have zero "
        "width)"
    )
    assert f"warning: {why}\n" in done.stderr
    assert f"No policy is named best: {why}." in done.stdout
    assert "Best policy" not in done.stdout
    client = mlflow_client(home)
    experiment = client.get_experiment_by_name("crm-ltv-policy-evaluation")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.kind = 'policy-eval'")
    assert parent.data.tags["best_policy_dr"] == NO_BEST
    assert parent.data.params["min_customers"] == "30"


def test_decisions_of_customers_with_no_transaction_are_said_and_logged(tmp_path):
    """policy-eval --decisions evaluated a log two thirds of whose customers were in no
    transaction (revenue 0 each) without a word; `outcomes` said it, in words read two ways."""
    home = new_home(tmp_path / "home")
    log, tx = _half_held_out_log(tmp_path, 40)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    strangers = [{**lines[0], "customer_id": f"x{i}", "cold_start": i < 2} for i in range(5)]
    log.write_text("".join(json.dumps(x) + "\n" for x in [*lines, *strangers]))
    done = run(home, "policy-eval", "--decisions", str(log), "--transactions", str(tx),
               "--window-days", "30")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (
        "warning: decisions of customers with no transaction in the file: 3 scored, 2 cold "
        "starts; counted as not converted, revenue 0 (the scored ones had bought before: is "
        "the file the shop's full history?)\n"
    ) in done.stderr
    client = mlflow_client(home)
    experiment = client.get_experiment_by_name("crm-ltv-policy-evaluation")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.kind = 'policy-eval'")
    params = parent.data.params
    assert (params["without_transactions_scored"], params["without_transactions_cold_starts"]) == (
        "3", "2")  # fmt: skip


def test_the_decision_log_is_a_dataset_of_the_run_with_absolute_paths(tmp_path):
    """policy-eval --decisions named the log only in its source param, as given (relative):
    the run's datasets had the transactions alone. Both files given relative to the working
    folder are logged by their absolute paths, each with its own digest."""
    home = new_home(tmp_path / "home")
    log, tx = _half_held_out_log(tmp_path, 40)
    given = [os.path.relpath(p) for p in (log, tx)]
    assert not any(Path(p).is_absolute() for p in given)
    done = run(home, "policy-eval", "--decisions", given[0], "--transactions", given[1],
               "--window-days", "30")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "warn" not in done.stderr  # not MLflow's hint on the log's integer columns
    client = mlflow_client(home)
    experiment = client.get_experiment_by_name("crm-ltv-policy-evaluation")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.kind = 'policy-eval'")
    datasets = {d.dataset.name: d.dataset for d in parent.inputs.dataset_inputs}
    assert list(datasets) == ["transactions", "decisions"]
    for name, path in (("transactions", tx), ("decisions", log)):
        source = json.loads(datasets[name].source)["uri"].removeprefix("file://")
        assert source == str(path.resolve()), name
        assert datasets[name].digest == file_sha256(path)[:16], name
    assert parent.data.tags["data_sha256"] == file_sha256(tx, log)
    assert f"customers in {log.resolve()}" in parent.data.params["source"]


def test_a_log_and_its_rotated_file_are_evaluated_as_one(tmp_path):
    """Tester T: policy-eval read one log; a repeated --decisions kept the last file alone."""
    home = new_home(tmp_path / "home")
    log, tx = _half_held_out_log(tmp_path, 40)
    lines = log.read_text().splitlines(keepends=True)
    rotated = log.with_name(log.name + ".1")
    rotated.write_text("".join(lines[:25]))
    log.write_text("".join(lines[25:]))
    done = run(home, "policy-eval", "--decisions", f"{log}*", "--transactions", str(tx),
               "--window-days", "30")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "reading decisions from 2 decision logs (" in done.stderr
    assert f"40 customers in 2 decision logs ({log.resolve()}, {rotated.resolve()})" in (
        done.stderr
    )
    client = mlflow_client(home)
    experiment = client.get_experiment_by_name("crm-ltv-policy-evaluation")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.kind = 'policy-eval'")
    datasets = {d.dataset.name: d.dataset for d in parent.inputs.dataset_inputs}
    assert sorted(datasets) == sorted(
        ["transactions", f"decisions {log.name}", f"decisions {rotated.name}"]
    )
    assert datasets[f"decisions {rotated.name}"].digest == file_sha256(rotated)[:16]
    assert parent.data.tags["data_sha256"] == file_sha256(tx, log.resolve(), rotated.resolve())
    # an error names the file and its own line, not a line counted across the logs
    lines[2] = lines[2].replace('"win_back"', '"free_shipping"')
    rotated.write_text("".join(lines[:25]))
    bad = run(home, "policy-eval", "--decisions", f"{log}*", "--transactions", str(tx),
              "--window-days", "30")  # fmt: skip
    assert bad.returncode == 2, bad.stderr
    assert f"{rotated.resolve()}: line 3: action 'free_shipping' is not an arm" in bad.stderr
