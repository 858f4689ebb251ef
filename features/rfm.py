"""RFM quintile scores and the usual named segments (DESIGN.md: "Definitions")."""

from __future__ import annotations

import numpy as np
import pandas as pd

RFM_SEGMENTS = (
    "Champions",
    "Loyal",
    "Potential Loyalist",
    "New",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "At Risk",
    "Can't Lose Them",
    "Hibernating",
    "Lost",
)

# Rows: R score 1..5; columns: F score 1..5.
_GRID = np.array(
    [
        ["Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"],
        ["Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"],
        ["About to Sleep", "About to Sleep", "Need Attention", "Loyal", "Loyal"],
        ["Promising", "Potential Loyalist", "Potential Loyalist", "Loyal", "Loyal"],
        ["New", "Potential Loyalist", "Potential Loyalist", "Champions", "Champions"],
    ]
)
_GRID_CODES = np.vectorize(RFM_SEGMENTS.index)(_GRID)
_LOST = RFM_SEGMENTS.index("Lost")


def quintile_scores(values: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Scores 1..5 by the quintile cut points of the customers given.

    A score counts the cut points strictly below the value, so a large block of equal values
    (one-time buyers) shares the score of its lowest member: all one-time buyers get F=1.
    """
    values = np.asarray(values, dtype="float64")
    if values.size == 0:
        return np.empty(0, dtype="int8")
    oriented = values if higher_is_better else -values
    cuts = np.quantile(oriented, [0.2, 0.4, 0.6, 0.8])
    return (1 + np.searchsorted(cuts, oriented, side="left")).astype("int8")


def rfm_segments(r: np.ndarray, f: np.ndarray, m: np.ndarray) -> pd.Categorical:
    """The R x F grid, with 'Lost' carved out of its lowest corner (R=1, F=1, M<=2)."""
    r, f, m = (np.asarray(x, dtype="int64") for x in (r, f, m))
    codes = _GRID_CODES[r - 1, f - 1]
    codes = np.where((r == 1) & (f == 1) & (m <= 2), _LOST, codes)
    return pd.Categorical.from_codes(codes, categories=list(RFM_SEGMENTS))
