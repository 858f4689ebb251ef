"""Transactions as sorted numpy columns: converted once, then cut at any number of cutoffs.

Features and labels are computed over these arrays with bincount/reduceat, which is what makes
the builders fast; rows are ordered by customer, then time (the loader already delivers them
so, in which case no sort is needed here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from crm_ltv.features.contract import TRANSACTIONS, DataError, naive_utc, out_of_range_year
from crm_ltv.features.wording import plural

SECONDS_PER_DAY = 86_400
MONEY_DECIMALS = 6
EPOCH = datetime(1970, 1, 1)
SECOND = timedelta(seconds=1)
_FEW_CUSTOMERS = 1_000  # up to a service request's size


@dataclass(frozen=True)
class Codes:
    """Integer codes of a text column (-1 = missing) and the text of each code."""

    codes: np.ndarray
    names: pd.Index | np.ndarray  # an object array when built `from_values`

    @classmethod
    def from_series(cls, values: pd.Series) -> Codes:
        if isinstance(values.dtype, pd.CategoricalDtype):
            names = values.cat.categories
            if not names.is_monotonic_increasing:  # codes must follow the names' order
                values = values.cat.reorder_categories(names.sort_values())
            return cls(values.cat.codes.to_numpy(), values.cat.categories.astype("str"))
        codes, names = pd.factorize(values.astype("str").where(values.notna()), sort=True)
        return cls(codes, pd.Index(names, dtype="str"))

    @classmethod
    def from_values(cls, values: Sequence[str | None]) -> Codes:
        """From a short list (a service request): the same sorted names, without pandas' cost."""
        names = sorted(set(values).difference((None,)))
        lookup: dict[str | None, int] = dict(zip(names, range(len(names)), strict=True))
        lookup[None] = -1
        codes = np.fromiter(map(lookup.__getitem__, values), np.intp, len(values))  # C loop
        return cls(codes, np.array(names, dtype=object))  # cheaper to build than an Index

    def take(self, rows: np.ndarray) -> Codes:
        return Codes(self.codes[rows], self.names)


@dataclass(frozen=True)
class TransactionArrays:
    customer: Codes
    seconds: np.ndarray  # int64 seconds since the epoch
    amount: np.ndarray  # float64, negative = refund
    order: Codes | None
    category: Codes | None
    channel: Codes | None

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> TransactionArrays:
        missing = [c for c in TRANSACTIONS.required if c not in frame.columns]
        if missing:
            raise DataError(
                f"transactions: missing required column(s) {', '.join(missing)}; "
                f"columns present: {', '.join(map(str, frame.columns))}"
            )
        customer = Codes.from_series(frame["customer_id"])
        if (customer.codes < 0).any():
            raise DataError(f"transactions: {(customer.codes < 0).sum()} rows lack a customer_id")
        amount = pd.to_numeric(frame["amount"], errors="coerce").to_numpy(dtype="float64")
        optional = {
            name: Codes.from_series(frame[name]) if name in frame.columns else None
            for name in ("order_id", "category", "channel")
        }
        return cls(
            customer,
            to_seconds(frame["timestamp"]),
            _finite(amount),
            optional["order_id"],
            optional["category"],
            optional["channel"],
        ).in_order()

    @classmethod
    def from_lists(
        cls,
        customer_ids: Sequence[str],
        n_rows: Sequence[int],
        timestamp: Sequence[datetime],
        amount: Sequence[float],
        order_id: Sequence[str | None],
        category: Sequence[str | None],
        channel: Sequence[str | None],
    ) -> TransactionArrays:
        """From validated request values: distinct customers, each followed by its `n_rows` rows
        (naive UTC times). What a small request needs, with no DataFrame in between; the
        features equal `from_frame`'s of the same rows, customers in the order given."""
        rows_of = np.repeat(np.arange(len(customer_ids)), n_rows)
        customer = Codes(rows_of, np.array(customer_ids, dtype=object))
        if len(customer.codes) != len(timestamp):
            raise ValueError(f"n_rows add up to {len(customer.codes)}, not {len(timestamp)} rows")
        return cls(
            customer,
            np.array([naive_seconds(t) for t in timestamp], dtype=np.int64),
            _finite(np.array(amount, dtype="float64")),
            Codes.from_values(order_id),
            Codes.from_values(category),
            Codes.from_values(channel),
        ).in_order()

    def in_order(self) -> TransactionArrays:
        """Rows by customer, then time (then order id): the builders' reading order."""
        return self if self.is_sorted() else self.take(self.sort_order())

    @property
    def n_rows(self) -> int:
        return len(self.seconds)

    @property
    def n_customers(self) -> int:
        return len(self.customer.names)

    def is_sorted(self) -> bool:
        code = self.customer.codes
        step = np.diff(code)
        return bool(((step > 0) | ((step == 0) & (np.diff(self.seconds) >= 0))).all())

    def sort_order(self) -> np.ndarray:
        keys = [self.seconds, self.customer.codes]
        if self.order is not None:
            keys.insert(0, self.order.codes)
        return np.lexsort(keys)

    def take(self, rows: np.ndarray) -> TransactionArrays:
        """The rows selected by a boolean mask or an index array, order kept."""

        def part(codes: Codes | None) -> Codes | None:
            return None if codes is None else codes.take(rows)

        return replace(
            self,
            customer=self.customer.take(rows),
            seconds=self.seconds[rows],
            amount=self.amount[rows],
            order=part(self.order),
            category=part(self.category),
            channel=part(self.channel),
        )


@dataclass(frozen=True)
class CustomerAttributes:
    """What the customers table adds, one entry per customer id; None = column not given."""

    ids: pd.Index | np.ndarray  # an object array for a request's few customers
    signup: np.ndarray | None  # datetime64, NaT = unknown
    acquisition_channel: Codes | None

    @classmethod
    def from_frame(cls, customers: pd.DataFrame) -> CustomerAttributes:
        table = customers.drop_duplicates("customer_id")
        signup = acquisition = None
        if "signup_date" in table.columns:
            signup = naive_utc(pd.to_datetime(table["signup_date"])).to_numpy()
        if "acquisition_channel" in table.columns:
            acquisition = Codes.from_series(table["acquisition_channel"])
        return cls(pd.Index(table["customer_id"].astype("str")), signup, acquisition)

    @property
    def columns(self) -> tuple[str, ...]:
        given = {"signup_date": self.signup, "acquisition_channel": self.acquisition_channel}
        return tuple(name for name, values in given.items() if values is not None)

    def positions(self, customer_ids: pd.Index | np.ndarray) -> np.ndarray:
        """Row of each id, -1 where the table has none."""
        if len(self.ids) <= _FEW_CUSTOMERS:  # a request: a dict costs less than an index engine
            rows = {customer_id: row for row, customer_id in enumerate(self.ids)}
            found = (rows.get(customer_id, -1) for customer_id in customer_ids)
            return np.fromiter(found, np.intp, len(customer_ids))
        return pd.Index(self.ids).get_indexer(customer_ids)


def money(sums: np.ndarray) -> np.ndarray:
    """Sums of amounts to a millionth: a refund that cancels its purchase leaves 0, not 1e-14
    (which read as a trend of +-1), and equal totals summed in another order are equal (the
    RFM quintiles give ties one score). `+ 0.0` makes a -1e-14 that rounds to -0.0 a plain 0.0
    in the files users read."""
    return np.round(sums, MONEY_DECIMALS) + 0.0


def _finite(amount: np.ndarray) -> np.ndarray:
    if not np.isfinite(amount).all():
        bad = int((~np.isfinite(amount)).sum())
        raise DataError(
            f"transactions: {plural(bad, 'row')} with a missing, non-numeric or infinite amount"
        )
    return amount


def to_seconds(values: pd.Series) -> np.ndarray:
    """Seconds since the epoch of timestamps (time-zone aware ones in UTC)."""
    if not pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, errors="coerce", format="ISO8601")
        if parsed.isna().any():
            bad = values[parsed.isna()].iloc[0]
            raise DataError(f"transactions: unparsable timestamp {bad!r}")
        values = parsed
    values = naive_utc(values)
    if values.isna().any():
        raise DataError(f"transactions: {int(values.isna().sum())} rows lack a timestamp")
    return values.to_numpy().astype("datetime64[s]").astype(np.int64)


def as_cutoff(cutoff: str | pd.Timestamp) -> pd.Timestamp:
    """A cutoff instant; a date alone means the start (00:00) of that day."""
    try:
        stamp = pd.Timestamp(cutoff)
    except (ValueError, TypeError):
        raise DataError(f"cutoff {cutoff!r} is not a date or timestamp") from None
    if stamp is pd.NaT:
        raise DataError(f"cutoff {cutoff!r} is not a date or timestamp")
    outside = out_of_range_year(stamp.year)  # as the data's own dates; 2300 overflowed later
    if outside is not None:
        raise DataError(f"cutoff {cutoff!r}: {outside}")
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp


def naive_seconds(moment: datetime) -> int:
    """Seconds since the epoch of a naive UTC time, floored as `to_seconds` does."""
    return (moment - EPOCH) // SECOND


def cutoff_seconds(cutoff: str | datetime) -> int:
    if type(cutoff) is datetime and cutoff.tzinfo is None:  # a request's as_of: no parsing
        return naive_seconds(cutoff)
    return int((as_cutoff(cutoff) - pd.Timestamp(0)) // pd.Timedelta(seconds=1))
