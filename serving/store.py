"""The champion models in the BentoML model store: copied from the MLflow registry by
`crm-ltv serve` / `make bento`, loaded from the store by the service (no registry needed)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import bentoml
import mlflow
from crm_ltv.features.rfm import RfmCuts
from crm_ltv.training.config import RegistryConfig
from crm_ltv.training.registry import (
    RFM_CUTS_TAG,
    Champion,
    RegistryError,
    champion_version,
    version_rfm_cuts,
)
from crm_ltv.training.scoring import Champions, pair_champions
from mlflow import MlflowClient

STORE_NAMES = {"churn": "crm-ltv-churn", "ltv": "crm-ltv-ltv"}
MODEL_DIR = "mlflow_model"


def stored_model(kind: str) -> bentoml.Model | None:
    try:
        return bentoml.models.get(f"{STORE_NAMES[kind]}:latest")
    except bentoml.exceptions.NotFound:
        return None


def _describe(stored: bentoml.Model) -> str:
    meta = stored.info.metadata
    return f"{meta['registry_name']} v{meta['registry_version']} ({stored.tag})"


def sync_champions(registry: RegistryConfig, say: Callable[[str], None]) -> None:
    """Copy each champion into the store unless the store's latest already is that version.

    When the registry cannot be reached (or has no champion), the models already in the store
    are served, with a warning; with an empty store that is an error.
    """
    names = {"churn": registry.churn_model, "ltv": registry.ltv_model}
    # A tracking server that is down should fail in seconds, not after minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = mlflow.get_tracking_uri()
    try:
        client = MlflowClient()
        versions = {
            kind: champion_version(client, name, registry.alias) for kind, name in names.items()
        }
        problem = next(
            (
                f"model {names[k]!r} has no {registry.alias!r} version"
                for k, v in versions.items()
                if v is None
            ),
            None,
        )
    except Exception as exc:  # any failure to reach the registry: fall back to the store
        versions, problem = {}, f"{type(exc).__name__}: {exc}".splitlines()[0]
    if problem is not None:
        stored = {kind: stored_model(kind) for kind in names}
        if any(s is None for s in stored.values()):
            raise RegistryError(
                f"registry at {uri}: {problem}, and the BentoML model store has no copy to "
                "serve: run `make train` (or `crm-ltv promote`) first"
            )
        say(
            f"warning: registry at {uri}: {problem}; serving the models already in the BentoML "
            "store: " + ", ".join(_describe(s) for s in stored.values() if s is not None)
        )
        return
    for kind, version in versions.items():
        assert version is not None
        stored = stored_model(kind)
        meta = stored.info.metadata if stored is not None else {}
        if meta.get("registry_version") == version.version and meta.get("tracking_uri") == uri:
            say(f"{kind}: {_describe(stored)} is the champion, already in the store")
            continue
        if version_rfm_cuts(version.tags) is None:
            raise RegistryError(
                f"{names[kind]} v{version.version} has no {RFM_CUTS_TAG!r} tag (trained before "
                "serving existed): run `make train` and promote the new versions"
            )
        with bentoml.models.create(
            STORE_NAMES[kind],
            labels={"alias": registry.alias},
            metadata={
                "registry_name": names[kind],
                "registry_version": version.version,
                "tracking_uri": uri,
                "run_id": version.run_id,
                "horizon_days": int(version.tags["horizon_days"]),
                RFM_CUTS_TAG: version.tags[RFM_CUTS_TAG],
            },
        ) as created:
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{names[kind]}/{version.version}",
                dst_path=created.path_of(MODEL_DIR),
            )
        say(f"{kind}: copied {names[kind]} v{version.version} into the store as {created.tag}")


def load_stored_champions(churn: bentoml.Model, ltv: bentoml.Model) -> Champions:
    """Native estimators (predict_proba, contributions), one LightGBM thread per worker."""
    return pair_champions(_load(churn), _load(ltv))


def _load(stored: bentoml.Model) -> Champion:
    meta = stored.info.metadata
    model = mlflow.sklearn.load_model(str(Path(stored.path_of(MODEL_DIR))))
    model.set_params(n_jobs=1)
    return Champion(
        name=str(meta["registry_name"]),
        version=str(meta["registry_version"]),
        model=model,
        horizon_days=int(meta["horizon_days"]),
        rfm_cuts=RfmCuts.from_dict(json.loads(meta[RFM_CUTS_TAG])),
    )
