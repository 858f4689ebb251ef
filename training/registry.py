"""The MLflow model registry: every read, write and alias move of the registered models.

A training run logs its model bundle once, as an MLflow pyfunc model from code
(`training/mlflow_model.py`, no pickle) whose artifact is the bundle folder, and registers that
one logged model under both names, `churn` and `ltv`; each name serves its head of the bundle.
Nothing scoring needs rides in registry tags: tags are for people (metrics, the gate's reason).
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from crm_ltv.training.bundle import MANIFEST, Kind, ModelBundle
from crm_ltv.training.config import BY_CHANCE, HIGHER_IS_BETTER, GateConfig, RegistryConfig
from crm_ltv.training.errors import BundleError, ChampionError
from crm_ltv.training.scoring import Champion, Champions
from crm_ltv.training.tracking import local_folder
from crm_ltv.training.uplift import UpliftBundle

MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
BUNDLE_ARTIFACT = "bundle"


class RegistryError(ChampionError):
    """The registry lacks what a command needs (no champion, unknown version); says what to do."""


class PreBundleVersionError(RegistryError):
    """A version registered before model bundles existed: only a retrain helps."""


SUPERSEDED = {"superseded_by", "superseded_at"}  # tags of a version the alias left


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class ThresholdCheck:
    """What the thresholds refuse, and what they passed only because the test snapshot cannot
    tell the model from a calibrated one: said in the verdict, not hidden."""

    failures: list[str]
    notes: list[str]


# A gain this small (relative to the figure beaten) is floating-point noise, not a lead: a
# one-round booster on BG/NBD's offset ranks as BG/NBD does, and its AUC read +1.1e-16 over
# BG/NBD's, which "beat" it.
TIE = 1e-12


def check_thresholds(metrics: dict[str, float], gate: GateConfig) -> ThresholdCheck:
    failures: list[str] = []
    notes: list[str] = []
    for name, bound in gate.thresholds.items():
        value = metrics.get(name)
        if value is None:
            failures.append(f"{name} not measured")
        elif not math.isfinite(value):  # NaN passed both comparisons: nothing to rank, say
            failures.append(f"{name} is {value} (nothing the test snapshot can measure it on)")
        elif bound.min is not None and value < bound.min:
            failures.append(f"{name} {value:.4f} < min {bound.min:g}")
        elif bound.max is not None and value > bound.max:
            said = f"{name} {value:.4f} > max {bound.max:g}"
            chance = metrics.get(BY_CHANCE.get(name, ""), float("nan"))
            if not bound.within_chance or not math.isfinite(chance):
                failures.append(said)
                continue
            by_chance = f"95% of calibrated models read under {chance:.4f} on this test snapshot"
            if value <= min(chance, 2 * bound.max):
                notes.append(f"{said} but within chance ({by_chance}): passes")
            elif value <= chance:
                failures.append(f"{said} ({by_chance}, but never past twice the max)")
            else:
                failures.append(f"{said} ({by_chance})")
    return ThresholdCheck(failures, notes)


def decide_promotion(
    new: dict[str, float],
    champion: dict[str, float] | None,
    gate: GateConfig,
    champion_label: str = "the champion",
    baseline: dict[str, float] | None = None,
    uncompared: bool = False,
    metric_label: str | None = None,
) -> Decision:
    """Promote only a model that passes every threshold, beats the baseline (`gate.baseline`,
    BG/NBD by default) and strictly beats the champion on `gate.compare`, all measured on the
    same held-out snapshot. The reason gives every margin, either way. `uncompared`: there is
    a champion, but its `champion` metrics could not be had (the caller says why).
    `metric_label`: what the reason calls the compared figure (by default `gate.compare`), for a
    caller whose figure is another than the metric's own, e.g. a mean over some actions."""
    metric = gate.compare
    higher = HIGHER_IS_BETTER[metric]  # the gate's names are checked by GateConfig
    notes: list[str] = []
    promote = True
    thresholds = check_thresholds(new, gate)
    failures = thresholds.failures
    if failures:
        promote = False
        notes.append("fails thresholds: " + "; ".join(failures))
    notes.extend(thresholds.notes)
    gains = (
        (gate.baseline, baseline, 0.0),
        (champion_label, champion, gate.min_gain_over_champion),
    )
    for label, other, needed in gains:
        if other is None or label is None:
            continue
        ours, theirs = new[metric], other[metric]
        gain = ours - theirs if higher else theirs - ours
        tie = TIE * max(1.0, abs(theirs))  # relative: an RMSE is money-sized
        better = gain > needed + tie
        promote &= better
        verdict = "beats" if better else "does not beat"
        short = f"; gain {gain:.2g}, not more than {needed:g}" if tie < gain <= needed else ""
        if 0 < abs(gain) <= tie:  # one ranking, its sums taken in another order
            short = "; equal but for floating-point rounding"
        if label == gate.baseline and tie < gain <= gate.min_gain_over_champion:
            # ahead, but by less than a champion must be beaten by: said, not refused (the
            # issue's rule is to beat it); a one-round booster on BG/NBD's offset does this
            short = (
                f"; within the {gate.min_gain_over_champion:g} a champion must be beaten by: "
                "a tie in all but name"
            )
        notes.append(
            f"{metric_label or metric} {ours:.4f} {verdict} {label}'s {theirs:.4f} "
            f"({margin_text(ours, theirs)}{short})"
        )
    passes = "every threshold passes" + ("" if promote else f", but {gate.baseline} is not beaten")
    if champion is None and not uncompared:
        notes.append("no champion yet" + (f" and {passes}" if not failures else ""))
    elif champion is None and not failures:
        notes.append(passes)
    return Decision(promote, "; ".join(notes))


def margin_text(ours: float, theirs: float) -> str:
    """`ours - theirs` as the two figures read at 4 decimals (0.8632 vs 0.8615: +0.0017, not
    the exact +0.00166 rounded to +0.0016); a difference those hide, in full."""
    shown = round(ours, 4) - round(theirs, 4)
    if shown == 0 and ours != theirs:
        return f"{ours - theirs:+.2g}"
    return f"{shown:+.4f}"


def model_names(registry: RegistryConfig) -> dict[Kind, str]:
    return {"churn": registry.churn_model, "ltv": registry.ltv_model}


# --- writes ----------------------------------------------------------------------------------


def log_bundle(
    bundle_dir: Path, example: pd.DataFrame, output: pd.DataFrame, model_code: Path = MODEL_CODE
) -> str:
    """Log a saved bundle under the active run, with `model_code` as its pyfunc face (the
    churn/LTV one by default, training/uplift_mlflow_model.py for uplift); its model URI."""
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(model_code),
        artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
        signature=infer_signature(example, output),
        input_example=example,
    )
    return info.model_uri


def register_version(model_uri: str, name: str, tags: dict[str, str]) -> str:
    """Registered with its tags in one step: tagged one by one afterwards, a run killed in
    between left a version with no `gate` tag ("held", not judged), which `promote` then made
    champion without a word (tester T)."""
    return str(mlflow.register_model(model_uri, name, tags=tags).version)


def tag_version(name: str, version: str, tags: dict[str, str]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def describe_model(name: str, description: str, version: str, version_description: str) -> None:
    """What the registry page shows of a model and of one of its versions."""
    client = MlflowClient()
    client.update_registered_model(name, description=description)
    client.update_model_version(name, version, description=version_description)


def set_champion(name: str, version: str, alias: str, reason: str | None = None) -> None:
    """Move `alias` to `version`; the version it leaves says so (`superseded_by`), since its
    description still tells why it was promoted."""
    client = MlflowClient()
    previous = champion_version(name, alias)
    client.set_registered_model_alias(name, alias, str(version))
    if reason is not None:
        client.set_model_version_tag(name, str(version), "promotion", reason)
    if previous is not None and str(previous.version) != str(version):
        left = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        client.set_model_version_tag(name, str(previous.version), "superseded_by", str(version))
        client.set_model_version_tag(name, str(previous.version), "superseded_at", left)
    for key in SUPERSEDED.intersection(client.get_model_version(name, str(version)).tags):
        client.delete_model_version_tag(name, str(version), key)  # champion again
    for held in _versions(name):  # "No champion yet: ... score uses vN" is over (tester O)
        text = held.description or ""
        if NOT_YET in text and str(held.version) != str(version):
            try:  # words only: the alias has moved already, and a run goes on
                client.update_model_version(name, str(held.version), description=_gate_said(text))
            except MlflowException:  # a version deleted meanwhile
                continue


def promote_by_hand(
    name: str, version: str | None, alias: str, made_by: str = "crm-ltv train"
) -> tuple[str | None, str]:
    """Move `alias` to `version` (default: the newest); the previous and the new version.
    `made_by`: the command that registers this model's versions, for the error without any."""
    chosen = str(chosen_version(name, version, made_by).version)
    previous = champion_version(name, alias)
    if previous is None or str(previous.version) != chosen:
        set_champion(name, chosen, alias)  # its `promotion` tag keeps what the gate said
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        client = MlflowClient()
        client.set_model_version_tag(name, chosen, "promoted_by_hand", when)
        text = client.get_model_version(name, chosen).description or ""
        client.update_model_version(name, chosen, description=promoted_description(text, when))
    return (previous.version if previous else None), chosen


# how training.job._until_promoted goes on after the gate's reason
NOT_YET = ". No champion yet: "


def promoted_description(description: str, when: str) -> str:
    """A version's description once promoted by hand: it said "No champion yet ... `crm-ltv
    promote` makes it champion" beside the champion alias. The gate's reason stays."""
    said = re.match(r"Promoted by hand on [^(]+\(`crm-ltv promote`\)\. ", description)
    description = description[said.end() :] if said else description  # promoted again
    return f"Promoted by hand on {when} (`crm-ltv promote`). {_gate_said(description)}".strip()


def _gate_said(description: str) -> str:
    """A description without its "No champion yet: ..." tail, once there is a champion."""
    return description.split(NOT_YET)[0] + "." if NOT_YET in description else description


GATE_TAG = "gate"  # "passed" or "held": the run's gate on the version (its reason: `promotion`)


def gate_tags(promote: bool, reason: str) -> dict[str, str]:
    """A new version's tags of its run's gate, as `gate_objection` reads them."""
    return {"promotion": reason, GATE_TAG: "passed" if promote else "held"}


def gate_objection(name: str, version: str) -> str | None:
    """Why the run's gate held a version back (a failed threshold, a model not beaten, a
    champion it could not replace), said when it is promoted by hand; None if it passed.
    Versions registered before the tag: read from the reason."""
    tags = MlflowClient().get_model_version(name, version).tags
    reason = tags.get("promotion", "")
    if GATE_TAG in tags:
        return reason if tags[GATE_TAG] == "held" else None
    return reason if "fails thresholds" in reason or "does not beat" in reason else None


def chosen_version(name: str, version: str | None, made_by: str) -> ModelVersion:
    """Version `version` of `name` (default: the newest), or an error listing those there are."""
    versions = MlflowClient().search_model_versions(f"name = '{name}'")
    if not versions:
        raise RegistryError(f"model {name!r} has no versions yet: run `{made_by}` first")
    known = {str(v.version): v for v in versions}
    chosen = (version or "").strip() or max(known, key=int)  # ' 1' pasted from a listing
    if chosen not in known:
        raise RegistryError(
            f"--version {chosen}: model {name!r} has versions {', '.join(sorted(known, key=int))}"
        )
    return known[chosen]


def horizon_of(version: ModelVersion) -> int | None:
    """The horizon a churn/LTV version predicts (its registration tag)."""
    value = version.tags.get("horizon_days")
    return int(value) if value else None


def version_of_run(name: str, run_id: str) -> ModelVersion | None:
    """The version of `name` that training run `run_id` registered (churn and ltv: a pair)."""
    found = MlflowClient().search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return max(found, key=lambda v: int(v.version), default=None)


# --- reads -----------------------------------------------------------------------------------


def champion_version(name: str, alias: str) -> ModelVersion | None:
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _versions(name: str) -> list[ModelVersion]:
    try:
        return MlflowClient().search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []


def _newest(versions: Sequence[ModelVersion]) -> ModelVersion:
    return max(versions, key=lambda v: int(v.version))


def serving_version(
    name: str, alias: str, horizon: int | None = None
) -> tuple[ModelVersion | None, str | None]:
    """The version to score with: the champion, else (none promoted yet, e.g. a first run that
    failed the gate) the newest version (of `horizon`, the partner champion's, if one predicts
    it), with a warning that says how to promote it."""
    return _serving_version(name, alias, champion_version(name, alias), horizon)


def _serving_version(
    name: str, alias: str, champion: ModelVersion | None, horizon: int | None
) -> tuple[ModelVersion | None, str | None]:
    if champion is not None:
        return champion, None
    versions = _versions(name)
    if not versions:
        return None, None
    newest = _newest(versions)
    alike = [v for v in versions if horizon is not None and horizon_of(v) == horizon]
    chosen, which = newest, "the newest"
    if alike and _newest(alike).version != newest.version:
        chosen, which = _newest(alike), f"the newest of the other champion's {horizon}-day horizon"
    return chosen, (
        f"warning: {name} has no {alias!r} version; using {which}, v{chosen.version} "
        f"({chosen.tags.get('promotion', 'not promoted')}). Promote one with "
        f"`crm-ltv promote --model {name} --version N`"
    )


def serving_versions(
    names: Mapping[Kind, str], alias: str
) -> dict[Kind, tuple[ModelVersion | None, str | None]]:
    """The churn and LTV versions to score with, each with its warning: a pair of one horizon
    where the registry holds one (a model without a champion takes the newest version of its
    partner champion's horizon, not a newer one of another horizon that could not score
    beside it)."""
    champions = {kind: champion_version(name, alias) for kind, name in names.items()}
    found = {}
    for kind, name in names.items():
        partner = champions["ltv" if kind == "churn" else "churn"]
        horizon = None if partner is None else horizon_of(partner)
        found[kind] = _serving_version(name, alias, champions[kind], horizon)
    return found


def evaluation_metrics(version: ModelVersion, kind: Kind) -> dict[str, float]:
    """A version's own evaluation metrics, exact (the UI shows them rounded): from its training
    run's metrics.json, or from the run's `lightgbm_churn_*` metrics for a version logged
    before child runs."""
    run_id = version.tags.get("run_id") or version.run_id
    try:
        summary = mlflow.artifacts.load_dict(f"runs:/{run_id}/metrics.json")
        written = summary[kind]["lightgbm"]  # null: a metric that could not be measured
        return {k: math.nan if v is None else v for k, v in written.items()}
    except (MlflowException, OSError, KeyError):
        prefix = f"lightgbm_{kind}_"
        logged = MlflowClient().get_run(version.run_id).data.metrics
        return {k.removeprefix(prefix): v for k, v in logged.items() if k.startswith(prefix)}


def download_bundle(name: str, version: str, dst: Path) -> Path:
    """The bundle folder of a registered version, downloaded under `dst`."""
    try:
        model_dir = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=str(dst)
            )
        )
    except (MlflowException, OSError) as exc:
        raise RegistryError(
            f"{name} v{version}: its files cannot be read from the registry at "
            f"{mlflow.get_tracking_uri()} ({type(exc).__name__}: {exc})".splitlines()[0]
        ) from None
    found = sorted(model_dir.rglob(MANIFEST))
    gone = None if found else _missing_run_folder(name, version)
    if gone is not None:
        raise RegistryError(
            f"{name} v{version}: its files were written under {gone}, which is not there: was the "
            "home moved or copied? MLflow records absolute paths; move the home back, or "
            "start the new one afresh (remove its mlflow.db and mlartifacts/) and train"
        )
    if not found:
        raise PreBundleVersionError(
            f"{name} v{version} holds no model bundle (registered before bundles existed): "
            "retrain with `crm-ltv train` and promote the new versions"
        )
    return found[0].parent


def _missing_run_folder(name: str, version: str) -> Path | None:
    """The local artifact root (mlartifacts/) of the run that logged a version, when it does
    not exist. (A run's own folder is there only if it logged a file.)"""
    if not mlflow.get_tracking_uri().startswith("sqlite:"):  # a server's roots: not ours to see
        return None
    try:
        run_id = MlflowClient().get_model_version(name, version).run_id
        uri = mlflow.get_run(run_id).info.artifact_uri if run_id else ""  # <root>/<run>/artifacts
    except MlflowException:  # the run is gone (`mlflow gc`): nothing to say about its folder
        return None
    folder = local_folder(uri)
    return None if folder is None or folder.parents[1].exists() else folder.parents[1]


def load_bundle(name: str, version: str) -> ModelBundle:
    with tempfile.TemporaryDirectory(prefix="crm-ltv-bundle-") as tmp:
        folder = download_bundle(name, version, Path(tmp))
        try:
            return ModelBundle.load(folder)
        except BundleError as exc:
            raise RegistryError(f"{name} v{version}: {exc}") from None


def load_uplift_champion(name: str, alias: str) -> tuple[ModelVersion, UpliftBundle] | None:
    """The uplift model under `alias` and its bundle, or None when there is none; one helper
    for the gate, the store sync and policy evaluation."""
    found = champion_version(name, alias)
    if found is None:
        return None
    with tempfile.TemporaryDirectory(prefix="crm-ltv-uplift-") as tmp:
        folder = download_bundle(name, str(found.version), Path(tmp))
        try:
            return found, UpliftBundle.load(folder)
        except BundleError as exc:
            raise RegistryError(f"{name} v{found.version}: {exc}") from None


def load_champions(
    registry: RegistryConfig, warn: Callable[[str], None] = lambda _: None
) -> Champions:
    names = model_names(registry)
    loaded = {}
    for kind, (found, warning) in serving_versions(names, registry.alias).items():
        if found is None:
            raise RegistryError(
                f"model {names[kind]!r} has no versions in the registry at "
                f"{mlflow.get_tracking_uri()}: run `crm-ltv train` (`make train` in the "
                "checkout) first"
            )
        if warning is not None:
            warn(warning)
        version = str(found.version)
        loaded[kind] = Champion(names[kind], version, kind, load_bundle(names[kind], version))
    return Champions.pair(loaded["churn"], loaded["ltv"])
