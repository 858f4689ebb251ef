"""Every feature the builders produce, with a one-line description and what it needs.

`build_features` returns exactly these columns, in this order, less those whose optional
input column is absent; a test holds the two together, and the README lists them.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from crm_ltv.features.config import ConfigError, FeatureConfig
from crm_ltv.features.contract import MAX_ABS_NUMBER, YEARS

# Bounds of a feature row sent to the service, beyond which it is a caller's mistake: days
# between two dates of the contract's years; sums and counts of up to a thousand lines at the
# contract's largest number. Past these the models' arithmetic runs to absurd or infinite
# scores (a monetary_total of 1e308 read as an infinite value).
MAX_DAYS = 366 * len(YEARS)
MAX_ABS_FEATURE = 1000 * MAX_ABS_NUMBER


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    description: str
    kind: Literal["numeric", "categorical"] = "numeric"
    requires: str | None = None  # optional input: "category", "channel" or "customers.<column>"
    # What the builders can produce (a test holds them to it): a feature row sent to the
    # service outside these is a caller's mistake, not a customer to score.
    low: float | None = None
    high: float | None = None
    integer: bool = False  # counts, days and quintiles: 2.5 orders is a caller's mistake


def feature_registry(config: FeatureConfig) -> tuple[FeatureSpec, ...]:
    return _registry(config.windows_days, config.trend_window_days)


def check_feature_names(names: Iterable[str], known: Iterable[str], where: str) -> None:
    """A setting naming a feature no model reads (a typo) is refused when the config is read,
    not ignored or found after the features are built."""
    known = sorted(set(known))
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}.{name}: no feature of that name{hint}")


def _finite(spec: FeatureSpec) -> FeatureSpec:
    """A numeric feature without bounds of its own gets MAX_ABS_FEATURE's."""
    if spec.kind != "numeric":
        return spec
    low = -MAX_ABS_FEATURE if spec.low is None else spec.low
    return replace(spec, low=low, high=MAX_ABS_FEATURE if spec.high is None else spec.high)


@functools.cache
def optional_input_features() -> dict[str, str]:
    """Features of an optional input (a customers table, categories, channels) and their kind;
    their names do not depend on the config's windows."""
    return {s.name: s.kind for s in _specs((), 1) if s.requires is not None}


@functools.lru_cache(maxsize=64)  # built on every service request otherwise
def _registry(windows_days: tuple[int, ...], n: int) -> tuple[FeatureSpec, ...]:
    return tuple(_finite(spec) for spec in _specs(windows_days, n))


def _specs(windows_days: tuple[int, ...], n: int) -> tuple[FeatureSpec, ...]:
    windows = [
        spec
        for w in windows_days
        for spec in (
            FeatureSpec(f"spend_{w}d", f"Net spend in the last {w} days."),
            FeatureSpec(
                f"orders_{w}d", f"Purchase orders in the last {w} days.", low=0, integer=True
            ),
        )
    ]
    return (
        FeatureSpec(
            "recency_days",
            "Days from the last purchase to the cutoff.",
            low=0,
            high=MAX_DAYS,
            integer=True,
        ),
        FeatureSpec("frequency", "Distinct days with a purchase.", low=1, integer=True),
        FeatureSpec(
            "n_orders",
            "Purchase orders (distinct order_id, else distinct timestamps).",
            low=1,
            integer=True,
        ),
        FeatureSpec("monetary_total", "Net spend: purchases minus refunds."),
        FeatureSpec("monetary_mean", "Net spend per order (average order value)."),
        FeatureSpec("monetary_max", "Largest single order, before refunds."),
        FeatureSpec(
            "tenure_days",
            "Days from the first purchase to the cutoff.",
            low=0,
            high=MAX_DAYS,
            integer=True,
        ),
        FeatureSpec(
            "history_share",
            "Tenure over the days from the shop's first transaction to the cutoff (1: known "
            "since the data began; a model's training history sets where that is).",
            low=0,
            high=1,
        ),
        FeatureSpec(
            "r_score",
            "Recency quintile 1..5 among customers at the cutoff (5 = recent).",
            low=1,
            high=5,
            integer=True,
        ),
        FeatureSpec(
            "f_score",
            "Frequency quintile 1..5 among customers at the cutoff.",
            low=1,
            high=5,
            integer=True,
        ),
        FeatureSpec(
            "m_score",
            "Net spend quintile 1..5 among customers at the cutoff.",
            low=1,
            high=5,
            integer=True,
        ),
        FeatureSpec("rfm_segment", "Named RFM segment from the R x F grid.", "categorical"),
        *windows,
        FeatureSpec(
            f"spend_trend_{n}d",
            f"Net spend, last {n} days vs the {n} before: "
            "(a - b) / (abs(a) + abs(b)), 0 if both 0.",
            low=-1,
            high=1,
        ),
        FeatureSpec(
            f"orders_trend_{n}d",
            f"Orders, last {n} days vs the {n} before: (a - b) / (a + b), 0 if both 0.",
            low=-1,
            high=1,
        ),
        FeatureSpec(
            f"spend_last_year_{n}d",
            f"Net spend in the {n} days after the cutoff's instant 365 days earlier: (cutoff - "
            f"365 days, cutoff - {max(365 - n, 0)} days], days of 24 hours.",
        ),
        FeatureSpec(
            f"orders_last_year_{n}d",
            f"Purchase orders in the {n} days after the cutoff's instant 365 days earlier: "
            f"(cutoff - 365 days, cutoff - {max(365 - n, 0)} days].",
            low=0,
            integer=True,
        ),
        FeatureSpec(
            "ipt_mean_days",
            "Mean days between purchase days (missing below 2 days).",
            low=0,
            high=MAX_DAYS,
        ),
        FeatureSpec(
            "ipt_std_days",
            "Standard deviation (ddof 0: 0 with one gap) of days between purchase days "
            "(missing below 2 days).",
            low=0,
            high=MAX_DAYS,
        ),
        FeatureSpec(  # a mean gap is at least a day
            "overdue_ratio", "Recency over the mean inter-purchase time.", low=0, high=MAX_DAYS
        ),
        FeatureSpec("refund_rate", "Refunded amount over purchased amount.", low=0),
        FeatureSpec(
            "n_categories",
            "Distinct categories bought (0 when no purchase line has one).",
            requires="category",
            low=0,
            integer=True,
        ),
        FeatureSpec(
            "category_entropy",
            "Shannon entropy (nats) of purchase spend (before refunds) across categories "
            "(missing when no purchase line has one).",
            requires="category",
            low=0,
        ),
        FeatureSpec(
            "favourite_category",
            "Category with the most purchase spend, before refunds (ties: alphabetical, "
            "`(other)` last; missing when no purchase line has one).",
            "categorical",
            requires="category",
        ),
        FeatureSpec(
            "n_channels", "Distinct sales channels used.", requires="channel", low=0, integer=True
        ),
        FeatureSpec(
            "main_channel",
            "Channel of most orders (ties: alphabetical, `(other)` last).",
            "categorical",
            "channel",
        ),
        FeatureSpec(
            "main_channel_share",
            "Share of orders in the main channel.",
            requires="channel",
            low=0,
            high=1,
        ),
        FeatureSpec(
            "lifecycle_stage",
            "new, developing, loyal, at-risk or lapsed, by the rules in configs/features.yaml.",
            "categorical",
        ),
        FeatureSpec(
            "historic_ltv",
            "Classic LTV: net order value x orders per year x lifespan (negative when refunds "
            "exceed purchases).",
        ),
        FeatureSpec(
            "season_sin",
            "Day of year of the cutoff on the unit circle: sin(2 pi (day of year - 1) / "
            "365.25), the time of day not read.",
            low=-1,
            high=1,
        ),
        FeatureSpec(
            "season_cos",
            "Day of year of the cutoff on the unit circle: cos(2 pi (day of year - 1) / "
            "365.25), the time of day not read.",
            low=-1,
            high=1,
        ),
        FeatureSpec(
            "acquisition_channel",
            "Channel the customer was acquired through (customers table).",
            "categorical",
            "customers.acquisition_channel",
        ),
        FeatureSpec(
            "days_since_signup",
            "Days from signup to the cutoff (missing if signup is after the cutoff).",
            requires="customers.signup_date",
            low=0,
            high=MAX_DAYS,
            integer=True,
        ),
    )
