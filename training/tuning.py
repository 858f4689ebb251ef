"""`make tune`: Optuna TPE over LightGBM params of both models, pruned on validation loss.

Each trial calls the same `fit_churn` / `fit_ltv` as `make train` and is a nested MLflow run
under one parent run (Optuna's own MLflow callback does not open that parent). Studies live in
optuna.db, so an interrupted study resumes; `trials` is the target per study, not an increment.
A study's name carries a digest of what its trials' losses depend on (the data, the search
space, the train, features and data configs): a tune on other data or settings starts a new
study instead of extending one whose trials it could not compare with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import mlflow
import optuna
import pandas as pd
from pydantic import BaseModel

from crm_ltv.features.config import config_digest
from crm_ltv.features.inputs import Inputs
from crm_ltv.features.paths import Paths
from crm_ltv.training import plots
from crm_ltv.training.config import TrainConfig, TuneConfig
from crm_ltv.training.datasets import TimeSplit
from crm_ltv.training.pipeline import ModelData, evaluate, fit_churn, fit_ltv
from crm_ltv.training.run_log import experiment_description
from crm_ltv.training.tracking import (
    inherited_provenance,
    input_datasets,
    input_sources,
    log_config_files,
    log_datasets,
    log_provenance,
    setup_tracking,
)

Progress = Callable[[str], None]
FITTERS = {"churn": fit_churn, "ltv": fit_ltv}


@dataclass(frozen=True)
class StudyResult:
    name: str
    best_value: float
    best_params: dict[str, Any]
    completed: int
    pruned: int


def suggest_params(trial: optuna.Trial, tune: TuneConfig) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, space in tune.search_space.items():
        if space.integer:
            params[name] = trial.suggest_int(name, int(space.low), int(space.high), log=space.log)
        else:
            params[name] = trial.suggest_float(name, space.low, space.high, log=space.log)
    return params


def pruning_callback(trial: optuna.Trial, every: int) -> Callable[[Any], None]:
    """Report the validation loss every `every` rounds; stop the booster if Optuna prunes."""

    def callback(env: lgb.callback.CallbackEnv) -> None:
        step = env.iteration + 1
        if step % every:
            return
        for data_name, _, value, _ in env.evaluation_result_list:
            if data_name == "valid":
                trial.report(value, step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at round {step} (valid loss {value:.5f})")
                return

    return callback


def _validation_metrics(
    kind: str, model: Any, split: TimeSplit, data: ModelData
) -> dict[str, float]:
    if kind == "churn":
        predicted = {"churn_probability": model.predict_proba(data.valid)[:, 1]}
    else:
        predicted = {"predicted_value": model.predict(data.valid)}
    return evaluate(pd.DataFrame(predicted), split.valid)[kind]


def _objective(
    kind: str,
    split: TimeSplit,
    data: ModelData,
    config: TrainConfig,
    tune: TuneConfig,
    progress: Progress,
) -> Callable[[optuna.Trial], float]:
    provenance = inherited_provenance()

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, tune)
        pruned: optuna.TrialPruned | None = None
        with mlflow.start_run(
            run_name=f"{kind}-trial-{trial.number}",
            nested=True,
            description=f"Optuna trial {trial.number} of the {kind} model: its parameters, "
            "and its loss on the validation snapshot (pruned trials stop early).",
        ):
            mlflow.set_tags({"kind": "trial", **provenance})
            mlflow.log_params({"model": kind, "trial": trial.number, **params})
            try:
                model = FITTERS[kind](
                    split, data, config, params, [pruning_callback(trial, tune.report_every_rounds)]
                )
            except optuna.TrialPruned as exc:
                pruned = exc
                mlflow.set_tag("trial_state", "pruned")
            else:
                metrics = _validation_metrics(kind, model, split, data)
                mlflow.log_metrics(
                    {
                        "validation_loss": model.validation_loss_,
                        "rounds": model.best_iteration_,
                        **{f"valid_{k}": v for k, v in metrics.items()},
                    }
                )
                mlflow.set_tag("trial_state", "complete")
        if pruned is not None:
            progress(f"{kind} trial {trial.number}: {pruned}")
            raise pruned
        progress(
            f"{kind} trial {trial.number}: valid loss {model.validation_loss_:.5f} "
            f"in {model.best_iteration_} rounds"
        )
        return model.validation_loss_

    return objective


def run_study(
    kind: str,
    split: TimeSplit,
    data: ModelData,
    config: TrainConfig,
    tune: TuneConfig,
    storage: str,
    digest: str,
    progress: Progress = lambda _: None,
) -> StudyResult:
    """`digest`: `study_digest` of what the trials' losses depend on, in the study's name."""
    name = f"{tune.study_prefix}-{kind}-h{split.horizon_days}-{digest}"
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=True,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=config.seed),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=3, n_warmup_steps=tune.pruning_warmup_rounds
        ),
    )
    finished = [t for t in study.trials if t.state.is_finished()]
    remaining = max(0, tune.trials - len(finished))
    progress(f"study {name}: {len(finished)} trials done, {remaining} to go")
    if remaining:
        study.optimize(
            _objective(kind, split, data, config, tune, progress),
            n_trials=remaining,
            timeout=tune.timeout_minutes * 60 if tune.timeout_minutes else None,
            catch=(),
        )
    states = [t.state for t in study.trials]
    complete = states.count(optuna.trial.TrialState.COMPLETE)
    if not complete:
        raise RuntimeError(f"study {name}: no trial completed")
    values = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    figure = plots.history_plot(values, f"{kind}: optimisation history", "validation loss")
    mlflow.log_figure(figure, f"plots/{kind}_history.png")
    plots.plt.close(figure)
    return StudyResult(
        name,
        study.best_value,
        dict(study.best_params),
        complete,
        states.count(optuna.trial.TrialState.PRUNED),
    )


def study_digest(data_sha256: str, tune: TuneConfig, configs: Sequence[BaseModel]) -> str:
    """Eight hex digits of what a trial's loss depends on: the data, the search space and the
    configs that shape the rows and models (train: seed, fixed params, snapshots; features;
    data: mapping, exclusions); not the number of trials."""
    space = json.dumps({k: v.model_dump() for k, v in tune.search_space.items()}, sort_keys=True)
    key = " ".join([data_sha256, space, *(config_digest(c) for c in configs)])
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def run_tuning(
    split: TimeSplit,
    inputs: Inputs,
    paths: Paths,
    config: TrainConfig,
    tune: TuneConfig,
    progress: Progress = lambda _: None,
    configs: Sequence[BaseModel] = (),
) -> dict[str, StudyResult]:
    """Tune both models under one parent run; save the best params for the next `make train`.
    `configs`: the features and data configs of the split, with `config` in the studies'
    digest."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    experiment_id = setup_tracking(
        paths, config.registry.experiment, experiment_description(split.horizon_days)
    )
    storage = f"sqlite:///{paths.optuna_db}"
    results = {}
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"tune-h{split.horizon_days}",
        description=f"Optuna search of the churn and LTV models' parameters ({tune.trials} "
        f"trials each, {split.horizon_days}-day horizon), judged by the validation loss; one "
        "child run per trial. The best parameters (`best_*`) go to reports/best_params.json, "
        "which the next `make train` uses.",
    ):
        mlflow.set_tag("kind", "tuning")
        provenance = log_provenance(*input_sources(inputs))
        log_datasets(input_datasets(inputs), "tuning")
        mlflow.log_params(
            {"trials": tune.trials, "horizon_days": split.horizon_days, "seed": config.seed}
        )
        mlflow.log_dict(config.model_dump(mode="json"), "config/train.json")
        log_config_files(paths, ("data", "features", "train", "tune"))
        data = ModelData.of(split, config)  # BG/NBD inputs fitted once for every trial
        digest = study_digest(provenance["data_sha256"], tune, [config, *configs])
        for kind in FITTERS:
            result = run_study(kind, split, data, config, tune, storage, digest, progress)
            results[kind] = result
            mlflow.log_params({f"best_{kind}_{k}": v for k, v in result.best_params.items()})
            mlflow.log_metrics(
                {
                    f"best_{kind}_validation_loss": round(result.best_value, 6),
                    f"{kind}_trials_complete": result.completed,
                    f"{kind}_trials_pruned": result.pruned,
                }
            )
        saved = {
            "horizon_days": split.horizon_days,
            **{kind: r.best_params for kind, r in results.items()},
            "studies": {kind: r.name for kind, r in results.items()},
            "validation_loss": {kind: r.best_value for kind, r in results.items()},
        }
        mlflow.log_dict(saved, "best_params.json")
    paths.best_params_file.parent.mkdir(parents=True, exist_ok=True)
    paths.best_params_file.write_text(json.dumps(saved, indent=2) + "\n")
    progress(f"wrote {paths.best_params_file}")
    return results
