"""Feature + label tables at many cutoffs, stacked: the training data, split later by cutoff."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from crm_ltv.features.arrays import CustomerAttributes, TransactionArrays, as_cutoff
from crm_ltv.features.builders import LabelCounts, features_at
from crm_ltv.features.config import FeatureConfig
from crm_ltv.features.contract import DataError
from crm_ltv.features.labels import labels_at


def snapshot_cutoffs(
    first: pd.Timestamp,
    last: pd.Timestamp,
    every_days: int,
    horizon_days: int,
    min_history_days: int = 0,
) -> list[pd.Timestamp]:
    """Midnight cutoffs every `every_days`, newest first in spacing, whose label window ends by
    `last` and which have at least `min_history_days` of data before them; oldest first."""
    newest = (as_cutoff(last) - pd.Timedelta(days=horizon_days)).normalize()
    oldest = as_cutoff(first) + pd.Timedelta(days=min_history_days)
    cutoffs = []
    cutoff = newest
    while cutoff >= oldest:
        cutoffs.append(cutoff)
        cutoff -= pd.Timedelta(days=every_days)
    return cutoffs[::-1]


def build_snapshots(
    transactions: pd.DataFrame,
    cutoffs: Sequence[str | pd.Timestamp],
    horizon_days: int,
    config: FeatureConfig,
    customers: pd.DataFrame | None = None,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """One row per (cutoff, customer): `cutoff`, `customer_id`, features, then labels.

    Every label window must end by the last transaction, or the labels would call customers
    churned merely because the data stops.
    """
    arrays = TransactionArrays.from_frame(transactions)
    if arrays.n_rows == 0:
        raise DataError("transactions: no rows to build snapshots from")
    last = pd.Timestamp(int(arrays.seconds.max()), unit="s")
    attributes = CustomerAttributes.from_frame(customers) if customers is not None else None
    parts = []
    for cutoff in map(as_cutoff, cutoffs):
        window_end = cutoff + pd.Timedelta(days=horizon_days)
        if window_end > last:
            raise DataError(
                f"cutoff {cutoff:%Y-%m-%d %H:%M}: its {horizon_days}-day label window ends "
                f"{window_end:%Y-%m-%d %H:%M}, after the last transaction ({last:%Y-%m-%d %H:%M})"
            )
        table = snapshot_at(arrays, cutoff, horizon_days, config, attributes)
        parts.append(table)
        if progress:
            progress(f"snapshot {cutoff:%Y-%m-%d}: {len(table):,} customers")
    if not parts:
        raise DataError("no cutoffs given for snapshots")
    return stack_snapshots(parts)


def snapshot_at(
    arrays: TransactionArrays,
    cutoff: pd.Timestamp,
    horizon_days: int,
    config: FeatureConfig,
    customers: CustomerAttributes | None = None,
    label_counts: LabelCounts | None = None,
    history_start: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One cutoff's rows: `cutoff`, `customer_id`, features, then labels. `label_counts` and
    `history_start`: the whole population's, when `arrays` hold one partition of the
    customers."""
    table = features_at(
        arrays, cutoff, config, customers, None, label_counts, history_start=history_start
    ).join(labels_at(arrays, cutoff, horizon_days))
    table = table.reset_index()
    table.insert(0, "cutoff", cutoff)
    return table


def stack_snapshots(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Cutoffs' rows one under the other, categorical columns kept categorical."""
    stacked = pd.concat(parts, ignore_index=True)
    for name in parts[0].columns:  # categories that differ between cutoffs: back to categorical
        if isinstance(parts[0][name].dtype, pd.CategoricalDtype) and not isinstance(
            stacked[name].dtype, pd.CategoricalDtype
        ):
            stacked[name] = stacked[name].astype("category")
    return stacked
