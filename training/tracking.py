"""MLflow setup and run provenance: where runs go, the data hash, the git commit."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import mlflow

from crm_ltv.features.paths import Paths


def tracking_uri(paths: Paths) -> str:
    """`MLFLOW_TRACKING_URI` if set, else the SQLite file mlflow.db in the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{paths.root / 'mlflow.db'}"


def setup_tracking(paths: Paths, experiment: str) -> str:
    """Point MLflow at the project's store; artifacts of new experiments go to mlartifacts/.
    The registry too: MLflow keeps the first registry it resolved in a process, so homes used
    one after another in one process (a backtest) would share one registry."""
    uri = tracking_uri(paths)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        experiment_id = mlflow.create_experiment(
            experiment, artifact_location=paths.artifacts_dir.as_uri()
        )
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def file_sha256(*files: Path | None) -> str:
    """One hash over the bytes of every input file, in order."""
    digest = hashlib.sha256()
    for path in files:
        if path is None:
            continue
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def git_commit(root: Path) -> str:
    """HEAD's commit, with '-dirty' when tracked files differ; 'unknown' outside a checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit
