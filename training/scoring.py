"""Scores of every customer from the champion models: `crm-ltv score` and the service share it."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from crm_ltv.features.columns import Columns
from crm_ltv.features.rfm import RfmCuts
from crm_ltv.training.config import RegistryConfig
from crm_ltv.training.registry import Champion, RegistryError, load_champion
from mlflow import MlflowClient

SCORE_COLUMNS = (
    "customer_id",
    "churn_probability",
    "predicted_value",
    "horizon_days",
    "rfm_segment",
    "lifecycle_stage",
)


@dataclass(frozen=True)
class Champions:
    churn: Champion
    ltv: Champion

    @property
    def horizon_days(self) -> int:
        return self.churn.horizon_days

    @property
    def rfm_cuts(self) -> RfmCuts | None:
        """The RFM reference population of the churn champion (both share the training run's)."""
        return self.churn.rfm_cuts

    @functools.cached_property
    def encode_alike(self) -> bool:
        return self.churn.model.encoding() == self.ltv.model.encoding()

    @property
    def versions(self) -> dict[str, str]:
        return {"churn": self.churn.version, "ltv": self.ltv.version}


def load_champions(registry: RegistryConfig) -> Champions:
    client = MlflowClient()
    churn = load_champion(client, registry.churn_model, registry.alias)
    ltv = load_champion(client, registry.ltv_model, registry.alias)
    return pair_champions(churn, ltv)


def pair_champions(churn: Champion, ltv: Champion) -> Champions:
    if churn.horizon_days != ltv.horizon_days:
        raise RegistryError(
            f"champions disagree on the horizon: {churn.name} v{churn.version} predicts "
            f"{churn.horizon_days} days, {ltv.name} v{ltv.version} {ltv.horizon_days} days; "
            "promote a matching pair with `crm-ltv promote`"
        )
    return Champions(churn, ltv)


@dataclass(frozen=True)
class ModelInputs:
    """The features encoded for each champion (see `_Booster.encode`)."""

    churn: np.ndarray
    ltv: np.ndarray

    @classmethod
    def of(cls, features: Columns, champions: Champions) -> ModelInputs:
        """From a feature table or its columns by name (the service's requests); encoded once
        when both champions come from one training run and so read the same inputs."""
        churn = champions.churn.model.encode(features)
        if champions.encode_alike:
            return cls(churn, churn)
        return cls(churn, champions.ltv.model.encode(features))


@dataclass(frozen=True)
class ModelScores:
    churn_probability: np.ndarray
    predicted_value: np.ndarray

    @classmethod
    def of(cls, inputs: ModelInputs, champions: Champions) -> ModelScores:
        return cls(
            champions.churn.model.predict_proba_encoded(inputs.churn)[:, 1],
            champions.ltv.model.predict_encoded(inputs.ltv),
        )


def score_customers(features: pd.DataFrame, champions: Champions) -> pd.DataFrame:
    """One row per customer of a feature table (indexed by customer_id), in SCORE_COLUMNS."""
    scores = ModelScores.of(ModelInputs.of(features, champions), champions)
    out = pd.DataFrame(
        {
            "customer_id": features.index.astype(str),
            "churn_probability": scores.churn_probability,
            "predicted_value": scores.predicted_value,
            "horizon_days": champions.horizon_days,
            "rfm_segment": features["rfm_segment"].astype(str).to_numpy(),
            "lifecycle_stage": features["lifecycle_stage"].astype(str).to_numpy(),
        }
    )
    return out[list(SCORE_COLUMNS)]
