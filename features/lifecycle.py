"""Lifecycle stage from features, by the ordered rules in configs/features.yaml."""

from __future__ import annotations

import operator

import numpy as np
import pandas as pd

from features.config import LIFECYCLE_STAGES, ConfigError, LifecycleConfig

_COMPARE = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
}


def lifecycle_stages(features: pd.DataFrame, config: LifecycleConfig) -> pd.Categorical:
    """First matching rule wins; a missing feature value never satisfies a condition."""
    stage = np.full(len(features), LIFECYCLE_STAGES.index(config.default), dtype="int8")
    open_rows = np.ones(len(features), dtype=bool)
    for number, rule in enumerate(config.rules, start=1):
        holds = open_rows.copy()
        for name, conditions in rule.when.items():
            if name not in features.columns:
                raise ConfigError(
                    f"lifecycle rule {number} ({rule.stage}) uses unknown feature '{name}'; "
                    f"features: {', '.join(map(str, features.columns))}"
                )
            values = features[name].to_numpy(dtype="float64", na_value=np.nan)
            for op, threshold in conditions.items():
                with np.errstate(invalid="ignore"):
                    holds &= _COMPARE[op](values, threshold)
        stage[holds] = LIFECYCLE_STAGES.index(rule.stage)
        open_rows &= ~holds
    return pd.Categorical.from_codes(stage, categories=list(LIFECYCLE_STAGES))
