"""MLflow runs of the experiment commands: each command its own experiment, with a description
of the experiment and of the run (what an analyst reads first in the UI), tables rounded for
people, figures as images. The project's tracking store: training.tracking.setup_tracking."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from crm_ltv.features.paths import Paths
from crm_ltv.training.tracking import (
    NOTE,
    file_datasets,
    inherited_provenance,
    input_datasets,
    input_sources,
    killable_run,
    log_datasets,
    log_figure,
    log_provenance,
    log_table,
    logged_path,
    readable,
    setup_tracking,
)

__all__ = [
    "experiment_run",
    "file_datasets",
    "input_datasets",
    "input_sources",
    "log_children",
    "log_datasets",
    "log_figure",
    "log_metrics",
    "log_table",
    "logged_path",
    "metric_key",
]
DIGITS = 4  # metric values as people read them in the runs table


@contextmanager
def experiment_run(
    paths: Paths,
    experiment: str,
    experiment_note: str,
    run_name: str,
    run_note: str,
    kind: str = "experiment",
    data_files: Sequence[Path | None] = (),
) -> Iterator[str]:
    """A run in `experiment` (created if needed), both described, tagged `kind` (the command:
    its child runs carry their own kind) and its provenance: the commit, and the hash of every
    file in `data_files` (the files the run read); yields the run id. Stopped by Ctrl-C or
    SIGTERM, it and its child runs read KILLED (killable_run), not FAILED."""
    setup_tracking(paths, experiment, experiment_note)
    with killable_run(run_name=run_name) as run:
        mlflow.set_tags({NOTE: run_note, "kind": kind})
        log_provenance(*data_files)
        yield run.info.run_id


def log_children(
    kind: str,
    units: Mapping[str, Mapping[str, float]],
    notes: Mapping[str, str],
    tags: Mapping[str, Mapping[str, str]] | None = None,
    datasets: Sequence[Any] = (),
) -> dict[str, str]:
    """One nested run per compared unit (an action, a segment, a channel, a policy) of the run,
    every one with the same metric names, so the runs table and chart view compare them side
    by side; tag `kind` names what a unit is. Returns the child run ids by unit."""
    ids = {}
    provenance = inherited_provenance()
    for name, metrics in units.items():
        with killable_run(run_name=name, nested=True, description=notes.get(name)) as child:
            mlflow.set_tags({"kind": kind, kind: name, **provenance, **(tags or {}).get(name, {})})
            log_datasets(datasets, kind)
            log_metrics(metrics)
            ids[name] = child.info.run_id
    return ids


def metric_key(*parts: object) -> str:
    """A metric name from parts, in characters MLflow accepts ('Can't Lose Them' ->
    'cant_lose_them')."""
    words = [re.sub(r"[^0-9a-z]+", "_", str(p).lower().replace("'", "")).strip("_") for p in parts]
    return "_".join(w for w in words if w)


def log_metrics(values: dict[str, float]) -> None:
    """Finite values only (MLflow keeps NaN, but the UI's charts and comparisons choke on it),
    rounded to the digits people read (a tiny p-value keeps three significant digits)."""
    # +-inf too: MLflow stored an SMD of groups wholly apart as -1.797e308 (re-review)
    finite = {k: float(v) for k, v in values.items() if pd.notna(v) and math.isfinite(float(v))}
    mlflow.log_metrics({k: readable(v, DIGITS) for k, v in finite.items()})
