"""Columns by name, the form features take before (or instead of) a DataFrame.

A feature table and a `{name: values}` mapping are read alike, so the same code serves the
training frames and the service's requests of a few customers, for which pandas' per-column
overhead would cost more than the numbers themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

# A feature table, or its columns by name (arrays, lists or Categoricals of equal length).
Columns = pd.DataFrame | Mapping[str, Any]


def as_floats(values: Any) -> np.ndarray:
    """A column (Series, array or list) as float64, missing values as NaN."""
    if isinstance(values, pd.Series | pd.Index):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    return np.asarray(values, dtype="float64")


def n_rows(columns: Columns) -> int:
    if isinstance(columns, pd.DataFrame):
        return len(columns)
    return len(next(iter(columns.values()), ()))


@functools.lru_cache(maxsize=1024)
def _dtype(names: tuple[str, ...]) -> pd.CategoricalDtype:
    return pd.CategoricalDtype(pd.Index(list(names), dtype="str"))


def categorical(codes: np.ndarray, names: Sequence[str]) -> pd.Categorical:
    """Codes into `names` (-1 = missing) as a Categorical of the used names only, in their order.

    Equal to `from_codes(...).remove_unused_categories()`, with the dtype cached by its names:
    building and checking a dtype costs more than the column on a request of a few customers.
    """
    codes = np.asarray(codes)
    used = np.unique(codes[codes >= 0])
    remap = np.full(len(names) + 1, -1, dtype=np.intp)  # the last entry maps -1 to -1
    remap[used] = np.arange(len(used))
    dtype = _dtype(tuple(str(names[i]) for i in used))
    return pd.Categorical.from_codes(remap[codes], dtype=dtype, validate=False)
