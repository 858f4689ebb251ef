"""The model bundle: everything scoring needs from one training run, as plain files.

A bundle is a folder: `bundle.json` (format, horizon, input features and their vocabularies,
the RFM reference cut points of the training population, the fitted BG/NBD + Gamma-Gamma
parameters, the churn calibration, training metadata) and the boosters in LightGBM's own text
format. No pickle and no project class name inside: renaming a module breaks no registered
version, and any runtime with lightgbm and numpy reads it.

This is the model runtime: load a bundle, encode features, predict, explain. It imports neither
mlflow nor optuna; `crm-ltv score`, the service and a Bento load bundles alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd

from crm_ltv.features.columns import Columns
from crm_ltv.features.rfm import RfmCuts
from crm_ltv.training.attributions import Method, contributions
from crm_ltv.training.baselines import BgNbdFeatures
from crm_ltv.training.errors import BundleError
from crm_ltv.training.models import Calibration, base_score, encode_inputs, ltv_value

# /2 (2026-12-07): the LTV boosters learn spend in `ltv.unit` above `ltv.offset_floor`, and the
# features hold history_share. A crm-ltv of before read such a bundle labelled /1 with no error:
# up to 10 times some customers' value (its floor of one currency unit), or a KeyError.
FORMAT = "crm-ltv-bundle/2"
# /1: the unit and floor where recorded (earlier on 2026-12-07), else 1, as each was trained
READS = ("crm-ltv-bundle/1", FORMAT)
MANIFEST = "bundle.json"
Kind = Literal["churn", "ltv"]
KINDS: tuple[Kind, ...] = ("churn", "ltv")


def bundle_format(folder: Path) -> str | None:
    """The format a bundle folder says it is in; None where it says none readable."""
    try:
        return json.loads((Path(folder) / MANIFEST).read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        return None


def format_refused(given: object) -> str | None:
    """Why this crm-ltv cannot read a bundle of the `given` format; None where it can."""
    if given in READS:
        return None
    return (
        f"format {given!r}, this crm-ltv reads {' and '.join(map(repr, READS))}: a bundle of a "
        "newer crm-ltv (upgrade this one), else retrain with `crm-ltv train`"
    )


@dataclass(frozen=True)
class ModelBundle:
    horizon_days: int
    feature_names: tuple[str, ...]  # what `build_features` gives and the models read
    model_features: tuple[str, ...]  # what the boosters read: the features plus BG/NBD's
    vocabularies: Mapping[str, tuple[str, ...]]  # categorical feature -> categories seen
    rfm_cuts: RfmCuts
    bgnbd: BgNbdFeatures | None  # fitted once, shared by both models
    churn_booster: lgb.Booster
    calibration: Calibration
    ltv_objective: str  # tweedie: one booster; hurdle: spend x P(purchase), two
    ltv_boosters: tuple[lgb.Booster, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    num_threads: int = 0  # LightGBM threads per call (0: its default); 1 in a service worker
    # The model input each model's booster boosts from (its logit or log is the starting raw
    # score, `models.base_score`): BG/NBD's churn probability and value, or None.
    churn_offset: str | None = None
    ltv_offset: str | None = None
    # Mean of each offset over the training rows: contributions give the offset input its
    # deviation from this mean, and the base value the mean.
    offset_means: Mapping[str, float] = field(default_factory=dict)
    # Predicted value is the boosters' times this: the level of the horizon after the training
    # data's end (`pipeline.set_level`); 1.0 in bundles without one.
    ltv_scale: float = 1.0
    # The unit the LTV boosters learnt spend in (`models.target_unit`, LtvModel.unit_): their
    # predictions times this are money; 1.0 in bundles before 2026-12-07 (learnt in money).
    ltv_unit: float = 1.0
    # The LTV offset's floor in money (`models.offset_floor` of the unit); 1.0, one currency
    # unit, in bundles before 2026-12-07.
    ltv_offset_floor: float = 1.0
    # How the level (LTV scale, churn calibration intercept) was set: the estimated totals.
    level: Mapping[str, Any] = field(default_factory=dict)
    # The labels the category cap kept at the training data's end (TimeSplit.known_labels),
    # which a request's features pool by; empty in bundles before 2026-12-05.
    known_labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # The training history's first transaction, where `history_share` reads the shop's history
    # from (TimeSplit.history_start); None in bundles before 2026-12-06.
    history_start: pd.Timestamp | None = None

    def with_threads(self, num_threads: int) -> ModelBundle:
        return replace(self, num_threads=num_threads)

    @property
    def encoding_key(self) -> str:
        """Equal for bundles that encode any input alike (both champions of one run)."""
        return _digest(self._encoding_state())

    def _encoding_state(self) -> dict[str, Any]:
        return {
            "features": list(self.feature_names),
            "model_features": list(self.model_features),
            "vocabularies": {k: list(v) for k, v in self.vocabularies.items()},
            "bgnbd": self.bgnbd.to_params() if self.bgnbd is not None else None,
            "rfm_cuts": self.rfm_cuts.to_dict(),
        }

    # --- scoring ---------------------------------------------------------------------------

    def encode(self, X: Columns) -> np.ndarray:
        """The boosters' input matrix from a feature table or its columns by name."""
        return encode_inputs(
            X,
            self.feature_names,
            self.model_features,
            self.vocabularies,
            self.bgnbd.added if self.bgnbd is not None else None,
        )

    def churn_probability(self, encoded: np.ndarray) -> np.ndarray:
        raw = self.churn_booster.predict(encoded, raw_score=True, num_threads=self.num_threads)
        base = self.base(encoded, "churn")
        return self.calibration.apply(raw if base is None else raw + base)

    def predicted_value(self, encoded: np.ndarray) -> np.ndarray:
        value = ltv_value(
            self.ltv_boosters, encoded, self.num_threads, self.base(encoded, "ltv"), self.ltv_unit
        )
        return value * self.ltv_scale if self.ltv_scale != 1.0 else value

    def base(self, encoded: np.ndarray, kind: Kind) -> np.ndarray | None:
        """The raw score the model's (spend) booster starts from, or None."""
        if kind == "churn":
            return base_score(encoded, self.model_features, self.churn_offset)
        return base_score(encoded, self.model_features, self.ltv_offset, self.ltv_offset_floor)

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """churn_probability and predicted_value per row of a feature table."""
        encoded = self.encode(X)
        return pd.DataFrame(
            {
                "churn_probability": self.churn_probability(encoded),
                "predicted_value": self.predicted_value(encoded),
            },
            index=X.index,
        )

    def boosters(self, kind: Kind) -> tuple[lgb.Booster, ...]:
        """Whose raw scores add up to the model's (churn: log-odds; LTV: log value)."""
        return (self.churn_booster,) if kind == "churn" else self.ltv_boosters

    def contributions(self, kind: Kind, encoded: np.ndarray, method: Method) -> np.ndarray:
        """(rows, model_features + base) contributions to the raw score (training.attributions);
        the baseline the model boosts from counts in the base."""
        out = sum(
            (contributions(b, encoded, method, self.num_threads) for b in self.boosters(kind)),
            start=np.zeros((len(encoded), len(self.model_features) + 1)),
        )
        base = self.base(encoded, kind)
        if base is not None:
            mean = float(self.offset_means.get(kind, 0.0))
            offset = self.churn_offset if kind == "churn" else self.ltv_offset
            out[:, list(self.model_features).index(offset)] += base - mean
            out[:, -1] += mean
        if kind == "ltv" and base is None and self.ltv_unit != 1.0:
            # the booster's own base value is log spend in its unit (with an offset, the start
            # base - log(unit) and the unit cancel: `models.ltv_value`)
            out[:, -1] += np.log(self.ltv_unit)
        if kind == "ltv" and self.ltv_scale != 1.0:
            out[:, -1] += np.log(self.ltv_scale)
        return out

    # --- files -----------------------------------------------------------------------------

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.churn_booster.save_model(folder / "churn.txt")
        ltv_files = [f"ltv_{i}.txt" for i in range(len(self.ltv_boosters))]
        for name, booster in zip(ltv_files, self.ltv_boosters, strict=True):
            booster.save_model(folder / name)
        manifest = {
            "format": FORMAT,
            "horizon_days": self.horizon_days,
            **self._encoding_state(),
            "churn": {
                "booster": "churn.txt",
                "calibration": _calibration_dict(self.calibration),
                "offset": self.churn_offset,
                "offset_mean": self.offset_means.get("churn"),
            },
            "ltv": {
                "objective": self.ltv_objective,
                "boosters": ltv_files,
                "offset": self.ltv_offset,
                "offset_mean": self.offset_means.get("ltv"),
                "scale": self.ltv_scale,
                "unit": self.ltv_unit,
                "offset_floor": self.ltv_offset_floor,
            },
            "level": dict(self.level),
            "known_labels": {k: list(v) for k, v in self.known_labels.items()},
            "history_start": None if self.history_start is None else self.history_start.isoformat(),
            "metadata": dict(self.metadata),
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder: Path) -> ModelBundle:
        path = Path(folder) / MANIFEST
        if not path.exists():
            raise BundleError(
                f"{folder}: no {MANIFEST}: not a crm-ltv model bundle (a model registered "
                "before bundles existed): retrain with `crm-ltv train` and promote the new versions"
            )
        try:
            raw = json.loads(path.read_text())
            refused = format_refused(raw.get("format"))
            if refused is not None:
                raise BundleError(f"{path}: {refused}")
            older = raw["format"] != FORMAT
            churn, ltv = raw["churn"], raw["ltv"]
            return cls(
                horizon_days=int(raw["horizon_days"]),
                feature_names=tuple(raw["features"]),
                model_features=tuple(raw["model_features"]),
                vocabularies={k: tuple(v) for k, v in raw["vocabularies"].items()},
                rfm_cuts=RfmCuts.from_dict(raw["rfm_cuts"]),
                bgnbd=BgNbdFeatures.from_params(raw["bgnbd"]) if raw["bgnbd"] else None,
                churn_booster=_booster(folder, churn["booster"]),
                calibration=_calibration(churn["calibration"]),
                ltv_objective=str(ltv["objective"]),
                ltv_boosters=tuple(_booster(folder, name) for name in ltv["boosters"]),
                metadata=raw.get("metadata", {}),
                churn_offset=churn.get("offset"),
                ltv_offset=ltv.get("offset"),
                offset_means={
                    kind: float(part["offset_mean"])
                    for kind, part in (("churn", churn), ("ltv", ltv))
                    if part.get("offset_mean") is not None
                },
                ltv_scale=float(ltv.get("scale", 1.0)),
                # the /1 bundles of earlier on 2026-12-07 record a unit and floor; older ones, none
                ltv_unit=float(ltv.get("unit", 1.0) if older else ltv["unit"]),
                ltv_offset_floor=float(
                    ltv.get("offset_floor", 1.0) if older else ltv["offset_floor"]
                ),
                level=raw.get("level", {}),
                known_labels={k: tuple(v) for k, v in raw.get("known_labels", {}).items()},
                history_start=_timestamp(raw.get("history_start")),
            )
        except BundleError:
            raise
        except (KeyError, TypeError, ValueError, lgb.basic.LightGBMError) as exc:
            raise BundleError(f"{path}: not a readable model bundle ({exc})") from None


def _booster(folder: Path, name: str) -> lgb.Booster:
    return lgb.Booster(model_file=str(Path(folder) / name))


def _calibration(raw: Mapping[str, Any]) -> Calibration:
    if raw["method"] == "isotonic":
        return Calibration("isotonic", x=tuple(raw["x"]), y=tuple(raw["y"]))
    return Calibration("sigmoid", coef=float(raw["coef"]), intercept=float(raw["intercept"]))


def _calibration_dict(calibration: Calibration) -> dict[str, Any]:
    out: dict[str, Any] = {"method": calibration.method}
    if calibration.method == "isotonic":
        return out | {"x": list(calibration.x), "y": list(calibration.y)}
    return out | {"coef": calibration.coef, "intercept": calibration.intercept}


def _digest(state: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def _timestamp(raw: str | None) -> pd.Timestamp | None:
    return None if raw is None else pd.Timestamp(raw)
