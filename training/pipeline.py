"""Fit and evaluate: the one training function that `make train` and `make tune` both call, and
the one `evaluate` that training, tuning and the promotion gate share."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from crm_ltv.features.builders import with_rfm_cuts
from crm_ltv.features.config import FeatureConfig
from crm_ltv.features.registry import check_feature_names, feature_registry
from crm_ltv.features.rfm import RfmCuts
from crm_ltv.features.wording import minute_or_finer, plural
from crm_ltv.training.baselines import BgNbdBaseline, BgNbdFeatures, RfmBaseline
from crm_ltv.training.bundle import ModelBundle
from crm_ltv.training.config import BoosterConfig, TrainConfig
from crm_ltv.training.datasets import LevelTarget, TimeSplit
from crm_ltv.training.heartbeat import heartbeat
from crm_ltv.training.metrics import (
    CHANCE_METRIC,
    calibration_error_by_chance,
    churn_metrics,
    ltv_metrics,
)
from crm_ltv.training.models import (
    Calibration,
    ChurnModel,
    LtvModel,
    offset_floor,
    offset_transform,
    target_unit,
)

Callbacks = Sequence[Callable[..., None]]
Metrics = dict[str, dict[str, float]]  # "churn" / "ltv" -> metric -> value

# Directions of the BG/NBD inputs, so that the behaviour the configured constraints promise
# (churn risk never falls as recency grows, value never falls as spend grows) also holds
# through them: BG/NBD's churn probability rises with recency, its value with spend.
BGNBD_MONOTONE = {
    "churn": {"bgnbd_churn_probability": 1, "bgnbd_p_alive": -1, "bgnbd_value": -1},
    "ltv": {"bgnbd_value": 1},
}


def check_monotone(config: TrainConfig, features: FeatureConfig, path: str) -> None:
    """A feature under `monotone` that no model reads (a typo) is refused when the configs are
    read, not after the snapshots are built, in a failed MLflow run."""
    added = BgNbdFeatures.ADDED if config.baselines.bgnbd_as_features else ()
    known = {s.name for s in feature_registry(features)} | set(added)
    for kind, booster in (("churn", config.churn), ("ltv", config.ltv)):
        check_feature_names(booster.monotone, known, f"{path}: {kind}.monotone")


def newest_cutoff(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the newest cutoff: each customer once, with their whole history so far, as
    BG/NBD's likelihood reads a population. Stacked cutoffs would count a customer once per
    cutoff, so long-known customers weigh more, and a fit on them ranks value unlike BG/NBD's
    own (measured on Online Retail II: top-10% share at 2011-06-10 -0.0020 -> -0.0006 by the
    mean over six seeds; README "Benchmarks")."""
    return rows[(rows["cutoff"] == rows["cutoff"].max()).to_numpy()]


@dataclass(frozen=True)
class ModelData:
    """The split's training and validation rows as the boosters read them. BG/NBD's view of
    each customer is fitted once, on the newest training cutoff (as the gate's baseline is),
    and shared by both models (and by every tuning trial)."""

    augment: BgNbdFeatures | None
    train: pd.DataFrame
    valid: pd.DataFrame

    @classmethod
    def of(cls, split: TimeSplit, config: TrainConfig) -> ModelData:
        names = split.feature_names
        train, valid = split.train[names], split.valid[names]
        if not config.baselines.bgnbd_as_features:
            return cls(None, train, valid)
        augment = BgNbdFeatures(
            split.horizon_days, config.baselines.bgnbd_time_unit_days, 50_000, config.seed
        ).fit(newest_cutoff(split.train)[names])
        return cls(augment, augment.transform(train), augment.transform(valid))

    def offset(self, kind: str, config: TrainConfig) -> str | None:
        """The BG/NBD input the model boosts from, if configured."""
        if self.augment is None or not config.baselines.bgnbd_as_offset:
            return None
        return "bgnbd_churn_probability" if kind == "churn" else "bgnbd_value"

    def shifts(
        self, split: TimeSplit, kind: str, config: TrainConfig
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Per-row moves of the offset for training and validation rows: each label window's
        own level (`window_shift`) for the kinds in `level.per_window`; else none."""
        offset = self.offset(kind, config)
        if offset is None or kind not in config.level.per_window:
            return None, None
        label = "churned" if kind == "churn" else "future_value"
        # the LTV model's offset floor, of the unit its fit takes from the same training rows
        floor = 1.0 if kind == "churn" else offset_floor(target_unit(split.train[label]))
        return tuple(
            window_shift(
                offset_transform(X[offset], offset, floor), part[label], part["cutoff"], kind
            )
            for X, part in ((self.train, split.train), (self.valid, split.valid))
        )

    def monotone(self, kind: str, configured: Mapping[str, int]) -> dict[str, int]:
        return {**BGNBD_MONOTONE[kind], **configured} if self.augment else dict(configured)


def window_shift(base: np.ndarray, y: pd.Series, cutoffs: pd.Series, kind: str) -> np.ndarray:
    """Per row, the move of the baseline's raw score that makes its cutoff's rows add up to
    their labels: churn, the log-odds shift to the window's churn rate; LTV, the log of the
    window's spend over the baseline's. A seasonal shop's windows differ in level; boosting
    from each window's own level leaves the boosters who differs, and `set_level` the level."""
    out = np.zeros(len(base))
    y = np.asarray(y, dtype="float64")
    codes, _ = pd.factorize(pd.Series(cutoffs).to_numpy())
    for code in range(codes.max() + 1 if len(codes) else 0):
        rows = codes == code
        if kind == "churn":
            rate = float(np.clip(y[rows].mean(), 1e-3, 1 - 1e-3))
            b = base[rows]
            out[rows] = brentq(lambda d, b=b, r=rate: float(expit(b + d).mean()) - r, -30.0, 30.0)
        else:
            spend, expected = np.clip(y[rows], 0, None).sum(), np.exp(base[rows]).sum()
            out[rows] = np.log(spend / expected) if spend > 0 and expected > 0 else 0.0
    return out


def cutoff_weights(cutoffs: pd.Series, half_life_days: float | None) -> np.ndarray | None:
    """Per training row, half the weight for every `half_life_days` its cutoff lies before the
    newest (whose rows weigh 1). Newer windows say more about the next one: on Online Retail
    II, churn rows weighted so (180 days) lifted churn AUC and PR AUC at every origin, by the
    mean over six seeds (README "Benchmarks"). None: LightGBM's equal weights."""
    if half_life_days is None or len(cutoffs) == 0:
        return None
    cutoffs = pd.to_datetime(pd.Series(cutoffs))
    days = (cutoffs.max() - cutoffs).dt.total_seconds().to_numpy("float64") / 86_400.0
    return 0.5 ** (days / half_life_days)


def training_weights(split: TimeSplit, kind: str, config: TrainConfig) -> np.ndarray | None:
    """The weights of `split.train`'s rows for the churn or LTV booster, as configured."""
    return cutoff_weights(split.train["cutoff"], config.booster(kind).cutoff_half_life_days)


@dataclass(frozen=True)
class TrainedModels:
    churn: ChurnModel
    ltv: LtvModel
    bundle: ModelBundle  # both models as they are saved, registered and served
    baselines: dict[str, RfmBaseline | BgNbdBaseline]


@dataclass(frozen=True)
class Evaluation:
    """Every model's predictions on the test snapshot and their metrics, model name first."""

    predictions: dict[str, pd.DataFrame]  # name -> churn_probability, predicted_value
    churn: dict[str, dict[str, float]]
    ltv: dict[str, dict[str, float]]


def fit_churn(
    split: TimeSplit,
    data: ModelData,
    config: TrainConfig,
    params: Mapping[str, Any] | None = None,
    callbacks: Callbacks = (),
    rounds: tuple[int, ...] | None = None,
) -> ChurnModel:
    """The churn model of `make train`; `params` (from tuning) override the config's. With
    `rounds` (a refit), exactly those rounds on `split.train`, no validation."""
    model = churn_model(data, config, params, rounds)
    eval_set = None if rounds else (data.valid, split.valid["churned"])
    shift = data.shifts(split, "churn", config)
    weight = training_weights(split, "churn", config)
    return model.fit(data.train, split.train["churned"], eval_set, callbacks, shift, weight)


def churn_model(
    data: ModelData,
    config: TrainConfig,
    params: Mapping[str, Any] | None = None,
    rounds: tuple[int, ...] | None = None,
) -> ChurnModel:
    """The churn model as configured, unfitted."""
    return ChurnModel(
        fixed_rounds=rounds,
        n_estimators=config.churn.n_estimators,
        early_stopping_rounds=config.churn.early_stopping_rounds,
        params={**config.churn.params, **(params or {})},
        monotone=data.monotone("churn", config.churn.monotone),
        calibration=config.churn.calibration,
        offset=data.offset("churn", config),
        random_state=config.seed,
        n_jobs=config.num_threads,
    )


def fit_ltv(
    split: TimeSplit,
    data: ModelData,
    config: TrainConfig,
    params: Mapping[str, Any] | None = None,
    callbacks: Callbacks = (),
    rounds: tuple[int, ...] | None = None,
) -> LtvModel:
    model = ltv_model(data, config, params, rounds)
    eval_set = None if rounds else (data.valid, split.valid["future_value"])
    shift = data.shifts(split, "ltv", config)
    weight = training_weights(split, "ltv", config)
    return model.fit(data.train, split.train["future_value"], eval_set, callbacks, shift, weight)


def ltv_model(
    data: ModelData,
    config: TrainConfig,
    params: Mapping[str, Any] | None = None,
    rounds: tuple[int, ...] | None = None,
) -> LtvModel:
    """The LTV model as configured, unfitted."""
    return LtvModel(
        fixed_rounds=rounds,
        objective=config.ltv.objective,
        tweedie_variance_power=config.ltv.tweedie_variance_power,
        n_estimators=config.ltv.n_estimators,
        early_stopping_rounds=config.ltv.early_stopping_rounds,
        params={**config.ltv.params, **(params or {})},
        monotone=data.monotone("ltv", config.ltv.monotone),
        offset=data.offset("ltv", config),
        random_state=config.seed,
        n_jobs=config.num_threads,
    )


def fit_baselines(split: TimeSplit, config: TrainConfig) -> dict[str, RfmBaseline | BgNbdBaseline]:
    """RFM cells learn from every training snapshot; BG/NBD from the newest training cutoff,
    where each customer appears once with their whole history so far."""
    names = split.feature_names
    bgnbd = BgNbdBaseline(split.horizon_days, config.baselines.bgnbd_time_unit_days)
    return {
        "rfm": RfmBaseline().fit(split.train[names], split.train),
        "bgnbd": bgnbd.fit(newest_cutoff(split.train)[names]),
    }


def build_bundle(
    split: TimeSplit, data: ModelData, churn: ChurnModel, ltv: LtvModel, config: TrainConfig
) -> ModelBundle:
    """Both models of one run as one bundle: they read the same inputs, encoded alike."""
    if churn.model_features_ != ltv.model_features_ or churn.vocabularies_ != ltv.vocabularies_:
        raise ValueError("churn and LTV models of one run must read the same encoded inputs")
    return ModelBundle(
        horizon_days=split.horizon_days,
        feature_names=tuple(split.feature_names),
        model_features=tuple(churn.model_features_),
        vocabularies=dict(churn.vocabularies_),
        rfm_cuts=split.rfm_cuts,
        bgnbd=data.augment,
        churn_booster=churn.booster_,
        calibration=churn.calibration_,
        ltv_objective=config.ltv.objective,
        ltv_boosters=tuple(ltv.boosters()),
        ltv_unit=ltv.unit_,
        ltv_offset_floor=ltv.offset_floor_,
        num_threads=config.num_threads,
        churn_offset=churn.offset,
        ltv_offset=ltv.offset,
        offset_means={
            kind: float(
                offset_transform(data.train[model.offset], model.offset, model.offset_floor_).mean()
            )
            for kind, model in (("churn", churn), ("ltv", ltv))
            if model.offset is not None
        },
        known_labels=split.known_labels,
        history_start=split.history_start,
    )


def _offset_only(model: ChurnModel | LtvModel, what: str) -> str:
    """Said beside a booster that early stopping cut to one round from BG/NBD's offset: its
    ranking is BG/NBD's, and the gate's margin over BG/NBD is then noise (Online Retail II's
    value model at 2011-06-10 and 2011-09-10: Gini within 1e-5 of BG/NBD's)."""
    if model.offset is None or model.best_iteration_ > 1:
        return ""
    if getattr(model, "buy_booster_", None) is not None:  # hurdle: P(buy) ranks on its own
        return ""
    return (
        f" (early stopping found no correction to BG/NBD's {what} that held on validation: "
        "this model ranks almost as BG/NBD does)"
    )


def ltv_model_said(ltv: LtvModel, config: TrainConfig) -> str:
    """The progress line of a trained LTV model, on either engine: its rounds and the money
    unit its boosters learnt spend in."""
    return (
        f"LTV model ({config.ltv.objective}): {plural(ltv.best_iteration_, 'round')}, spend in "
        f"units of {ltv.unit_:,.4g} (the training buyers' mean){_offset_only(ltv, 'value')}"
    )


def _weighing(booster: BoosterConfig) -> str:
    days = booster.cutoff_half_life_days
    return "" if days is None else f" (a row weighs half per {days:g} days before the newest)"


def train_models(
    split: TimeSplit,
    config: TrainConfig,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> TrainedModels:
    params = params or {}
    if config.baselines.bgnbd_as_features:
        newest = len(newest_cutoff(split.train))
        progress(f"fitting BG/NBD inputs on the newest training cutoff ({newest:,} customers)")
    data = ModelData.of(split, config)
    progress(f"training churn model on {len(split.train):,} rows{_weighing(config.churn)}")
    with heartbeat(progress, "training the churn model"):
        churn = fit_churn(split, data, config, params.get("churn"))
    progress(f"churn model: {plural(churn.best_iteration_, 'round')}{_offset_only(churn, 'churn')}")
    progress(f"training LTV model{_weighing(config.ltv)}")
    with heartbeat(progress, "training the LTV model"):
        ltv = fit_ltv(split, data, config, params.get("ltv"))
    progress(ltv_model_said(ltv, config))
    progress("fitting baselines: RFM cells, BG/NBD + Gamma-Gamma")
    bundle = build_bundle(split, data, churn, ltv, config)
    if config.level.seasonal:
        target = split.levels.get("evaluation")
        bundle = set_level(bundle, split.test, target, config.level.growth)
        if target is not None:
            rate = bundle.level["churn_rate"]
            rate_text = "not moved (isotonic)" if rate is None else f"{rate:.3f}"
            progress(
                f"level of the test window: value x {bundle.ltv_scale:.3f}, churn rate "
                f"{rate_text} ({target.describe(config.level.growth)})"
            )
    return TrainedModels(churn, ltv, bundle, fit_baselines(split, config))


def set_level(
    bundle: ModelBundle, rows: pd.DataFrame, target: LevelTarget | None, growth: float
) -> ModelBundle:
    """The bundle with its level set to `target` on the customers `rows` (those it will score):
    predicted value scaled so that it adds up to the expected spend; the (sigmoid) churn
    calibration's intercept moved so that the mean probability is the share of them expected
    not to buy (isotonic: left, and its churn_rate None). The ranking does not change. None:
    the bundle as it is."""
    if target is None or rows.empty:
        return bundle
    value, buyers = target.expected(growth)
    encoded = bundle.encode(rows[list(bundle.feature_names)])
    predicted = float(bundle.predicted_value(encoded).sum()) / bundle.ltv_scale
    scale = value / predicted if predicted > 0 and value > 0 else 1.0
    churn_rate = float(np.clip(1.0 - buyers / len(rows), 0.01, 0.99))
    calibration = bundle.calibration
    if calibration.method == "sigmoid":
        raw = bundle.churn_booster.predict(encoded, raw_score=True, num_threads=bundle.num_threads)
        base = bundle.base(encoded, "churn")
        logit = (raw if base is None else raw + base) * calibration.coef
        shift = _intercept(logit, churn_rate)
        calibration = Calibration("sigmoid", coef=calibration.coef, intercept=float(shift))
    else:  # isotonic: a step function has no intercept to move; its probabilities stay
        churn_rate = None
    level = {
        "cutoff": minute_or_finer(target.cutoff),
        "method": target.method(growth),
        "basis": target.describe(growth),
        "customers": len(rows),
        "expected_value": value,
        "ltv_scale": scale,
        "churn_rate": churn_rate,
    }
    return replace(bundle, ltv_scale=float(scale), calibration=calibration, level=level)


def _intercept(logit: np.ndarray, rate: float) -> float:
    """The shift b with mean(expit(logit + b)) = rate. The bracket widens until it holds the
    root: a degenerate calibration (a one-split booster, a huge Platt slope) puts logits far
    beyond +-30, where a fixed bracket had no sign change and the run crashed."""
    gap = lambda b: float(expit(logit + b).mean()) - rate  # noqa: E731
    width = 30.0
    while gap(-width) > 0 or gap(width) < 0:
        if width > 1e12:
            raise ValueError(f"no churn calibration intercept gives a churn rate of {rate:.3f}")
        width *= 10.0
    return float(brentq(gap, -width, width))


def labelled_split(
    split: TimeSplit, features: FeatureConfig, cuts: RfmCuts | None = None
) -> TimeSplit:
    """The split whose training rows are every labelled row (validation and test included),
    RFM-scored against `cuts`, by default the quintiles of those rows: what a refit learns on."""
    parts = [
        split.train,
        split.valid,
        split.test,
        *([split.rest] if split.rest is not None else []),
    ]
    rows = pd.concat(parts, ignore_index=True)
    for name in split.train.columns:  # categories that differ between parts: categorical again
        if isinstance(split.train[name].dtype, pd.CategoricalDtype):
            rows[name] = rows[name].astype("category")
    cuts = cuts or RfmCuts.of(rows)
    return replace(split, train=with_rfm_cuts(rows, cuts, features), rfm_cuts=cuts)


def refit_bundle(
    split: TimeSplit,
    config: TrainConfig,
    features: FeatureConfig,
    evaluated: TrainedModels,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> ModelBundle:
    """Both models again on every labelled cutoff, validation and test included, so that the
    registered model has seen the newest behaviour: the rounds early stopping chose on
    validation, the evaluation fit's churn calibration, the RFM cut points and BG/NBD inputs of
    the whole labelled population. Its metrics are the evaluation fit's: nothing is held out."""
    params = params or {}
    everything = labelled_split(split, features)
    cuts = everything.rfm_cuts
    data = ModelData.of(everything, config)
    rounds = {"churn": evaluated.churn.rounds_, "ltv": evaluated.ltv.rounds_}
    with heartbeat(progress, "refitting the churn model"):
        churn = fit_churn(everything, data, config, params.get("churn"), (), rounds["churn"])
    with heartbeat(progress, "refitting the LTV model"):
        ltv = fit_ltv(everything, data, config, params.get("ltv"), (), rounds["ltv"])
    bundle = build_bundle(everything, data, churn, ltv, config)
    bundle = replace(bundle, calibration=evaluated.bundle.calibration)
    if not config.level.seasonal or split.latest is None:
        return bundle
    latest = with_rfm_cuts(split.latest, cuts, features)
    return set_level(bundle, latest, split.levels.get("refit"), config.level.growth)


def evaluate(
    predicted: pd.DataFrame, snapshot: pd.DataFrame, truth_dropout: np.ndarray | None = None
) -> Metrics:
    """Metrics of predictions (churn_probability and/or predicted_value, row by row of
    `snapshot`) against the snapshot's labels; with the sample's ground truth also the AUC of
    the churn score against customers who had truly dropped out by the cutoff."""
    out: Metrics = {}
    if "churn_probability" in predicted:
        p = predicted["churn_probability"].to_numpy("float64")
        out["churn"] = churn_metrics(snapshot["churned"], p)
        if truth_dropout is not None:
            out["churn"]["sample_truth_dropout_auc"] = float(roc_auc_score(truth_dropout, p))
    if "predicted_value" in predicted:
        out["ltv"] = ltv_metrics(snapshot["future_value"], predicted["predicted_value"])
    return out


def predict_all(models: TrainedModels, frame: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    X = frame[names]
    out = {"lightgbm": models.bundle.predict(X)}
    for name, baseline in models.baselines.items():
        out[name] = baseline.predict(X)[["churn_probability", "predicted_value"]]
    return out


def evaluate_models(
    models: TrainedModels, split: TimeSplit, truth_dropout: np.ndarray | None = None
) -> Evaluation:
    """Metrics of every model on the test snapshot (ours as its bundle scores)."""
    predictions = predict_all(models, split.test, split.feature_names)
    metrics = {
        name: evaluate(frame, split.test, truth_dropout) for name, frame in predictions.items()
    }
    for name, m in metrics.items():  # what the gate's calibration bound is read against
        p = predictions[name]["churn_probability"].to_numpy("float64")
        m["churn"][CHANCE_METRIC] = calibration_error_by_chance(p)
    return Evaluation(
        predictions,
        {name: m["churn"] for name, m in metrics.items()},
        {name: m["ltv"] for name, m in metrics.items()},
    )
