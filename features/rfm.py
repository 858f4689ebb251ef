"""RFM quintile scores and the usual named segments (DESIGN.md: "Definitions")."""

from __future__ import annotations

from dataclasses import dataclass

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
SEGMENT_DTYPE = pd.CategoricalDtype(pd.Index(list(RFM_SEGMENTS), dtype="str"))


QUINTILES = (0.2, 0.4, 0.6, 0.8)  # the RFM scores' cut points, one process or a cluster


def quintile_cuts(values: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """The four quintile cut points of the customers given, oriented so higher is better."""
    values = np.asarray(values, dtype="float64")
    oriented = values if higher_is_better else -values
    return np.quantile(oriented, QUINTILES)


def quintile_scores(
    values: np.ndarray, higher_is_better: bool = True, cuts: np.ndarray | None = None
) -> np.ndarray:
    """Scores 1..5 by quintile cut points: those of the customers given, or fixed `cuts`.

    A score counts the cut points strictly below the value, so a large block of equal values
    (one-time buyers) shares the score of its lowest member: all one-time buyers get F=1.
    """
    values = np.asarray(values, dtype="float64")
    if values.size == 0:
        return np.empty(0, dtype="int8")
    if cuts is None:
        cuts = quintile_cuts(values, higher_is_better)
    oriented = values if higher_is_better else -values
    return (1 + np.searchsorted(cuts, oriented, side="left")).astype("int8")


@dataclass(frozen=True)
class RfmCuts:
    """Quintile cut points of a reference population (oriented: higher is better).

    Scoring a few customers (a service request) against their own cut points would make each
    answer depend on who else is in the batch; models carry the cut points of their training
    population instead, and `crm-ltv score` and the service both use those.
    """

    recency: tuple[float, ...]
    frequency: tuple[float, ...]
    monetary: tuple[float, ...]

    @classmethod
    def of(cls, features: pd.DataFrame) -> RfmCuts:
        """The cut points of a feature table's customers."""

        def cuts(name: str, higher_is_better: bool = True) -> tuple[float, ...]:
            return tuple(float(x) for x in quintile_cuts(features[name], higher_is_better))

        return cls(
            cuts("recency_days", higher_is_better=False),
            cuts("frequency"),
            cuts("monetary_total"),
        )

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "recency": list(self.recency),
            "frequency": list(self.frequency),
            "monetary": list(self.monetary),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, list[float]]) -> RfmCuts:
        try:
            parts = {
                k: tuple(float(x) for x in raw[k]) for k in ("recency", "frequency", "monetary")
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"RFM cut points: expected recency, frequency, monetary: {exc}"
            ) from None
        if any(len(v) != 4 for v in parts.values()):
            raise ValueError("RFM cut points: expected 4 cut points each")
        return cls(**parts)


def rfm_segments(r: np.ndarray, f: np.ndarray, m: np.ndarray) -> pd.Categorical:
    """The R x F grid, with 'Lost' carved out of its lowest corner (R=1, F=1, M<=2)."""
    r, f, m = (np.asarray(x, dtype="int64") for x in (r, f, m))
    codes = _GRID_CODES[r - 1, f - 1]
    codes = np.where((r == 1) & (f == 1) & (m <= 2), _LOST, codes)
    return pd.Categorical.from_codes(codes, dtype=SEGMENT_DTYPE, validate=False)


def rfm_columns(
    recency: np.ndarray, frequency: np.ndarray, monetary: np.ndarray, cuts: RfmCuts | None
) -> dict[str, np.ndarray | pd.Categorical]:
    """r_score, f_score, m_score and rfm_segment, against fixed `cuts` or (None) the quintiles
    of the customers given."""
    r = quintile_scores(recency, False, None if cuts is None else np.asarray(cuts.recency))
    f = quintile_scores(frequency, True, None if cuts is None else np.asarray(cuts.frequency))
    m = quintile_scores(monetary, True, None if cuts is None else np.asarray(cuts.monetary))
    return {"r_score": r, "f_score": f, "m_score": m, "rfm_segment": rfm_segments(r, f, m)}
