"""Lifecycle stage from features, by the ordered rules in configs/features.yaml."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from crm_ltv.features.columns import as_floats, n_rows
from crm_ltv.features.config import LIFECYCLE_STAGES, ConfigError, LifecycleConfig

STAGE_DTYPE = pd.CategoricalDtype(pd.Index(list(LIFECYCLE_STAGES), dtype="str"))
_COMPARE = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
}


def lifecycle_stages(features: Mapping[str, Any], config: LifecycleConfig) -> pd.Categorical:
    """First matching rule wins; a missing feature value never satisfies a condition.

    `features`: a feature table, or its columns by name (the builders' form before the table).
    """
    size = n_rows(features)
    stage = np.full(size, LIFECYCLE_STAGES.index(config.default), dtype="int8")
    open_rows = np.ones(size, dtype=bool)
    floats: dict[str, np.ndarray] = {}  # each feature converted once, whatever the rules
    with np.errstate(invalid="ignore"):  # NaN compares False, as it should here
        for number, rule in enumerate(config.rules, start=1):
            holds = open_rows.copy()
            for name, conditions in rule.when.items():
                if name not in features:
                    raise ConfigError(
                        f"lifecycle rule {number} ({rule.stage}) uses unknown feature '{name}'; "
                        f"features: {', '.join(map(str, features))}"
                    )
                if name not in floats:
                    floats[name] = as_floats(features[name])
                for op, threshold in conditions.items():
                    holds &= _COMPARE[op](floats[name], threshold)
            stage[holds] = LIFECYCLE_STAGES.index(rule.stage)
            open_rows &= ~holds
    return pd.Categorical.from_codes(stage, dtype=STAGE_DTYPE, validate=False)
