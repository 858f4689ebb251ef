"""Labels at a cutoff: what each customer does in (cutoff, cutoff + horizon].

The population is the same as the features' (a purchase up to the cutoff), so the two
tables align row for row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_ltv.features.arrays import SECONDS_PER_DAY, TransactionArrays, cutoff_seconds, money


def build_labels(
    transactions: pd.DataFrame, cutoff: str | pd.Timestamp, horizon_days: int
) -> pd.DataFrame:
    """`churned`: no purchase in the window; `future_value`: net spend in the window."""
    return labels_at(TransactionArrays.from_frame(transactions), cutoff, horizon_days)


def labels_at(
    arrays: TransactionArrays, cutoff: str | pd.Timestamp, horizon_days: int
) -> pd.DataFrame:
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    cut_s = cutoff_seconds(cutoff)
    end_s = cut_s + horizon_days * SECONDS_PER_DAY
    codes, seconds, amount = arrays.customer.codes, arrays.seconds, arrays.amount
    n = arrays.n_customers
    bought_before = np.bincount(codes[(seconds <= cut_s) & (amount > 0)], minlength=n) > 0
    window = (seconds > cut_s) & (seconds <= end_s)
    bought_after = np.bincount(codes[window & (amount > 0)], minlength=n) > 0
    value = money(np.bincount(codes[window], amount[window], minlength=n).astype("float64"))
    population = np.flatnonzero(bought_before)
    index = pd.Index(arrays.customer.names[population], name="customer_id", dtype="str")
    return pd.DataFrame(
        {
            "churned": (~bought_after[population]).astype("int8"),
            "future_value": value[population],
        },
        index=index,
    )
