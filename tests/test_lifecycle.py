"""Lifecycle rules from configs/features.yaml and the rule engine itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crm_ltv.features.config import (
    ConfigError,
    FeatureConfig,
    LifecycleConfig,
    LifecycleRule,
    load_config,
)
from crm_ltv.features.lifecycle import lifecycle_stages
from tests.conftest import ROOT


def _stage(config: FeatureConfig, **features: float) -> str:
    row = {"recency_days": 10, "frequency": 2, "overdue_ratio": 0.5, "tenure_days": 400} | features
    return lifecycle_stages(pd.DataFrame([row]), config.lifecycle)[0]


@pytest.mark.parametrize(
    ("features", "stage"),
    [
        ({"recency_days": 400}, "lapsed"),
        ({"recency_days": 200}, "at-risk"),
        ({"frequency": 3, "overdue_ratio": 3.5}, "at-risk"),
        ({"frequency": 1, "overdue_ratio": np.nan, "tenure_days": 30, "recency_days": 30}, "new"),
        ({"frequency": 6, "recency_days": 20}, "loyal"),
        ({"frequency": 6, "recency_days": 150}, "developing"),
        ({}, "developing"),
        # each bound exactly: gt and lt exclude it, ge and le include it
        ({"recency_days": 365}, "at-risk"),  # lapsed after more than 365
        ({"recency_days": 180}, "developing"),  # at-risk after more than 180
        ({"frequency": 2, "overdue_ratio": 3.0}, "at-risk"),  # ge 2, ge 3.0
        ({"frequency": 1, "tenure_days": 90, "recency_days": 30}, "new"),  # le 90
        ({"frequency": 5, "recency_days": 120}, "loyal"),  # ge 5, le 120
    ],
)
def test_default_rules(feature_config, features, stage):
    assert _stage(feature_config, **features) == stage


def test_first_matching_rule_wins_and_missing_values_never_match():
    config = LifecycleConfig(
        rules=(
            LifecycleRule(stage="lapsed", when={"x": {"gt": 5}}),
            LifecycleRule(stage="at-risk", when={"x": {"gt": 1}}),
            LifecycleRule(stage="loyal", when={"y": {"eq": 1}}),
        ),
        default="new",
    )
    frame = pd.DataFrame({"x": [10, 3, np.nan, np.nan], "y": [1, 1, 1, np.nan]})
    assert list(lifecycle_stages(frame, config)) == ["lapsed", "at-risk", "loyal", "new"]


def test_unknown_feature_in_a_rule_is_named():
    config = LifecycleConfig(rules=(LifecycleRule(stage="loyal", when={"nope": {"gt": 1}}),))
    with pytest.raises(ConfigError, match="rule 1 \\(loyal\\) uses unknown feature 'nope'"):
        lifecycle_stages(pd.DataFrame({"x": [1]}), config)


def test_a_rule_on_no_feature_is_refused_as_the_config_is_read(tmp_path):
    """Found as the config is read (before any data is loaded, and by `serve` before it
    starts), with the feature it was likely meant to be; the stage itself is no input."""
    shipped = (ROOT / "configs/features.yaml").read_text()
    for typo, said in [
        ("recency_dayz", "(did you mean 'recency_days'?)"),
        ("lifecycle_stage", "no feature of that name"),
        ("rfm_segment", "no feature of that name"),  # a label: no number to compare
    ]:
        path = tmp_path / "features.yaml"
        path.write_text(shipped.replace("{recency_days: {gt: 365}}", f"{{{typo}: {{gt: 365}}}}"))
        with pytest.raises(ConfigError) as caught:
            load_config(FeatureConfig, path)
        assert str(caught.value).startswith(f"{path}: lifecycle.rules.0.when.{typo}: ")
        assert said in str(caught.value)
    assert load_config(FeatureConfig, ROOT / "configs/features.yaml").lifecycle.rules


def test_unknown_stage_is_rejected_by_the_config():
    with pytest.raises(ValueError, match="stage"):
        LifecycleRule(stage="sleepy", when={})  # type: ignore[arg-type]
