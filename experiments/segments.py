"""What each contacted customer looked like when the campaign was sent: features and segments.

Features come from the feature builders at the send time, exactly as the service built them at
the decision's as_of (which `crm-ltv outcomes` writes as `sent_at`): the transactions up to and
including that instant, in whole seconds as the builders read time. Never after it: a feature
taken later would be partly the campaign's own effect, and the response window
(outcomes.window_outcomes) starts after that same second. The A/B analysis reads segments from
them, uplift training the whole table. The acquisition channel
comes from the customers table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from crm_ltv.features.arrays import TransactionArrays
from crm_ltv.features.builders import features_at
from crm_ltv.features.config import FeatureConfig
from crm_ltv.features.contract import DataError

AT_SEND = ("rfm_segment", "lifecycle_stage")  # built at each send time
SEGMENTS = (*AT_SEND, "acquisition_channel")
NEEDS_CUSTOMERS = "--by acquisition_channel needs a customers table with that column"
NO_HISTORY = "(no purchase yet)"
UNKNOWN = "(unknown)"


def segments_at_send(
    campaigns: pd.DataFrame,
    by: str,
    transactions: pd.DataFrame,
    config: FeatureConfig,
    customers: pd.DataFrame | None = None,
) -> pd.Series:
    """The `by` segment of each campaign row (aligned with `campaigns`), as text: the file's
    own column where it has one (`crm-ltv outcomes` writes the service's answers: its RFM
    segments are by its champions' cut points, which a rebuild by each send's quintiles is
    not), else rebuilt at each send time."""
    if by not in SEGMENTS:
        raise DataError(f"--by {by!r}: expected one of {', '.join(SEGMENTS)}")
    ids = campaigns["customer_id"].astype(str)
    if by == "acquisition_channel":
        if customers is None or by not in customers:
            raise DataError(NEEDS_CUSTOMERS)
        first = customers.drop_duplicates("customer_id")
        channel = pd.Series(
            first[by].astype(str).to_numpy(), index=first["customer_id"].astype(str).to_numpy()
        )
        return pd.Series(channel.reindex(ids).fillna(UNKNOWN).to_numpy(), index=campaigns.index)
    if by in campaigns and campaigns[by].notna().any():  # as the service answered (outcomes)
        given = campaigns[by].astype(object)
        return given.where(given.notna(), NO_HISTORY).astype(str)
    table = features_at_send(campaigns, transactions, config, customers)
    return table[by].astype(object).where(table[by].notna(), NO_HISTORY).astype(str)


def learnt_features(table: pd.DataFrame, exclude: Sequence[str]) -> pd.DataFrame:
    """The features at send time that uplift learns from, and `ab`'s balance check compares:
    `exclude` (uplift.exclude_features: ranks among each send's customers) left out."""
    return table.drop(columns=[c for c in exclude if c in table])


def require_customers_table(customers: Path | None) -> None:
    """Say that `--by acquisition_channel` has no customers table to read the channel from
    before any file is loaded: a shop's transactions took 9 s to load before it was said."""
    if customers is None:
        raise DataError(
            f"{NEEDS_CUSTOMERS} (--customers, or customers.path in configs/data.yaml); the "
            f"other segments need none: {', '.join(AT_SEND)}"
        )


def features_at_send(
    campaigns: pd.DataFrame,
    transactions: pd.DataFrame,
    config: FeatureConfig,
    customers: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The feature table of each campaign row (aligned with `campaigns`' index) at its
    `sent_at`, as the service built it at that as_of (day counts are calendar days: a second
    earlier would put them a day off); all missing for a customer with no purchase by then."""
    arrays = TransactionArrays.from_frame(transactions)  # once for every send time
    parts = []
    for sent_at, rows in campaigns.groupby("sent_at", sort=True).groups.items():
        table = features_at(arrays, pd.Timestamp(sent_at), config, customers)
        table.index = table.index.astype(str)
        ids = campaigns.loc[rows, "customer_id"].astype(str)
        part = table.reindex(ids.to_numpy())
        part.index = rows
        parts.append(part)
    if not parts:
        return features_at(arrays, pd.Timestamp(0), config, customers).iloc[:0]
    out = pd.concat(parts)
    for name in out.columns:  # categories differ between send times: one vocabulary
        if isinstance(out[name].dtype, pd.CategoricalDtype) or out[name].dtype == object:
            out[name] = out[name].astype(object)
    return out.loc[campaigns.index]
