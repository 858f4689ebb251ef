"""Feature-builder throughput and peak memory on about 10M transactions of 1M customers.

Prints, in one run:
  features: X M tx/s (N tx, C customers, F features), peak RSS G GB
  naive pandas: Y M tx/s (...), peak RSS G GB
Each measurement runs in a fresh process, so one's memory does not inflate the other's. The
input is the sample generator's history put through the real loader (validated, typed and
sorted as every run gets it), cached under data/bench/; loading is not timed. Peak RSS is the
process's high-water mark from the moment the input frame is in memory (it includes the
frame, not the Parquet reader's transient buffers, which are released and the mark reset).
Targets: features >= 2 M tx/s with peak RSS < 6 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

from crm_ltv.features.builders import build_features
from crm_ltv.features.config import (
    FeatureConfig,
    SampleConfig,
    SourceConfig,
    ValidationConfig,
    load_config,
    override,
)
from crm_ltv.features.loading import load_transactions
from crm_ltv.features.paths import Paths
from crm_ltv.features.sample import generate_sample

CUSTOMERS = 1_000_000
PURCHASES_PER_YEAR = 7.8  # just over 10 rows per customer with the sample's other settings


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        line = next(row for row in status if row.startswith(field + ":"))
    return int(line.split()[1])


def _reset_peak_rss() -> bool:
    """Drop the reader's freed buffers and restart the high-water mark (Linux)."""
    pa.default_memory_pool().release_unused()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_gb(since_reset: bool) -> float:
    if since_reset:
        return _status_kb("VmHWM") / 1024**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB on Linux


def prepare(paths: Paths, customers: int) -> Path:
    """Generate the history and put it through the loader once; reuse it afterwards."""
    bench_dir = paths.data_dir / "bench"
    loaded = bench_dir / f"transactions_{customers}_{PURCHASES_PER_YEAR:g}_loaded.parquet"
    if loaded.exists():
        return loaded
    bench_dir.mkdir(parents=True, exist_ok=True)
    config = override(
        load_config(SampleConfig, paths.config_file("sample")),
        "benchmark",
        n_customers=customers,
        purchases_per_year=PURCHASES_PER_YEAR,
    )
    start = time.perf_counter()
    print(f"generating {customers:,} customers ...", file=sys.stderr, flush=True)
    raw = bench_dir / f"transactions_{customers}.parquet"
    generate_sample(config).transactions.to_parquet(raw, index=False)
    print(f"loading {raw} through the validator ...", file=sys.stderr, flush=True)
    frame = load_transactions(raw, SourceConfig(), ValidationConfig(), bench_dir / "rejects").frame
    frame.to_parquet(loaded, index=False)
    raw.unlink()
    print(f"prepared in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return loaded


def naive_features(
    tx: pd.DataFrame, cutoff: pd.Timestamp, windows: tuple[int, ...]
) -> pd.DataFrame:
    """The yardstick: a dozen of the same features, written as plain pandas groupbys."""
    past = tx[tx["timestamp"] <= cutoff]
    buys = past[past["amount"] > 0].assign(day=lambda d: d["timestamp"].dt.floor("D"))
    by_buyer = buys.groupby("customer_id", observed=True)
    out = pd.DataFrame(
        {
            "recency_days": (cutoff - by_buyer["timestamp"].max()).dt.days,
            "tenure_days": (cutoff - by_buyer["timestamp"].min()).dt.days,
            "frequency": by_buyer["day"].nunique(),
            "n_orders": by_buyer["order_id"].nunique(),
            "monetary_total": past.groupby("customer_id", observed=True)["amount"].sum(),
            "monetary_max": buys.groupby(["customer_id", "order_id"], observed=True)["amount"]
            .sum()
            .groupby(level=0)
            .max(),
            "n_categories": by_buyer["category"].nunique(),
            "gross": by_buyer["amount"].sum(),
        }
    )
    out = out[out["gross"].notna()]
    out["monetary_mean"] = out["monetary_total"] / out["n_orders"]
    refunds = past[past["amount"] < 0].groupby("customer_id", observed=True)["amount"].sum()
    out["refund_rate"] = -refunds.reindex(out.index, fill_value=0.0) / out["gross"]
    for w in windows:
        recent = past[past["timestamp"] > cutoff - pd.Timedelta(days=w)]
        spend = recent.groupby("customer_id", observed=True)["amount"].sum()
        out[f"spend_{w}d"] = spend.reindex(out.index, fill_value=0.0)
    return out.drop(columns="gross")


def measure(which: str, loaded: Path, paths: Paths) -> None:
    tx = pd.read_parquet(loaded)
    config = load_config(FeatureConfig, paths.config_file("features"))
    cutoff = tx["timestamp"].max()
    input_gb = tx.memory_usage(deep=True).sum() / 1024**3
    reset = _reset_peak_rss()
    start = time.perf_counter()
    if which == "features":
        table = build_features(tx, cutoff, config)
    else:
        table = naive_features(tx, cutoff, config.windows_days)
    seconds = time.perf_counter() - start
    label = "features" if which == "features" else "naive pandas"
    print(
        f"{label}: {len(tx) / seconds / 1e6:.2f} M tx/s ({len(tx):,} tx, {len(table):,} customers, "
        f"{table.shape[1]} features, {seconds:.2f} s), peak RSS {_peak_rss_gb(reset):.2f} GB "
        f"(input frame {input_gb:.2f} GB)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=CUSTOMERS)
    parser.add_argument("--measure", choices=("features", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    paths = Paths.from_env()
    if args.measure:
        measure(args.measure, args.input, paths)
        return
    loaded = prepare(paths, args.customers)
    for which in ("features", "naive"):
        subprocess.run(
            [sys.executable, __file__, "--measure", which, "--input", str(loaded)], check=True
        )


if __name__ == "__main__":
    main()
