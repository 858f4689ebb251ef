"""Point-in-time customer features: only transactions with timestamp <= cutoff are read.

The population is every customer with at least one purchase (amount > 0) up to the cutoff.
A purchase day is a calendar day with a purchase; an order is a distinct order_id of the
customer, wherever its lines lie in time (or, without one, a distinct purchase timestamp); it
is dated by its first line. Refunds are negative amounts and count in net spend only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from crm_ltv.features.arrays import (
    EPOCH,
    SECONDS_PER_DAY,
    Codes,
    CustomerAttributes,
    TransactionArrays,
    cutoff_seconds,
    money,
)
from crm_ltv.features.columns import categorical
from crm_ltv.features.config import FeatureConfig
from crm_ltv.features.historic_ltv import historic_ltv
from crm_ltv.features.lifecycle import lifecycle_stages
from crm_ltv.features.registry import FeatureSpec, feature_registry
from crm_ltv.features.rfm import RfmCuts, rfm_columns

Column = np.ndarray | pd.Categorical
OTHER = "(other)"
YEAR_DAYS = 365


# Per label column ("category", "channel"): how often each label occurs in the population at a
# cutoff (purchase rows, orders), names sorted; what the cap on distinct labels keeps or pools.
LabelCounts = Mapping[str, pd.Series]
# Per label column: the labels a model's training kept (`kept_labels`), OTHER last if pooled.
KnownLabels = Mapping[str, tuple[str, ...]]


def build_features(
    transactions: pd.DataFrame,
    cutoff: str | pd.Timestamp,
    config: FeatureConfig,
    customers: pd.DataFrame | None = None,
    rfm_cuts: RfmCuts | None = None,
    known_labels: KnownLabels | None = None,
    history_start: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Features per customer at `cutoff`, indexed by customer_id; inputs are not modified.

    RFM scores use the quintiles of the customers at the cutoff, or fixed `rfm_cuts`; the
    category cap pools the customers' own rare labels, or those a model did not keep
    (`known_labels`); `history_share` reads the history from the transactions' first line, or
    from a model's training history's (`history_start`): so that a customer scored in a file
    gets the features the service gives.
    """
    arrays = TransactionArrays.from_frame(transactions)
    return features_at(
        arrays,
        cutoff,
        config,
        customers,
        rfm_cuts,
        known_labels=known_labels,
        history_start=history_start,
    )


@dataclass(frozen=True)
class _History:
    """Purchase bookkeeping shared by the feature blocks, for one cutoff."""

    cut_s: int
    names: pd.Index | np.ndarray  # customer_id of each population position
    past: TransactionArrays  # all rows up to the cutoff of population customers
    row_pos: np.ndarray  # population position of each row of `past`
    buy: np.ndarray  # rows of `past` that are purchases
    pos: np.ndarray  # population position of each purchase row
    seconds: np.ndarray  # of each purchase row
    amount: np.ndarray  # of each purchase row
    new_customer: np.ndarray  # purchase row starts a customer
    new_day: np.ndarray  # purchase row starts a purchase day
    new_order: np.ndarray  # purchase row is its order's first
    order: np.ndarray  # of each purchase row: its order, numbered by first row

    @property
    def size(self) -> int:
        return len(self.names)

    @property
    def cut_day(self) -> int:
        return self.cut_s // SECONDS_PER_DAY

    def total(self, pos: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Per-customer count, or sum of weights (always float, even over no rows)."""
        out = np.bincount(pos, weights, minlength=self.size)
        return out if weights is None else out.astype("float64", copy=False)

    @classmethod
    def of(cls, arrays: TransactionArrays, cut_s: int) -> _History:
        past = arrays.take(arrays.seconds <= cut_s)
        buys = past.amount > 0
        has_purchase = np.bincount(past.customer.codes[buys], minlength=arrays.n_customers) > 0
        position = np.cumsum(has_purchase) - 1
        in_population = has_purchase[past.customer.codes]
        past = past.take(in_population)
        row_pos = position[past.customer.codes]
        buy = past.amount > 0
        pos = row_pos[buy]
        seconds = past.seconds[buy]
        new_customer = _starts(pos)
        new_time = _starts(seconds) | new_customer
        new_day = _starts(seconds // SECONDS_PER_DAY) | new_customer
        order = _orders(pos, new_time, None if past.order is None else past.order.codes[buy])
        new_order = _starts(np.maximum.accumulate(order))
        return cls(
            cut_s=cut_s,
            names=arrays.customer.names[np.flatnonzero(has_purchase)],
            past=past,
            row_pos=row_pos,
            buy=buy,
            pos=pos,
            seconds=seconds,
            amount=past.amount[buy],
            new_customer=new_customer,
            new_day=new_day,
            new_order=new_order,
            order=order,
        )


def _orders(pos: np.ndarray, new_time: np.ndarray, codes: np.ndarray | None) -> np.ndarray:
    """The order of each purchase row (rows by customer and time), numbered 0, 1, ... by each
    order's first row. One order's lines may lie apart: another order's lines between them at
    the same timestamp (rows are not sorted by order), or later lines of the same invoice; so
    orders are the distinct (customer, order_id) pairs, not runs of one id. Rows without an
    order_id: one order per distinct timestamp of the customer."""
    by_time = np.cumsum(new_time)  # 1, 2, ...: one per (customer, timestamp)
    if codes is None:
        return by_time - 1
    width = np.int64(max(int(codes.max(initial=-1)), 0) + 1)
    # negative for rows without an id, rising in time as ids mostly do
    key = np.where(codes < 0, by_time - (len(codes) + 1), pos.astype("int64") * width + codes)
    starts = _starts(key)
    order = np.cumsum(starts) - 1  # runs of one key: right unless a key comes back
    run_key, run_pos = key[starts], pos[starts]
    # A key can come back only after a run with a key no higher: only those customers are
    # looked up whole (ids that rise with time, as invoice numbers do, skip the hashing)
    back = (run_pos[1:] == run_pos[:-1]) & (run_key[1:] <= run_key[:-1])
    if not back.any():
        return order
    rows = np.flatnonzero(np.isin(pos, run_pos[1:][back]))
    number, _ = pd.factorize(key[rows])
    first = np.zeros(len(rows), dtype=bool)
    first[np.unique(number, return_index=True)[1]] = True
    renumbered = np.empty(len(key), dtype=bool)  # rows that start an order, all customers
    renumbered[:] = starts
    renumbered[rows] = first
    order = np.cumsum(renumbered) - 1
    order[rows] = order[rows][first][number]
    return order


def _starts(values: np.ndarray) -> np.ndarray:
    """True where a value differs from the one before (and at the first row)."""
    out = np.ones(len(values), dtype=bool)
    np.not_equal(values[1:], values[:-1], out=out[1:])
    return out


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, missing where the denominator is 0."""
    out = np.full(len(numerator), np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _trend(recent: np.ndarray, before: np.ndarray) -> np.ndarray:
    scale = np.abs(recent) + np.abs(before)
    return np.nan_to_num(_ratio(recent - before, scale), nan=0.0)


def _rfm(h: _History, cuts: RfmCuts | None) -> dict[str, Column]:
    customer_starts = np.flatnonzero(h.new_customer)
    customer_ends = np.append(customer_starts[1:], len(h.pos)) - 1
    days = h.seconds // SECONDS_PER_DAY
    order_starts = np.flatnonzero(h.new_order)
    order_value = money(np.bincount(h.order, h.amount))
    first_order_of_customer = np.flatnonzero(h.new_customer[order_starts])
    n_orders = h.total(h.pos[order_starts]).astype("int64")
    net = money(h.total(h.row_pos, h.past.amount))
    recency = (h.cut_day - days[customer_ends]).astype("int64")
    frequency = h.total(h.pos[h.new_day]).astype("int64")
    return {
        "recency_days": recency,
        "frequency": frequency,
        "n_orders": n_orders,
        "monetary_total": net,
        "monetary_mean": net / n_orders,
        "monetary_max": np.maximum.reduceat(order_value, first_order_of_customer),
        "tenure_days": (h.cut_day - days[customer_starts]).astype("int64"),
        **rfm_columns(recency, frequency, net, cuts),
    }


def _window_sums(h: _History, since_s: int, until_s: int) -> tuple[np.ndarray, np.ndarray]:
    """Net spend and orders per customer with since < timestamp <= until."""
    rows = (h.past.seconds > since_s) & (h.past.seconds <= until_s)
    spend = money(h.total(h.row_pos[rows], h.past.amount[rows]))
    starts = h.new_order & (h.seconds > since_s) & (h.seconds <= until_s)
    return spend, h.total(h.pos[starts])


def _windows(h: _History, config: FeatureConfig) -> dict[str, Column]:
    out: dict[str, Column] = {}
    for w in config.windows_days:
        spend, orders = _window_sums(h, h.cut_s - w * SECONDS_PER_DAY, h.cut_s)
        out[f"spend_{w}d"] = spend
        out[f"orders_{w}d"] = orders.astype("int64")
    n = config.trend_window_days
    span = n * SECONDS_PER_DAY
    spend_recent, orders_recent = _window_sums(h, h.cut_s - span, h.cut_s)
    spend_before, orders_before = _window_sums(h, h.cut_s - 2 * span, h.cut_s - span)
    out[f"spend_trend_{n}d"] = _trend(spend_recent, spend_before)
    out[f"orders_trend_{n}d"] = _trend(orders_recent, orders_before)
    # The same weeks a year ago: the N days that followed the cutoff's date last year, wholly
    # before the cutoff (a seasonal shop's customers tend to come back in the same season).
    year_ago = h.cut_s - YEAR_DAYS * SECONDS_PER_DAY
    spend_ly, orders_ly = _window_sums(h, year_ago, min(year_ago + span, h.cut_s))
    out[f"spend_last_year_{n}d"] = spend_ly
    out[f"orders_last_year_{n}d"] = orders_ly.astype("int64")
    return out


def _gaps(h: _History, recency: np.ndarray) -> dict[str, Column]:
    day_pos = h.pos[h.new_day]
    days = h.seconds[h.new_day] // SECONDS_PER_DAY
    same = day_pos[1:] == day_pos[:-1]
    gap = np.diff(days)[same].astype("float64")
    gap_pos = day_pos[1:][same]
    count = h.total(gap_pos)
    mean = _ratio(h.total(gap_pos, gap), count)
    variance = _ratio(h.total(gap_pos, gap * gap), count) - mean * mean
    gross = money(h.total(h.pos, h.amount))
    refunds = h.past.amount < 0
    refunded = 0.0 - money(h.total(h.row_pos[refunds], h.past.amount[refunds]))
    return {
        "ipt_mean_days": mean,
        "ipt_std_days": np.sqrt(np.maximum(variance, 0.0)),
        "overdue_ratio": _ratio(recency.astype("float64"), mean),
        "refund_rate": refunded / gross,
    }


def _label_counts(labels: Codes) -> pd.Series:
    """Rows per label seen, by name (sorted, as the codes are)."""
    counts = np.bincount(labels.codes[labels.codes >= 0], minlength=len(labels.names))
    seen = np.flatnonzero(counts)
    return pd.Series(counts[seen], index=pd.Index(labels.names[seen], dtype="str"))


def _kept_labels(counts: pd.Series, limit: int) -> tuple[pd.Index, bool]:
    """The labels a feature keeps: all seen, or beyond `limit` the most used ones then OTHER
    (True: the rest are pooled there)."""
    if len(counts) <= limit:
        return pd.Index(counts.index, dtype="str"), False
    seen = np.arange(len(counts))
    by_count = seen[np.lexsort((seen, -counts.to_numpy()))]  # most used first, ties by name
    kept = np.sort(by_count[: limit - 1])
    return pd.Index([*counts.index[kept], OTHER], dtype="str"), True


def _known_labels(known: tuple[str, ...], seen: pd.Series) -> tuple[pd.Index, bool]:
    """The labels a feature keeps given the ones a model's training kept (`kept_labels`):
    where it pooled some as OTHER, the kept ones and OTHER for the rest; else all seen."""
    if OTHER not in known:
        return pd.Index(seen.index, dtype="str"), False
    return pd.Index([*sorted(n for n in known if n != OTHER), OTHER], dtype="str"), True


def _label_matrix(
    h: _History,
    pos: np.ndarray,
    labels: Codes,
    weights: np.ndarray | None,
    limit: int,
    counts: pd.Series | None,
    known: tuple[str, ...] | None = None,
) -> tuple[np.ndarray, pd.Index]:
    """Per customer x label totals; beyond `limit` labels the rarest are pooled as OTHER. The
    cap counts these rows' labels, or `counts` (the whole population's, when these customers
    are one partition of it); or the labels are those a model's training kept, `known` (a
    request's few customers: one's features must not depend on who else is in the request)."""
    valid = labels.codes >= 0
    codes = labels.codes[valid]
    if known is not None:
        names, pooled = _known_labels(known, _label_counts(labels))
    else:
        names, pooled = _kept_labels(_label_counts(labels) if counts is None else counts, limit)
    remap = names.get_indexer(pd.Index(labels.names, dtype="str"))
    if pooled:
        remap[remap < 0] = len(names) - 1
    width = len(names)
    key = pos[valid] * width + remap[codes]
    w = None if weights is None else weights[valid]
    matrix = np.bincount(key, w, minlength=h.size * width).reshape(h.size, width)
    return matrix, names


def _argmax_label(matrix: np.ndarray, names: pd.Index) -> pd.Categorical:
    if matrix.shape[1] == 0:  # nobody's purchases carry a label
        codes = np.full(matrix.shape[0], -1)
    else:
        codes = np.where(matrix.sum(axis=1) > 0, matrix.argmax(axis=1), -1)
    return categorical(codes, names)


def _category_labels(h: _History) -> Codes:
    """The category of each purchase row."""
    assert h.past.category is not None
    return h.past.category.take(h.buy)


def _channel_labels(h: _History) -> tuple[np.ndarray, Codes]:
    """Purchase rows that start an order, and the channel of each."""
    assert h.past.channel is not None
    order_rows = np.flatnonzero(h.new_order)
    return order_rows, h.past.channel.take(h.buy).take(order_rows)


def _categories(
    h: _History, config: FeatureConfig, counts: pd.Series | None, known: tuple[str, ...] | None
) -> dict[str, Column]:
    labels = _category_labels(h)
    limit = config.max_categories
    spend, names = _label_matrix(h, h.pos, labels, h.amount, limit, counts, known)
    spend = money(spend)  # ties by name, whatever order the amounts were summed in
    total = spend.sum(axis=1)
    share = spend / np.where(total > 0, total, 1.0)[:, None]
    entropy = -(share * np.log(np.where(share > 0, share, 1.0))).sum(axis=1)
    return {
        "n_categories": np.count_nonzero(spend, axis=1).astype("int64"),
        "category_entropy": np.where(total > 0, entropy + 0.0, np.nan),
        "favourite_category": _argmax_label(spend, names),
    }


def _channels(
    h: _History, config: FeatureConfig, counts: pd.Series | None, known: tuple[str, ...] | None
) -> dict[str, Column]:
    order_rows, labels = _channel_labels(h)
    limit = config.max_categories
    orders, names = _label_matrix(h, h.pos[order_rows], labels, None, limit, counts, known)
    return {
        "n_channels": np.count_nonzero(orders, axis=1).astype("int64"),
        "main_channel": _argmax_label(orders, names),
        "main_channel_share": _ratio(orders.max(axis=1, initial=0), orders.sum(axis=1)),
    }


def _customer_table(h: _History, customers: CustomerAttributes) -> dict[str, Column]:
    rows = customers.positions(h.names)  # -1 (not in the table) takes the appended "unknown"
    out: dict[str, Column] = {}
    if customers.acquisition_channel is not None:
        channel = customers.acquisition_channel
        out["acquisition_channel"] = categorical(np.append(channel.codes, -1)[rows], channel.names)
    if customers.signup is not None:
        signup = np.append(customers.signup, np.datetime64("NaT"))[rows]
        known = signup <= np.datetime64(h.cut_s, "s")  # NaT compares False
        signup_day = signup.astype("datetime64[D]").astype("int64")
        out["days_since_signup"] = np.where(known, h.cut_day - signup_day, np.nan)
    return out


@dataclass(frozen=True)
class FeatureColumns:
    """The features at one cutoff as named columns, in the registry's order: a request of a few
    customers is scored from these directly, since building a DataFrame costs more."""

    customer_ids: pd.Index | np.ndarray
    columns: dict[str, Column]

    def __len__(self) -> int:
        return len(self.customer_ids)

    def frame(self) -> pd.DataFrame:
        index = pd.Index(self.customer_ids, name="customer_id", dtype="str")
        return pd.DataFrame(self.columns, index=index)


def features_at(
    arrays: TransactionArrays,
    cutoff: str | pd.Timestamp,
    config: FeatureConfig,
    customers: pd.DataFrame | CustomerAttributes | None = None,
    rfm_cuts: RfmCuts | None = None,
    label_counts: LabelCounts | None = None,
    known_labels: KnownLabels | None = None,
    history_start: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Features at one cutoff from prepared arrays (build many cutoffs from one conversion).

    `label_counts` (see `population_label_counts`): the whole population's, when `arrays` hold
    one partition of the customers, so that the category cap pools the same labels;
    `known_labels`, `history_start`: as `feature_columns`."""
    return feature_columns(
        arrays, cutoff, config, customers, rfm_cuts, label_counts, known_labels, history_start
    ).frame()


def population_label_counts(arrays: TransactionArrays, cutoff: str | pd.Timestamp) -> LabelCounts:
    """What the category cap counts at `cutoff` (category of purchase rows, channel of orders);
    the sums of these over partitions of the customers are the whole population's."""
    h = _History.of(arrays, cutoff_seconds(cutoff))
    out: dict[str, pd.Series] = {}
    if arrays.category is not None:
        out["category"] = _label_counts(_category_labels(h))
    if arrays.channel is not None:
        out["channel"] = _label_counts(_channel_labels(h)[1])
    return out


def kept_labels(counts: LabelCounts, config: FeatureConfig) -> dict[str, tuple[str, ...]]:
    """The labels the cap keeps for a population's counts, with OTHER last where it pools the
    rest: what a model trained on that population knows (`known_labels` of a request)."""
    return {name: tuple(_kept_labels(c, config.max_categories)[0]) for name, c in counts.items()}


def with_rfm_cuts(table: pd.DataFrame, cuts: RfmCuts, config: FeatureConfig) -> pd.DataFrame:
    """The table with RFM scores, segment and lifecycle stage against fixed cut points.

    Training rows come from many cutoffs, each scored against its own quintiles by default; a
    model scores against the cut points of its training population (which it carries), so its
    training rows are rescored against those same cut points: no train/serve skew.
    """
    out = table.assign(
        **rfm_columns(table["recency_days"], table["frequency"], table["monetary_total"], cuts)
    )
    if "lifecycle_stage" in out:  # its rules may read the scores
        out["lifecycle_stage"] = lifecycle_stages(out, config.lifecycle)
    return out


def feature_columns(
    arrays: TransactionArrays,
    cutoff: str | pd.Timestamp,
    config: FeatureConfig,
    customers: pd.DataFrame | CustomerAttributes | None = None,
    rfm_cuts: RfmCuts | None = None,
    label_counts: LabelCounts | None = None,
    known_labels: KnownLabels | None = None,
    history_start: pd.Timestamp | None = None,
) -> FeatureColumns:
    """`label_counts`: the population's, where these customers are a partition of it;
    `known_labels`: the labels a model's training kept (`kept_labels`), where the features are
    to be scored by it (a request's few customers, or a file scored by `crm-ltv score`);
    `history_start`: the shop's first transaction, where `arrays` do not begin with it (a
    request's, a partition's, a model's training history's); by default `arrays`' first."""
    if isinstance(customers, pd.DataFrame):
        customers = CustomerAttributes.from_frame(customers)
    h = _History.of(arrays, cutoff_seconds(cutoff))
    specs = feature_registry(config)
    if h.size == 0:
        return _empty(specs, arrays, customers)
    columns: dict[str, Column] = _rfm(h, rfm_cuts)
    columns |= _windows(h, config)
    columns |= _gaps(h, columns["recency_days"])
    counts, known = label_counts or {}, known_labels or {}
    if arrays.category is not None:
        columns |= _categories(h, config, counts.get("category"), known.get("category"))
    if arrays.channel is not None:
        columns |= _channels(h, config, counts.get("channel"), known.get("channel"))
    columns["historic_ltv"] = historic_ltv(
        columns["monetary_mean"], columns["n_orders"], columns["tenure_days"], config.historic_ltv
    )
    columns |= _season(h)
    start_s = int(arrays.seconds.min()) if history_start is None else cutoff_seconds(history_start)
    start_day = start_s // SECONDS_PER_DAY
    columns["history_share"] = _history_share(columns["tenure_days"], h.cut_day, start_day)
    if customers is not None:
        columns |= _customer_table(h, customers)
    columns["lifecycle_stage"] = lifecycle_stages(columns, config.lifecycle)
    ordered = {s.name: columns[s.name] for s in specs if s.name in columns}
    return FeatureColumns(h.names, ordered)


def _season(h: _History) -> dict[str, Column]:
    """Where the cutoff falls in the year: the label window ahead of a November cutoff holds the
    holiday peak, one ahead of a February cutoff does not."""
    day_of_year = (EPOCH + timedelta(seconds=h.cut_s)).timetuple().tm_yday
    angle = 2 * np.pi * (day_of_year - 1) / 365.25
    return {
        "season_sin": np.full(h.size, np.sin(angle)),
        "season_cos": np.full(h.size, np.cos(angle)),
    }


def _history_share(tenure_days: np.ndarray, cut_day: int, start_day: int) -> np.ndarray:
    """Tenure over the days from the shop's first transaction to the cutoff, at most 1. The
    data's start cuts early customers' tenure short, and a year of training cutoffs never
    shows the tenures customers reach later (Online Retail II: ~190 days at most at the
    one-year origin's training cutoffs, 373 when scored); "known since the data began" reads
    alike at every cutoff as a share."""
    span = max(cut_day - start_day, 1)
    return np.minimum(tenure_days / span, 1.0)


def _empty(
    specs: tuple[FeatureSpec, ...],
    arrays: TransactionArrays,
    customers: CustomerAttributes | None,
) -> FeatureColumns:
    present = {"category": arrays.category is not None, "channel": arrays.channel is not None}
    if customers is not None:
        present |= {f"customers.{c}": True for c in customers.columns}
    names = [s.name for s in specs if s.requires is None or present.get(s.requires, False)]
    return FeatureColumns(pd.Index([], dtype="str"), {n: np.empty(0) for n in names})
