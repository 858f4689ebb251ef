"""The data contract: which tables, which columns, which types (README: "Data contract")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import pandas as pd

Kind = Literal["id", "label", "datetime", "number", "group", "flag"]

# Beyond these a value is a fault in the data, not a sale or a date of a shop's history: sums
# of such numbers overflow to infinity, and such dates overflow datetime arithmetic (a time
# zone, a contact cap). The loader rejects them row by row, the service with a 400.
MAX_ABS_NUMBER = 1e12
YEARS = range(1900, 2200)


def out_of_range_year(year: int) -> str | None:
    """Why a date of this year is refused, or None."""
    if year in YEARS:
        return None
    return f"year {year} is outside {YEARS.start}..{YEARS.stop - 1}"


def iso_dated(text: str) -> bool:
    """Text that starts as an ISO 8601 date with its dashes (2024-01-01, 2024-01-01T10:00):
    read otherwise, digits are seconds since 1970 to pydantic (20240101 was 1970-08-23) and
    01/02/2025 a guess of its day and month to pandas."""
    return text.lstrip()[4:5] == "-"


class DataError(ValueError):
    """Input data that cannot be used; the message names the file, column or row."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind  # id/label: strings (ids keep leading zeros); group: treatment/control; flag: 0/1
    required: bool = False
    min_value: float | None = None
    max_value: float | None = None
    # Without a column of its own in the file: the product of these two contract columns,
    # each then required row by row (an export with unit prices and no line total).
    product_of: tuple[str, str] | None = None


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    unique_key: str | None = None  # a column whose repeated values are rejected
    # Columns naming one record (a campaign contact: customer, send time, action): rows that
    # share them and read differently in another column are rejected, every copy (which one is
    # right is not known); rows that read alike (written otherwise, or differing only in an
    # unread column) are one record, the first kept, reported with the duplicates.
    record_key: tuple[str, ...] = ()
    # Columns the project's own commands write beside the contract's (not read; not "ignored")
    written_for_reference: tuple[str, ...] = ()
    # A column whose missing value marks an anonymous line (a sale to no known customer):
    # kept out and reported rather than rejected, unless validation.anonymous_lines says reject.
    anonymous_key: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def unknown_in_mapping(self, mapped: Iterable[str]) -> str | None:
        """Why a column mapping (contract name -> file column) names columns this table does
        not have, or None."""
        unknown = sorted(set(mapped) - set(self.names))
        if not unknown:
            return None
        return (
            f"{self.name}.columns names {', '.join(map(repr, unknown))}, which the contract "
            f"does not have; contract columns: {', '.join(self.names)}"
        )


TRANSACTIONS = TableSchema(
    "transactions",
    (
        Column("customer_id", "id", required=True),
        Column("timestamp", "datetime", required=True),
        # negative = refund; a file without it gives quantity x unit_price per line
        Column("amount", "number", required=True, product_of=("quantity", "unit_price")),
        Column("order_id", "id"),
        Column("quantity", "number"),
        Column("unit_price", "number"),
        Column("category", "label"),
        Column("channel", "label"),
    ),
    anonymous_key="customer_id",
)

CUSTOMERS = TableSchema(
    "customers",
    (
        Column("customer_id", "id", required=True),
        Column("signup_date", "datetime"),
        Column("acquisition_channel", "label"),
        Column("acquisition_cost", "number", min_value=0.0),
    ),
    unique_key="customer_id",
)

CAMPAIGNS = TableSchema(
    "campaigns",
    (
        Column("customer_id", "id", required=True),
        Column("sent_at", "datetime", required=True),
        # Any label: an A/B analysis reads every action a shop sends; what learns and decides
        # (uplift models, the policy) keeps to the action catalogue (features.actions).
        Column("action", "label", required=True),
        Column("group", "group", required=True),
        Column("converted", "flag"),
        Column("revenue", "number"),
        # Written by `crm-ltv outcomes`: the action the service's policy chose (not a random
        # draw), so uplift training compares each action with its own controls only.
        Column("policy_action", "label"),
        # Written by `crm-ltv outcomes` as the service answered them: `ab --by` reads these
        # rather than rebuild them (the service's RFM scores are by its champions' cut points)
        Column("rfm_segment", "label"),
        Column("lifecycle_stage", "label"),
        # Written by `crm-ltv outcomes`: the chance the row's decision, being a treatment or a
        # control, was a treatment ((1 - h)(1 - e) / ((1 - h)(1 - e) + h) with its logged holdout
        # share h and exploration e): the split `ab`'s sample-ratio check expects of its rows.
        Column("expected_treatment_share", "number", min_value=0.0, max_value=1.0),
        # Written by `crm-ltv outcomes`: the days after sent_at over which its converted and
        # revenue were counted; `uplift` refuses a file counted over another window than its own.
        Column("response_window_days", "number", min_value=1.0),
    ),
    record_key=("customer_id", "sent_at", "action"),
    # What else `crm-ltv outcomes` writes, for an analyst to trace a row to its decision; no
    # command reads them, and a load does not list them as columns outside the contract
    written_for_reference=("holdout", "explored", "propensity", "request_id"),
)

SCHEMAS = {s.name: s for s in (TRANSACTIONS, CUSTOMERS, CAMPAIGNS)}


def naive_utc(values: pd.Series) -> pd.Series:
    """Time-zone aware timestamps as UTC without a zone; naive ones as they are."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values
