"""Training data: snapshots at many cutoffs, split by time with a gap of one horizon.

A row at cutoff t carries labels from (t, t + horizon]. If training used a cutoff whose label
window reached past the validation cutoff, training would know part of the validation period's
outcomes; so each part's label windows must end by the next part's first cutoff.

A history too short for three such windows (a calibration year and a six-month horizon, say)
is split by customer instead: overlapping label windows, validation and test on customers held
out at the newest cutoff, a customer never on both sides. That evaluation is out-of-customer,
not out-of-time, and every output says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from crm_ltv.features.arrays import TransactionArrays
from crm_ltv.features.builders import (
    features_at,
    kept_labels,
    population_label_counts,
    with_rfm_cuts,
)
from crm_ltv.features.config import FeatureConfig
from crm_ltv.features.contract import DataError
from crm_ltv.features.rfm import RfmCuts
from crm_ltv.features.snapshots import build_snapshots, snapshot_cutoffs
from crm_ltv.training.config import SnapshotConfig, SplitConfig

KEYS = ("cutoff", "customer_id")
LABELS = ("churned", "future_value")


OUT_OF_TIME, OUT_OF_CUSTOMER = "out-of-time", "out-of-customer"
Evaluation = Literal["out-of-time", "out-of-customer"]
HELD_OUT_SHARES = (0.15, 0.15)  # validation, test customers of an out-of-customer split
YEAR = pd.Timedelta(days=365)


@dataclass(frozen=True)
class LevelTarget:
    """What the customers scored at `cutoff` should add up to over the next horizon, estimated
    from the history alone: a model learns the average level of its training label windows, but
    a seasonal shop's next window may hold the yearly peak or none of it.

    A labelled window (the newest one) gives its customers' spend and buyers, and how these
    compare with the whole shop's (known customers) in that window; the shop's same window one
    year before `cutoff` gives the season. `seasonal(growth)` carries a share of the shop's
    last year-over-year growth (labelled window over the same window a year before it, when the
    history holds it) into the horizon. `flat()` keeps the labelled window's level per customer.
    `expected` takes the one that predicted the earlier labelled windows (`checks`) better: a
    shop whose level moves with its customer base more than with the season gets flat. No label
    past the labelled window's end is read.
    """

    cutoff: pd.Timestamp
    reference: pd.Timestamp  # cutoff of the labelled window
    value: float  # labelled customers' net spend in their window
    buyers: float  # labelled customers with a purchase in their window
    shop: tuple[float, float]  # the shop's (spend, buyers) in the labelled window
    last_year: tuple[float, float]  # the same, in the window one year before `cutoff`
    year_before: tuple[float, float] | None = None  # in the labelled window one year earlier
    customers: int = 0  # labelled customers
    scored: int = 0  # customers scored at `cutoff` (what `flat` scales to)
    checks: tuple[LevelCheck, ...] = ()  # earlier windows, to choose seasonal or flat
    only: Method | None = None  # the one method the history allows (held-out customers: flat)

    def seasonal(self, growth: float) -> tuple[float, float]:
        """(net spend, buyers): the labelled window x the season x a share of the growth."""
        out = []
        for i, labelled in enumerate((self.value, self.buyers)):
            trend = 1.0
            if self.year_before is not None and self.year_before[i] > 0:
                trend = (self.shop[i] / self.year_before[i]) ** growth
            out.append(labelled * self.last_year[i] / self.shop[i] * trend)
        return out[0], out[1]

    def flat(self) -> tuple[float, float]:
        """(net spend, buyers): the labelled window's per customer, times the scored ones."""
        share = self.scored / self.customers if self.customers and self.scored else 1.0
        return self.value * share, self.buyers * share

    def errors(self, growth: float) -> dict[Method, float]:
        """Each method's summed |log(actual / estimate)| of spend and buyers over `checks`."""
        return {m: sum(check.error(m, growth) for check in self.checks) for m in METHODS}

    def method(self, growth: float) -> Method:
        """seasonal, unless flat predicted the checked windows better (no checks: seasonal)."""
        if self.only is not None:
            return self.only
        errors = self.errors(growth)
        return "flat" if self.checks and errors["flat"] < errors["seasonal"] else "seasonal"

    def expected(self, growth: float) -> tuple[float, float]:
        """(net spend, buyers) the scored customers should total over the horizon."""
        return self.flat() if self.method(growth) == "flat" else self.seasonal(growth)

    def describe(self, growth: float) -> str:
        method = self.method(growth)
        if method == "flat":
            basis = f"labelled window after {self.reference:%Y-%m-%d} per customer"
        else:
            basis = (
                f"labelled window after {self.reference:%Y-%m-%d}, season of the window after "
                f"{self.cutoff - YEAR:%Y-%m-%d}"
                + (", growth over its year before" if self.year_before is not None else "")
            )
        if not self.checks or self.only is not None:
            return basis
        errors = self.errors(growth)
        return (
            f"{basis}; {method} predicted {len(self.checks)} earlier windows better "
            f"(|log error| seasonal {errors['seasonal']:.2f}, flat {errors['flat']:.2f})"
        )


Method = Literal["seasonal", "flat"]
METHODS: tuple[Method, ...] = ("seasonal", "flat")


@dataclass(frozen=True)
class LevelCheck:
    """An earlier labelled window as predicted from the labelled window one horizon before it
    (`estimate`, scoring that window's customers), and what its customers really did."""

    estimate: LevelTarget
    actual: tuple[float, float]  # net spend, buyers

    def error(self, method: Method, growth: float) -> float:
        predicted = self.estimate.flat() if method == "flat" else self.estimate.seasonal(growth)
        return sum(
            abs(float(np.log(a / p))) for a, p in zip(self.actual, predicted, strict=True)
            if a > 0 and p > 0
        )  # fmt: skip


@dataclass(frozen=True)
class CutoffPlan:
    train: tuple[pd.Timestamp, ...]
    valid: pd.Timestamp
    test: pd.Timestamp
    evaluation: Evaluation = OUT_OF_TIME

    @property
    def all(self) -> tuple[pd.Timestamp, ...]:
        return tuple(sorted({*self.train, self.valid, self.test}))


@dataclass(frozen=True)
class TimeSplit:
    """Every part scored against `rfm_cuts`, the RFM cut points of the training population,
    which the trained models carry and score new customers against."""

    plan: CutoffPlan
    horizon_days: int
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    rfm_cuts: RfmCuts
    # Labelled rows in no part: held-out customers at older cutoffs (out-of-customer only);
    # the refit learns from them too.
    rest: pd.DataFrame | None = None
    # Features of every customer at the last transaction, no labels: whom the refit scores.
    latest: pd.DataFrame | None = None
    # The level each fit's predictions are set to (None: the history cannot tell): "evaluation"
    # for the test rows, "refit" for `latest`.
    levels: dict[str, LevelTarget | None] = field(default_factory=dict)
    # Rows of each part when the parts hold samples of them (the Dask engine's client split).
    sampled_from: Mapping[str, int] | None = None
    # Per label column ("category", "channel"), the labels the category cap keeps for the
    # customers at the data's end: the bundle carries them, so that a request's few customers
    # pool rare labels as the population does (features.builders.kept_labels).
    known_labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # The history's first transaction: `history_share` of a scored customer reads from it, as
    # the training rows' did (the bundle carries it).
    history_start: pd.Timestamp | None = None

    @property
    def feature_names(self) -> list[str]:
        return feature_names(self.train)

    @property
    def rows(self) -> dict[str, int]:
        """Rows of each part ("train", "valid", "test") and of every labelled row ("labelled",
        what a refit learns from): all of them, also where the parts are samples."""
        if self.sampled_from is not None:
            out = {name: int(self.sampled_from[name]) for name in ("train", "valid", "test")}
        else:
            out = {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}
        rest = len(self.rest) if self.rest is not None else 0
        return out | {"labelled": sum(out.values()) + rest}

    @property
    def evaluation(self) -> Evaluation:
        return self.plan.evaluation


def feature_names(snapshots: pd.DataFrame) -> list[str]:
    return [c for c in snapshots.columns if c not in KEYS and c not in LABELS]


def plan_cutoffs(
    first: pd.Timestamp, last: pd.Timestamp, snapshots: SnapshotConfig, split: SplitConfig
) -> CutoffPlan:
    """Test = the newest labelled cutoff; validation and training each end one horizon earlier."""
    horizon = pd.Timedelta(days=snapshots.horizon_days)
    cutoffs = snapshot_cutoffs(
        first, last, snapshots.every_days, snapshots.horizon_days, snapshots.min_history_days
    )
    test = cutoffs[-1] if cutoffs else None
    valid = max((c for c in cutoffs if test is not None and c + horizon <= test), default=None)
    train = [c for c in cutoffs if valid is not None and c + horizon <= valid]
    if not cutoffs:
        span = (last - first).days
        needed = snapshots.min_history_days + snapshots.horizon_days
        raise DataError(
            f"transactions span {span} days ({first:%Y-%m-%d} to {last:%Y-%m-%d}); a "
            f"{snapshots.horizon_days}-day horizon needs at least {needed} days: "
            f"{snapshots.min_history_days} days of history before the first cutoff, then one "
            f"label window. Use a shorter --horizon-days, or lower snapshots.min_history_days "
            f"in configs/train.yaml"
        )
    if not train:  # no room for three windows that do not overlap: hold out customers instead
        train = list(cutoffs)
        valid = test = cutoffs[-1]
    if split.max_train_cutoffs is not None:
        train = train[-split.max_train_cutoffs :]
    evaluation = OUT_OF_TIME if valid != test else OUT_OF_CUSTOMER
    return CutoffPlan(tuple(train), valid, test, evaluation)


def customer_unit(customer_ids: pd.Series, salt: str) -> np.ndarray:
    """A number in [0, 1) per customer from a stable hash of the id and `salt`: the same
    customer draws the same number at every cutoff, send and run."""
    key = salt.ljust(16, "-")[:16]
    return pd.util.hash_array(customer_ids.astype(str).to_numpy(), hash_key=key) / 2.0**64


def _held_out(customer_ids: pd.Series, seed: int) -> np.ndarray:
    """0 = training, 1 = validation, 2 = test: by a stable hash of the id, so a customer has
    one side at every cutoff and in every run."""
    unit = customer_unit(customer_ids, f"crm-ltv-{seed}")
    valid_share, test_share = HELD_OUT_SHARES
    return np.where(unit < 1 - valid_share - test_share, 0, np.where(unit < 1 - test_share, 1, 2))


def check_outcomes(part: str, rows: int, churned: int) -> None:
    """A part of the split can train or evaluate only with churned and retained customers."""
    if 0 < churned < rows:
        return
    outcomes = int(churned > 0) + int(churned < rows) if rows else 0
    raise DataError(
        f"{part} snapshot(s) hold {rows:,} customers with {outcomes} churn outcome(s): "
        "need both churned and retained customers to train and evaluate"
    )


def build_time_split(
    transactions: pd.DataFrame,
    snapshots: SnapshotConfig,
    split: SplitConfig,
    features: FeatureConfig,
    customers: pd.DataFrame | None = None,
    progress: Callable[[str], None] | None = None,
    seed: int = 42,
) -> TimeSplit:
    """Snapshots at the planned cutoffs only, split into train / validation / test."""
    times = transactions["timestamp"]
    plan = plan_cutoffs(times.min(), times.max(), snapshots, split)
    table = build_snapshots(
        transactions, plan.all, snapshots.horizon_days, features, customers, progress
    )
    rest = None
    if plan.evaluation == OUT_OF_TIME:
        parts = {
            name: table[table["cutoff"].isin(cutoffs)].reset_index(drop=True)
            for name, cutoffs in (
                ("train", plan.train), ("valid", [plan.valid]), ("test", [plan.test])
            )
        }  # fmt: skip
    else:
        side = _held_out(table["customer_id"], seed)
        newest = (table["cutoff"] == plan.test).to_numpy()
        parts = {
            "train": table[(side == 0) & table["cutoff"].isin(plan.train).to_numpy()],
            "valid": table[(side == 1) & newest],
            "test": table[(side == 2) & newest],
        }
        parts = {name: part.reset_index(drop=True) for name, part in parts.items()}
        rest = table[(side != 0) & ~newest].reset_index(drop=True)
    for name, part in parts.items():
        check_outcomes(name, len(part), int(part["churned"].sum()))
    cuts = RfmCuts.of(parts["train"])
    parts = {name: with_rfm_cuts(part, cuts, features) for name, part in parts.items()}
    last = times.max()
    arrays = TransactionArrays.from_frame(transactions)
    latest = features_at(arrays, last, features, customers)
    known = kept_labels(population_label_counts(arrays, last), features)
    latest = latest.reset_index()
    newest = pd.concat(
        [p[p["cutoff"] == plan.test] for p in (*parts.values(), rest) if p is not None]
    ).drop_duplicates("customer_id")
    horizon = snapshots.horizon_days
    if plan.evaluation == OUT_OF_TIME:
        evaluation = seasonal_level(
            transactions,
            parts["valid"],
            plan.test,
            horizon,
            len(parts["test"]),
            pd.concat([parts["train"], parts["valid"]]),
        )
        labelled = pd.concat([parts["train"], parts["valid"], parts["test"]])
    else:  # the test customers' window is the validation customers': scale by head count
        valid = parts["valid"]
        evaluation = LevelTarget(
            plan.test,
            plan.test,
            float(valid["future_value"].sum()),
            float((1 - valid["churned"]).sum()),
            (1.0, 1.0),
            (1.0, 1.0),
            customers=len(valid),
            scored=len(parts["test"]),
            only="flat",
        )
        labelled = None  # overlapping windows of customers split apart: nothing to check
    levels = {
        "evaluation": evaluation,
        "refit": seasonal_level(transactions, newest, last, horizon, len(latest), labelled),
    }
    return TimeSplit(
        plan,
        horizon,
        **parts,
        rfm_cuts=cuts,
        rest=rest,
        latest=latest,
        levels=levels,
        known_labels=known,
        history_start=times.min(),
    )


def _shop_window(transactions: pd.DataFrame, start: pd.Timestamp, days: int) -> tuple[float, float]:
    """Net spend and distinct buyers of the shop (known customers) in (start, start + days]."""
    times = transactions["timestamp"]
    rows = transactions[(times > start) & (times <= start + pd.Timedelta(days=days))]
    buyers = rows.loc[rows["amount"] > 0, "customer_id"].nunique()
    return float(rows["amount"].sum()), float(buyers)


def seasonal_level(
    transactions: pd.DataFrame,
    labelled: pd.DataFrame,
    cutoff: pd.Timestamp,
    horizon_days: int,
    scored: int = 0,
    checked: pd.DataFrame | None = None,
) -> LevelTarget | None:
    """The level of the horizon after `cutoff` for `scored` customers from the labelled rows of
    one cutoff (every customer known then) and the shop's windows (see `LevelTarget`); None when
    the history does not reach one year before `cutoff`, or the horizon is longer than a year.
    `checked`: labelled rows of earlier cutoffs, each window predicted from the one a horizon
    before it (`level_checks`)."""
    reference = pd.Timestamp(labelled["cutoff"].iloc[0])
    first = transactions["timestamp"].min()
    if horizon_days > YEAR.days or cutoff - YEAR < first:
        return None
    shop = _shop_window(transactions, reference, horizon_days)
    if shop[0] <= 0 or shop[1] == 0:
        return None
    year_before = None
    if reference - YEAR >= first:
        year_before = _shop_window(transactions, reference - YEAR, horizon_days)
    return LevelTarget(
        cutoff,
        reference,
        float(labelled["future_value"].sum()),
        float((1 - labelled["churned"]).sum()),
        shop,
        _shop_window(transactions, cutoff - YEAR, horizon_days),
        year_before,
        customers=len(labelled),
        scored=scored,
        checks=() if checked is None else level_checks(transactions, checked, horizon_days),
    )


def level_checks(
    transactions: pd.DataFrame, labelled: pd.DataFrame, horizon_days: int
) -> tuple[LevelCheck, ...]:
    """Every labelled window that the newest one whose labels end by its cutoff, a year of
    history and the season can predict: estimate and actual (see `LevelTarget.method`)."""
    by_cutoff = dict(tuple(labelled.groupby("cutoff", sort=True)))
    horizon = pd.Timedelta(days=horizon_days)
    checks = []
    for cutoff, rows in by_cutoff.items():
        earlier = [c for c in by_cutoff if c + horizon <= cutoff]
        if not earlier:
            continue
        estimate = seasonal_level(
            transactions, by_cutoff[max(earlier)], pd.Timestamp(cutoff), horizon_days, len(rows)
        )
        if estimate is not None:
            actual = (float(rows["future_value"].sum()), float((1 - rows["churned"]).sum()))
            checks.append(LevelCheck(estimate, actual))
    return tuple(checks)
