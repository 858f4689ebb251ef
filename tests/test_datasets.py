"""The time split: test newest, validation one horizon before, training one more before."""

from __future__ import annotations

import pandas as pd
import pytest

from crm_ltv.features.contract import DataError
from crm_ltv.features.sample import generate_sample
from crm_ltv.training.config import SnapshotConfig, SplitConfig
from crm_ltv.training.datasets import LABELS, build_time_split, feature_names, plan_cutoffs

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
