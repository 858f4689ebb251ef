"""The feature registry: one described entry per feature, and the README lists them all."""

from __future__ import annotations

from features.registry import feature_registry
from tests.conftest import ROOT


def test_names_are_unique_and_described(feature_config):
    specs = feature_registry(feature_config)
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    assert all(s.description.strip().endswith(".") for s in specs)


def test_window_features_follow_the_config(feature_config):
    config = feature_config.model_copy(update={"windows_days": (7, 28), "trend_window_days": 28})
    names = {s.name for s in feature_registry(config)}
    assert {"spend_7d", "orders_28d", "spend_trend_28d"} <= names
    assert "spend_30d" not in names


def test_readme_lists_every_feature(feature_config):
    readme = (ROOT / "README.md").read_text()
    missing = [s.name for s in feature_registry(feature_config) if f"`{s.name}`" not in readme]
    assert not missing, f"README.md does not list: {missing}"
