"""Label windows (cutoff, cutoff + horizon] at their edges, and their population."""

from __future__ import annotations

import pandas as pd
import pytest

from crm_ltv.features.builders import build_features
from crm_ltv.features.labels import build_labels
from tests.conftest import frame

CUTOFF = "2024-01-01"


def _labels(rows, horizon=30):
    return build_labels(frame(rows), CUTOFF, horizon)


def test_a_purchase_at_the_cutoff_is_history_not_label():
    labels = _labels([("a", "2023-12-01", 10.0), ("a", "2024-01-01 00:00:00", 20.0)])
    assert labels.loc["a", "churned"] == 1
    assert labels.loc["a", "future_value"] == 0.0


def test_window_end_is_inclusive_and_a_second_later_is_out():
    rows = [
        ("in", "2023-12-01", 1.0), ("in", "2024-01-31 00:00:00", 7.0),
        ("out", "2023-12-01", 1.0), ("out", "2024-01-31 00:00:01", 7.0),
        ("first", "2023-12-01", 1.0), ("first", "2024-01-01 00:00:01", 3.0),
    ]  # fmt: skip
    labels = _labels(rows)
    assert labels.loc["in"].tolist() == [0, 7.0]
    assert labels.loc["out"].tolist() == [1, 0.0]
    assert labels.loc["first"].tolist() == [0, 3.0]


def test_a_refund_alone_is_churn_with_negative_value():
    labels = _labels([("a", "2023-12-01", 10.0), ("a", "2024-01-10", -4.0)])
    assert labels.loc["a", "churned"] == 1
    assert labels.loc["a", "future_value"] == pytest.approx(-4.0)


def test_population_matches_the_features(feature_config):
    rows = [
        ("buyer", "2023-12-01", 10.0),
        ("refund_only", "2023-12-01", -10.0),
        ("newcomer", "2024-01-05", 10.0),
    ]
    labels = _labels(rows)
    features = build_features(frame(rows), CUTOFF, feature_config)
    assert labels.index.tolist() == features.index.tolist() == ["buyer"]


def test_horizon_must_be_positive():
    with pytest.raises(ValueError, match="horizon_days"):
        _labels([("a", "2023-12-01", 10.0)], horizon=0)


def test_labels_have_stable_types():
    labels = _labels([("a", "2023-12-01", 10.0)])
    assert labels.dtypes.to_dict() == {"churned": "int8", "future_value": "float64"}
    assert isinstance(labels.index, pd.Index) and labels.index.name == "customer_id"
