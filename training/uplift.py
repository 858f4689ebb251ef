"""Uplift models: how much each CRM action changes a customer's purchase probability and value.

One X-learner per action (Kunzel et al. 2019) on LightGBM, fitted on randomized campaigns
(treatment vs control) with features at each send time. Stage 1 fits the outcome of each group;
stage 2 regresses the imputed individual effects (a treated customer's outcome minus what the
control model expected, and the mirror for control customers); the effect is the two stage-2
models weighted by the treatment share. The X-learner, not the T-learner, because a campaign's
effect is a few points over a noisy 10% base rate: learning the effect directly keeps the two
outcome models' separate noise out of the ranking.

This is also the uplift model runtime (`UpliftBundle`: load, encode, effect per action), read
by the service; it imports neither mlflow nor optuna. The bundle is a folder like the churn/LTV
one (training.bundle): `bundle.json` and LightGBM text boosters, no pickle.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from crm_ltv.features.columns import Columns
from crm_ltv.features.config import FeatureConfig, config_digest
from crm_ltv.training.bundle import MANIFEST
from crm_ltv.training.errors import BundleError
from crm_ltv.training.models import encode_inputs, fit_vocabularies, run_params

FORMAT = "crm-ltv-uplift/1"
MODEL_CODE = Path(__file__).with_name("uplift_mlflow_model.py")  # its MLflow pyfunc face
Outcome = Literal["purchase", "value"]
OUTCOMES: tuple[Outcome, ...] = ("purchase", "value")
DEFAULT_PARAMS: Mapping[str, Any] = {
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_child_samples": 100,
    "lambda_l2": 5.0,
    "feature_fraction": 0.8,
}


@dataclass(frozen=True)
class Effect:
    """A fitted X-learner's second stage: effect = share x control + (1 - share) x treated,
    where `control` learnt the effect from control rows and `treated` from treated rows."""

    treatment_share: float
    control: lgb.Booster
    treated: lgb.Booster

    def predict(self, encoded: np.ndarray, num_threads: int = 0) -> np.ndarray:
        g = self.treatment_share
        tau0 = self.control.predict(encoded, num_threads=num_threads)
        tau1 = self.treated.predict(encoded, num_threads=num_threads)
        return g * tau0 + (1.0 - g) * tau1


class XLearner(BaseEstimator):
    """X-learner on an encoded matrix: `fit(X, treated, y)`; `predict(X)` is the effect of
    treatment on y per row. `binary` outcomes fit stage 1 as probabilities."""

    def __init__(
        self,
        binary: bool = True,
        params: Mapping[str, Any] | None = None,
        n_estimators: int = 150,
        categorical: Sequence[int] = (),
        random_state: int = 42,
        n_jobs: int = 2,
    ) -> None:
        self.binary = binary
        self.params = params
        self.n_estimators = n_estimators
        self.categorical = categorical
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: np.ndarray, treated: np.ndarray, y: np.ndarray) -> XLearner:
        treated = np.asarray(treated, dtype=bool)
        y = np.asarray(y, dtype="float64")
        if treated.all() or not treated.any():
            raise ValueError("XLearner.fit needs treated and control rows")
        x1, y1, x0, y0 = X[treated], y[treated], X[~treated], y[~treated]
        stage1 = "binary" if self.binary else "regression"
        mu1 = self._train(stage1, x1, y1)
        mu0 = self._train(stage1, x0, y0)
        d1 = y1 - mu0.predict(x1)  # what treatment added for the treated
        d0 = mu1.predict(x0) - y0  # what it would have added for the controls
        self.effect_ = Effect(
            float(treated.mean()),
            self._train("regression", x0, d0),
            self._train("regression", x1, d1),
        )
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "effect_"):
            raise ValueError("XLearner is not fitted yet")
        return self.effect_.predict(X, self.n_jobs)

    def _train(self, objective: str, X: np.ndarray, y: np.ndarray) -> lgb.Booster:
        params = {
            **DEFAULT_PARAMS,
            **(self.params or {}),
            "objective": objective,
            **run_params(self.random_state, self.n_jobs),
        }
        data = lgb.Dataset(X, y, categorical_feature=list(self.categorical) or "auto")
        return lgb.train(params, data, num_boost_round=self.n_estimators)


@dataclass(frozen=True)
class ActionUplift:
    """One action's effect on the purchase probability and on value over the response window
    (None without revenue of both groups: no value effect rather than one learnt from zeros)."""

    purchase: Effect
    value: Effect | None
    contacts: int  # training rows (treated of this action plus controls)


@dataclass(frozen=True)
class UpliftBundle:
    """Every action's uplift model, with the features and vocabularies they read."""

    feature_names: tuple[str, ...]
    vocabularies: Mapping[str, tuple[str, ...]]
    actions: Mapping[str, ActionUplift]
    response_window_days: int
    metadata: Mapping[str, Any] = field(default_factory=dict)
    num_threads: int = 0

    def with_threads(self, num_threads: int) -> UpliftBundle:
        return replace(self, num_threads=num_threads)

    def encode(self, X: Columns) -> np.ndarray:
        """The boosters' input from a feature table or its columns by name (the service's)."""
        return encode_inputs(X, self.feature_names, self.feature_names, self.vocabularies)

    def effects(self, encoded: np.ndarray, outcome: Outcome = "purchase") -> dict[str, np.ndarray]:
        """Predicted effect of each action per row: change in purchase probability, or in
        value over the response window."""
        fitted = {name: getattr(model, outcome) for name, model in self.actions.items()}
        return {
            name: effect.predict(encoded, self.num_threads)
            for name, effect in fitted.items()
            if effect is not None
        }

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """`<action>_purchase_effect` and `<action>_value_effect` per row of a feature table."""
        encoded = self.encode(X)
        columns = {
            f"{name}_{outcome}_effect": values
            for outcome in OUTCOMES
            for name, values in self.effects(encoded, outcome).items()
        }
        return pd.DataFrame(columns, index=X.index)

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        actions = {}
        for name, model in self.actions.items():
            entry: dict[str, Any] = {"contacts": model.contacts}
            for outcome in OUTCOMES:
                effect: Effect | None = getattr(model, outcome)
                if effect is None:
                    continue
                files = {side: f"{name}_{outcome}_{side}.txt" for side in ("control", "treated")}
                effect.control.save_model(folder / files["control"])
                effect.treated.save_model(folder / files["treated"])
                entry[outcome] = {"treatment_share": effect.treatment_share, **files}
            actions[name] = entry
        manifest = {
            "format": FORMAT,
            "features": list(self.feature_names),
            "vocabularies": {k: list(v) for k, v in self.vocabularies.items()},
            "response_window_days": self.response_window_days,
            "actions": actions,
            "metadata": dict(self.metadata),
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder: Path) -> UpliftBundle:
        path = Path(folder) / MANIFEST
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BundleError(f"{path}: not a readable uplift bundle ({exc})") from None
        if raw.get("format") != FORMAT:
            raise BundleError(
                f"{path}: format {raw.get('format')!r}, this crm-ltv reads {FORMAT!r}: "
                "retrain with `crm-ltv uplift`"
            )
        try:
            actions = {
                name: ActionUplift(
                    _effect(Path(folder), entry["purchase"]),
                    _effect(Path(folder), entry["value"]) if "value" in entry else None,
                    int(entry["contacts"]),
                )
                for name, entry in raw["actions"].items()
            }
            return cls(
                feature_names=tuple(raw["features"]),
                vocabularies={k: tuple(v) for k, v in raw["vocabularies"].items()},
                actions=actions,
                response_window_days=int(raw["response_window_days"]),
                metadata=raw.get("metadata", {}),
            )
        except (KeyError, TypeError, ValueError, lgb.basic.LightGBMError) as exc:
            raise BundleError(f"{path}: not a readable uplift bundle ({exc})") from None


@dataclass(frozen=True)
class UpliftChampion:
    """The registered uplift version the service decides with."""

    name: str
    version: str
    bundle: UpliftBundle

    def features_config_warning(self, features: FeatureConfig) -> str | None:
        """As Champions.features_config_warning: features built with another features config
        than this model learnt from."""
        trained = self.bundle.metadata.get("features_config")
        if trained is None or trained == config_digest(features):
            return None
        return (
            f"warning: configs/features.yaml differs from the one {self.name} v{self.version} "
            "was trained with: its effects rest on features it did not learn from; retrain "
            "with `crm-ltv uplift`, or restore that features.yaml"
        )

    def effects(self, features: Columns) -> dict[str, np.ndarray] | None:
        """Each action's predicted purchase effect per row, or None when the features lack one
        the models read (the scorer requires them of a request; then the priors apply)."""
        if any(name not in features for name in self.bundle.feature_names):
            return None
        return self.bundle.effects(self.bundle.encode(features))


def _effect(folder: Path, raw: Mapping[str, Any]) -> Effect:
    return Effect(
        float(raw["treatment_share"]),
        lgb.Booster(model_file=str(folder / raw["control"])),
        lgb.Booster(model_file=str(folder / raw["treated"])),
    )


def fit_uplift(
    features: pd.DataFrame,
    action: pd.Series,
    treated: pd.Series,
    converted: pd.Series,
    revenue: pd.Series,
    response_window_days: int,
    params: Mapping[str, Any] | None = None,
    n_estimators: int = 150,
    pool_controls: bool = False,
    seed: int = 42,
    n_jobs: int = 2,
    metadata: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] = lambda _: None,
    outcomes: Sequence[Outcome] = OUTCOMES,
) -> UpliftBundle:
    """One X-learner per treated action, for purchase and value, from contacts aligned by row.

    With `pool_controls`, each action learns from its treated contacts and every control contact:
    when the action was drawn at random, a control customer got nothing whichever action was
    drawn, so all controls are one randomized comparison group (four times the rows the action's
    own controls give). Without it, an action's controls are the rows of that action only.
    The value learners skip rows whose revenue is missing (NaN); an action without revenue on
    both sides (or `outcomes` without "value") gets no value effect. Every action needs
    controls (uplift_job checks before)."""
    vocabularies = fit_vocabularies(features)
    names = tuple(str(c) for c in features.columns)
    X = encode_inputs(features, names, names, vocabularies)
    categorical = [i for i, n in enumerate(names) if n in vocabularies]
    is_treated = treated.to_numpy(dtype=bool)
    actions = action.astype(str).to_numpy()
    columns = {"purchase": converted, "value": revenue}
    ys = {outcome: columns[outcome].to_numpy("float64") for outcome in outcomes}
    models = {}
    for name in sorted(set(actions[is_treated])):
        own = actions == name
        rows = (own | ~is_treated) if pool_controls else own
        progress(
            f"{name}: {int((rows & is_treated).sum()):,} treated, "
            f"{int((rows & ~is_treated).sum()):,} control contacts"
        )
        fitted: dict[str, Effect] = {}
        for outcome, y in ys.items():
            use = rows & np.isfinite(y)
            if outcome == "value" and not ((use & is_treated).any() and (use & ~is_treated).any()):
                continue
            fitted[outcome] = (
                XLearner(
                    binary=outcome == "purchase",
                    params=params,
                    n_estimators=n_estimators,
                    categorical=categorical,
                    random_state=seed,
                    n_jobs=n_jobs,
                )
                .fit(X[use], is_treated[use], y[use])
                .effect_
            )
        models[name] = ActionUplift(fitted["purchase"], fitted.get("value"), int(rows.sum()))
    return UpliftBundle(
        names, vocabularies, models, response_window_days, dict(metadata or {}), n_jobs
    )
