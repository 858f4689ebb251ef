"""Fit and evaluate: the one training function that `make train` and `make tune` both call."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from crm_ltv.training.baselines import BgNbdBaseline, BgNbdFeatures, RfmBaseline
from crm_ltv.training.config import TrainConfig
from crm_ltv.training.datasets import TimeSplit
from crm_ltv.training.metrics import churn_metrics, ltv_metrics
from crm_ltv.training.models import ChurnModel, LtvModel
from sklearn.metrics import roc_auc_score

Callbacks = Sequence[Callable[..., None]]


@dataclass(frozen=True)
class TrainedModels:
    churn: ChurnModel
    ltv: LtvModel
    baselines: dict[str, RfmBaseline | BgNbdBaseline]


@dataclass(frozen=True)
class Evaluation:
    """Every model's predictions on the test snapshot and their metrics, model name first."""

    predictions: dict[str, pd.DataFrame]  # name -> churn_probability, predicted_value
    churn: dict[str, dict[str, float]]
    ltv: dict[str, dict[str, float]]


# Directions of the BG/NBD inputs, so that the behaviour the configured constraints promise
# (churn risk never falls as recency grows, value never falls as spend grows) also holds
# through them: BG/NBD's churn probability rises with recency, its value with spend.
BGNBD_MONOTONE = {
    "churn": {"bgnbd_churn_probability": 1, "bgnbd_p_alive": -1, "bgnbd_value": -1},
    "ltv": {"bgnbd_value": 1},
}


def _augment(
    config: TrainConfig, horizon_days: int, kind: str, monotone: Mapping[str, int]
) -> tuple[BgNbdFeatures | None, dict[str, int]]:
    if not config.baselines.bgnbd_as_features:
        return None, dict(monotone)
    augment = BgNbdFeatures(
        horizon_days, config.baselines.bgnbd_time_unit_days, 50_000, config.seed
    )
    return augment, {**BGNBD_MONOTONE[kind], **monotone}


def fit_churn(
    split: TimeSplit,
    config: TrainConfig,
    params: Mapping[str, Any] | None = None,
    callbacks: Callbacks = (),
) -> ChurnModel:
    """The churn model of `make train`; `params` (from tuning) override the config's."""
    names = split.feature_names
    augment, monotone = _augment(config, split.horizon_days, "churn", config.churn.monotone)
    model = ChurnModel(
        n_estimators=config.churn.n_estimators,
        early_stopping_rounds=config.churn.early_stopping_rounds,
        params={**config.churn.params, **(params or {})},
        monotone=monotone,
        calibration=config.churn.calibration,
        augment=augment,
        random_state=config.seed,
        n_jobs=config.num_threads,
    )
    return model.fit(
        split.train[names],
        split.train["churned"],
        eval_set=(split.valid[names], split.valid["churned"]),
        callbacks=callbacks,
    )


def fit_ltv(
    split: TimeSplit,
    config: TrainConfig,
    params: Mapping[str, Any] | None = None,
    callbacks: Callbacks = (),
) -> LtvModel:
    names = split.feature_names
    augment, monotone = _augment(config, split.horizon_days, "ltv", config.ltv.monotone)
    model = LtvModel(
        objective=config.ltv.objective,
        tweedie_variance_power=config.ltv.tweedie_variance_power,
        n_estimators=config.ltv.n_estimators,
        early_stopping_rounds=config.ltv.early_stopping_rounds,
        params={**config.ltv.params, **(params or {})},
        monotone=monotone,
        augment=augment,
        random_state=config.seed,
        n_jobs=config.num_threads,
    )
    return model.fit(
        split.train[names],
        split.train["future_value"],
        eval_set=(split.valid[names], split.valid["future_value"]),
        callbacks=callbacks,
    )


def fit_baselines(split: TimeSplit, config: TrainConfig) -> dict[str, RfmBaseline | BgNbdBaseline]:
    """RFM cells learn from every training snapshot; BG/NBD from the newest training cutoff,
    where each customer appears once with their whole history so far."""
    names = split.feature_names
    newest = split.train[split.train["cutoff"] == split.train["cutoff"].max()]
    bgnbd = BgNbdBaseline(split.horizon_days, config.baselines.bgnbd_time_unit_days)
    return {
        "rfm": RfmBaseline().fit(split.train[names], split.train),
        "bgnbd": bgnbd.fit(newest[names]),
    }


def train_models(
    split: TimeSplit,
    config: TrainConfig,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> TrainedModels:
    params = params or {}
    progress(f"training churn model on {len(split.train):,} rows")
    churn = fit_churn(split, config, params.get("churn"))
    progress(f"churn model: {churn.best_iteration_} rounds")
    progress("training LTV model")
    ltv = fit_ltv(split, config, params.get("ltv"))
    progress(f"LTV model ({config.ltv.objective}): {ltv.best_iteration_} rounds")
    progress("fitting baselines: RFM cells, BG/NBD + Gamma-Gamma")
    return TrainedModels(churn, ltv, fit_baselines(split, config))


def predict_all(
    models: TrainedModels, frame: pd.DataFrame, names: list[str]
) -> dict[str, pd.DataFrame]:
    X = frame[names]
    out = {
        "lightgbm": pd.DataFrame(
            {
                "churn_probability": models.churn.predict_proba(X)[:, 1],
                "predicted_value": models.ltv.predict(X),
            },
            index=X.index,
        )
    }
    for name, baseline in models.baselines.items():
        out[name] = baseline.predict(X)[["churn_probability", "predicted_value"]]
    return out


def evaluate_models(
    models: TrainedModels, split: TimeSplit, truth_dropout: np.ndarray | None = None
) -> Evaluation:
    """Metrics of every model on the test snapshot; with the sample's ground truth also the
    AUC of the churn score against customers who had truly dropped out by the cutoff."""
    predictions = predict_all(models, split.test, split.feature_names)
    churn, ltv = {}, {}
    for name, frame in predictions.items():
        churn[name] = churn_metrics(split.test["churned"], frame["churn_probability"])
        if truth_dropout is not None:
            churn[name]["truth_dropout_auc"] = float(
                roc_auc_score(truth_dropout, frame["churn_probability"])
            )
        ltv[name] = ltv_metrics(split.test["future_value"], frame["predicted_value"])
    return Evaluation(predictions, churn, ltv)
