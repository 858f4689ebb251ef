"""Training and batch scoring on a Dask cluster (`--engine dask`): past one machine's memory.

- The snapshot table is built where the transactions are: every partition (whole customers)
  runs `snapshot_at` at the planned cutoffs with the population's category counts; the RFM
  cut points of the training population are exact quantiles across partitions. It equals the
  single-process table row for row.
- Both boosters train on every training row with LightGBM's own Dask estimators
  (`lightgbm.dask`, data-parallel). LightGBM's Dask interface has no early stopping, so the
  boosters train `n_estimators` rounds and the rounds are chosen afterwards as early stopping
  would have chosen them (the same metric, the same patience) on the validation sample.
- What needs the client's memory works on seeded samples of customers (the same customers at
  every cutoff), stated in the run: BG/NBD's inputs (on the newest training cutoff) and
  per-window levels are fitted on up to 50,000 sampled training rows (the single-process fit
  caps BG/NBD's at that many too), the baselines,
  calibration, evaluation and plots use up to `EVAL_ROWS` validation and test customers.
  On a history smaller than that, every row is in the samples.
- The registered bundle is refit on every labelled cutoff as on one process
  (`refit_on_cluster`). Not on Dask (the single-process path has them): the seasonal level,
  the hurdle LTV objective and the out-of-customer split of short histories.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import dask.array as da
import lightgbm as lgb
import numpy as np
import pandas as pd
from distributed import Client, Future
from lightgbm.dask import DaskLGBMClassifier, DaskLGBMRegressor
from scipy.special import expit
from sklearn.metrics import log_loss, roc_auc_score

from crm_ltv.features.builders import LabelCounts, kept_labels
from crm_ltv.features.cluster import (
    RETRIES,
    Partitioned,
    conformed,
    label_counts,
    rfm_cuts_of,
    shared,
    with_rfm_cuts,
)
from crm_ltv.features.config import ConfigError, FeatureConfig
from crm_ltv.features.contract import DataError
from crm_ltv.features.snapshots import snapshot_at, stack_snapshots
from crm_ltv.features.wording import plural
from crm_ltv.training.baselines import BgNbdFeatures
from crm_ltv.training.bundle import ModelBundle
from crm_ltv.training.config import TrainConfig
from crm_ltv.training.datasets import (
    OUT_OF_TIME,
    CutoffPlan,
    TimeSplit,
    check_outcomes,
    customer_unit,
    feature_names,
    plan_cutoffs,
)
from crm_ltv.training.heartbeat import heartbeat
from crm_ltv.training.models import (
    ChurnModel,
    LtvModel,
    fit_vocabularies,
    higher_is_better,
    target_unit,
    watched_metric,
)
from crm_ltv.training.pipeline import (
    ModelData,
    TrainedModels,
    build_bundle,
    churn_model,
    fit_baselines,
    labelled_split,
    ltv_model,
    ltv_model_said,
    newest_cutoff,
    training_weights,
)
from crm_ltv.training.scoring import Champions, score_customers

Progress = Callable[[str], None]
EVAL_ROWS = 200_000  # validation and test customers sampled to the client
PARTS = ("train", "valid", "test")
LINK_TIMEOUT_MINUTES = 10  # lightgbm.dask's time_out: far above the seconds workers take to link


@dataclass(frozen=True)
class ClusterSplit:
    """The time split on the cluster: each partition's rows of every planned cutoff (of the
    training cutoffs only when no refit reads the others), scored against the training
    population's RFM cut points; and, on the client, seeded samples of customers of each part
    (`sample`, a `TimeSplit`: what evaluation and plots read)."""

    client: Client
    plan: CutoffPlan
    frames: list[Future]
    rows: dict[str, int]  # rows of each part, all of them
    sample: TimeSplit
    labelled: bool  # the frames hold every labelled cutoff (what a refit reads)


def _snapshots(
    arrays: Any,
    customers: Any,
    cutoffs: tuple[pd.Timestamp, ...],
    horizon_days: int,
    config: FeatureConfig,
    counts: Mapping[pd.Timestamp, LabelCounts],
    history_start: pd.Timestamp,
) -> pd.DataFrame:
    parts = [
        snapshot_at(arrays, c, horizon_days, config, customers, counts[c], history_start)
        for c in cutoffs
    ]
    return stack_snapshots(parts)


def _part_stats(frame: pd.DataFrame, plan: CutoffPlan) -> dict[str, tuple[int, int]]:
    """Rows and churned rows of each part in one partition."""
    out = {}
    for name, cutoffs in (("train", plan.train), ("valid", [plan.valid]), ("test", [plan.test])):
        rows = frame["cutoff"].isin(cutoffs)
        out[name] = (int(rows.sum()), int(frame.loc[rows, "churned"].sum()))
    return out


def _sample(
    frame: pd.DataFrame, plan: CutoffPlan, shares: dict[str, float], seed: int
) -> dict[str, pd.DataFrame]:
    unit = customer_unit(frame["customer_id"], f"crm-ltv-{seed}")
    out = {}
    for name, cutoffs in (("train", plan.train), ("valid", [plan.valid]), ("test", [plan.test])):
        rows = frame["cutoff"].isin(cutoffs).to_numpy() & (unit < shares[name])
        out[name] = frame.loc[rows]
    return out


def split_on_cluster(
    data: Partitioned,
    config: TrainConfig,
    features: FeatureConfig,
    progress: Progress,
    labelled: bool | None = None,
) -> ClusterSplit:
    """`build_time_split` on the cluster (out-of-time splits only). The cluster keeps the
    validation and test rows only when `labelled` (default: `config.refit`): evaluation reads
    the client's samples of them."""
    client, horizon = data.client, config.snapshots.horizon_days
    plan = plan_cutoffs(data.first, data.last, config.snapshots, config.split)
    if plan.evaluation != OUT_OF_TIME:
        raise DataError(
            "the history is too short for three label windows that do not overlap; the "
            "out-of-customer split of short histories runs with --engine single only"
        )
    counts = {cutoff: label_counts(data, cutoff) for cutoff in plan.all}
    progress(f"snapshots at {len(plan.all)} cutoffs on {len(data.arrays)} partitions")
    frames = conformed(
        client,
        data.map(
            _snapshots,
            cutoffs=plan.all,
            horizon_days=horizon,
            config=features,
            counts=shared(client, counts),
            history_start=data.first,
        ),
    )
    stats = client.gather(client.map(_part_stats, frames, plan=plan))
    rows = {name: sum(s[name][0] for s in stats) for name in PARTS}
    for name in PARTS:
        check_outcomes(name, rows[name], sum(s[name][1] for s in stats))
    train = set(plan.train)
    cuts = rfm_cuts_of(client, frames, lambda frame: frame["cutoff"].isin(train))
    frames = with_rfm_cuts(client, frames, cuts, features)
    shares = {
        "train": min(1.0, 50_000 / rows["train"]),
        "valid": min(1.0, EVAL_ROWS / rows["valid"]),
        "test": min(1.0, EVAL_ROWS / rows["test"]),
    }
    samples = client.gather(
        client.map(_sample, frames, plan=plan, shares=shared(client, shares), seed=config.seed)
    )
    parts = {
        name: stack_snapshots([s[name] for s in samples])
        .sort_values(["cutoff", "customer_id"], kind="stable")
        .reset_index(drop=True)
        for name in PARTS
    }
    progress(
        f"time split: train {plural(len(plan.train), 'cutoff')} ({rows['train']:,} rows), "
        f"validation {plan.valid:%Y-%m-%d} ({rows['valid']:,}), test {plan.test:%Y-%m-%d} "
        f"({rows['test']:,}); on the client, samples of {len(parts['train']):,} / "
        f"{len(parts['valid']):,} / {len(parts['test']):,} rows"
    )
    known = kept_labels(label_counts(data, data.last), features)
    sample = TimeSplit(
        plan,
        horizon,
        **parts,
        rfm_cuts=cuts,
        levels={},
        sampled_from=rows,
        known_labels=known,
        history_start=data.first,
    )
    labelled = config.refit if labelled is None else labelled
    if not labelled:
        frames = client.map(_rows_at, frames, cutoffs=tuple(plan.train), retries=RETRIES)
    return ClusterSplit(client, plan, frames, rows, sample, labelled)


def _rows_at(frame: pd.DataFrame, cutoffs: tuple[pd.Timestamp, ...]) -> pd.DataFrame:
    """A partition's snapshot rows of some cutoffs."""
    return frame.loc[frame["cutoff"].isin(cutoffs)]


def _encoded(
    frame: pd.DataFrame,
    cutoffs: tuple[pd.Timestamp, ...],
    augment: BgNbdFeatures | None,
    model: ChurnModel | LtvModel,
    label: str,
    shifts: Mapping[pd.Timestamp, float],
    weights: Mapping[pd.Timestamp, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A partition's rows of some cutoffs as the booster reads them: features as one float32
    C-ordered block (half the memory of float64; LightGBM builds its bins from float32 as
    it is), label, start, weight (1 without `weights`)."""
    rows = _rows_at(frame, cutoffs)
    X = rows[feature_names(rows)]
    if augment is not None:
        X = augment.transform(X)
    encoded = model.encode(X)
    y = rows[label].to_numpy("float64")
    shift = rows["cutoff"].map(shifts).fillna(0.0).to_numpy("float64")
    weight = rows["cutoff"].map(weights or {}).fillna(1.0).to_numpy("float64")
    return (
        np.ascontiguousarray(encoded, dtype="float32"),
        model.target(y) if isinstance(model, LtvModel) else y,  # the one-process fit's target
        model._start(encoded, shift),  # the one-process fit's start of the same rows
        weight,
    )


def _block(encoded: tuple[np.ndarray, ...], i: int) -> np.ndarray:
    return encoded[i]


def _per_cutoff(values: np.ndarray | None, cutoffs: pd.Series) -> dict[pd.Timestamp, float]:
    """Per cutoff, the value the one-process fit gave its rows (one value per cutoff): the
    level move of `ModelData.shifts`, the weight of `cutoff_weights`."""
    if values is None:
        return {}
    return pd.Series(values, index=cutoffs.to_numpy()).groupby(level=0).first().to_dict()


# What early stopping can watch on the cluster: LightGBM's metric names, as the one-process
# fit passes them to LightGBM (`params.metric`; by default the objective's own loss).
WATCHED = {"binary": ("auc", "binary_logloss"), "tweedie": ("tweedie",)}


def supported_metric(params: Mapping[str, Any], objective: str) -> str:
    """The metric early stopping watches, one that `best_rounds` can compute."""
    metric = watched_metric(params, objective)
    if metric not in WATCHED[objective]:
        raise ConfigError(
            f"metric {metric}: --engine dask early-stops a {objective} booster on "
            f"{' or '.join(WATCHED[objective])} (params.metric in configs/train.yaml)"
        )
    return metric


def _metric(metric: str, y: np.ndarray, raw: np.ndarray, power: float) -> float:
    """LightGBM's value of `metric` for raw scores: AUC, or a loss (binary log loss; tweedie's
    negative log-likelihood, LightGBM's `tweedie` metric)."""
    if metric == "auc":
        return float(roc_auc_score(y, raw))
    if metric == "binary_logloss":
        return float(log_loss(y, expit(raw), labels=[0, 1]))
    mu = np.exp(raw)
    return float(np.mean(-y * mu ** (1 - power) / (1 - power) + mu ** (2 - power) / (2 - power)))


def best_rounds(
    booster: lgb.Booster,
    X: np.ndarray,
    y: np.ndarray,
    init: np.ndarray,
    metric: str,
    patience: int,
    power: float = 1.5,
) -> tuple[int, float]:
    """The rounds early stopping would keep on (X, y), watching `metric` as LightGBM does (the
    best value, scanning until `patience` rounds bring no improvement); and that value."""
    sign = 1.0 if higher_is_better(metric) else -1.0
    raw = np.array(init, dtype="float64")
    best, best_score = 0, -np.inf
    for k in range(booster.current_iteration()):
        raw += booster.predict(X, raw_score=True, start_iteration=k, num_iteration=1)
        score = sign * _metric(metric, y, raw, power)
        if score > best_score:
            best, best_score = k + 1, score
        elif k + 1 - best >= patience:
            break
    return best, sign * best_score


def _dask_arrays(client: Client, encoded: list[Future], width: int) -> list[da.Array]:
    """Features, labels, starts and weights of every partition with rows, as Dask arrays
    chunked by partition (lightgbm.dask trains each worker on the chunks it holds)."""
    sizes = client.gather(client.map(lambda e: len(e[1]), encoded))
    parts = [(future, n) for future, n in zip(encoded, sizes, strict=True) if n]
    blocks = []
    kinds = (("float32", (width,)), ("float64", ()), ("float64", ()), ("float64", ()))
    for i, (dtype, shape) in enumerate(kinds):
        blocks.append(
            da.concatenate(
                [
                    da.from_delayed(client.submit(_block, f, i), (n, *shape), dtype=dtype)
                    for f, n in parts
                ]
            )
        )
    return blocks


def _fit_booster(
    split: ClusterSplit,
    model: ChurnModel | LtvModel,
    kind: str,
    parts: dict[str, Any],
    config: TrainConfig,
    progress: Progress,
    rounds: int | None = None,
) -> lgb.Booster:
    """One booster on every row of `parts["cutoffs"]` on the cluster: cut to the rounds early
    stopping would keep on the validation sample, or (a refit) trained `rounds` rounds."""
    client = split.client
    label = "churned" if kind == "churn" else "future_value"
    train = client.map(
        _encoded, split.frames, cutoffs=parts["cutoffs"], augment=parts["augment"], model=model,
        label=label, shifts=shared(client, parts["shifts"][0]), weights=parts["weights"],
        retries=RETRIES,
    )  # fmt: skip
    names = list(model.model_features_)
    X, y, init, weight = _dask_arrays(client, train, len(names))
    settings = config.booster(kind)
    extra = {} if kind == "churn" else {"tweedie_variance_power": config.ltv.tweedie_variance_power}
    params = model.lgb_params("binary" if kind == "churn" else "tweedie", extra)
    params.pop("num_threads")  # lightgbm.dask uses each worker's threads
    # minutes a worker waits for the others to link (lightgbm.dask reads this name only): its
    # 120 kept a worker waiting two hours for one lost before the link; train.yaml's wins
    params.setdefault("time_out", LINK_TIMEOUT_MINUTES)
    params["n_estimators"] = rounds or settings.n_estimators
    estimator = (DaskLGBMClassifier if kind == "churn" else DaskLGBMRegressor)(
        client=client, **params
    )
    rows = sum(split.rows[p] for p in PARTS) if rounds else split.rows["train"]
    cut = "" if rounds else ", then cut to the rounds early stopping keeps"
    progress(
        f"training {kind} booster on {rows:,} rows with lightgbm.dask "
        f"({plural(params['n_estimators'], 'round')}{cut})"
    )
    beat = heartbeat(progress, f"training the {kind} booster")
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings(), beat:
        # stdout: its "Finding random open ports" line; n_jobs: each worker's threads are used
        warnings.filterwarnings("ignore", "Parameter n_jobs will be ignored")
        estimator.fit(
            X,
            y,
            sample_weight=weight if parts["weights"] else None,
            init_score=init,
            feature_name=names,
            categorical_feature=[i for i, n in enumerate(names) if n in model.vocabularies_],
        )
    booster = estimator.booster_
    if rounds is not None:
        model.best_iteration_ = rounds
        return booster
    del X, y, init, weight, train
    valid = _encoded(
        parts["valid"], (split.plan.valid,), parts["augment"], model, label, parts["shifts"][1]
    )[:3]
    metric = supported_metric(params, params["objective"])
    rounds, score = best_rounds(
        booster,
        *valid,
        metric,
        settings.early_stopping_rounds,
        config.ltv.tweedie_variance_power,
    )
    progress(
        f"{kind} booster: {rounds} of {plural(booster.current_iteration(), 'round')} kept "
        f"(best on the validation sample: {metric} {score:.4f})"
    )
    model.best_iteration_, model.validation_score_ = rounds, score
    model.validation_metric_ = metric
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=rounds))


def _vocabularies(
    split: ClusterSplit, names: list[str], cutoffs: tuple[pd.Timestamp, ...]
) -> dict[str, tuple[str, ...]]:
    """`fit_vocabularies` of every row of `cutoffs`: each partition's, united."""
    train = set(cutoffs)
    parts = split.client.gather(
        split.client.map(
            lambda frame: fit_vocabularies(frame.loc[frame["cutoff"].isin(train), names]),
            split.frames,
        )
    )
    columns = {c for p in parts for c in p}
    return {c: tuple(sorted({v for p in parts for v in p.get(c, ())})) for c in columns}


def check_supported(config: TrainConfig) -> None:
    """What the Dask engine cannot train yet, said before any cluster starts."""
    if config.ltv.objective != "tweedie":
        raise ConfigError(
            f"ltv.objective {config.ltv.objective}: --engine dask trains tweedie only "
            "(configs/train.yaml)"
        )
    supported_metric(config.churn.params, "binary")
    supported_metric(config.ltv.params, "tweedie")


def train_on_cluster(
    split: ClusterSplit,
    sample: TimeSplit,
    config: TrainConfig,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Progress = lambda _: None,
) -> TrainedModels:
    """`train_models` with both boosters trained on the cluster; `run_training` takes it as
    `fit` (bound to `split`) with `split.sample` as the split."""
    import mlflow

    check_supported(config)
    if sample is not split.sample:
        raise ValueError("train_on_cluster: `sample` must be the cluster split's sample")
    if mlflow.active_run():  # within `run_training`: the run says what ran where
        mlflow.log_params(
            {"engine": "dask", "workers": len(split.client.scheduler_info()["workers"])}
            | {f"cluster_{name}_rows": n for name, n in split.rows.items()}
            | {f"sample_{name}_rows": len(getattr(sample, name)) for name in PARTS}
        )
    newest = len(newest_cutoff(sample.train))
    progress(f"fitting BG/NBD inputs on the newest training cutoff ({newest:,} sampled customers)")
    data = ModelData.of(sample, config)
    churn, ltv = _fit_models(split, sample, data, config, params or {}, progress)
    progress(ltv_model_said(ltv, config))  # the unit, as one process says it (tester L)
    churn.calibrate(
        churn._raw(churn.encode(data.valid)), sample.valid["churned"].to_numpy("float64")
    )
    progress("fitting baselines on the sampled rows: RFM cells, BG/NBD + Gamma-Gamma")
    bundle = build_bundle(sample, data, churn, ltv, config)
    return TrainedModels(churn, ltv, bundle, fit_baselines(sample, config))


def _fit_models(
    split: ClusterSplit,
    sample: TimeSplit,
    data: ModelData,
    config: TrainConfig,
    params: Mapping[str, Mapping[str, Any]],
    progress: Progress,
    rounds: Mapping[str, int] | None = None,
) -> tuple[ChurnModel, LtvModel]:
    """Both boosters on the cluster's rows of the sample's training cutoffs (`sample.train`
    holds every labelled cutoff in a refit, which trains the given `rounds`)."""
    cutoffs = tuple(sorted(sample.train["cutoff"].unique()))
    vocabularies = _vocabularies(split, sample.feature_names, cutoffs)
    models: dict[str, ChurnModel | LtvModel] = {
        "churn": churn_model(data, config, params.get("churn")),
        "ltv": ltv_model(data, config, params.get("ltv")),
    }
    for kind, model in models.items():
        model._prepare(data.train)
        model.vocabularies_ = vocabularies
        if isinstance(model, LtvModel):  # of the sampled training rows (refit: every labelled)
            model.unit_ = target_unit(sample.train["future_value"])
        shifts = data.shifts(sample, kind, config)
        weights = training_weights(sample, kind, config)
        parts = {
            "cutoffs": cutoffs,
            "augment": data.augment,
            "valid": sample.valid,
            "shifts": (
                _per_cutoff(shifts[0], sample.train["cutoff"]),
                _per_cutoff(shifts[1], sample.valid["cutoff"]),
            ),
            "weights": _per_cutoff(weights, sample.train["cutoff"]),
        }
        model.booster_ = _fit_booster(
            split, model, kind, parts, config, progress, rounds[kind] if rounds else None
        )
    churn, ltv = models["churn"], models["ltv"]
    assert isinstance(churn, ChurnModel) and isinstance(ltv, LtvModel)
    churn.classes_ = np.array([0, 1])
    ltv.buy_booster_ = None
    return churn, ltv


def refit_on_cluster(
    split: ClusterSplit,
    sample: TimeSplit,
    config: TrainConfig,
    features: FeatureConfig,
    evaluated: TrainedModels,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Progress = lambda _: None,
) -> ModelBundle:
    """`refit_bundle` on the cluster: both boosters again on every labelled row (validation
    and test too) with the rounds chosen on validation; the RFM cut points of every labelled
    row, exact across partitions; BG/NBD inputs on the labelled samples' newest cutoff; the
    evaluation fit's calibration. `run_training` takes it as `refit` (bound to `split`) with
    `split.sample`."""
    if sample is not split.sample or not split.labelled:
        raise ValueError(
            "refit_on_cluster: `sample` must be the cluster split's sample, of a split that "
            "kept every labelled row (split_on_cluster(..., labelled=True))"
        )
    cuts = rfm_cuts_of(split.client, split.frames)  # every planned cutoff is labelled
    everything = labelled_split(sample, features, cuts)
    frames = with_rfm_cuts(split.client, split.frames, cuts, features)
    refit = replace(split, frames=frames, sample=everything)
    data = ModelData.of(everything, config)
    rounds = {"churn": evaluated.churn.rounds_[0], "ltv": evaluated.ltv.rounds_[0]}
    churn, ltv = _fit_models(refit, everything, data, config, params or {}, progress, rounds)
    churn.calibration_ = evaluated.bundle.calibration
    return build_bundle(everything, data, churn, ltv, config)


def _score(frame: pd.DataFrame, champions: Champions) -> pd.DataFrame:
    return score_customers(frame, champions) if len(frame) else pd.DataFrame()


def score_on_cluster(client: Client, frames: list[Future], champions: Champions) -> list[Future]:
    """Each partition's customers scored by the champions, where the partition is."""
    models = shared(client, champions)
    return conformed(client, client.map(_score, frames, champions=models, retries=RETRIES))


def score_totals(client: Client, scored: list[Future]) -> tuple[int, float, float]:
    """Customers scored, their summed churn probability and predicted value."""

    def totals(frame: pd.DataFrame) -> tuple[int, float, float]:
        if frame.empty:
            return 0, 0.0, 0.0
        return len(frame), frame["churn_probability"].sum(), frame["predicted_value"].sum()

    parts = client.gather(client.map(totals, scored))
    return sum(p[0] for p in parts), sum(p[1] for p in parts), sum(p[2] for p in parts)
