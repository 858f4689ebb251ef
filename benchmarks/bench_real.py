"""Backtest on a real shop's history (Online Retail II, benchmarks/data/): LightGBM against
BG/NBD + Gamma-Gamma and the RFM cells, as a user would meet them.

At each origin the run sees only the lines up to the origin, trains exactly as `crm-ltv train`
does (`run_training`, in a temporary project home with its own MLflow registry), scores every
customer at the origin exactly as `crm-ltv score` does (the served version's bundle, features
against its RFM cut points), and compares with what each customer really did in the next
horizon. The classic baseline is fitted as its users fit it: BG/NBD + Gamma-Gamma on the whole
history up to the origin (the calibration period), forecasting the horizon after it; the RFM
cells are the ones the training run fitted. Prints one line per origin and model, then
`bench-real: ahead of BG/NBD on K/16` (4 origins x churn AUC, PR AUC, Gini, top-10% share).
`--seeds 1 2 3` runs it all once per model seed and counts K on the margins averaged over the
seeds: a margin smaller than its spread over seeds says which seed ran, not which model is ahead.
`--tune N` tunes both models at each origin first (`crm-ltv tune --trials N`), as a user would.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from stopping import stop_on_sigterm

from crm_ltv.features.arrays import TransactionArrays, as_cutoff
from crm_ltv.features.builders import build_features
from crm_ltv.features.config import ConfigError, DataConfig, FeatureConfig, load_config, override
from crm_ltv.features.contract import DataError
from crm_ltv.features.inputs import Inputs, load_inputs
from crm_ltv.features.labels import labels_at
from crm_ltv.features.paths import Paths
from crm_ltv.training.baselines import BgNbdBaseline
from crm_ltv.training.config import TrainConfig, TuneConfig
from crm_ltv.training.job import run_training, split_inputs
from crm_ltv.training.pipeline import evaluate
from crm_ltv.training.registry import load_champions
from crm_ltv.training.scoring import score_customers, scoring_features
from crm_ltv.training.tuning import run_tuning

DATA = Path(__file__).resolve().parent / "data"
ORIGINS = (("2011-03-12", 90), ("2011-06-10", 90), ("2011-09-10", 90), ("2010-12-09", 182))
COMPARED = ("roc_auc", "pr_auc", "normalized_gini", "top10_value_share")
MODELS = ("lightgbm", "bgnbd", "rfm")
RESAMPLES, SEED = 200, 7  # bootstrap of each margin over customers


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load(home: Path) -> Inputs:
    """The whole file through the loader, with the shipped mapping and exclusions."""
    config = load_config(DataConfig, DATA / "online_retail_ii.data.yaml")
    source = override(config.transactions, "bench-real", path=DATA / "online_retail_ii.parquet")
    return load_inputs(
        override(config, "bench-real", transactions=source), Paths(home), progress=_say
    )


def _until(inputs: Inputs, origin: pd.Timestamp) -> Inputs:
    tx = inputs.transactions
    seen = tx.frame[tx.frame["timestamp"] <= origin].reset_index(drop=True)
    return replace(inputs, transactions=replace(tx, frame=seen))


def _backtest(
    inputs: Inputs,
    origin: pd.Timestamp,
    horizon: int,
    scratch: Path,
    refit: bool,
    seed: int | None = None,
    trials: int | None = None,
    train_file: Path | None = None,
) -> dict:
    # Each origin its own home and registry: MLflow exports the first tracking URI it is given
    # as MLFLOW_TRACKING_URI, which the next home would otherwise take for the user's.
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as the CLI
    home = scratch / f"{origin:%Y-%m-%d}-h{horizon}"
    home.mkdir(parents=True)
    paths = Paths(home)
    if train_file is not None:  # the home's own train.yaml: the run logs the file it read
        paths.configs_dir.mkdir()
        shutil.copyfile(train_file, paths.configs_dir / "train.yaml")
    features = load_config(FeatureConfig, paths.config_file("features"))
    config = load_config(TrainConfig, paths.config_file("train"))
    config = override(
        config,
        "bench-real",
        snapshots=override(config.snapshots, "--horizon-days", horizon_days=horizon),
        refit=refit,
        seed=seed,
    )
    history = _until(inputs, origin)
    split = split_inputs(history, config, features, _say)
    tuned = None
    if trials:  # as `crm-ltv tune --trials N` then `crm-ltv train`, on the origin's history
        tune = load_config(TuneConfig, paths.config_file("tune"))
        studies = run_tuning(
            split, history, paths, config, override(tune, "--tune", trials=trials), _say
        )
        tuned = {kind: dict(study.best_params) for kind, study in studies.items()}
        for kind, study in studies.items():
            shown = ", ".join(f"{k} {v:.4g}" for k, v in study.best_params.items())
            _say(
                f"  {origin:%Y-%m-%d} tuned {kind} ({study.metric} {study.best_value:.5f}): {shown}"
            )
    result = run_training(history, paths, config, features, tuned, _say, split=split)
    champions = load_champions(config.registry, _say)
    table = scoring_features(history.transactions.frame, origin, features, None, champions)
    ours = score_customers(table, champions).set_index("customer_id")
    calibration = build_features(history.transactions.frame, origin, features)
    bgnbd = BgNbdBaseline(horizon, config.baselines.bgnbd_time_unit_days).fit(calibration)
    rfm = result.models.baselines["rfm"]
    actual = labels_at(TransactionArrays.from_frame(inputs.transactions.frame), origin, horizon)
    actual = actual.reindex(table.index.astype(str))
    predicted = {
        "lightgbm": ours.loc[actual.index, ["churn_probability", "predicted_value"]],
        "bgnbd": bgnbd.predict(calibration).loc[actual.index],
        "rfm": rfm.predict(table).loc[actual.index],
    }
    out = {}
    for name, frame in predicted.items():
        metrics = evaluate(frame, actual)
        out[name] = {**metrics["churn"], **metrics["ltv"]}
    out["registry"] = {k: r.decision.reason for k, r in result.registered.items()}
    out["margin_sd"] = _margin_sd(predicted["lightgbm"], predicted["bgnbd"], actual)
    return out


def _margin_sd(ours: pd.DataFrame, theirs: pd.DataFrame, actual: pd.DataFrame) -> dict[str, float]:
    """Bootstrap standard deviation of LightGBM's margin over BG/NBD on each compared metric
    (customers resampled with replacement, both models on the same resample): how far a margin
    must be from 0 to say more than which customers happened to be scored."""
    rng = np.random.default_rng(SEED)
    margins = []
    for _ in range(RESAMPLES):
        rows = rng.integers(0, len(actual), len(actual))
        sample = actual.iloc[rows]
        got = [evaluate(frame.iloc[rows], sample) for frame in (ours, theirs)]
        margins.append([_metric(got[0], m) - _metric(got[1], m) for m in COMPARED])
    return {m: float(sd) for m, sd in zip(COMPARED, np.std(margins, axis=0), strict=True)}


def _metric(metrics: dict[str, dict[str, float]], name: str) -> float:
    return metrics["churn"][name] if name in metrics["churn"] else metrics["ltv"][name]


def _print_origin(origin_text: str, horizon: int, got: dict) -> dict[str, float]:
    """The origin's lines: each model's metrics, then LightGBM's margins over BG/NBD."""
    for name in MODELS:
        m = got[name]
        print(
            f"{origin_text:10s} {horizon:4d} {name:9s} {m['roc_auc']:7.4f} "
            f"{m['pr_auc']:7.4f} {m['normalized_gini']:7.4f} {m['spearman']:8.4f} "
            f"{m['top10_value_share']:7.4f} {m['total_predicted_over_actual']:8.3f}",
            flush=True,
        )
    margins = {m: got["lightgbm"][m] - got["bgnbd"][m] for m in COMPARED}
    shown = ", ".join(f"{m} {margins[m]:+.4f} ({got['margin_sd'][m]:.4f})" for m in COMPARED)
    print(f"{origin_text:10s} {horizon:4d} margin over bgnbd (bootstrap SD): {shown}", flush=True)
    for kind, reason in got["registry"].items():
        _say(f"  {origin_text} {kind} gate: {reason}")
    return margins


def _one_seed(
    inputs: Inputs,
    origins: list[tuple[str, int]],
    scratch: Path,
    refit: bool,
    seed: int | None,
    trials: int | None,
    train_file: Path | None,
) -> dict[str, list[float]]:
    """Every origin trained, scored and compared with one seed of the models; prints the
    counts and returns each origin's margins (NaN for an origin that failed)."""
    margins: dict[str, list[float]] = {}
    clear, behind = 0, 0
    for origin_text, horizon in origins:
        key = f"{origin_text:10s} {horizon:4d}"
        try:
            home = scratch / f"seed-{seed}"
            got = _backtest(
                inputs, as_cutoff(origin_text), horizon, home, refit, seed, trials, train_file
            )
        except Exception as exc:  # a failed origin is a finding, not the end of the run
            print(f"{key} failed: {type(exc).__name__}: {exc}")
            margins[key] = [float("nan")] * len(COMPARED)
            continue
        margin = _print_origin(origin_text, horizon, got)
        margins[key] = [margin[m] for m in COMPARED]
        clear += sum(margin[m] > 2 * got["margin_sd"][m] for m in COMPARED)
        behind += sum(margin[m] < -2 * got["margin_sd"][m] for m in COMPARED)
    compared = len(COMPARED) * len(origins)
    print(f"margins beyond 2 bootstrap SD: {clear}/{compared} ahead, {behind}/{compared} behind")
    return margins


def _ahead(margins: dict[str, list[float]]) -> int:
    return sum(m > 0 for row in margins.values() for m in row)  # NaN (failed) is not ahead


def _origins(parser: argparse.ArgumentParser, given: list[str]) -> list[tuple[str, int]]:
    """ORIGIN:HORIZON pairs, each once, as usage errors rather than a failed origin later."""
    origins = []
    for pair in given:
        origin, _, horizon = pair.partition(":")
        if not horizon.isdigit() or int(horizon) < 1:
            parser.error(f"--origins: {pair!r} is not ORIGIN:HORIZON (e.g. 2011-09-10:90)")
        try:
            as_cutoff(origin)
        except (DataError, ValueError) as exc:
            parser.error(f"--origins: {pair!r}: {exc}")
        origins.append((origin, int(horizon)))
    if len(set(origins)) < len(origins):
        parser.error(f"--origins: each pair once, not {given}")
    return origins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--origins", nargs="*", help="ORIGIN:HORIZON pairs (default: the four)")
    parser.add_argument(
        "--no-refit", action="store_true", help="score with the evaluation fit, not the refit"
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        help="run with each of these model seeds (default: configs/train.yaml's) and count "
        "K/16 on the margins averaged over them: how much of a margin is the seed's",
    )
    parser.add_argument(
        "--tune",
        type=int,
        metavar="TRIALS",
        help="at each origin, tune both models first (`crm-ltv tune --trials TRIALS` on the "
        "origin's history) and train with the best params, as a user following README Tuning",
    )
    parser.add_argument(
        "--train-config",
        type=Path,
        metavar="FILE",
        help="train with this train.yaml instead of configs/train.yaml (a variant to compare; "
        "read once, into each origin's home)",
    )
    args = parser.parse_args()
    if args.train_config is not None:  # refused here, not as a failed origin of every seed
        try:
            load_config(TrainConfig, args.train_config)
        except ConfigError as exc:
            parser.error(f"--train-config: {exc}")
    if args.tune is not None and args.tune < 1:
        parser.error(f"--tune: at least 1 trial, not {args.tune}")
    origins = _origins(parser, args.origins) if args.origins else ORIGINS
    seeds: list[int | None] = list(args.seeds or [None])
    if len(set(seeds)) < len(seeds):
        parser.error(f"--seeds: each seed once, not {args.seeds}")
    stop_on_sigterm()
    scratch = Path(tempfile.mkdtemp(prefix="bench-real-"))
    started = time.perf_counter()
    try:
        train_file = None
        if args.train_config is not None:  # read once: an edit during the run mixes nothing
            train_file = Path(shutil.copyfile(args.train_config, scratch / "train.yaml"))
        inputs = _load(scratch)
        last = inputs.transactions.frame["timestamp"].max()
        late = [f"{o}:{h}" for o, h in origins if as_cutoff(o) + pd.Timedelta(days=h) > last]
        if late:  # trained for minutes, then compared with a window the data does not hold
            sys.exit(f"bench-real: --origins {', '.join(late)}: the horizon after it ends after "
                     f"the data ({last:%Y-%m-%d %H:%M}): nothing to compare with")  # fmt: skip
        print(
            f"{'origin':10s} {'h':>4s} {'model':9s} {'AUC':>7s} {'PR AUC':>7s} {'Gini':>7s} "
            f"{'Spearman':>8s} {'top10%':>7s} {'pred/act':>8s}",
            flush=True,
        )
        compared = len(COMPARED) * len(origins)
        runs = []
        for seed in seeds:
            if seed is not None:
                print(f"seed {seed}", flush=True)
            runs.append(
                _one_seed(inputs, origins, scratch, not args.no_refit, seed, args.tune, train_file)
            )
            if len(seeds) > 1:
                print(f"seed {seed}: ahead of BG/NBD on {_ahead(runs[-1])}/{compared}", flush=True)
        mean = {key: list(np.mean([run[key] for run in runs], axis=0)) for key in runs[0]}
        if len(seeds) > 1:
            spread = {key: np.std([run[key] for run in runs], axis=0, ddof=1) for key in runs[0]}
            for key, row in mean.items():
                shown = ", ".join(
                    f"{m} {v:+.4f} ({sd:.4f})"
                    for m, v, sd in zip(COMPARED, row, spread[key], strict=True)
                )
                print(f"{key} mean margin over {len(seeds)} seeds (seed SD): {shown}")
        over = "" if len(seeds) == 1 else f" by the mean margin over {len(seeds)} seeds"
        print(f"bench-real: ahead of BG/NBD on {_ahead(mean)}/{compared}{over} "
              f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    failed = [key for key, row in mean.items() if all(np.isnan(row))]
    if failed:  # a figure over fewer origins than asked is not the benchmark's figure
        sys.exit(f"bench-real: {len(failed)} of {len(mean)} origins failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
