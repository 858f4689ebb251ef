"""The MLflow model registry: versions of `churn` and `ltv`, and the gate that moves `champion`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import mlflow
from crm_ltv.features.rfm import RfmCuts
from crm_ltv.training.config import GateConfig
from crm_ltv.training.metrics import HIGHER_IS_BETTER
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

# Model version tag: the RFM quintile cut points of the training population (JSON).
RFM_CUTS_TAG = "rfm_cuts"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def threshold_failures(metrics: dict[str, float], gate: GateConfig) -> list[str]:
    failures = []
    for name, bound in gate.thresholds.items():
        value = metrics.get(name)
        if value is None:
            failures.append(f"{name} not measured")
        elif bound.min is not None and value < bound.min:
            failures.append(f"{name} {value:.4f} < min {bound.min:g}")
        elif bound.max is not None and value > bound.max:
            failures.append(f"{name} {value:.4f} > max {bound.max:g}")
    return failures


def decide_promotion(
    new: dict[str, float],
    champion: dict[str, float] | None,
    gate: GateConfig,
    champion_label: str = "the champion",
) -> Decision:
    """Promote only a model that passes every threshold and strictly beats the champion on
    `gate.compare`, both measured on the same held-out snapshot."""
    failures = threshold_failures(new, gate)
    if failures:
        return Decision(False, "fails thresholds: " + "; ".join(failures))
    if champion is None:
        return Decision(True, "no champion yet and every threshold passes")
    metric = gate.compare
    higher = HIGHER_IS_BETTER.get(metric, True)
    ours, theirs = new[metric], champion[metric]
    better = ours > theirs if higher else ours < theirs
    verdict = "beats" if better else "does not beat"
    return Decision(better, f"{metric} {ours:.4f} {verdict} {champion_label}'s {theirs:.4f}")


def champion_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def load_version(name: str, version: str | int):
    """The native estimator (not the pyfunc wrapper, which would return labels)."""
    return mlflow.sklearn.load_model(f"models:/{name}/{version}")


def set_champion(client: MlflowClient, name: str, version: str | int, alias: str) -> None:
    client.set_registered_model_alias(name, alias, str(version))


class RegistryError(RuntimeError):
    """The registry lacks what a command needs (no champion, unknown version); says what to do."""


@dataclass(frozen=True)
class Champion:
    name: str
    version: str
    model: Any
    horizon_days: int
    rfm_cuts: RfmCuts | None  # None for versions trained before the tag existed


def version_rfm_cuts(tags: dict[str, str]) -> RfmCuts | None:
    raw = tags.get(RFM_CUTS_TAG)
    return None if raw is None else RfmCuts.from_dict(json.loads(raw))


def load_champion(client: MlflowClient, name: str, alias: str) -> Champion:
    found = champion_version(client, name, alias)
    if found is None:
        raise RegistryError(
            f"model {name!r} has no {alias!r} version in the registry at "
            f"{mlflow.get_tracking_uri()}: run `make train`, or `crm-ltv promote`"
        )
    return Champion(
        name,
        found.version,
        load_version(name, found.version),
        int(found.tags["horizon_days"]),
        version_rfm_cuts(found.tags),
    )
