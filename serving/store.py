"""The champion bundles in the BentoML model store: put there by `crm-ltv serve` / `make bento`
(from the MLflow registry), loaded from there by the service. No mlflow here: a serving worker
reads bundle files only."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bentoml

from crm_ltv.training.bundle import FORMAT, Kind, ModelBundle
from crm_ltv.training.scoring import Champion, Champions

STORE_NAMES: dict[Kind, str] = {"churn": "crm-ltv-churn", "ltv": "crm-ltv-ltv"}


def stored_model(kind: Kind) -> bentoml.Model | None:
    try:
        return bentoml.models.get(f"{STORE_NAMES[kind]}:latest")
    except bentoml.exceptions.NotFound:
        return None


def describe(stored: bentoml.Model) -> str:
    meta = stored.info.metadata
    return f"{meta['registry_name']} v{meta['registry_version']} ({stored.tag})"


def is_bundle(stored: bentoml.Model) -> bool:
    """A store copy of this bundle format (not one of the models from before bundles)."""
    return stored.info.metadata.get("bundle_format") == FORMAT


def is_stored(kind: Kind, registry_version: str, tracking_uri: str) -> bool:
    """Whether the store's latest copy already is this registry version, as a bundle."""
    stored = stored_model(kind)
    if stored is None or not is_bundle(stored):
        return False
    meta = stored.info.metadata
    return (
        meta.get("registry_version") == registry_version
        and meta.get("tracking_uri") == tracking_uri
    )


def store_bundle(kind: Kind, bundle_dir: Path, metadata: Mapping[str, Any]) -> bentoml.Model:
    """A new store version holding the bundle's files (the Bento packs them from here)."""
    with bentoml.models.create(
        STORE_NAMES[kind],
        labels={"kind": kind},
        metadata={**metadata, "bundle_format": FORMAT},
    ) as created:
        shutil.copytree(bundle_dir, created.path, dirs_exist_ok=True)
    return created


def load_stored_champions(churn: bentoml.Model, ltv: bentoml.Model) -> Champions:
    """Both bundles with one LightGBM thread each: a worker scores one request at a time."""
    return Champions.pair(_load(churn, "churn"), _load(ltv, "ltv"))


def _load(stored: bentoml.Model, kind: Kind) -> Champion:
    meta = stored.info.metadata
    bundle = ModelBundle.load(Path(stored.path)).with_threads(1)
    return Champion(str(meta["registry_name"]), str(meta["registry_version"]), kind, bundle)
