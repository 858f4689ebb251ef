"""Snapshots: many cutoffs stacked, every label window inside the data."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from crm_ltv.features.builders import build_features
from crm_ltv.features.contract import DataError
from crm_ltv.features.labels import build_labels
from crm_ltv.features.snapshots import build_snapshots, snapshot_cutoffs
from tests.conftest import frame

ROWS = [
    ("a", "2024-01-05", 10.0), ("a", "2024-02-10", 20.0), ("a", "2024-04-01", 5.0),
    ("b", "2024-02-01 10:00", 50.0), ("b", "2024-06-30", 1.0),
]  # fmt: skip


def test_each_cutoff_equals_features_joined_with_labels(feature_config):
    tx = frame(ROWS)
    cutoffs = ["2024-02-01", "2024-03-01"]
    snaps = build_snapshots(tx, cutoffs, 60, feature_config)
    assert snaps.columns[:2].tolist() == ["cutoff", "customer_id"]
    assert snaps.groupby("cutoff").size().tolist() == [1, 2]  # b's first purchase is on Feb 1
    for cutoff in cutoffs:
        part = snaps[snaps["cutoff"] == pd.Timestamp(cutoff)].set_index("customer_id")
        expected = build_features(tx, cutoff, feature_config).join(build_labels(tx, cutoff, 60))
        pd.testing.assert_frame_equal(
            part.drop(columns="cutoff"), expected, check_categorical=False
        )


def test_a_label_window_past_the_data_is_refused(feature_config):
    with pytest.raises(DataError, match="cutoff 2024-06-01 00:00: its 60-day label window ends"):
        build_snapshots(frame(ROWS), ["2024-02-01", "2024-06-01"], 60, feature_config)


def test_snapshot_cutoffs_fit_the_data():
    cutoffs = snapshot_cutoffs(
        pd.Timestamp("2023-01-01"), pd.Timestamp("2023-12-31 15:00"), 30, 90, min_history_days=60
    )
    assert cutoffs[-1] == pd.Timestamp("2023-10-02")
    assert cutoffs[0] >= pd.Timestamp("2023-03-02")
    assert all(b - a == pd.Timedelta(days=30) for a, b in itertools.pairwise(cutoffs))
    # ... and none left out: 30 days before the oldest is less than 60 days into the data.
    assert cutoffs[0] == pd.Timestamp("2023-03-06") and len(cutoffs) == 8
