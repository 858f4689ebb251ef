"""The time split: test newest, validation one horizon before, training one more before."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from crm_ltv.features.contract import DataError
from crm_ltv.features.sample import generate_sample
from crm_ltv.training.config import SnapshotConfig, SplitConfig
from crm_ltv.training.datasets import (
    LABELS,
    LevelCheck,
    LevelTarget,
    build_time_split,
    check_outcomes,
    feature_names,
    plan_cutoffs,
    seasonal_level,
)

DAY = pd.Timedelta(days=1)


def test_each_part_s_label_windows_end_by_the_next_part_s_cutoff():
    snapshots = SnapshotConfig(every_days=30, horizon_days=90, min_history_days=180)
    plan = plan_cutoffs(
        pd.Timestamp("2023-01-01"), pd.Timestamp("2025-12-31 18:00"), snapshots, SplitConfig()
    )
    assert plan.test == pd.Timestamp("2025-10-02")  # newest cutoff whose window is in the data
    assert plan.valid + 90 * DAY <= plan.test < plan.valid + 120 * DAY
    assert plan.train[-1] + 90 * DAY <= plan.valid
    assert plan.train[0] >= pd.Timestamp("2023-01-01") + 180 * DAY
    assert all(b - a == 30 * DAY for a, b in zip(plan.train, plan.train[1:], strict=False))
    # ... and none left out: 30 days before the oldest is less than 180 days into the data.
    assert plan.train[0] == pd.Timestamp("2023-07-15") and len(plan.train) == 22


def test_newest_training_cutoffs_only_when_capped():
    snapshots = SnapshotConfig()
    first, last = pd.Timestamp("2023-01-01"), pd.Timestamp("2025-12-31")
    capped = plan_cutoffs(first, last, snapshots, SplitConfig(max_train_cutoffs=3))
    full = plan_cutoffs(first, last, snapshots, SplitConfig())
    assert capped.train == full.train[-3:] and capped.test == full.test


def test_too_short_a_history_says_what_is_missing():
    snapshots = SnapshotConfig(horizon_days=90, min_history_days=180)
    with pytest.raises(DataError, match=r"span 120 days .* needs at least 270 days"):
        plan_cutoffs(
            pd.Timestamp("2024-01-01"), pd.Timestamp("2024-04-30"), snapshots, SplitConfig()
        )


def test_a_short_history_holds_out_customers_and_says_so(small_sample_config, feature_config):
    """One calibration year and a 182-day horizon: no room for three windows that do not
    overlap, so validation and test are customers held out at the newest cutoff."""
    sample = generate_sample(small_sample_config)
    tx = sample.transactions.assign(timestamp=pd.to_datetime(sample.transactions["timestamp"]))
    year = tx[tx["timestamp"] < tx["timestamp"].min() + pd.Timedelta(days=366)]
    snapshots = SnapshotConfig(every_days=30, horizon_days=182, min_history_days=180)
    split = build_time_split(year, snapshots, SplitConfig(), feature_config)
    assert split.evaluation == "out-of-customer"
    assert split.plan.valid == split.plan.test == split.plan.train[-1]
    sides = [set(part["customer_id"]) for part in (split.train, split.valid, split.test)]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert split.valid["cutoff"].eq(split.plan.test).all() and len(split.test) > 20
    assert split.rest is not None and not set(split.rest["customer_id"]) & sides[0]
    again = build_time_split(year, snapshots, SplitConfig(), feature_config)
    pd.testing.assert_frame_equal(again.test, split.test)  # the same customers every run
    # the test customers' level is the validation customers' per customer, not a season's
    level, share = split.levels["evaluation"], len(split.test) / len(split.valid)
    assert level is not None and level.method(0.5) == "flat"
    assert level.expected(0.5) == pytest.approx(
        (split.valid["future_value"].sum() * share, (1 - split.valid["churned"]).sum() * share)
    )
    assert level.describe(0.5) == f"labelled window after {split.plan.test:%Y-%m-%d} per customer"


def test_no_leakage_at_the_split(small_sample_config, feature_config):
    """Rows of the training part never carry an outcome from after the validation cutoff:
    changing every transaction after it leaves the training part unchanged."""
    sample = generate_sample(small_sample_config)
    tx = sample.transactions.copy()
    tx["timestamp"] = pd.to_datetime(tx["timestamp"])
    snapshots, split = SnapshotConfig(), SplitConfig()
    before = build_time_split(tx, snapshots, split, feature_config)
    later = tx["timestamp"] > before.plan.valid
    changed = tx.copy()
    changed.loc[later, "amount"] = changed.loc[later, "amount"] * 3 + 1
    changed = changed[~(later & (changed.index % 2 == 0))]  # and drop half of the later lines
    after = build_time_split(changed, snapshots, split, feature_config)
    assert after.plan == before.plan
    pd.testing.assert_frame_equal(after.train, before.train)
    assert not after.test.equals(before.test)  # the edit did reach the later parts
    assert set(LABELS).isdisjoint(feature_names(before.train))
    # nor validation rows from after the test cutoff
    past_test = tx["timestamp"] > before.plan.test
    edited = tx.copy()
    edited.loc[past_test, "amount"] = edited.loc[past_test, "amount"] * 3 + 1
    edited = edited[~(past_test & (edited.index % 2 == 0))]
    again = build_time_split(edited, snapshots, split, feature_config)
    assert again.plan == before.plan
    pd.testing.assert_frame_equal(again.train, before.train)
    pd.testing.assert_frame_equal(again.valid, before.valid)
    assert not again.test.equals(before.test)


def test_a_level_target_is_the_labelled_window_times_the_season():
    """Labelled spend x last year's shop window over the labelled shop window, times a share of
    the year-over-year growth of the labelled window."""
    day = pd.Timestamp("2024-06-01")
    target = LevelTarget(day, day - 90 * DAY, 800.0, 40.0, (1000.0, 50.0), (1500.0, 60.0))
    assert target.expected(0.5) == pytest.approx((1200.0, 48.0))  # no year before: no trend
    grown = LevelTarget(
        day, day - 90 * DAY, 800.0, 40.0, (1000.0, 50.0), (1500.0, 60.0), (250.0, 50.0)
    )
    assert grown.expected(0.0) == pytest.approx((1200.0, 48.0))
    assert grown.expected(0.5) == pytest.approx((1200.0 * 2.0, 48.0))
    assert grown.expected(1.0) == pytest.approx((1200.0 * 4.0, 48.0))


def test_a_level_is_flat_when_flat_predicted_the_earlier_windows_better():
    """Seasonal by default; the labelled window's level per scored customer when that predicted
    the checked earlier windows better, and seasonal again when the season did."""
    day = pd.Timestamp("2024-06-01")
    season = (day, day - 90 * DAY, 800.0, 40.0, (1000.0, 50.0), (1500.0, 60.0))
    plain = LevelTarget(*season, customers=100, scored=150)
    assert plain.flat() == pytest.approx((1200.0, 60.0))  # 800 x 150 / 100, 40 x 150 / 100
    assert plain.method(0.5) == "seasonal" and plain.expected(0.5) == pytest.approx((1200.0, 48.0))
    earlier = LevelTarget(*season, customers=100, scored=100)  # seasonal (1200, 48), flat (800, 40)
    steady = replace(plain, checks=(LevelCheck(earlier, (820.0, 39.0)),))
    assert steady.method(0.5) == "flat" and steady.expected(0.5) == pytest.approx((1200.0, 60.0))
    assert "flat predicted 1 earlier windows better" in steady.describe(0.5)
    seasonal = replace(plain, checks=(LevelCheck(earlier, (1150.0, 50.0)),))
    assert seasonal.method(0.5) == "seasonal"
    assert seasonal.expected(0.5) == pytest.approx((1200.0, 48.0))


def test_the_shops_window_starts_after_its_start_and_ends_on_its_end():
    """(start, start + days]: a sale at the start instant belongs to the window before (the
    cutoff's history, as features read it), one at the end to this one."""
    start = pd.Timestamp("2024-01-01")
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "timestamp": [start, start + pd.Timedelta(days=30), start + pd.Timedelta(days=31)],
            "amount": [100.0, 7.0, 50.0],
        }
    )
    labelled = pd.DataFrame({"cutoff": [start], "future_value": [7.0], "churned": [0]})
    target = seasonal_level(tx, labelled, start + pd.Timedelta(days=366), 30)
    assert target is not None and target.shop == (7.0, 1.0)


def test_a_level_needs_a_year_of_history():
    tx = pd.DataFrame(
        {
            "customer_id": ["c", "a", "b", "a"],
            "timestamp": pd.to_datetime(["2024-01-01", "2024-01-05", "2024-02-01", "2024-03-01"]),
            "amount": [5.0, 10.0, 20.0, 30.0],
        }
    )
    labelled = pd.DataFrame(
        {"cutoff": [pd.Timestamp("2024-01-10")] * 2, "future_value": [30.0, 0.0], "churned": [0, 1]}
    )
    assert seasonal_level(tx, labelled, pd.Timestamp("2024-04-10"), 90) is None
    assert seasonal_level(tx, labelled, pd.Timestamp("2024-12-30"), 30) is None  # before 01-01
    target = seasonal_level(tx, labelled, pd.Timestamp("2025-01-03"), 30)
    assert target is not None and target.last_year == (30.0, 2.0)  # the shop's 2024-01-04..02-03
    assert target.shop == (20.0, 1.0) and target.year_before is None


def test_the_split_says_whom_each_fit_scores_and_at_which_level(
    small_sample_config, feature_config
):
    sample = generate_sample(small_sample_config)
    tx = sample.transactions.assign(timestamp=pd.to_datetime(sample.transactions["timestamp"]))
    split = build_time_split(tx, SnapshotConfig(), SplitConfig(), feature_config)
    evaluation, refit = split.levels["evaluation"], split.levels["refit"]
    assert evaluation.cutoff == split.plan.test and evaluation.reference == split.plan.valid
    assert evaluation.value == pytest.approx(split.valid["future_value"].sum())
    assert refit.cutoff == tx["timestamp"].max() and refit.reference == split.plan.test
    assert evaluation.scored == len(split.test) and refit.scored == len(split.latest)
    # the checks end with the newest labelled window each fit may read: validation's, test's
    assert evaluation.checks and refit.checks
    assert evaluation.checks[-1].estimate.cutoff == split.plan.valid
    assert refit.checks[-1].estimate.cutoff == split.plan.test
    assert refit.checks[-1].actual[0] == pytest.approx(split.test["future_value"].sum())
    assert len(split.latest) == tx["customer_id"].nunique()
    assert "churned" not in split.latest and "future_value" not in split.latest


@pytest.mark.parametrize(("rows", "churned", "outcomes"), [(0, 0, 0), (120, 0, 1), (120, 120, 1)])
def test_a_part_with_one_churn_outcome_cannot_train_or_evaluate(rows, churned, outcomes):
    with pytest.raises(DataError, match=f"valid snapshot.s. hold {rows:,} customers with "
                       f"{outcomes} churn outcome"):  # fmt: skip
        check_outcomes("valid", rows, churned)
    check_outcomes("valid", rows + 2, churned + 1)  # both outcomes: no error
