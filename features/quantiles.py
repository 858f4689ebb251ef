"""Exact quantiles of values spread over partitions, without gathering them in one place.

The RFM cut points are quantiles of the whole population; when its customers are split over
partitions (a Dask cluster), each partition sends only a sorted sample, counts and the few
values near each wanted rank, and the result equals `np.quantile` (method "linear") of all the
values together, bit for bit:

1. each partition sends its count and its values at `sample_size` evenly spaced ranks (its
   minimum and maximum included); their union are thresholds;
2. each partition counts its values <= each threshold; summed, these place every wanted rank
   between two consecutive thresholds, which hold at most about n / sample_size values;
3. each partition sends its values in those brackets; the wanted order statistics are read off
   the sorted union, then interpolated as numpy does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
# Applies a function to every partition's columns (name -> 1-d float values) and returns the
# results in partition order; a cluster runs each call where the partition lives.
MapParts = Callable[[Callable[[Mapping[str, np.ndarray]], T]], list[T]]


def _sorted(values: np.ndarray) -> np.ndarray:
    return np.sort(np.asarray(values, dtype="float64"))


def _samples(
    columns: Mapping[str, np.ndarray], sample_size: int
) -> dict[str, tuple[int, np.ndarray]]:
    out = {}
    for name, values in columns.items():
        ordered = _sorted(values)
        n = len(ordered)
        ranks = np.unique(np.linspace(0, n - 1, min(n, sample_size)).astype(np.int64))
        out[name] = (n, ordered[ranks])
    return out


def _counts_at_most(
    columns: Mapping[str, np.ndarray], thresholds: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    return {
        name: np.searchsorted(_sorted(values), thresholds[name], side="right")
        for name, values in columns.items()
    }


def _values_in(
    columns: Mapping[str, np.ndarray], brackets: Mapping[str, Sequence[tuple[float, float]]]
) -> dict[str, list[np.ndarray]]:
    """Per column, the values in each bracket (lo, hi]."""
    out = {}
    for name, values in columns.items():
        ordered = _sorted(values)
        out[name] = [
            ordered[np.searchsorted(ordered, lo, "right") : np.searchsorted(ordered, hi, "right")]
            for lo, hi in brackets[name]
        ]
    return out


def _linear_indexes(n: int, probs: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy's "linear" method: the ranks below and above each quantile and the weight."""
    virtual = (n - 1) * np.asarray(probs, dtype="float64")
    below = np.floor(virtual)
    above = below + 1
    last = virtual >= n - 1
    below[last] = above[last] = n - 1
    gamma = virtual - below
    return below.astype(np.int64), above.astype(np.int64), gamma


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's interpolation, from whichever end is nearer (its rounding, exactly)."""
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


def exact_quantiles(
    map_parts: MapParts, probs: Sequence[float], sample_size: int = 1024
) -> dict[str, np.ndarray]:
    """Per column, the quantiles `probs` of the values of every partition together: equal to
    `np.quantile(all values, probs)`. Three small round trips per call, whatever the names."""
    samples = map_parts(partial(_samples, sample_size=sample_size))
    names = list(samples[0]) if samples else []
    sizes = {name: sum(s[name][0] for s in samples) for name in names}
    empty = [name for name in names if sizes[name] == 0]
    if not samples or empty:
        raise ValueError(f"quantiles of no values ({', '.join(empty) or 'no partitions'})")
    thresholds = {name: np.unique(np.concatenate([s[name][1] for s in samples])) for name in names}
    counted = map_parts(partial(_counts_at_most, thresholds=thresholds))
    at_most = {name: np.sum([c[name] for c in counted], axis=0) for name in names}

    wanted: dict[str, dict[int, Any]] = {}  # name -> rank -> value, or (bracket, offset)
    brackets: dict[str, list[tuple[float, float]]] = {}
    for name in names:
        below, above, _ = _linear_indexes(sizes[name], probs)
        wanted[name] = {}
        brackets[name] = []
        for rank in sorted({*below.tolist(), *above.tolist()}):
            edges, counts = thresholds[name], at_most[name]
            if rank < counts[0]:  # the smallest value (every partition's minimum is an edge)
                wanted[name][rank] = float(edges[0])
                continue
            i = int(np.searchsorted(counts, rank, side="right")) - 1
            wanted[name][rank] = (len(brackets[name]), rank - int(counts[i]))
            brackets[name].append((float(edges[i]), float(edges[i + 1])))
    found = map_parts(partial(_values_in, brackets=brackets))

    out = {}
    for name in names:
        for rank, where in wanted[name].items():
            if isinstance(where, tuple):
                bracket, offset = where
                values = np.sort(np.concatenate([f[name][bracket] for f in found]))
                wanted[name][rank] = float(values[offset])
        below, above, gamma = _linear_indexes(sizes[name], probs)
        a = np.array([wanted[name][r] for r in below.tolist()])
        b = np.array([wanted[name][r] for r in above.tolist()])
        out[name] = _lerp(a, b, gamma)
    return out
