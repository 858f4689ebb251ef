"""Which segment each contacted customer was in when the campaign was sent.

RFM segment and lifecycle stage come from the feature builders at the send time (history up to
it, never after: a segment taken later would be partly the campaign's own effect); the
acquisition channel comes from the customers table.
"""

from __future__ import annotations

import pandas as pd

from crm_ltv.features.arrays import TransactionArrays
from crm_ltv.features.builders import features_at
from crm_ltv.features.config import FeatureConfig
from crm_ltv.features.contract import DataError

AT_SEND = ("rfm_segment", "lifecycle_stage")  # built at each send time
SEGMENTS = (*AT_SEND, "acquisition_channel")
NO_HISTORY = "(no purchase yet)"
UNKNOWN = "(unknown)"


def segments_at_send(
    campaigns: pd.DataFrame,
    by: str,
    transactions: pd.DataFrame,
    config: FeatureConfig,
    customers: pd.DataFrame | None = None,
) -> pd.Series:
    """The `by` segment of each campaign row (aligned with `campaigns`), as text."""
    if by not in SEGMENTS:
        raise DataError(f"--by {by!r}: expected one of {', '.join(SEGMENTS)}")
    ids = campaigns["customer_id"].astype(str)
    if by == "acquisition_channel":
        if customers is None or by not in customers:
            raise DataError("--by acquisition_channel needs a customers table with that column")
        first = customers.drop_duplicates("customer_id")
        channel = pd.Series(
            first[by].astype(str).to_numpy(), index=first["customer_id"].astype(str).to_numpy()
        )
        return pd.Series(channel.reindex(ids).fillna(UNKNOWN).to_numpy(), index=campaigns.index)
    arrays = TransactionArrays.from_frame(transactions)  # once for every send time
    out = pd.Series(NO_HISTORY, index=campaigns.index, dtype=object)
    for sent_at, rows in campaigns.groupby("sent_at", sort=True).groups.items():
        table = features_at(arrays, pd.Timestamp(sent_at), config, customers)
        values = table[by].astype(str)
        values.index = values.index.astype(str)
        out.loc[rows] = values.reindex(ids.loc[rows]).fillna(NO_HISTORY).to_numpy()
    return out
