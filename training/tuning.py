"""`make tune`: Optuna TPE over LightGBM params of both models, pruned on the validation metric
their early stopping watches (maximised where higher is better, as AUC; else minimised).

Each trial calls the same `fit_churn` / `fit_ltv` as `make train` and is a nested MLflow run
under one parent run (Optuna's own MLflow callback does not open that parent). Studies live in
optuna.db, so an interrupted study resumes; `trials` is the target per study, not an increment.
A study's name carries a digest of what its trials' scores depend on (the data, the search
space, the train settings that model reads, the features and data configs): a tune on other
data or settings starts a new study instead of extending one whose trials it could not compare
with; a change to the other model's settings leaves it alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import mlflow
import optuna
import pandas as pd
from mlflow.exceptions import MlflowException
from pydantic import BaseModel

from crm_ltv.features.config import ConfigError, config_digest, config_digests
from crm_ltv.features.inputs import Inputs
from crm_ltv.features.paths import Paths, replaced_whole
from crm_ltv.features.wording import plural
from crm_ltv.training import plots
from crm_ltv.training.config import GateConfig, TrainConfig, TuneConfig
from crm_ltv.training.datasets import TimeSplit
from crm_ltv.training.heartbeat import heartbeat
from crm_ltv.training.models import higher_is_better, watched_metric
from crm_ltv.training.pipeline import ModelData, evaluate, fit_churn, fit_ltv
from crm_ltv.training.run_log import experiment_description
from crm_ltv.training.tracking import (
    first_open,
    inherited_provenance,
    input_datasets,
    input_sources,
    input_tags,
    killable_run,
    log_config_files,
    log_datasets,
    log_figure,
    log_provenance,
    readable,
    setup_tracking,
)

Progress = Callable[[str], None]
FITTERS = {"churn": fit_churn, "ltv": fit_ltv}


# Trials that count towards the target: a failed or interrupted one is run again
COUNTED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
MLFLOW_RUN = "mlflow_run_id"  # a trial's user attribute: the MLflow run it logs to
# A complete trial's user attribute: its validation metrics as the gate names them (the study
# minimises tweedie, the gate judges normalized Gini): the parent run restates the best one's
VALIDATION = "validation_metrics"
# A running trial records a heartbeat this often; one silent for the grace period was killed
# (SIGKILL, a lost machine) and is failed when a tune next opens its study, so it is reported
# and not left RUNNING forever. Several tunes may share a study: a live one keeps beating.
HEARTBEAT_SECONDS = 10
STALE_AFTER_SECONDS = 60


@dataclass(frozen=True)
class StudyResult:
    name: str
    metric: str  # the validation metric the study optimised
    best_value: float
    best_params: dict[str, Any]
    completed: int
    pruned: int
    ran: int  # trials this command ran that count (completed or pruned)
    to_go: int  # trials the study lacked as this command started (0: it had its target)
    best_metrics: dict[str, float]  # the best trial's validation metrics, gate names (`evaluate`)
    best_trial: int  # the study's trial number, which may be another tune's (a resumed study)
    best_run_id: str | None  # its MLflow run (None: a trial of before 2026-12-05)
    timed_out: bool = False  # tune.timeout_minutes stopped it short of `to_go`


def suggest_params(trial: optuna.Trial, tune: TuneConfig) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, space in tune.search_space.items():
        if space.integer:
            params[name] = trial.suggest_int(name, int(space.low), int(space.high), log=space.log)
        else:
            params[name] = trial.suggest_float(name, space.low, space.high, log=space.log)
    return params


class Pruned(optuna.TrialPruned):
    """A pruned trial with what it reached: its run logs these as a complete trial's
    (`validation_<metric>`, `rounds`), not only its params."""

    def __init__(self, metric: str, value: float, best_round: int, at_round: int) -> None:
        super().__init__(f"pruned at round {at_round} (best valid {metric} so far {value:.5f})")
        self.value = value
        self.best_round = best_round  # the round of `value`, as a complete trial's `rounds`
        self.at_round = at_round


def pruning_callback(trial: optuna.Trial, every: int) -> Callable[[Any], None]:
    """Report the best validation value so far every `every` rounds; stop the booster if Optuna
    prunes. The best so far, as the trial's value is its best round's: reporting the round's
    own value pruned trials whose peak (round 7 here) beat every finished one, because by the
    warm-up the pruner saw only how fast each overfits after its peak."""
    higher = trial.study.direction == optuna.study.StudyDirection.MAXIMIZE
    best: dict[str, float] = {}

    def callback(env: lgb.callback.CallbackEnv) -> None:
        watched = [(m, v) for name, m, v, _ in env.evaluation_result_list if name == "valid"]
        if not watched:
            return
        metric, value = watched[0]
        step = env.iteration + 1
        if "value" not in best or (value > best["value"] if higher else value < best["value"]):
            best["value"], best["round"] = value, step
        if step % every == 0:
            trial.report(best["value"], step)
            if trial.should_prune():
                raise Pruned(metric, best["value"], int(best["round"]), step)

    return callback


def study_metric(kind: str, config: TrainConfig) -> str:
    """The validation metric a study of `kind` optimises: the one its early stopping watches
    (the first booster's, for a hurdle: P(buy))."""
    if kind == "churn":
        return watched_metric(config.churn.params, "binary")
    objective = "tweedie" if config.ltv.objective == "tweedie" else "binary"
    return watched_metric(config.ltv.params, objective)


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
    metric: str,
    study: str,
    trials: int,
) -> Callable[[optuna.Trial], float]:
    """`metric`: the study's (`study_metric`), the name the parent run gives it too;
    `study`: its name, tagged on each trial's run (its trials may span several tunes' runs);
    `trials`: how many this command runs, for the progress lines' "k/N"."""
    provenance = inherited_provenance()
    started = iter(range(1, trials + 1))

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, tune)
        # Optuna's number counts the study's failed and earlier trials: "trial 6" of 6 wanted
        label = f"{kind} trial {next(started, trials)}/{trials} (study trial {trial.number})"
        pruned: Pruned | None = None
        with killable_run(
            run_name=f"{kind}-trial-{trial.number}",
            nested=True,
            description=f"Optuna trial {trial.number} of the {kind} model: its parameters, "
            "and its score on the validation snapshot (pruned trials stop early).",
        ) as run:
            # a tune killed outright leaves this run RUNNING; the next one ends it (`_end_runs`)
            trial.set_user_attr(MLFLOW_RUN, run.info.run_id)
            mlflow.set_tags({"kind": "trial", "study": study, **provenance})
            mlflow.log_params({"model": kind, "trial": trial.number, **params})
            try:
                with heartbeat(progress, f"in {label}"):
                    model = FITTERS[kind](
                        split, data, config, params,
                        [pruning_callback(trial, tune.report_every_rounds)],
                    )  # fmt: skip
            except Pruned as exc:
                pruned = exc
                # how far it got, under a complete trial's names; then marked pruned
                mlflow.log_metrics(
                    {
                        f"validation_{metric}": round(exc.value, 6),
                        "rounds": exc.best_round,
                        "pruned_at_round": exc.at_round,
                    }
                )
                mlflow.set_tag("trial_state", "pruned")
            else:
                metrics = {
                    k: readable(v) for k, v in _validation_metrics(kind, model, split, data).items()
                }
                trial.set_user_attr(VALIDATION, metrics)
                mlflow.log_metrics(
                    {
                        f"validation_{metric}": round(model.validation_score_, 6),
                        "rounds": model.best_iteration_,
                        # the names (and digits) of the training runs' children, to compare
                        **{f"{kind}_{k}": v for k, v in metrics.items()},
                    }
                )
                mlflow.set_tag("trial_state", "complete")
        if pruned is not None:
            progress(f"{label}: {pruned}")
            raise pruned
        booster = getattr(model, "booster_", None)
        ran = f" of {booster.current_iteration()}" if booster is not None else ""
        progress(
            f"{label}: valid {metric} {model.validation_score_:.5f} at its best round, "
            f"{model.best_iteration_}{ran}"
        )
        return model.validation_score_

    return objective


def open_study(name: str, storage: str, direction: str, warmup_rounds: int) -> optuna.Study:
    """The study, created or resumed; one process at a time creates optuna.db's tables (two
    tunes started together in a new home raced on them: `table studies already exists`)."""
    with first_open(storage):
        return optuna.create_study(
            study_name=name,
            storage=optuna.storages.RDBStorage(
                storage, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=STALE_AFTER_SECONDS
            ),
            load_if_exists=True,
            direction=direction,
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=warmup_rounds),
        )


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
    """`digest`: `study_digest` of what the trials' scores depend on, in the study's name."""
    name = f"{tune.study_prefix}-{kind}-h{split.horizon_days}-{digest}"
    metric = study_metric(kind, config)
    direction = "maximize" if higher_is_better(metric) else "minimize"
    study = open_study(name, storage, direction, tune.pruning_warmup_rounds)
    # Seeded by the trials already run: a resumed study draws new parameters, not its first
    # trials' again (TPE's first draws are random); and by the model, so that the churn and
    # LTV studies do not draw the same parameters trial for trial.
    seed = zlib.crc32(f"{kind}:{config.seed}:{len(study.trials)}".encode())
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"study {name} in {storage} {study.direction.name.lower()}s, but {metric} is to "
            f"{direction}: delete the study (or optuna.db) to tune again"
        )
    was_running = {t.number for t in study.trials if t.state == optuna.trial.TrialState.RUNNING}
    optuna.storages.fail_stale_trials(study)
    _end_runs([t for t in study.trials if t.number in was_running and t.state.is_finished()])
    mlflow.set_tag(f"{kind}_study", name)  # its trials may span several runs
    if not study.trials:
        stem = f"{tune.study_prefix}-{kind}-h{split.horizon_days}"
        _say_earlier_studies(name, stem, storage, progress)
    done = [t for t in study.trials if t.state in COUNTED]
    remaining = max(0, tune.trials - len(done))
    failed = sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials)
    running = sum(t.state == optuna.trial.TrialState.RUNNING for t in study.trials)
    progress(
        f"study {name} ({direction} validation {metric}): {plural(len(done), 'trial')} done, "
        f"{remaining} to go"
        + (f" ({failed} failed or interrupted, not counted)" if failed else "")
        + (
            f" ({running} running: in another tune, stopped under {STALE_AFTER_SECONDS} s ago, "
            "or left by a tune before heartbeats (2026-12-05))"
            if running
            else ""
        )
    )
    parent = mlflow.active_run()
    # this command's trials that count (COUNTED): Optuna calls back after each one completed
    # or pruned, not after the trial an interrupt stopped (nor another tune's of the study)
    ran: list[int] = []

    def counted(_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state in COUNTED:  # one whose objective gave no number ended FAIL, unraised
            ran.append(trial.number)

    # Optuna returns quietly at the limit (an interrupt raises; so does a failed trial)
    limit = tune.timeout_minutes * 60 if tune.timeout_minutes else None
    start, before = time.monotonic(), len(study.trials)
    try:
        if remaining:
            study.optimize(
                _objective(kind, split, data, config, tune, progress, metric, name, remaining),
                n_trials=remaining,
                timeout=limit,
                catch=(),
                callbacks=[counted],
            )
    finally:  # an interrupted tune's run says how far the study got too (ended KILLED by now)
        if parent is not None:
            with contextlib.suppress(MlflowException):  # not to hide why the tune stopped
                client = mlflow.MlflowClient()
                client.log_metric(parent.info.run_id, f"{kind}_trials_run", len(ran))
    # fewer trials started than wanted, and the time spent: not a trial that ended FAIL unraised
    started = len(study.trials) - before
    timed_out = limit is not None and started < remaining and time.monotonic() - start >= limit
    if timed_out:
        progress(
            f"{kind}: stopped by timeout_minutes ({tune.timeout_minutes:g}, configs/tune.yaml) "
            f"after {len(ran)} of the {remaining} trials to go; the same command continues "
            "the study"
        )
    states = [t.state for t in study.trials]
    complete = states.count(optuna.trial.TrialState.COMPLETE)
    if not complete:
        raise ConfigError(
            f"study {name}: no trial completed (every one pruned or failed); widen the search "
            "space in configs/tune.yaml or raise --trials"
        )
    values = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    figure = plots.history_plot(
        values, f"{kind}: optimisation history", f"validation {metric}", higher_is_better(metric)
    )
    log_figure(figure, f"{kind}_history")
    return StudyResult(
        name,
        metric,
        study.best_value,
        dict(study.best_params),
        complete,
        states.count(optuna.trial.TrialState.PRUNED),
        len(ran),
        remaining,
        dict(study.best_trial.user_attrs.get(VALIDATION, {})),
        study.best_trial.number,
        study.best_trial.user_attrs.get(MLFLOW_RUN),
        timed_out,
    )


def _say_earlier_studies(name: str, stem: str, storage: str, progress: Progress) -> None:
    """A new study beside others of its model and horizon (`stem`, with another digest or,
    as crm-ltv named them before 2026-12-05, none): say so, else the user does not know why
    its trials start from 0 (or what was left behind). Only those few studies' trials are
    read, not every study's in optuna.db."""
    earlier = [
        n
        for n in optuna.get_all_study_names(storage)
        if re.fullmatch(re.escape(stem) + "(-[0-9a-f]{8})?", n) and n != name
    ]
    if not earlier:
        return
    trials = {n: optuna.load_study(study_name=n, storage=storage).trials for n in earlier}
    started = {n: max((t.datetime_start for t in ts if t.datetime_start), default=None)
               for n, ts in trials.items()}  # fmt: skip
    latest = max(earlier, key=lambda n: (started[n] is not None, started[n] or 0))
    studies = "study" if len(earlier) == 1 else "studies"
    progress(
        f"new study {name}: the data or settings differ from those of the {len(earlier)} "
        f"earlier {studies} of this model at this horizon, or crm-ltv named them otherwise "
        f"(before 2026-12-07) (latest: {latest}, {plural(len(trials[latest]), 'trial')})"
    )


def _end_runs(stale: Sequence[optuna.trial.FrozenTrial]) -> None:
    """The MLflow runs of trials found stale (their tune was killed outright: no Ctrl-C, no
    SIGTERM) read KILLED, and the parent tune run with them: else they read RUNNING for ever."""
    client = mlflow.MlflowClient()
    for trial in stale:
        run_id = trial.user_attrs.get(MLFLOW_RUN)
        if run_id is None:  # a trial of a tune before 2026-12-05
            continue
        try:
            run = client.get_run(run_id)
            for dead in (run_id, run.data.tags.get("mlflow.parentRunId")):
                if dead is not None and client.get_run(dead).info.status == "RUNNING":
                    client.set_terminated(dead, "KILLED")
        except MlflowException:  # not in this tracking store (deleted, or another one)
            continue


def study_digest(
    kind: str, data_sha256: str, tune: TuneConfig, configs: Sequence[BaseModel]
) -> str:
    """Eight hex digits of what a `kind` trial's score depends on: the data, the search space
    and the configs that shape the rows and models (train: seed, snapshots, that model's
    section (`TrainConfig.model_settings`); features; data: mapping, exclusions); not the
    number of trials."""
    space = json.dumps({k: v.model_dump() for k, v in tune.search_space.items()}, sort_keys=True)
    settings = [
        json.dumps(c.model_settings(kind), sort_keys=True)
        if isinstance(c, TrainConfig)
        else config_digest(c)
        for c in configs
    ]
    # "scores": studies of before 2026-12-05 minimised every metric, AUC too; none is resumed
    # (nor one of before 2026-12-07, whose digest read both models' settings; nor an LTV study
    # whose tweedie losses were in money, not in the unit of `models.target_unit`)
    scores = "scores unit" if kind == "ltv" else "scores"
    key = " ".join([scores, data_sha256, space, *settings])
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
    # ERROR: a failed or interrupted trial is the command's own one-line error, not Optuna's
    # warning with a traceback
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    experiment_id = setup_tracking(
        paths, config.registry.experiment, experiment_description(), progress
    )
    storage = f"sqlite:///{paths.optuna_db}"
    watched = ", ".join(f"{kind}: {study_metric(kind, config)}" for kind in FITTERS)
    results = {}
    description = (
        "Optuna search of the churn and LTV models' parameters "
        f"({plural(tune.trials, 'trial')} each, {split.horizon_days}-day horizon), judged by "
        f"the validation metric their early stopping watches ({watched}); one child run per "
        "trial. The best parameters (`best_*`) go to "
        f"reports/{paths.best_params_file(split.horizon_days).name}, which the next "
        "`make train` at this horizon uses."
    )
    with killable_run(
        experiment_id=experiment_id, run_name=f"tune-h{split.horizon_days}", description=description
    ) as run:
        mlflow.set_tag("kind", "tuning")
        provenance = log_provenance(*input_sources(inputs))
        mlflow.set_tags({**input_tags(inputs), "evaluation": split.evaluation})  # as train's
        log_datasets(input_datasets(inputs), "tuning", progress)
        mlflow.log_params(
            {"trials": tune.trials, "horizon_days": split.horizon_days, "seed": config.seed}
        )
        log_config_files(paths, ("data", "features", "train", "tune"), (config, tune, *configs))
        data = ModelData.of(split, config)  # BG/NBD inputs fitted once for every trial
        for kind in FITTERS:
            digest = study_digest(kind, provenance["data_sha256"], tune, [config, *configs])
            with warnings.catch_warnings():  # the heartbeat is "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                result = run_study(kind, split, data, config, tune, storage, digest, progress)
            results[kind] = result
            mlflow.log_params({f"best_{kind}_{k}": v for k, v in result.best_params.items()})
            mlflow.log_params(
                {
                    f"{kind}_validation_metric": result.metric,
                    f"best_{kind}_trial": result.best_trial,
                }
            )
            # the best trial's run may be an earlier tune's (a resumed study): named here
            mlflow.set_tags(
                {f"best_{kind}_trial_run_id": result.best_run_id or "unknown"}
                | ({f"{kind}_stopped_by": "timeout_minutes"} if result.timed_out else {})
            )
            gate: GateConfig = getattr(config.promotion, kind)
            judged = {
                m: result.best_metrics[m]
                for m in dict.fromkeys((gate.compare, *gate.thresholds))
                if m in result.best_metrics
            }
            mlflow.log_metrics(
                {
                    f"best_{kind}_validation_{result.metric}": round(result.best_value, 6),
                    # what the gate judges (on the test snapshot), on the validation snapshot
                    **{f"best_{kind}_validation_{m}": v for m, v in judged.items()},
                    f"{kind}_trials_complete": result.completed,
                    f"{kind}_trials_pruned": result.pruned,
                }
            )
            if gate.compare in judged:
                way = "maximises" if higher_is_better(result.metric) else "minimises"
                progress(
                    f"{kind}: the best trial's validation {gate.compare} "
                    f"{judged[gate.compare]:.4f} (the study {way} {result.metric}; the gate "
                    f"judges {gate.compare} on the test snapshot)"
                )
        if not any(r.to_go for r in results.values()):
            described = mlflow.get_run(run.info.run_id).data.tags.get("mlflow.note.content", "")
            mlflow.set_tag(
                "mlflow.note.content",
                f"No trial run: every study had its {plural(tune.trials, 'trial')} already (raise "
                "`--trials` for more); the best parameters of the studies are restated. "
                + described,
            )
            progress(
                f"every study had its {plural(tune.trials, 'trial')}: none run (raise --trials)"
            )
        saved = {
            "horizon_days": split.horizon_days,
            "data_sha256": provenance["data_sha256"],
            **{kind: r.best_params for kind, r in results.items()},
            "studies": {kind: r.name for kind, r in results.items()},
            "evaluation": split.evaluation,  # out-of-customer on a short history
            "validation": {kind: {r.metric: r.best_value} for kind, r in results.items()},
            "settings": config_digests(config, *configs),
        }
        mlflow.log_dict(saved, "best_params.json")
    best_params_file = paths.best_params_file(split.horizon_days)
    best_params_file.parent.mkdir(parents=True, exist_ok=True)
    with replaced_whole(best_params_file) as part:  # the next train reads it: whole or not at all
        part.write_text(json.dumps(saved, indent=2) + "\n")
    progress(f"wrote {best_params_file}")
    return results
