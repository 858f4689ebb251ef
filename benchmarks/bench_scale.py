"""Scale-out benchmark: features, a training on a few cutoffs and batch scoring on a local Dask
cluster, beside the single-process path on the largest input it holds.

    python benchmarks/bench_scale.py [--transactions 100_000_000] [--customers N/10] ...

1. Generates the sample's history in parts of `--part-transactions` rows (each part its own
   customers, ids prefixed by the part), written as Parquet files under data/bench/scale-N/;
   never the whole history in memory. Reused by later runs of the same size.
2. On a LocalCluster (one single-threaded worker process per core): loading and validating
   every file, partitioning by customer; features at the last transaction, written as parts;
   the snapshot table at `--cutoffs` training cutoffs (+ validation and test) and both boosters
   with lightgbm.dask (`--rounds` rounds, no MLflow); batch scoring written as parts. Prints
   each stage's time and throughput, and each worker's peak RSS.
3. The single-process path (loader + `build_features`) in a fresh process on the first parts
   up to `--single-transactions` rows: throughput and peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from crm_ltv.features.config import (
    DataConfig,
    FeatureConfig,
    SampleConfig,
    SourceConfig,
    ValidationConfig,
    load_config,
    override,
)
from crm_ltv.features.paths import Paths

PURCHASES_PER_YEAR = 7.8  # about 10 rows per customer with the sample's other settings


STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def generate(folder: Path, transactions: int, customers: int, part_rows: int) -> list[Path]:
    """The history as Parquet parts; a folder already complete is reused."""
    from crm_ltv.features.sample import generate_sample

    done = folder / "_complete"
    if done.exists():
        return sorted(folder.glob("part-*.parquet"))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    parts = max(1, round(transactions / part_rows))
    base = load_config(SampleConfig, Paths.from_env().config_file("sample"))
    start, rows = time.perf_counter(), 0
    for i in range(parts):
        size = customers // parts + (1 if i < customers % parts else 0)
        config = override(
            base, "bench", n_customers=size, purchases_per_year=PURCHASES_PER_YEAR, seed=1000 + i
        )
        tx = generate_sample(config).transactions
        prefix = f"{i:04d}-"
        tx["customer_id"] = prefix + tx["customer_id"].astype("str")
        tx["order_id"] = prefix + tx["order_id"].astype("str")
        tx.to_parquet(folder / f"part-{i:05d}.parquet", index=False)
        rows += len(tx)
        log(
            f"  generated part {i + 1}/{parts}: {rows:,} rows ({time.perf_counter() - start:.0f} s)"
        )
    done.write_text(f"{rows}\n")
    return sorted(folder.glob("part-*.parquet"))


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB on Linux


def reset_peak() -> None:
    """Start a new peak RSS (VmHWM) for this process: Linux resets it on a write of 5."""
    Path("/proc/self/clear_refs").write_text("5")


def stage_peak_gb() -> float:
    """This process's peak RSS since `reset_peak` (VmHWM; kB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def stage(client: Any) -> float:
    """A stage starts: each worker's peak RSS from here."""
    client.run(reset_peak)
    return time.perf_counter()


def ended(client: Any, start: float) -> tuple[float, list[float]]:
    """A stage's seconds and each worker's peak RSS during it."""
    return time.perf_counter() - start, list(client.run(stage_peak_gb).values())


def on_cluster(args: argparse.Namespace, files: list[Path], out: Path) -> None:
    from distributed import Client, LocalCluster, wait

    from crm_ltv.features.cluster import (
        features_on_cluster,
        load_partitioned,
        write_parts,
    )
    from crm_ltv.training.cluster import (
        score_on_cluster,
        score_totals,
        split_on_cluster,
        train_on_cluster,
    )
    from crm_ltv.training.config import TrainConfig
    from crm_ltv.training.scoring import Champion, Champions

    paths = Paths.from_env()
    features = load_config(FeatureConfig, paths.config_file("features"))
    train = load_config(TrainConfig, paths.config_file("train"))
    settings = {"n_estimators": args.rounds, "early_stopping_rounds": max(10, args.rounds // 5)}
    train = override(
        train, "bench",
        churn=override(train.churn, "bench", **settings),
        ltv=override(train.ltv, "bench", **settings),
        split=override(train.split, "bench", max_train_cutoffs=args.cutoffs),
        level=override(train.level, "bench", seasonal=False),
        refit=False,
    )  # fmt: skip
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    workers = args.workers or os.cpu_count() or 1
    figures: list[tuple[str, float, list[float]]] = []
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True,
            memory_limit=args.worker_memory, dashboard_address=":0",
        ) as local,
        Client(local) as client,
    ):  # fmt: skip
        log(f"cluster: {workers} workers x 1 thread, memory limit {args.worker_memory} each")
        reset_peak()  # the client's peak from here: not the history's generation
        start = stage(client)
        data = load_partitioned(
            client, DataConfig(), out / "rejects", Path(files[0]).parent, None, log,
            args.partitions,
        )  # fmt: skip
        wait(data.arrays)  # on the workers: gathering them would hold every row here too
        figures.append(("load + validate + partition", *ended(client, start)))

        start = stage(client)
        frames = features_on_cluster(data, data.last, features, progress=log)
        customers = write_parts(client, frames, out / "features")
        del frames
        figures.append(("features (last cutoff) + write", *ended(client, start)))

        start = stage(client)
        split = split_on_cluster(data, train, features, log)
        trained = train_on_cluster(split, split.sample, train, progress=log)
        del split
        cutoffs = args.cutoffs + 2
        figures.append((f"snapshots ({cutoffs} cutoffs) + training", *ended(client, start)))

        start = stage(client)
        bundle = trained.bundle
        champions = Champions.pair(
            Champion("churn", "bench", "churn", bundle), Champion("ltv", "bench", "ltv", bundle)
        )
        frames = features_on_cluster(data, data.last, features, **champions.feature_args())
        scored = score_on_cluster(client, frames, champions)
        scored_rows, _, _ = score_totals(client, scored)
        write_parts(client, scored, out / "scores", index=False)
        figures.append(("batch scoring + write", *ended(client, start)))

    print(
        f"Dask, {workers} workers: {rows:,} transactions, {customers:,} customers at the last "
        f"cutoff ({scored_rows:,} scored), {len(files)} input files, "
        f"{len(data.arrays)} partitions"
    )
    for name, seconds, stage_peaks in figures:
        print(
            f"  {name:34s} {seconds:8.1f} s  {rows / seconds / 1e6:6.2f} M tx/s  peak RSS per "
            "worker " + ", ".join(f"{gb:.2f}" for gb in stage_peaks) + " GB"
        )
    total = sum(s for _, s, _ in figures)
    print(f"  {'total':34s} {total:8.1f} s")
    print(
        "  peak RSS per worker (the largest of the stages'): "
        + ", ".join(f"{max(gb):.2f} GB" for gb in zip(*(p for _, _, p in figures), strict=True))
        + f"; client {stage_peak_gb():.2f} GB"
    )


def single(args: argparse.Namespace, files: list[Path], out: Path) -> None:
    """Loader + features in this process on the first parts up to --single-transactions."""
    from crm_ltv.features.builders import build_features
    from crm_ltv.features.loading import load_transactions

    chosen, rows = [], 0
    for path in files:
        n = pq.ParquetFile(path).metadata.num_rows
        if chosen and rows + n > args.single_transactions:
            break
        chosen.append(path)
        rows += n
    one = out / "single.parquet"
    with pq.ParquetWriter(one, pq.read_schema(chosen[0])) as writer:
        for path in chosen:
            writer.write_table(pq.read_table(path))
    del writer
    pa.default_memory_pool().release_unused()
    features = load_config(FeatureConfig, Paths.from_env().config_file("features"))
    start = time.perf_counter()
    tx = load_transactions(one, SourceConfig(), ValidationConfig(), out / "rejects-single").frame
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    table = build_features(tx, tx["timestamp"].max(), features)
    built = time.perf_counter() - start
    print(
        f"single process: {rows:,} transactions, {len(table):,} customers: load + validate "
        f"{loaded:.1f} s ({rows / loaded / 1e6:.2f} M tx/s), features {built:.1f} s "
        f"({rows / built / 1e6:.2f} M tx/s), peak RSS {peak_rss_gb():.2f} GB"
    )
    one.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=100_000_000)
    parser.add_argument("--customers", type=int, help="default: transactions / 10")
    parser.add_argument("--part-transactions", type=int, default=2_000_000)
    parser.add_argument("--cutoffs", type=int, default=3, help="training cutoffs")
    parser.add_argument("--rounds", type=int, default=100, help="boosting rounds per model")
    parser.add_argument("--workers", type=int, help="default: one per core")
    parser.add_argument("--worker-memory", default="auto", help="e.g. 8GiB (default: shared)")
    parser.add_argument("--partitions", type=int, help="default: 2M transactions each")
    parser.add_argument("--single-transactions", type=int, default=40_000_000)
    parser.add_argument("--skip-single", action="store_true")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    customers = args.customers or args.transactions // 10
    paths = Paths.from_env()
    folder = paths.data_dir / "bench" / f"scale-{args.transactions}-{customers}"
    out = paths.data_dir / "bench" / "scale-out"
    out.mkdir(parents=True, exist_ok=True)
    if args.single:
        single(args, sorted(folder.glob("part-*.parquet")), out)
        return
    log(f"history: {args.transactions:,} transactions of {customers:,} customers in {folder}")
    files = generate(folder, args.transactions, customers, args.part_transactions)
    on_cluster(args, files, out)
    if not args.skip_single:
        argv = [a for a in sys.argv[1:] if a != "--skip-single"]
        subprocess.run([sys.executable, __file__, *argv, "--single"], check=True)


if __name__ == "__main__":
    main()
