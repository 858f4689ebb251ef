"""The data contract: which tables, which columns, which types (README: "Data contract")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

Kind = Literal["id", "label", "datetime", "number", "group", "flag"]


class DataError(ValueError):
    """Input data that cannot be used; the message names the file, column or row."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind  # id/label: strings (ids keep leading zeros); group: treatment/control; flag: 0/1
    required: bool = False
    min_value: float | None = None


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    unique_key: str | None = None  # a column whose repeated values are rejected

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)


TRANSACTIONS = TableSchema(
    "transactions",
    (
        Column("customer_id", "id", required=True),
        Column("timestamp", "datetime", required=True),
        Column("amount", "number", required=True),  # negative = refund
        Column("order_id", "id"),
        Column("quantity", "number"),
        Column("category", "label"),
        Column("channel", "label"),
    ),
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
        Column("action", "label", required=True),
        Column("group", "group", required=True),
        Column("converted", "flag"),
        Column("revenue", "number"),
    ),
)

SCHEMAS = {s.name: s for s in (TRANSACTIONS, CUSTOMERS, CAMPAIGNS)}


def naive_utc(values: pd.Series) -> pd.Series:
    """Time-zone aware timestamps as UTC without a zone; naive ones as they are."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values
