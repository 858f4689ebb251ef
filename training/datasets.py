"""Training data: snapshots at many cutoffs, split by time with a gap of one horizon.

A row at cutoff t carries labels from (t, t + horizon]. If training used a cutoff whose label
window reached past the validation cutoff, training would know part of the validation period's
outcomes; so each part's label windows must end by the next part's first cutoff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from crm_ltv.features.builders import with_rfm_cuts
from crm_ltv.features.config import FeatureConfig
from crm_ltv.features.contract import DataError
from crm_ltv.features.rfm import RfmCuts
from crm_ltv.features.snapshots import build_snapshots, snapshot_cutoffs
from crm_ltv.training.config import SnapshotConfig, SplitConfig

KEYS = ("cutoff", "customer_id")
LABELS = ("churned", "future_value")


@dataclass(frozen=True)
class CutoffPlan:
    train: tuple[pd.Timestamp, ...]
    valid: pd.Timestamp
    test: pd.Timestamp

    @property
    def all(self) -> tuple[pd.Timestamp, ...]:
        return (*self.train, self.valid, self.test)


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

    @property
    def feature_names(self) -> list[str]:
        return feature_names(self.train)


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
    if not train:
        span = (last - first).days
        needed = snapshots.min_history_days + 3 * snapshots.horizon_days
        raise DataError(
            f"transactions span {span} days ({first:%Y-%m-%d} to {last:%Y-%m-%d}); a "
            f"{snapshots.horizon_days}-day horizon needs at least {needed} days: "
            f"{snapshots.min_history_days} days of history before the first cutoff, then three "
            f"label windows (training, validation, test) that do not overlap. Use a shorter "
            f"--horizon-days, or lower snapshots.min_history_days in configs/train.yaml"
        )
    if split.max_train_cutoffs is not None:
        train = train[-split.max_train_cutoffs :]
    return CutoffPlan(tuple(train), valid, test)


def build_time_split(
    transactions: pd.DataFrame,
    snapshots: SnapshotConfig,
    split: SplitConfig,
    features: FeatureConfig,
    customers: pd.DataFrame | None = None,
    progress: Callable[[str], None] | None = None,
) -> TimeSplit:
    """Snapshots at the planned cutoffs only, split into train / validation / test."""
    times = transactions["timestamp"]
    plan = plan_cutoffs(times.min(), times.max(), snapshots, split)
    table = build_snapshots(
        transactions, plan.all, snapshots.horizon_days, features, customers, progress
    )
    parts = {
        name: table[table["cutoff"].isin(cutoffs)].reset_index(drop=True)
        for name, cutoffs in (("train", plan.train), ("valid", [plan.valid]), ("test", [plan.test]))
    }
    for name, part in parts.items():
        if part.empty or part["churned"].nunique() < 2:
            raise DataError(
                f"{name} snapshot(s) hold {len(part):,} customers with "
                f"{part['churned'].nunique() if len(part) else 0} churn outcome(s): "
                "need both churned and retained customers to train and evaluate"
            )
    cuts = RfmCuts.of(parts["train"])
    parts = {name: with_rfm_cuts(part, cuts, features) for name, part in parts.items()}
    return TimeSplit(plan, snapshots.horizon_days, **parts, rfm_cuts=cuts)
