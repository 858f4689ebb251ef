"""What a training run shows analysts in the MLflow UI.

One parent run per training holds what compares the models (plots, tables, the margins of
LightGBM over BG/NBD), the provenance and the gate's decision in its description. One child run
per model or baseline carries the same metric names (`churn_roc_auc`, `ltv_normalized_gini`,
...), so the runs table shows them as columns and the chart view as grouped bars. The bundle is
logged in the LightGBM child, so the logged model lists its own metrics and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import mlflow
import pandas as pd

from crm_ltv.features.inputs import input_files
from crm_ltv.training import plots
from crm_ltv.training.bundle import Kind, ModelBundle
from crm_ltv.training.datasets import OUT_OF_CUSTOMER, TimeSplit
from crm_ltv.training.metrics import decile_table
from crm_ltv.training.pipeline import Evaluation, TrainedModels
from crm_ltv.training.reports import ltv_cac_report, segment_report
from crm_ltv.training.tracking import (
    file_sha256,
    inherited_provenance,
    killable_run,
    log_datasets,
    log_figure,
    log_table,
    readable,
)

MODEL_ORDER = ("lightgbm", "bgnbd", "rfm")
DIGITS = 4  # metric values as people read them; the gate decides on the unrounded ones

MODEL_DESCRIPTIONS = {
    "lightgbm": "**LightGBM**: this project's churn classifier and LTV regressor, one bundle "
    "registered as `churn` and `ltv`. Both boost from BG/NBD's prediction when configured. "
    "The metrics are the evaluation fit's on the test snapshot; with `refit` on (the default) "
    "the registered bundle is that model refit on every labelled cutoff, test window included "
    "(the version's description says which fit it is and its labels' end).",
    "bgnbd": "**Baseline BG/NBD + Gamma-Gamma**: the classic buy-till-you-die model (purchase "
    "rate and dropout per customer; spend per order), fitted at the newest training cutoff.",
    "rfm": "**Baseline RFM cells**: churn rate and mean future value of the customer's "
    "recency/frequency/monetary quintile cell in training.",
}

# Headline comparisons, logged on the parent as LightGBM minus BG/NBD (positive: LightGBM ahead).
MARGINS: tuple[tuple[Kind, str], ...] = (
    ("churn", "roc_auc"),
    ("churn", "pr_auc"),
    ("ltv", "normalized_gini"),
    ("ltv", "top10_value_share"),
)

METRIC_GLOSSARY = """\
| metric | what it says |
|---|---|
| `churn_roc_auc` | P(a churner scores above a buyer): 0.5 random, 1 perfect |
| `churn_pr_auc` | average precision of the churn ranking (its floor is the churn rate) |
| `churn_expected_calibration_error` | mean gap, predicted vs observed churn rate (0 best) |
| `churn_calibration_error_by_chance` | the ECE a calibrated model shows here by chance (95%) |
| `churn_lift_top10pct` | churn rate of the riskiest 10% / overall rate (max: `..._ceiling`) |
| `churn_sample_truth_dropout_auc` | built-in sample only: AUC vs who had truly stopped |
| `ltv_normalized_gini` | how well predicted value sorts actual value: 1 perfect, 0 random |
| `ltv_top10_value_share` | share of all actual value in the 10% predicted highest |
| `ltv_total_predicted_over_actual` | sum predicted / sum actual: 1 = the right total |
| `ltv_mae`, `ltv_rmse` | errors per customer, in currency |
| `margin_over_bgnbd_*` (parent run) | LightGBM minus BG/NBD on the same test snapshot |
"""


def experiment_description() -> str:
    """One text for every run of the experiment, whatever its horizon (each run names its own)."""
    return (
        "**crm-ltv**: for each customer, the probability of no purchase in the next horizon "
        "(churn) and the spend in it (LTV), from their transaction history; the horizon is each "
        "run's `horizon_days` param and the `<days>` of its name (90 by default).\n\n"
        "- `train-h<days>` runs: one training each; its child runs `lightgbm`, `bgnbd` and "
        "`rfm` carry the same metrics: expand the parent, or filter `tags.model != ''`, and "
        "compare them in the table or the chart view. Across trainings, compare those of one "
        "horizon and test snapshot: each child is tagged `horizon_days`, `test_cutoff` and "
        "`evaluation` (e.g. `tags.model != '' and tags.horizon_days = '90'`). Plots and "
        "tables are the parent's artifacts; the gate's decision is in its description.\n"
        "- `tune-h<days>` runs: Optuna studies, one child run per trial.\n"
        "- Registered models `churn` and `ltv` (alias `champion`: the version in use).\n\n"
        + METRIC_GLOSSARY
    )


def model_metrics(evaluation: Evaluation, name: str) -> dict[str, float]:
    """One model's metrics under the names every child run shares, rounded for reading."""
    return {
        **{f"churn_{k}": readable(v, DIGITS) for k, v in evaluation.churn[name].items()},
        **{f"ltv_{k}": readable(v, DIGITS) for k, v in evaluation.ltv[name].items()},
    }


def margins(evaluation: Evaluation) -> dict[str, float]:
    scores = {"churn": evaluation.churn, "ltv": evaluation.ltv}
    return {
        f"margin_over_bgnbd_{kind}_{metric}": readable(
            scores[kind]["lightgbm"][metric] - scores[kind]["bgnbd"][metric], DIGITS
        )
        for kind, metric in MARGINS
    }


def split_tags(split: TimeSplit) -> dict[str, str]:
    """What makes two trainings' metrics comparable, as tags: the horizon, the test cutoff and
    how the test was held out (out-of-customer metrics read otherwise). On each registered
    version, and on each model's child run, where a search across trainings
    (`tags.model != ''`) put other horizons side by side under the same names (tester J)."""
    return {
        "horizon_days": str(split.horizon_days),
        "test_cutoff": f"{split.plan.test:%Y-%m-%d}",
        "evaluation": split.evaluation,
    }


def log_model_runs(
    evaluation: Evaluation, datasets: Sequence[Any], split: TimeSplit
) -> dict[str, str]:
    """One nested run per model and baseline with the shared metric names, tagged with the
    split they were measured on (split_tags); their run ids."""
    ids = {}
    provenance = inherited_provenance()
    for name in MODEL_ORDER:
        with killable_run(
            run_name=name, nested=True, description=MODEL_DESCRIPTIONS[name]
        ) as child:
            kind = "model" if name == "lightgbm" else "baseline"
            mlflow.set_tags({"model": name, "kind": kind, **provenance, **split_tags(split)})
            log_datasets(datasets, "training")
            mlflow.log_metrics(model_metrics(evaluation, name))
            ids[name] = child.info.run_id
    mlflow.log_metrics(margins(evaluation))
    log_table(comparison_frame(evaluation), "model_comparison", DIGITS)
    return ids


def comparison_frame(evaluation: Evaluation) -> pd.DataFrame:
    """Models in rows, the shared metric names in columns, rounded."""
    return pd.DataFrame(
        [{"model": name, **model_metrics(evaluation, name)} for name in MODEL_ORDER]
    )


def compare_link(experiment_id: str, children: Mapping[str, str]) -> str:
    """The UI's side-by-side page of the child runs (a link inside the UI's own pages)."""
    runs = quote(json.dumps([children[name] for name in MODEL_ORDER]))
    return f"#/compare-runs?runs={runs}&experiments={quote(json.dumps([experiment_id]))}"


def run_description(
    summary: Mapping[str, Any], digest: str, compare: str, sources: Sequence[Path]
) -> str:
    """The parent run's description: what is predicted, on what data (`sources`, the files
    read, each with its own digest, and `digest`, the run's data_sha256 of them all), how
    the models did, and what the gate decided and why."""
    horizon, cutoffs = summary["horizon_days"], summary["cutoffs"]
    evaluation = (
        "out-of-customer (customers held out; the history is too short for out-of-time)"
        if summary["evaluation"] == OUT_OF_CUSTOMER
        else "out-of-time"
    )
    lines = [
        f"Churn (no purchase in the next {horizon} days) and LTV (spend in those days) of each "
        f"customer. Data {_data_said(sources, digest)}; "
        f"{len(cutoffs['train'])} training cutoffs {cutoffs['train'][0]}..{cutoffs['train'][-1]}"
        f", validation {cutoffs['validation']}, test {cutoffs['test']} "
        f"({summary['rows']['test']:,} customers); evaluation {evaluation}.",
        "",
        f"Every metric of the three, side by side: [compare the child runs]({compare}).",
        "",
        "| model | churn AUC | PR AUC | ECE | LTV Gini | top-10% share | predicted/actual |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in MODEL_ORDER:
        churn, ltv = summary["churn"][name], summary["ltv"][name]
        lines.append(
            f"| {name} | {churn['roc_auc']:.4f} | {churn['pr_auc']:.4f} | "
            f"{churn['expected_calibration_error']:.4f} | {ltv['normalized_gini']:.4f} | "
            f"{ltv['top10_value_share']:.4f} | {ltv['total_predicted_over_actual']:.3f} |"
        )
    lines += ["", "**Gate**"]
    for kind, reg in summary["registry"].items():
        verdict = "champion" if reg["promoted"] else "not promoted"
        lines.append(f"- `{reg['model']}` v{reg['version']} ({kind}): {verdict}: {reg['reason']}")
    return "\n".join(lines)


def _data_said(sources: Sequence[Path], digest: str) -> str:
    """Each file read with the digest `sha256sum` prints of it (of a folder or glob, the hash
    of its files'), and the run's `data_sha256` where it is not that one file's: the
    combined hash of transactions and customers read as the transactions file's sha256
    (tester J)."""
    counts = [len(input_files(source)) for source in sources]
    files = " and ".join(
        f"`{source}` ({'sha256' if n == 1 else f'hash of its {n} files'} "
        f"`{file_sha256(source)[:12]}`)"
        for source, n in zip(sources, counts, strict=True)
    )
    if counts == [1]:
        return files  # its sha256 is the data_sha256
    return f"{files}, data_sha256 `{digest[:12]}` (the run's tag: the hash of them all)"


def version_description(
    kind: Kind, horizon_days: int, run_id: str, reason: str, metadata: Mapping[str, Any]
) -> str:
    what = (
        f"P(no purchase in the next {horizon_days} days)"
        if kind == "churn"
        else f"spend in the next {horizon_days} days"
    )
    fit = (
        f"Refit on every labelled cutoff (labels through {metadata['labels_through']}); the "
        "metrics and the gate are the evaluation fit's on the test snapshot"
        if "labels_through" in metadata
        else "The evaluated fit: its metrics and the gate are its own on the test snapshot"
    )
    return f"{what}; training run `{run_id}`. {fit}. Gate: {reason}"


def model_description(kind: Kind, other: str) -> str:
    """One text for every version, whatever its horizon (each version's `horizon_days` tag)."""
    horizon = "the next horizon (each version's `horizon_days` tag; 90 days by default)"
    if kind == "churn":
        what = (
            f"Probability that a customer makes no purchase in {horizon}, from their "
            "transactions up to the scoring date (calibrated on validation)."
        )
    else:
        what = (
            f"Expected spend of a customer in {horizon}, from their transactions up to the "
            "scoring date."
        )
    return (
        f"{what} Each version is one model bundle shared with `{other}` (same run, same "
        "inputs); `crm-ltv score` and the service load it. Alias `champion`: the version in "
        "use, moved when a version passes the gate (see each version's description) or by "
        "hand with `crm-ltv promote` (the version's `promoted_by_hand` tag says when)."
    )


def log_plots(
    models: TrainedModels, split: TimeSplit, evaluation: Evaluation, lightgbm_run: str
) -> None:
    """Comparisons on the parent; the LightGBM model's own explanations on its child run."""
    test = split.test
    churned = test["churned"].to_numpy()
    value = test["future_value"].to_numpy("float64")
    churn_scores = {
        n: evaluation.predictions[n]["churn_probability"].to_numpy() for n in MODEL_ORDER
    }
    value_scores = {n: evaluation.predictions[n]["predicted_value"].to_numpy() for n in MODEL_ORDER}
    deciles = {n: decile_table(value, s) for n, s in value_scores.items()}
    _log_figures(
        {
            "churn_roc.png": plots.roc_plot(churned, churn_scores),
            "churn_pr.png": plots.pr_plot(churned, churn_scores),
            "churn_calibration.png": plots.calibration_plot(churned, churn_scores),
            "churn_gains.png": plots.gains_plot(churned, churn_scores, "churners"),
            "ltv_gains.png": plots.gains_plot(value, value_scores, "future value"),
            "ltv_deciles.png": plots.decile_plot(deciles, split.horizon_days),
        }
    )
    for name, table in deciles.items():
        log_table(table, f"ltv_deciles_{name}", DIGITS)
    X = test[split.feature_names]
    sample = X.sample(min(len(X), 5000), random_state=0)
    with killable_run(run_id=lightgbm_run, nested=True):
        _log_figures(
            {
                "churn_importance.png": plots.importance_plot(
                    _importance(models.churn), "Churn model: feature importance"
                ),
                "ltv_importance.png": plots.importance_plot(
                    _importance(models.ltv), "LTV model: feature importance"
                ),
                "churn_shap.png": plots.shap_summary_plot(
                    *_explained(models.bundle, "churn", sample),
                    "Churn model: SHAP summary (log-odds)",
                    models.bundle.churn_offset,
                ),
                "ltv_shap.png": plots.shap_summary_plot(
                    *_explained(models.bundle, "ltv", sample),
                    "LTV model: SHAP summary (log scale)",
                    models.bundle.ltv_offset,
                ),
            }
        )


def _log_figures(figures: Mapping[str, Any]) -> None:
    for name, figure in figures.items():
        log_figure(figure, name.removesuffix(".png"))


def _explained(
    bundle: ModelBundle, kind: Kind, sample: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SHAP values of the bundle's `kind` head, and the inputs its boosters saw."""
    values = bundle.contributions(kind, bundle.encode(sample), "shap")
    columns = [*bundle.model_features, "(base)"]
    seen = bundle.bgnbd.transform(sample) if bundle.bgnbd is not None else sample
    return pd.DataFrame(values, index=sample.index, columns=columns), seen


def _importance(model: Any) -> pd.Series:
    booster = model.booster_
    return pd.Series(booster.feature_importance("gain"), index=booster.feature_name())


def log_reports(split: TimeSplit, evaluation: Evaluation, customers: pd.DataFrame | None) -> None:
    ours = evaluation.predictions["lightgbm"]
    log_table(segment_report(split.test, ours), "rfm_segments", DIGITS)
    ltv_cac = ltv_cac_report(split.test, ours, customers)
    if ltv_cac is not None:  # of the test snapshot's customers, at its cutoff
        log_table(ltv_cac, "ltv_cac_by_channel_at_test_cutoff", DIGITS)


def comparison_table(evaluation: Evaluation) -> str:
    """Model vs baselines on the test snapshot, one line each (for the terminal)."""
    churn_cols = [
        ("roc_auc", "AUC"),
        ("pr_auc", "PR AUC"),
        ("log_loss", "logloss"),
        ("brier", "Brier"),
        ("expected_calibration_error", "ECE"),
        ("lift_top10pct", "lift@10%"),
        ("sample_truth_dropout_auc", "truth AUC"),
    ]
    ltv_cols = [
        ("normalized_gini", "gini"),
        ("spearman", "spearman"),
        ("rmse", "RMSE"),
        ("mae", "MAE"),
        ("top10_value_share", "top10%"),
        ("total_predicted_over_actual", "pred/act"),
    ]
    first = evaluation.churn[MODEL_ORDER[0]]
    churn_cols = [(k, t) for k, t in churn_cols if k in first]
    header = f"{'model':10s}" + "".join(f"{t:>10s}" for _, t in churn_cols) + "  |"
    header += "".join(f"{t:>10s}" for _, t in ltv_cols)
    lines = ["churn (left) and LTV (right) on the test snapshot", header]
    for name in MODEL_ORDER:
        row = f"{name:10s}" + "".join(_cell(evaluation.churn[name][k]) for k, _ in churn_cols)
        row += "  |" + "".join(_cell(evaluation.ltv[name][k]) for k, _ in ltv_cols)
        lines.append(row)
    return "\n".join(lines)


def _cell(value: float) -> str:
    """A figure in its 10-character column, never run into its neighbour: money past 9,999
    (an RMSE in cents) without decimals, and a space before what still does not fit."""
    text = f"{value:.4f}" if abs(value) < 1e4 else f"{value:,.0f}"
    return f"{text:>10s}" if len(text) < 10 else f" {text}"
