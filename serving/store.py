"""The champion bundles in the BentoML model store: put there by `crm-ltv serve` / `make bento`
(from the MLflow registry), loaded from there by the service. The uplift champion is optional:
without it the store's latest uplift version is a placeholder (no bundle) and the next-best-action
uses the priors of configs/nba.yaml. No mlflow here: a serving worker reads bundle files only."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bentoml

from crm_ltv.training.bundle import Kind, ModelBundle, bundle_format
from crm_ltv.training.scoring import Champion, Champions
from crm_ltv.training.uplift import FORMAT as UPLIFT_FORMAT
from crm_ltv.training.uplift import UpliftBundle, UpliftChampion

STORE_NAMES: dict[Kind, str] = {"churn": "crm-ltv-churn", "ltv": "crm-ltv-ltv"}
UPLIFT_STORE_NAME = "crm-ltv-uplift"
# The store tags a Bento was built with, in its src folder (where BentoML serves it from)
PINNED_FILE = "crm-ltv-models.json"
# The store tags `crm-ltv serve` synced for its home, as JSON (store name -> tag), for workers
SERVED_MODELS_ENV = "CRM_LTV_SERVED_MODELS"
NO_BUNDLE = "none"  # the bundle_format of an uplift placeholder


def served_from_bento(folder: Path) -> bool:
    """Whether `folder` is a built Bento's src: BentoML serves a Bento from there."""
    return (folder.parent / "bento.yaml").is_file()


def pinned_tags(folder: Path) -> dict[str, str]:
    """Store name -> exact tag, as `crm-ltv bento` wrote them into `folder`, when `folder` is a
    Bento's build context (bentofile.yaml) or a built Bento's src; else {}."""
    path = folder / PINNED_FILE
    bento = (folder / "bentofile.yaml").is_file() or served_from_bento(folder)
    return json.loads(path.read_text()) if bento and path.is_file() else {}


def served_tag(name: str) -> str:
    """The tag the service declares: a Bento's own pinned copy (rolling back to an older Bento
    serves its models, not whichever the store got last), else the exact copy `crm-ltv serve`
    synced for this home (SERVED_MODELS_ENV), else the store's latest (`bentoml serve` of the
    source by hand). With several homes on one store, the latest was another home's copy
    whenever a worker started after that home's `serve` (tester S)."""
    return pinned_tags(Path.cwd()).get(name) or given_tags().get(name) or f"{name}:latest"


def given_tags() -> dict[str, str]:
    """SERVED_MODELS_ENV read, or an error that names it: the service imports it at start, where
    a bare JSON traceback said nothing of where the text came from (an inherited shell)."""
    raw = os.environ.get(SERVED_MODELS_ENV) or "{}"
    try:
        given = json.loads(raw)
    except json.JSONDecodeError as exc:
        given = exc
    if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
        raise ValueError(
            f"{SERVED_MODELS_ENV} is not a JSON object of store name -> model tag: {raw[:200]!r}"
            " (`crm-ltv serve` sets it for its workers; unset it to serve the store's latest"
            " copies)"
        )
    return given


def newest_copy(name: str, formats: tuple[str, ...], **metadata: str) -> bentoml.Model | None:
    """The newest copy in the store of one of these bundle formats whose metadata has these
    values (registry name, version, tracking URI: one home's model, whatever other homes put
    there since)."""
    try:
        stored = bentoml.models.list(name)
    except bentoml.exceptions.NotFound:  # none of that name yet
        return None
    copies = [
        m
        for m in stored
        if m.info.metadata.get("bundle_format") in formats
        and all(m.info.metadata.get(k) == v for k, v in metadata.items())
    ]
    return max(copies, key=lambda m: m.info.creation_time, default=None)


def describe(stored: bentoml.Model) -> str:
    meta = stored.info.metadata
    return f"{meta['registry_name']} v{meta['registry_version']} ({stored.tag})"


def store_bundle(kind: Kind, bundle_dir: Path, metadata: Mapping[str, Any]) -> bentoml.Model:
    """A new store version holding the bundle's files (the Bento packs them from here),
    labelled with the bundle's own format: a crm-ltv that reads that format finds the copy,
    another passes it over."""
    with bentoml.models.create(
        STORE_NAMES[kind],
        labels={"kind": kind},
        metadata={**metadata, "bundle_format": bundle_format(bundle_dir)},
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


# --- the uplift champion -------------------------------------------------------------------


def stored_uplift() -> bentoml.Model | None:
    """The store's latest uplift copy, if it holds one of this bundle format (not the
    placeholder retire_uplift writes)."""
    try:
        found = bentoml.models.get(f"{UPLIFT_STORE_NAME}:latest")
    except bentoml.exceptions.NotFound:
        return None
    return found if found.info.metadata.get("bundle_format") == UPLIFT_FORMAT else None


def has_uplift_version() -> bool:
    """Whether the store has any uplift version, a copy or a placeholder."""
    try:
        bentoml.models.get(f"{UPLIFT_STORE_NAME}:latest")
    except bentoml.exceptions.NotFound:
        return False
    return True


def store_uplift(bundle_dir: Path, metadata: Mapping[str, Any]) -> bentoml.Model:
    with bentoml.models.create(
        UPLIFT_STORE_NAME,
        labels={"kind": "uplift"},
        metadata={**metadata, "bundle_format": UPLIFT_FORMAT},
    ) as created:
        shutil.copytree(bundle_dir, created.path, dirs_exist_ok=True)
    return created


def retire_uplift(reason: str, tracking_uri: str = "") -> bentoml.Model | None:
    """When the registry has no uplift champion, a new store version that holds no bundle (its
    `bundle_format` none), so the store's latest is that placeholder: the service class always
    declares (and a Bento always packs) an uplift version, and decides with the priors rather
    than with an older home's copy. None when the latest already is a placeholder."""
    if has_uplift_version() and stored_uplift() is None:
        return None
    return placeholder_uplift(reason, tracking_uri)


def placeholder_uplift(reason: str, tracking_uri: str = "") -> bentoml.Model:
    """A new uplift version that holds no bundle: what a service without an uplift champion
    declares (it decides with the priors); `tracking_uri`: the home's registry that has none,
    so that its copy made before is not served again when that registry cannot be read."""
    with bentoml.models.create(
        UPLIFT_STORE_NAME,
        labels={"kind": "uplift"},
        metadata={"bundle_format": NO_BUNDLE, "reason": reason, "tracking_uri": tracking_uri},
    ) as created:
        (Path(created.path) / "README.txt").write_text(reason + "\n")
    return created


def load_stored_uplift(stored: bentoml.Model | None) -> UpliftChampion | None:
    """The uplift champion with one LightGBM thread, or None when the store has none."""
    if stored is None or stored.info.metadata.get("bundle_format") != UPLIFT_FORMAT:
        return None
    meta = stored.info.metadata
    bundle = UpliftBundle.load(Path(stored.path)).with_threads(1)
    return UpliftChampion(str(meta["registry_name"]), str(meta["registry_version"]), bundle)
