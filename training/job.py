"""`make train`: snapshots -> time split -> models and baselines -> evaluation -> MLflow run ->
registry and promotion gate -> reports/metrics.json."""

from __future__ import annotations

import functools
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion

from crm_ltv.features.builders import with_rfm_cuts
from crm_ltv.features.config import DataConfig, FeatureConfig, config_digest
from crm_ltv.features.inputs import Inputs
from crm_ltv.features.paths import Paths, replaced_whole
from crm_ltv.features.sample import SAMPLE_RECORD
from crm_ltv.features.wording import plural
from crm_ltv.training import run_log
from crm_ltv.training.bundle import Kind, ModelBundle
from crm_ltv.training.config import GateConfig, TrainConfig
from crm_ltv.training.datasets import OUT_OF_CUSTOMER, TimeSplit, build_time_split
from crm_ltv.training.pipeline import (
    Evaluation,
    TrainedModels,
    evaluate,
    evaluate_models,
    refit_bundle,
    train_models,
)
from crm_ltv.training.registry import (
    NOT_YET,
    Decision,
    PreBundleVersionError,
    champion_version,
    decide_promotion,
    describe_model,
    evaluation_metrics,
    gate_tags,
    horizon_of,
    load_bundle,
    log_bundle,
    model_names,
    register_version,
    set_champion,
    tag_version,
)
from crm_ltv.training.tracking import (
    NOTE,
    input_datasets,
    input_sources,
    input_tags,
    killable_run,
    log_config_files,
    log_datasets,
    log_provenance,
    setup_tracking,
)

Progress = Callable[[str], None]
FEW_CUSTOMERS = 1_000  # a test snapshot under this many: its metrics are said to be noisy


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    decision: Decision


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    split: TimeSplit
    evaluation: Evaluation
    registered: dict[Kind, Registered]
    summary: dict[str, Any] = field(repr=False)
    models: TrainedModels | None = field(default=None, repr=False)


def load_truth_dropout(paths: Paths, inputs: Inputs, split: TimeSplit) -> np.ndarray | None:
    """For the built-in sample only: who had truly stopped buying for good by the test cutoff."""
    if inputs.transactions.report.source != paths.sample_table("transactions"):
        return None
    if not paths.truth_customers.exists():
        return None
    truth = pd.read_parquet(paths.truth_customers).set_index("customer_id")["dropout_at"]
    dropout = truth.reindex(split.test["customer_id"].astype(str)).to_numpy()
    return (dropout <= split.plan.test.to_datetime64()).astype("int64")


def model_input_example(frame: pd.DataFrame, names: list[str], rows: int = 5) -> pd.DataFrame:
    """Features as a service would send them: numbers as float (integer columns would make
    missing values fail MLflow's schema check), categories as text."""
    example = frame[names].head(rows).copy()
    for name in names:
        column = example[name]
        if isinstance(column.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(
            column.dtype
        ):
            example[name] = column.astype(str).astype(object)
        else:
            example[name] = column.astype("float64")
    return example


def split_inputs(
    inputs: Inputs, config: TrainConfig, feature_config: FeatureConfig, progress: Progress
) -> TimeSplit:
    """The time split of the loaded inputs, reported on progress (train and tune share it)."""
    split = build_time_split(
        inputs.transactions.frame,
        config.snapshots,
        config.split,
        feature_config,
        inputs.customers_frame,
        progress,
        config.seed,
    )
    plan = split.plan
    if split.evaluation == OUT_OF_CUSTOMER:
        progress(
            f"history too short for three label windows that do not overlap: training on "
            f"{plural(len(plan.train), 'cutoff')} {_span(plan.train)} ({len(split.train):,} "
            f"rows) with overlapping windows; validation ({len(split.valid):,}) and test "
            f"({len(split.test):,}) are customers held out at {plan.test:%Y-%m-%d}. This "
            f"evaluation is out-of-customer, not out-of-time; horizon {split.horizon_days} days"
        )
    else:
        progress(
            f"time split: train {plural(len(plan.train), 'cutoff')} {_span(plan.train)}"
            f" ({len(split.train):,} rows), validation {plan.valid:%Y-%m-%d} "
            f"({len(split.valid):,}), test {plan.test:%Y-%m-%d} ({len(split.test):,}); "
            f"horizon {split.horizon_days} days"
        )
    if len(split.test) < FEW_CUSTOMERS:
        progress(
            f"warning: the test snapshot has {len(split.test):,} customers: its metrics, the "
            "gate's margins and the comparison with the baselines are noisy at this size "
            f"(under {FEW_CUSTOMERS:,})"
        )
    return split


def run_training(
    inputs: Inputs,
    paths: Paths,
    config: TrainConfig,
    feature_config: FeatureConfig,
    tuned: dict[str, dict[str, Any]] | None = None,
    progress: Progress = lambda _: None,
    split: TimeSplit | None = None,
    fit: Callable[..., TrainedModels] = train_models,
    refit: Callable[..., ModelBundle] | None = None,
    data_config: DataConfig | None = None,
) -> TrainResult:
    """`split`, `fit` and `refit`: the Dask engine's (a split of samples for evaluation,
    boosters trained on the cluster); by default the loaded inputs' split, `train_models` and
    `refit_bundle` (saying how it goes to `progress`). `data_config`: the mapping the inputs
    were read with (the command line's over data.yaml), logged as config/data.json."""
    if refit is None:
        refit = functools.partial(refit_bundle, progress=progress)
    horizon = config.snapshots.horizon_days
    split = split or split_inputs(inputs, config, feature_config, progress)
    # On a cluster the rows stay there: `inputs` holds each table's columns and load reports
    # only, so no MLflow dataset (it would say 0 rows) and no LTV:CAC table from them.
    on_cluster = split.sampled_from is not None
    customers = None if on_cluster else inputs.customers_frame
    if on_cluster and inputs.customers is not None:
        progress("LTV:CAC by channel and the MLflow datasets: not on Dask (the rows stay there)")
    truth = load_truth_dropout(paths, inputs, split)
    experiment_id = setup_tracking(
        paths, config.registry.experiment, run_log.experiment_description(), progress
    )
    with killable_run(experiment_id=experiment_id, run_name=f"train-h{horizon}") as run:
        mlflow.set_tag("kind", "training")
        provenance = _log_provenance(
            inputs, paths, config, feature_config, split, tuned or {}, data_config
        )
        datasets = [] if on_cluster else input_datasets(inputs)
        log_datasets(datasets, "training", progress)
        models = fit(split, config, tuned, progress)
        # the money unit the LTV boosters learnt spend in (the training buyers' mean; the
        # bundle's ltv.unit): a param beside the settings, as the progress line says it
        mlflow.log_param("ltv_unit", f"{models.bundle.ltv_unit:.6g}")
        bundle = replace(
            models.bundle,
            metadata=_bundle_metadata(
                run.info.run_id,
                split,
                config,
                provenance,
                tuned or {},
                config_digest(feature_config),
            ),
        )
        models = replace(models, bundle=bundle)
        progress("evaluating on the test snapshot")
        evaluation = evaluate_models(models, split, truth)
        children = run_log.log_model_runs(evaluation, datasets, split)
        progress("logging plots and reports")
        run_log.log_plots(models, split, evaluation, children["lightgbm"])
        run_log.log_reports(split, evaluation, customers)
        if config.refit:
            progress("refitting both models on every labelled cutoff (validation and test too)")
            bundle = _refit(split, config, feature_config, models, tuned or {}, refit)
        registered_level = "refit" if config.refit else "evaluation"
        if config.level.seasonal and split.levels.get(registered_level, True) is None:
            progress(_no_level_warning(split, config.refit))
        # the metrics first: a version is champion from the moment its alias moves, and
        # another run's gate reads its evaluation from here (tester T: a run killed in
        # between left a champion without them, and every later train crashed on it)
        unregistered = _summary(run.info.run_id, split, evaluation, {}, inputs)
        mlflow.log_dict(json_safe(unregistered), "metrics.json")
        progress("registering the model bundle")
        with killable_run(run_id=children["lightgbm"], nested=True):
            registered = _register_bundle(config, feature_config, bundle, split, evaluation, run)
        for kind, reg in registered.items():
            mlflow.set_tag(f"{kind}_promoted", str(reg.decision.promote).lower())
        summary = _summary(run.info.run_id, split, evaluation, registered, inputs)
        mlflow.log_dict(json_safe(summary), "metrics.json")
        mlflow.set_tag(
            NOTE,
            run_log.run_description(
                summary,
                provenance["data_sha256"],
                run_log.compare_link(experiment_id, children),
                input_sources(inputs),
            ),
        )
    paths.metrics_file.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(summary), indent=2) + "\n"
    # the newest run's, and each horizon's own (a 60-day run overwrote the 90-day figures);
    # whole or not at all: a script reads `registry.*.promoted` there (README, Training)
    per_horizon = paths.metrics_file.with_name(f"metrics_h{split.horizon_days}.json")
    for target in (paths.metrics_file, per_horizon):
        with replaced_whole(target) as part:
            part.write_text(text)
    progress(f"wrote {paths.metrics_file} and {per_horizon.name}")
    return TrainResult(run.info.run_id, split, evaluation, registered, summary, models)


def _refit(
    split: TimeSplit,
    config: TrainConfig,
    feature_config: FeatureConfig,
    models: TrainedModels,
    tuned: dict[str, dict[str, Any]],
    fit: Callable[..., ModelBundle],
) -> ModelBundle:
    """The bundle to register: refit on every labelled row; the run records both fits."""
    refit = fit(split, config, feature_config, models, tuned)
    rows = split.rows["labelled"]
    rounds = {"churn": list(models.churn.rounds_), "ltv": list(models.ltv.rounds_)}
    mlflow.log_params(
        {"registered_fit": "refit", "refit_rows": rows, **{f"{k}_refit_rounds": str(v)
         for k, v in rounds.items()}, "ltv_refit_unit": f"{refit.ltv_unit:.6g}"}
    )  # fmt: skip
    horizon = pd.Timedelta(days=split.horizon_days)
    return replace(
        refit,
        metadata={
            **models.bundle.metadata,
            "fit": "refit on every labelled cutoff; metrics are the evaluation fit's",
            "refit_rows": rows,
            "rounds": rounds,
            "labels_through": f"{split.plan.test + horizon:%Y-%m-%d}",
        },
    )


def _no_level_warning(split: TimeSplit, refit: bool) -> str:
    """The season of the horizon the registered model scores needs the same window a year
    earlier: without it the model keeps its training windows' average level (Online Retail
    II's first 364 days forecast twice the next 182 days' spend; a week more history, with the
    season: 0.99)."""
    after = "the data" if refit else "the test cutoff (refit: false)"
    return (
        f"warning: the level of the {split.horizon_days} days after {after} (total value, churn "
        "rate) cannot follow the season: that needs the same window a year earlier, with sales, "
        "and a horizon of at most a year. It stays the training windows' average; in a seasonal "
        "shop the totals may be far off (the ranking is not)"
    )


def _span(cutoffs: tuple[pd.Timestamp, ...]) -> str:
    return f"{cutoffs[0]:%Y-%m-%d}..{cutoffs[-1]:%Y-%m-%d}"


def _log_provenance(
    inputs: Inputs,
    paths: Paths,
    config: TrainConfig,
    feature_config: FeatureConfig,
    split: TimeSplit,
    tuned: dict[str, dict[str, Any]],
    data_config: DataConfig | None,
) -> dict[str, str]:
    """Tags, params and config files. The data config, when given, is logged as config/
    data.json as tune logs it (tester O: a train run showed data.yaml alone, not the command
    line's --column and --timestamp-format it read with)."""
    tags = {
        **log_provenance(*input_sources(inputs)),
        **input_tags(inputs),
        "tuned_params": str(paths.best_params_file(split.horizon_days)) if tuned else "none",
        "evaluation": split.evaluation,
    }
    mlflow.set_tags(tags)
    plan = split.plan
    mlflow.log_params(
        {
            "horizon_days": split.horizon_days,
            "every_days": config.snapshots.every_days,
            "min_history_days": config.snapshots.min_history_days,
            "train_cutoffs": f"{_span(plan.train)} ({len(plan.train)})",
            "valid_cutoff": f"{plan.valid:%Y-%m-%d}",
            "test_cutoff": f"{plan.test:%Y-%m-%d}",
            "train_rows": split.rows["train"],
            "valid_rows": split.rows["valid"],
            "test_rows": split.rows["test"],
            "n_features": len(split.feature_names),
            "seed": config.seed,
            "ltv_objective": config.ltv.objective,
            "churn_calibration": config.churn.calibration,
            "bgnbd_as_features": config.baselines.bgnbd_as_features,
            # its sibling: without the offset the models differ (tester L: Gini 0.8230 vs
            # 0.8337, 1,156 LTV rounds vs 2), and the runs table could not tell them apart
            "bgnbd_as_offset": config.baselines.bgnbd_as_offset,
            "churn_cutoff_half_life_days": config.churn.cutoff_half_life_days,
            "ltv_cutoff_half_life_days": config.ltv.cutoff_half_life_days,
            **{
                f"churn_{k}": v
                for k, v in {**config.churn.params, **tuned.get("churn", {})}.items()
            },
            **{f"ltv_{k}": v for k, v in {**config.ltv.params, **tuned.get("ltv", {})}.items()},
        }
    )
    made = Path(inputs.transactions.report.source).parent / SAMPLE_RECORD
    if made.is_file():  # the built-in sample's settings: the input can be made again (Y)
        mlflow.log_artifact(str(made), "config")
    if tuned:  # what overrides train.json's booster params (its file is overwritten by tuning)
        mlflow.log_dict(tuned, "config/tuned_params.json")
        best = paths.best_params_file(split.horizon_days)
        if best.exists():  # as `train` reads it: copied to reports/, it rebuilds the run (Y)
            mlflow.log_artifact(str(best), "config")
    settings = [config, feature_config] + ([data_config] if data_config is not None else [])
    log_config_files(paths, ("data", "features", "train"), settings)
    mlflow.log_dict({"features": split.feature_names}, "features.json")
    return tags


def _bundle_metadata(
    run_id: str,
    split: TimeSplit,
    config: TrainConfig,
    provenance: dict[str, str],
    tuned: dict[str, dict[str, Any]],
    features_digest: str,
) -> dict[str, Any]:
    """What a bundle says of its training, for whoever loads it without the registry."""
    from importlib.metadata import version

    plan = split.plan
    return {
        "run_id": run_id,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "package_version": version("crm-ltv"),
        "lightgbm": version("lightgbm"),
        "data_sha256": provenance["data_sha256"],
        "git_commit": provenance["git_commit"],
        "transactions": provenance["transactions"],
        "train_cutoffs": [f"{c:%Y-%m-%d}" for c in plan.train],
        "valid_cutoff": f"{plan.valid:%Y-%m-%d}",
        "test_cutoff": f"{plan.test:%Y-%m-%d}",
        "seed": config.seed,
        "tuned_params": tuned,
        "features_config": features_digest,
        "fit": "evaluation fit: early-stopped and calibrated on validation",
        "labels_through": f"{plan.test:%Y-%m-%d}",  # validation's window ends by then
    }


def _register_bundle(
    config: TrainConfig,
    feature_config: FeatureConfig,
    bundle: ModelBundle,
    split: TimeSplit,
    evaluation: Evaluation,
    run: mlflow.ActiveRun,
) -> dict[Kind, Registered]:
    """Log the run's bundle once, register it as a new version of both models, and move each
    champion alias only if its gate allows (both judged on this run's test snapshot)."""
    names = model_names(config.registry)
    champions = {
        kind: champion_version(name, config.registry.alias) for kind, name in names.items()
    }
    comparisons = {
        kind: _score_champion(
            kind, names[kind], current, split, feature_config, bundle.metadata.get("data_sha256")
        )
        for kind, current in champions.items()
        if current is not None
    }
    example = model_input_example(split.test, split.feature_names)
    with tempfile.TemporaryDirectory(prefix="crm-ltv-bundle-") as tmp:
        model_uri = log_bundle(bundle.save(Path(tmp) / "bundle"), example, bundle.predict(example))
    registered = {}
    for kind, name in names.items():
        gate: GateConfig = getattr(config.promotion, kind)
        scores = evaluation.churn if kind == "churn" else evaluation.ltv
        ours, baseline = scores["lightgbm"], scores.get(gate.baseline or "")
        current = champions[kind]
        check = comparisons.get(kind, ChampionCheck())
        label = f"champion v{current.version}" if current is not None else "the champion"
        uncompared = current is not None and check.metrics is None
        decision = decide_promotion(ours, check.metrics, gate, label, baseline, uncompared)
        if check.left_alone is not None:  # the thresholds' and baseline's verdicts said too
            decision = Decision(False, f"{check.left_alone}; {decision.reason}")
        elif check.note is not None:
            decision = Decision(decision.promote, f"{check.note}; {decision.reason}")
        partner = champions["ltv" if kind == "churn" else "churn"]
        other_horizon = None if partner is None else horizon_of(partner)
        lone = current is None and other_horizon not in (None, split.horizon_days)
        if lone:  # scoring needs one horizon: this would be a champion beside one of another
            decision = Decision(
                False,
                f"{decision.reason}; but {partner.name} champion v{partner.version} predicts a "
                f"{other_horizon}-day horizon, this run {split.horizon_days} days, and scoring "
                "needs one",
            )
        tags = {
            **run_log.split_tags(split),
            "run_id": run.info.run_id,
            "metrics_of": "evaluation_fit",  # the registered bundle may be its refit
            "registered_fit": "refit" if "labels_through" in bundle.metadata else "evaluated",
            **{f"metric.{k}": f"{v:.4f}" for k, v in ours.items()},
            # until the verdict below: a run stopped in between leaves a version held, so that
            # `crm-ltv promote` warns about it
            **gate_tags(False, "not judged: the run registering it stopped before its verdict"),
        }
        version = register_version(model_uri, name, tags)
        # read again: another run (or a promote) may have moved the alias while this one was
        # judged; the gate compared with a champion that is no longer it (the last run to
        # finish would win), and what it read of the champion no longer holds
        now = champion_version(name, config.registry.alias)
        meanwhile = _moved_meanwhile(current, now)
        held_for_move = decision.promote and meanwhile is not None
        if held_for_move:
            unseen = "which this run was not compared with" if now else "not promoted unseen"
            decision = Decision(
                False,
                f"{decision.reason}; but {meanwhile}, {unseen}: "
                f"`crm-ltv promote --model {name} --version {version}` if this one should serve",
            )
        elif meanwhile is not None:
            decision = Decision(False, f"{decision.reason}; {meanwhile}")
        # the final verdict, before the alias moves: `crm-ltv promote` repeats a held one
        tag_version(name, version, gate_tags(decision.promote, decision.reason))
        if decision.promote:
            set_champion(name, version, config.registry.alias)
        elif lone or check.other_horizon:  # tester J: a bare promote is refused for this
            pair = f"`crm-ltv promote --model {name} --version {version} --pair`"
            decision = Decision(False, f"{decision.reason}: {pair} makes this run's pair champions")
        elif now is None and not held_for_move:  # (that one says how to promote it)
            decision = Decision(False, _until_promoted(decision.reason, name, version))
        other = names["ltv" if kind == "churn" else "churn"]
        describe_model(
            name,
            run_log.model_description(kind, other),
            version,
            run_log.version_description(
                kind, split.horizon_days, run.info.run_id, decision.reason, bundle.metadata
            ),
        )
        registered[kind] = Registered(name, version, decision)
    return registered


def _moved_meanwhile(judged: ModelVersion | None, now: ModelVersion | None) -> str | None:
    """How the champion changed since the gate read it (`judged`), or None if it did not."""
    if _version_of(now) == _version_of(judged):
        return None
    if now is None:
        return f"champion v{_version_of(judged)} lost the alias meanwhile"
    return f"champion moved to v{now.version} meanwhile (another run or a promote)"


def _version_of(found: ModelVersion | None) -> str | None:
    return None if found is None else str(found.version)


def _until_promoted(reason: str, name: str, version: str) -> str:
    """What a user whose first run missed the gate can do, and what scores meanwhile."""
    reason = reason.removesuffix("; no champion yet")  # said next, not twice
    return (
        f"{reason}{NOT_YET}`crm-ltv score` and `crm-ltv serve` use the newest version "
        f"(v{version}) with a warning; `crm-ltv promote --model {name} --version {version}` "
        "makes it champion, or adjust `promotion:` in configs/train.yaml"
    )


@dataclass(frozen=True)
class ChampionCheck:
    """How the current champion enters the gate: its metrics on this run's test snapshot; or
    why it is left alone (the new version is not promoted); or, with neither, a note why it
    cannot be compared (the new version is judged on thresholds and the baseline)."""

    metrics: dict[str, float] | None = None
    left_alone: str | None = None
    note: str | None = None
    # the champion predicts another horizon: only both models of one run can replace it
    other_horizon: bool = False


def _score_champion(
    kind: Kind,
    name: str,
    current: ModelVersion,
    split: TimeSplit,
    feature_config: FeatureConfig,
    data_sha256: str | None,
) -> ChampionCheck:
    """The current champion on this run's test snapshot (its features scored against the
    champion's own RFM cut points). A champion that has seen labels of this test window (a
    refit) would be flattered there: on the same test cutoff of the same data (`data_sha256`,
    this run's) its own evaluation metrics stand in; otherwise it cannot be compared fairly
    (a champion trained on another file was measured on other customers)."""
    label = f"champion v{current.version}"
    keep = "left alone (promote by hand with `crm-ltv promote`)"
    try:
        bundle = load_bundle(name, str(current.version))
    except PreBundleVersionError:  # registered before bundles: it cannot score, nor be compared
        return ChampionCheck(note=f"{label} predates model bundles and cannot score")
    except Exception as exc:  # the registry or its artifacts cannot be read: decide nothing
        return ChampionCheck(
            left_alone=f"{label} cannot be loaded ({type(exc).__name__}: {exc}); {keep}"
        )
    if bundle.horizon_days != split.horizon_days:  # its `--pair` promote: _register_bundle
        return ChampionCheck(
            left_alone=f"{label} predicts a {bundle.horizon_days}-day horizon, this run "
            f"{split.horizon_days} days: not comparable, left alone",
            other_horizon=True,
        )
    theirs = pd.Timestamp(current.tags.get("test_cutoff", pd.NaT))  # NaT (no tag): not later
    if theirs > split.plan.test:
        horizon = pd.Timedelta(days=split.horizon_days)  # the champion's too (checked above)
        return ChampionCheck(
            left_alone=f"{label} has seen data up to {theirs + horizon:%Y-%m-%d}, later than "
            f"this run ({split.plan.test + horizon:%Y-%m-%d}): a run on an older history does "
            f"not replace it; {keep}"
        )
    seen = bundle.metadata.get("labels_through")
    if seen is not None and pd.Timestamp(seen) > split.plan.test:
        same_cutoff = current.tags.get("test_cutoff") == f"{split.plan.test:%Y-%m-%d}"
        same_data = bundle.metadata.get("data_sha256") == data_sha256
        if same_cutoff and same_data:  # its evaluation fit, on this same snapshot
            metrics = evaluation_metrics(current, kind)
            if not metrics:  # its run died before it logged them (a kill, a lost machine)
                return ChampionCheck(
                    left_alone=f"{label}'s evaluation metrics cannot be read (its training "
                    f"run {current.tags.get('run_id', current.run_id)} ended before it logged "
                    f"metrics.json, or the file is damaged); {keep}"
                )
            return ChampionCheck(metrics=metrics)
        other = " and was evaluated on other data" if same_cutoff else ""
        return ChampionCheck(
            note=f"{label} has seen labels up to {seen}, past this run's test cutoff{other}: "
            "not compared on this snapshot"
        )
    try:
        test = with_rfm_cuts(split.test, bundle.rfm_cuts, feature_config)
        predicted = bundle.predict(test[list(bundle.feature_names)])
    except (ValueError, KeyError) as exc:
        return ChampionCheck(
            left_alone=f"{label} cannot score this run's test snapshot "
            f"({type(exc).__name__}: {exc}); {keep}"
        )
    return ChampionCheck(metrics=evaluate(predicted, split.test)[kind])


def json_safe(value: Any) -> Any:
    """`value` with every non-finite number as null: a metric with nothing to measure on is
    NaN, which json.dumps writes as NaN, and which no strict JSON reader takes."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _summary(
    run_id: str,
    split: TimeSplit,
    evaluation: Evaluation,
    registered: dict[Kind, Registered],
    inputs: Inputs,
) -> dict[str, Any]:
    plan = split.plan
    return {
        "run_id": run_id,
        "tracking_uri": mlflow.get_tracking_uri(),
        "transactions": str(inputs.transactions.report.source),
        "horizon_days": split.horizon_days,
        "evaluation": split.evaluation,
        "cutoffs": {
            "train": [f"{c:%Y-%m-%d}" for c in plan.train],
            "validation": f"{plan.valid:%Y-%m-%d}",
            "test": f"{plan.test:%Y-%m-%d}",
        },
        "rows": {
            "train": split.rows["train"],
            "validation": split.rows["valid"],
            "test": split.rows["test"],
        },
        "churn": {name: evaluation.churn[name] for name in run_log.MODEL_ORDER},
        "ltv": {name: evaluation.ltv[name] for name in run_log.MODEL_ORDER},
        "registry": {
            kind: {
                "model": reg.name,
                "version": reg.version,
                "promoted": reg.decision.promote,
                "reason": reg.decision.reason,
            }
            for kind, reg in registered.items()
        },
    }
