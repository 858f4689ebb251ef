"""A seeded, realistic retail history: the default data of every `make` target.

Each customer is acquired on a day (more later on: the shop grows), through an acquisition
channel with a cost, then buys at their own rate (gamma across customers) until they stop
for good at their own dropout time (exponential lifetimes), the rate following weekly and
yearly seasonality. Order values are gamma around a per-customer mean (Gamma-Gamma). Lines
fall mostly in the customer's favourite category; about 3% of lines are refunded later.
Campaigns contact random customers with an action of the catalogue (features.actions, the
names the next-best-action policy chooses among), split into treatment and control; treatment
adds a purchase with a probability that depends on the action and the customer's type at send
time, so uplift is learnable. The ground truth of all of this is written beside the data.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crm_ltv.features.config import SampleConfig
from crm_ltv.features.paths import replaced_whole

DAYS_PER_YEAR = 365.25
WEEKDAY_FACTORS = np.array([0.92, 0.90, 0.95, 1.00, 1.08, 1.18, 0.97])  # Monday .. Sunday
HOUR_WEIGHTS = np.array(
    [1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 2, 3, 4, 5, 6, 7, 6.5, 6, 5.5, 5.5, 6, 7, 8, 8, 6, 4, 2]
)
CUSTOMER_TYPES = ("new", "regular", "loyal", "lapsing")
NEW_DAYS, LAPSING_DAYS, LOYAL_ORDERS = 90, 120, 6  # customer-type rules (configs/sample.yaml)
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class SampleData:
    transactions: pd.DataFrame
    customers: pd.DataFrame
    campaigns: pd.DataFrame
    truth_customers: pd.DataFrame
    truth_campaigns: pd.DataFrame


@dataclass(frozen=True)
class _Calendar:
    start: np.datetime64
    n_days: int
    cumulative: np.ndarray  # seasonal intensity integrated from the start, at each day boundary

    @classmethod
    def of(cls, config: SampleConfig) -> _Calendar:
        start = np.datetime64(config.start_date, "D")
        n_days = round(config.years * DAYS_PER_YEAR)
        days = start + np.arange(n_days)
        weekday = (days.astype("int64") + 3) % 7  # 1970-01-01 was a Thursday
        day_of_year = (days - days.astype("datetime64[Y]")).astype("int64")
        yearly = (
            1.0
            + 0.45 * np.exp(-0.5 * ((day_of_year - 335) / 18) ** 2)  # November-December peak
            + 0.15 * np.exp(-0.5 * ((day_of_year - 190) / 25) ** 2)  # summer sales
            - 0.12 * np.exp(-0.5 * ((day_of_year - 40) / 20) ** 2)  # February lull
        )
        season = WEEKDAY_FACTORS[weekday] * yearly
        season /= season.mean()
        return cls(start, n_days, np.concatenate([[0.0], np.cumsum(season)]))

    def intensity_between(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        grid = np.arange(self.n_days + 1)
        return np.interp(b, grid, self.cumulative) - np.interp(a, grid, self.cumulative)

    def draw_days(self, rng: np.random.Generator, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Days in [a, b) drawn with density proportional to the seasonal intensity."""
        grid = np.arange(self.n_days + 1)
        lo = np.interp(a, grid, self.cumulative)
        hi = np.interp(b, grid, self.cumulative)
        return np.interp(lo + rng.random(len(a)) * (hi - lo), self.cumulative, grid)

    def timestamps(self, days: np.ndarray) -> np.ndarray:
        seconds = np.round(days * 86_400).astype("int64")
        return self.start.astype("datetime64[s]") + seconds.astype("timedelta64[s]")


def _time_of_day(rng: np.random.Generator, days: np.ndarray) -> np.ndarray:
    """Move each day's instant to a realistic hour (the date stays)."""
    hours = rng.choice(24, size=len(days), p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    return np.floor(days) + (hours + rng.random(len(days))) / 24


def _pick(
    rng: np.random.Generator, weights: dict[str, float] | np.ndarray, size: int
) -> np.ndarray:
    p = np.asarray(list(weights.values()) if isinstance(weights, dict) else weights, dtype=float)
    return rng.choice(len(p), size=size, p=p / p.sum())


@dataclass(frozen=True)
class _OrderKeys:
    """Baseline orders as sorted keys customer * stride + day, for history look-ups."""

    values: np.ndarray
    stride: float
    first: np.ndarray  # index of each customer's first order in `values`

    def customer_types(self, customer: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Type of each (customer, day) by its orders before that day, as CUSTOMER_TYPES codes."""
        offset = customer * self.stride
        position = np.searchsorted(self.values, offset + at)
        n_prior = position - self.first[customer]
        last = self.values[np.maximum(position - 1, 0)] - offset
        first = self.values[self.first[customer]] - offset
        return type_codes(n_prior, at - first, at - last)


def type_codes(n_prior: np.ndarray, since_first: np.ndarray, since_last: np.ndarray) -> np.ndarray:
    """The customer type (CUSTOMER_TYPES codes) by orders before a day and days since the first
    and the last of them: the rules the campaigns' true effects depend on."""
    kind = np.full(len(n_prior), CUSTOMER_TYPES.index("regular"))
    kind[n_prior >= LOYAL_ORDERS] = CUSTOMER_TYPES.index("loyal")
    kind[(n_prior == 1) & (since_first <= NEW_DAYS)] = CUSTOMER_TYPES.index("new")
    kind[(n_prior >= 1) & (since_last > LAPSING_DAYS)] = CUSTOMER_TYPES.index("lapsing")
    return kind


def customer_types_at(transactions: pd.DataFrame, at: pd.Timestamp) -> pd.Series:
    """Each customer's type at `at` from their orders (distinct order_id of a sale, else
    distinct purchase times) strictly before it, by the generator's rules (type_codes)."""
    sales = transactions.loc[(transactions["timestamp"] < at) & (transactions["amount"] > 0)]
    key = "order_id" if "order_id" in sales else "timestamp"
    orders = sales.groupby([sales["customer_id"].astype(str), sales[key]], observed=True)[
        "timestamp"
    ].min()
    per = orders.groupby(level=0).agg(["size", "min", "max"])
    day = pd.Timedelta(days=1)
    codes = type_codes(
        per["size"].to_numpy(),
        ((at - per["min"]) / day).to_numpy(),
        ((at - per["max"]) / day).to_numpy(),
    )
    return pd.Series(pd.Categorical.from_codes(codes, CUSTOMER_TYPES), index=per.index)


def generate_sample(config: SampleConfig) -> SampleData:
    rng = np.random.default_rng(config.seed)
    cal = _Calendar.of(config)
    n = config.n_customers

    # Customers: acquisition day (growing shop), channel, cost, latent behaviour.
    growth = 1.0 + config.acquisition_growth * np.arange(cal.n_days) / cal.n_days
    density = np.diff(cal.cumulative) * growth
    acquisition_cdf = np.concatenate([[0.0], np.cumsum(density)]) / density.sum()
    signup = np.sort(np.interp(rng.random(n), acquisition_cdf, np.arange(cal.n_days + 1)))
    signup = _time_of_day(rng, np.minimum(signup, cal.n_days - 1e-6))
    channels = list(config.acquisition)
    acq = _pick(rng, {k: v.share for k, v in config.acquisition.items()}, n)
    base_cost = np.array([config.acquisition[c].cost for c in channels])[acq]
    cost = np.round(base_cost * rng.lognormal(0.0, 0.25, n), 2)
    rate_mult = np.array([config.acquisition[c].rate_multiplier for c in channels])[acq]
    life_mult = np.array([config.acquisition[c].lifetime_multiplier for c in channels])[acq]
    rate = (
        rng.gamma(config.rate_shape, config.purchases_per_year / config.rate_shape, n) * rate_mult
    )
    mean_life = rng.gamma(config.lifetime_shape, config.lifetime_years / config.lifetime_shape, n)
    dropout = signup + rng.exponential(mean_life * life_mult) * DAYS_PER_YEAR
    q, p = config.spend_heterogeneity, config.order_value_shape
    order_value_mean = p / rng.gamma(q, 1.0 / (config.order_value * (q - 1) / p), n)
    main_channel = _pick(rng, config.sales_channels, n)
    popularity = 1.0 / (np.arange(len(config.categories)) + 1.0) ** 0.7
    favourite = _pick(rng, popularity, n)

    # Baseline orders: the first at acquisition, repeats while alive, seasonal.
    active_end = np.minimum(dropout, cal.n_days)
    expected = rate / DAYS_PER_YEAR * cal.intensity_between(signup, active_end)
    repeats = rng.poisson(np.maximum(expected, 0.0))
    owner = np.repeat(np.arange(n), repeats)
    repeat_days = _time_of_day(rng, cal.draw_days(rng, signup[owner], active_end[owner]))
    base_customer = np.concatenate([np.arange(n), owner])
    base_day = np.minimum(np.concatenate([signup, repeat_days]), cal.n_days - 1e-6)
    stride = float(cal.n_days + 1000)
    order = np.argsort(base_customer * stride + base_day, kind="stable")
    sorted_keys = base_customer[order] * stride + base_day[order]
    keys = _OrderKeys(sorted_keys, stride, np.searchsorted(sorted_keys, np.arange(n) * stride))

    # Campaigns: random contacts per send, type-dependent true effects on treatment. The actions
    # are catalogue names (checked by the config), drawn uniformly in the config's order.
    c = config.campaigns
    actions = list(c.effects)
    effect_table = np.array([[c.effects[a][t] for t in CUSTOMER_TYPES] for a in actions])
    sends = np.arange(c.first_send_after_days, cal.n_days - c.response_window_days, c.every_days)
    contact_customer, contact_day = [], []
    for send in sends:
        eligible = np.flatnonzero(signup < send)
        k = round(len(eligible) * c.share_contacted)
        contact_customer.append(np.sort(rng.choice(eligible, size=k, replace=False)))
        contact_day.append(np.full(k, float(send)) + 9.0 / 24)  # sent at 09:00
    cc = np.concatenate(contact_customer) if contact_customer else np.empty(0, dtype=int)
    cd = np.concatenate(contact_day) if contact_day else np.empty(0)
    action = rng.integers(0, len(actions), len(cc))
    treated = rng.random(len(cc)) < c.treatment_share
    kind = keys.customer_types(cc, cd)
    true_effect = effect_table[action, kind]
    extra = treated & (rng.random(len(cc)) < true_effect)
    extra_day = _time_of_day(rng, cd[extra] + rng.random(int(extra.sum())) * 14)
    # A response drawn on the send's own date but at an hour before the send: the next day.
    extra_day = np.where(extra_day <= cd[extra], extra_day + 1, extra_day)
    keep_extra = extra_day < cal.n_days
    extra[np.flatnonzero(extra)[~keep_extra]] = False
    extra_day = extra_day[keep_extra]

    # All orders, sorted by customer then time; value, channel, lines.
    order_customer = np.concatenate([base_customer, cc[extra]])
    order_day = np.concatenate([base_day, extra_day])
    order = np.lexsort((order_day, order_customer))
    order_customer, order_day = order_customer[order], order_day[order]
    n_orders = len(order_customer)
    value = rng.gamma(p, order_value_mean[order_customer] / p)
    other_channel = _pick(rng, config.sales_channels, n_orders)
    order_channel = np.where(
        rng.random(n_orders) < 0.8, main_channel[order_customer], other_channel
    )
    lines = 1 + rng.poisson(config.lines_per_order - 1.0, n_orders)
    line_order = np.repeat(np.arange(n_orders), lines)
    weight = rng.exponential(size=len(line_order))
    share = weight / np.add.reduceat(weight, np.cumsum(lines) - lines)[line_order]
    line_amount = np.maximum(np.round(value[line_order] * share, 2), 0.01)  # nothing is free
    line_customer = order_customer[line_order]
    random_category = _pick(rng, popularity, len(line_order))
    line_category = np.where(
        rng.random(len(line_order)) < config.favourite_category_share,
        favourite[line_customer],
        random_category,
    )
    line_quantity = 1 + rng.poisson(0.3, len(line_order))
    line_amount = _distinct_lines(line_order, line_category, line_quantity, line_amount)
    line_day = order_day[line_order]

    # Refunds: a share of lines returned 1-30 days later (those past the end never happen).
    refunded = np.flatnonzero(rng.random(len(line_order)) < config.refund_share)
    refund_day = line_day[refunded] + 1 + rng.random(len(refunded)) * 29
    refunded, refund_day = refunded[refund_day < cal.n_days], refund_day[refund_day < cal.n_days]
    rows = np.concatenate([np.arange(len(line_order)), refunded])
    sign = np.concatenate([np.ones(len(line_order)), -np.ones(len(refunded))])
    row_day = np.concatenate([line_day, refund_day])
    row_customer = line_customer[rows]
    arrange = np.lexsort((row_day, row_customer))
    rows, sign, row_day, row_customer = (
        rows[arrange],
        sign[arrange],
        row_day[arrange],
        row_customer[arrange],
    )

    ids = pd.Index(np.arange(1, n + 1)).astype("str").str.zfill(max(8, len(str(n))))
    order_ids = ("O" + pd.Index(np.arange(1, n_orders + 1)).astype("str").str.zfill(9)).to_numpy()
    transactions = pd.DataFrame(
        {
            "customer_id": pd.Categorical.from_codes(row_customer, categories=ids),
            "timestamp": cal.timestamps(row_day),
            "amount": np.round(sign * line_amount[rows], 2),
            "order_id": order_ids[line_order[rows]],
            "quantity": (sign * line_quantity[rows]).astype("int64"),
            "category": pd.Categorical.from_codes(
                line_category[rows], categories=list(config.categories)
            ),
            "channel": pd.Categorical.from_codes(
                order_channel[line_order[rows]], categories=list(config.sales_channels)
            ),
        }
    )

    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": cal.timestamps(np.floor(signup)).astype("datetime64[D]"),
            "acquisition_channel": pd.Categorical.from_codes(acq, categories=channels),
            "acquisition_cost": cost,
        }
    )

    campaigns, truth_campaigns = _campaign_tables(
        cal,
        ids,
        row_customer,
        row_day,
        sign * line_amount[rows],
        cc,
        cd,
        action,
        treated,
        kind,
        true_effect,
        extra,
        actions,
        c.response_window_days,
    )

    end_kind = keys.customer_types(np.arange(n), np.full(n, float(cal.n_days)))
    truth_customers = pd.DataFrame(
        {
            "customer_id": ids,
            "purchase_rate_per_year": rate,
            "dropout_at": cal.timestamps(np.minimum(dropout, 100 * DAYS_PER_YEAR)),
            "alive_at_end": dropout > cal.n_days,
            "mean_order_value": order_value_mean,
            "expected_spend_per_year": rate * order_value_mean,
            "customer_type_at_end": pd.Categorical.from_codes(end_kind, CUSTOMER_TYPES),
            **{f"effect_{a}": effect_table[i, end_kind] for i, a in enumerate(actions)},
        }
    )
    return SampleData(transactions, customers, campaigns, truth_customers, truth_campaigns)


def _campaign_tables(
    cal: _Calendar,
    ids: pd.Index,
    row_customer: np.ndarray,
    row_day: np.ndarray,
    row_amount: np.ndarray,
    customer: np.ndarray,
    day: np.ndarray,
    action: np.ndarray,
    treated: np.ndarray,
    kind: np.ndarray,
    true_effect: np.ndarray,
    extra: np.ndarray,
    actions: list[str],
    window_days: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Observed outcomes of each contact (any purchase, net spend in the window) and its truth."""
    stride = float(cal.n_days + 1000)
    key = row_customer * stride + row_day
    spend = np.concatenate([[0.0], np.cumsum(row_amount)])
    buys = np.concatenate([[0], np.cumsum(row_amount > 0)])
    lo = np.searchsorted(key, customer * stride + day, side="right")
    hi = np.searchsorted(key, customer * stride + day + window_days, side="right")
    campaigns = pd.DataFrame(
        {
            "customer_id": ids[customer],
            "sent_at": cal.timestamps(day),
            "action": pd.Categorical.from_codes(action, categories=actions),
            "group": np.where(treated, "treatment", "control"),
            "converted": (buys[hi] - buys[lo] > 0).astype("int64"),
            "revenue": np.round(spend[hi] - spend[lo], 2),
        }
    )
    truth = campaigns[["customer_id", "sent_at", "action", "group"]].assign(
        customer_type=pd.Categorical.from_codes(kind, CUSTOMER_TYPES),
        true_effect=true_effect,
        extra_purchase=extra,
    )
    return campaigns, truth


def _distinct_lines(
    order: np.ndarray, category: np.ndarray, quantity: np.ndarray, amount: np.ndarray
) -> np.ndarray:
    """Lines of one order that would be identical differ by a cent each: an exact duplicate
    in the sample would be indistinguishable from a data error."""
    lines = pd.DataFrame({"o": order, "c": category, "q": quantity, "a": amount})
    repeat = lines.groupby(["o", "c", "q", "a"], sort=False).cumcount().to_numpy()
    return np.round(amount + 0.01 * repeat, 2)


SAMPLE_RECORD = "sample.json"  # the settings a sample was made with, beside its tables


def write_sample(sample: SampleData, directory: Path, config: SampleConfig) -> dict[str, Path]:
    """CSV for the tables a user would bring (so the sample goes through the real loader),
    Parquet for the ground truth, and `sample.json`, the `config` it was made with (sample.yaml
    and the command line's): a run on it logs them, so the input can be made again without
    guessing the defaults (tester Y). Its paths, by table name and "settings" for the record.

    All or nothing: each of the six is written beside its name and renamed over it once every
    one is written (`replaced_whole`). A failure (a full disk) leaves the earlier sample, or
    none: `transactions.csv` was written in place, and a disk that filled left 50,711 of its
    242,655 rows, its last cut mid-row, which `make data` took for done and `features` loaded
    without a word (tester I). The record is one of the six: written after the renames, a disk
    that filled there, or a reader of `crm-ltv data | head -1` gone, left new tables with no
    record, or the earlier one (review 2, P3)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {
        **{name: directory / f"{name}.csv" for name in ("transactions", "customers", "campaigns")},
        **{name: directory / f"{name}.parquet" for name in ("truth_customers", "truth_campaigns")},
    }
    with contextlib.ExitStack() as renames:  # on leaving, in reverse: transactions.csv last
        for name, path in written.items():
            part = renames.enter_context(replaced_whole(path))
            table: pd.DataFrame = getattr(sample, name)
            if path.suffix == ".csv":
                table.to_csv(part, index=False, date_format=TIMESTAMP_FORMAT)
            else:
                table.to_parquet(part, index=False)
        record = directory / SAMPLE_RECORD
        part = renames.enter_context(replaced_whole(record))
        part.write_text(json.dumps(config.model_dump(mode="json"), indent=2) + "\n")
    return {**written, "settings": record}
