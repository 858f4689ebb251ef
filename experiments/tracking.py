"""MLflow runs of the experiment commands: each command its own experiment, with a description
of the experiment and of the run (what an analyst reads first in the UI), tables rounded for
people, figures as images. The project's tracking store: training.tracking.setup_tracking."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
import pandas as pd

from crm_ltv.features.paths import Paths
from crm_ltv.training.tracking import NOTE, git_commit, log_figure, log_table, setup_tracking

__all__ = ["experiment_run", "log_figure", "log_metrics", "log_table", "metric_key"]


@contextmanager
def experiment_run(
    paths: Paths, experiment: str, experiment_note: str, run_name: str, run_note: str
) -> Iterator[str]:
    """A run in `experiment` (created if needed), both described; yields the run id."""
    setup_tracking(paths, experiment, experiment_note)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags({NOTE: run_note, "git_commit": git_commit(paths.root)})
        yield run.info.run_id


def metric_key(*parts: object) -> str:
    """A metric name from parts, in characters MLflow accepts ('Can't Lose Them' ->
    'cant_lose_them')."""
    words = [re.sub(r"[^0-9a-z]+", "_", str(p).lower().replace("'", "")).strip("_") for p in parts]
    return "_".join(w for w in words if w)


def log_metrics(values: dict[str, float]) -> None:
    """Finite values only: MLflow keeps NaN, but the UI's charts and comparisons choke on it."""
    mlflow.log_metrics({k: float(v) for k, v in values.items() if pd.notna(v)})
