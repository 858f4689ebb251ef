"""Scores of every customer from the champion bundles: `crm-ltv score` and the service share it.

No mlflow here: the registry (training.registry) or the BentoML store (serving.store) hands over
bundles already loaded.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from crm_ltv.features.columns import Columns
from crm_ltv.features.config import FeatureConfig, config_digest
from crm_ltv.features.registry import feature_registry, optional_input_features
from crm_ltv.features.rfm import RfmCuts, rfm_columns
from crm_ltv.features.wording import minute_or_finer
from crm_ltv.training.bundle import Kind, ModelBundle
from crm_ltv.training.errors import ChampionError

SCORE_COLUMNS = (
    "customer_id",
    "churn_probability",
    "predicted_value",
    "horizon_days",
    "rfm_segment",
    "lifecycle_stage",
)


# How far from a champion's level cutoff a score may be taken without a warning
LEVEL_TOLERANCE = pd.Timedelta(days=30)


@dataclass(frozen=True)
class Champion:
    """One registered model version: a bundle, of which it serves one head (churn or ltv)."""

    name: str
    version: str
    kind: Kind
    bundle: ModelBundle


@dataclass(frozen=True)
class Champions:
    churn: Champion
    ltv: Champion

    @property
    def horizon_days(self) -> int:
        return self.churn.bundle.horizon_days

    @property
    def rfm_cuts(self) -> RfmCuts:
        """The RFM reference population of the churn champion's training run."""
        return self.churn.bundle.rfm_cuts

    @property
    def known_labels(self) -> Mapping[str, tuple[str, ...]] | None:
        """The labels the category cap kept at the churn champion's training data's end: a
        request's features pool rare ones as that population did (None: a bundle from before
        2026-12-05, whose requests pool by their own customers)."""
        return self.churn.bundle.known_labels or None

    @property
    def history_start(self) -> pd.Timestamp | None:
        """Where the champions' training history began: `history_share` reads from it. The
        churn champion's, else the LTV champion's: a churn bundle from before 2026-12-06 carries
        none, and its model does not read the feature (None: neither does; features then read
        from their own data)."""
        if self.churn.bundle.history_start is not None:
            return self.churn.bundle.history_start
        return self.ltv.bundle.history_start

    def history_start_warning(self) -> str | None:
        """Champions of two runs whose histories began on other days: both read history_share
        from the churn champion's start, so the LTV model's differs a little from its training
        rows' (a retrain on a moving window of the history, its LTV version kept by the gate)."""
        starts = (self.churn.bundle.history_start, self.ltv.bundle.history_start)
        if None in starts or starts[0] == starts[1]:
            return None
        return (
            f"warning: {self.churn.name} v{self.churn.version} was trained on a history from "
            f"{starts[0]:%Y-%m-%d}, {self.ltv.name} v{self.ltv.version} on one from "
            f"{starts[1]:%Y-%m-%d}: both read history_share from {starts[0]:%Y-%m-%d}; promote "
            f"the pair of one run (`crm-ltv promote --model {self.churn.name} --pair`) to "
            "score each as it was trained"
        )

    @functools.cached_property
    def encode_alike(self) -> bool:
        return self.churn.bundle.encoding_key == self.ltv.bundle.encoding_key

    @property
    def versions(self) -> dict[str, str]:
        return {"churn": self.churn.version, "ltv": self.ltv.version}

    def feature_args(self) -> dict[str, Any]:
        """The feature builders' arguments that make the rows these champions read (their RFM
        cut points, categories and history start), wherever rows are built for them."""
        return {
            "rfm_cuts": self.rfm_cuts,
            "known_labels": self.known_labels,
            "history_start": self.history_start,
        }

    def features_config_warning(self, features: FeatureConfig) -> str | None:
        """Features built with another features config than a champion was trained with
        (other windows, lifecycle rules, category caps) are not what it learnt from."""
        current = config_digest(features)
        stale = [
            f"{c.name} v{c.version}"
            for c in (self.churn, self.ltv)
            if c.bundle.metadata.get("features_config", current) != current
        ]
        if not stale:
            return None
        return (
            f"warning: configs/features.yaml differs from the one {' and '.join(stale)} "
            f"{'was' if len(stale) == 1 else 'were'} trained with: its scores rest on "
            "features it did not learn from; retrain, or restore that features.yaml"
        )

    def warnings(self, features: FeatureConfig, cutoff: pd.Timestamp | None = None) -> list[str]:
        """What the champions' scores rest on that these do not match: another features config,
        a level of another season (scores at `cutoff`; none without one), two history starts.
        `crm-ltv score`, `crm-ltv features --champions` and the service say them alike."""
        said = (
            self.features_config_warning(features),
            self.level_warning(cutoff) if cutoff is not None else None,
            self.history_start_warning(),
        )
        return [warning for warning in said if warning is not None]

    def level_warning(self, cutoff: pd.Timestamp) -> str | None:
        """A champion's level (the totals and churn rate its scores add up to) is set for the
        horizon after its training data's end; scored at a date far from it, a seasonal shop's
        totals are off (Online Retail II, a model of the whole file scored as of 2011-09-10:
        0.37x the next 90 days' spend), though the ranking is not."""
        far = []
        for c in (self.churn, self.ltv):
            at = c.bundle.level.get("cutoff")
            said = f"{c.name} v{c.version}'s for the {self.horizon_days} days after {at}"
            if at is None:  # no level set (no year of history, level.seasonal off, Dask): its
                at = c.bundle.metadata.get("labels_through")  # training windows' average
                said = f"{c.name} v{c.version}'s of its training windows (labels up to {at})"
            if at is not None and abs(cutoff - pd.Timestamp(at)) > LEVEL_TOLERANCE:
                far.append(said)
        if not far:
            return None
        return (
            f"warning: scoring as of {minute_or_finer(cutoff)}, but the level (total value, churn "
            f"rate) is {' and '.join(far)}: in a seasonal shop the totals and probabilities "
            "may be off (the ranking is not); for a forecast at this date, train on the data "
            "up to it"
        )

    def money_unit_warning(self, monetary_total: pd.Series) -> str | None:
        """Amounts in another unit than the champions were trained in (cents for euros): their
        money features are read in the training unit (tester F: a file in cents scored by a
        model of euros read 0.73 to 155 times each customer's value, without a word). Said when
        the scored buyers' median spend (net spend above 0: refunds would pull it to 0) lies
        ten times beyond the training population's quintile cut points (the bundle's RFM
        cuts): no shop's customers move so far between two fits. A factor under 10 passes."""
        cuts = self.rfm_cuts.monetary
        bought = monetary_total[monetary_total > 0]  # a refund-heavy file's net spend near 0
        median = float(bought.median()) if len(bought) else math.nan
        if not cuts or not (min(cuts) > 0 and median > 0):  # refunds only: nothing to compare
            return None
        low, high = min(cuts), max(cuts)
        if low / 10 <= median <= high * 10:
            return None
        return (
            f"warning: the scored buyers' median spend is {median:,.2f}, the champions' "
            f"training customers' quintiles {low:,.2f} to {high:,.2f}: are the amounts in "
            "another unit or currency? The models read money in the unit they were trained "
            "on; score amounts in that unit"
        )

    def unbuilt_features(
        self, features: FeatureConfig, more: Mapping[str, Sequence[str]] | None = None
    ) -> str | None:
        """Features a champion (or `more`: label -> names, the uplift model) reads that this
        features config does not build (other windows): every customer would fail to score, so
        this is said once, before any work, instead of on every request."""
        built = {s.name for s in feature_registry(features)}
        readers = {f"{c.name} v{c.version}": c.bundle.feature_names for c in (self.churn, self.ltv)}
        unbuilt: dict[str, None] = {}
        who = []
        for label, names in (readers | dict(more or {})).items():
            lacking = [n for n in names if n not in built]
            unbuilt |= dict.fromkeys(lacking)
            who += [label] if lacking else []
        if not unbuilt:
            return None
        return (
            f"configs/features.yaml does not build {', '.join(unbuilt)}, which "
            f"{' and '.join(who)} read{'s' if len(who) == 1 else ''} (trained with another "
            "features.yaml, e.g. other windows_days): restore that one, or retrain"
        )

    @classmethod
    def pair(cls, churn: Champion, ltv: Champion) -> Champions:
        if churn.bundle.horizon_days != ltv.bundle.horizon_days:
            raise ChampionError(
                f"champions disagree on the horizon: {churn.name} v{churn.version} predicts "
                f"{churn.bundle.horizon_days} days, {ltv.name} v{ltv.version} "
                f"{ltv.bundle.horizon_days} days; promote a matching pair with `crm-ltv promote "
                f"--model {churn.name} --version N --pair`"
            )
        return cls(churn, ltv)


@dataclass(frozen=True)
class ModelInputs:
    """The features encoded for each champion (see `_Booster.encode`)."""

    churn: np.ndarray
    ltv: np.ndarray

    @classmethod
    def of(cls, features: Columns, champions: Champions) -> ModelInputs:
        """From a feature table or its columns by name (the service's requests); encoded once
        when both champions come from one training run and so read the same inputs."""
        churn = champions.churn.bundle.encode(features)
        if champions.encode_alike:
            return cls(churn, churn)
        ltv = champions.ltv.bundle
        if ltv.rfm_cuts != champions.rfm_cuts:  # champions of two runs: each its own RFM scores
            rescored = rfm_columns(
                features["recency_days"], features["frequency"], features["monetary_total"],
                ltv.rfm_cuts,
            )  # fmt: skip
            features = {**{n: features[n] for n in ltv.feature_names}, **rescored}
        return cls(churn, ltv.encode(features))


@dataclass(frozen=True)
class ModelScores:
    churn_probability: np.ndarray
    predicted_value: np.ndarray

    @classmethod
    def of(cls, inputs: ModelInputs, champions: Champions) -> ModelScores:
        return cls(
            champions.churn.bundle.churn_probability(inputs.churn),
            champions.ltv.bundle.predicted_value(inputs.ltv),
        )


def scoring_features(
    transactions: pd.DataFrame,
    cutoff: pd.Timestamp,
    config: FeatureConfig,
    customers: pd.DataFrame | None,
    champions: Champions,
) -> pd.DataFrame:
    """Features as the champions are scored on them (`crm-ltv score`, the service, the
    benchmarks): RFM scores against their training population's cut points and categories
    pooled as their training kept them, so a customer's row does not depend on who else is
    scored."""
    from crm_ltv.features.builders import build_features

    return build_features(transactions, cutoff, config, customers, **champions.feature_args())


def absent_inputs(columns: Iterable[str], champions: Champions) -> list[str]:
    """Features the champions read that a feature table of these columns lacks for want of
    an optional input (no customers table, or one without acquisition_channel; no categories,
    no channels)."""
    optional, present = optional_input_features(), set(columns)
    read = (*champions.churn.bundle.feature_names, *champions.ltv.bundle.feature_names)
    return [n for n in dict.fromkeys(read) if n in optional and n not in present]


def absent_inputs_warning(absent: Sequence[str]) -> str:
    return (
        f"warning: the champion models read {', '.join(absent)}, which these data cannot make "
        "(no customers table, or no such column in it; no category or channel column): "
        "scored as missing values, as the service scores a customer without them"
    )


def score_customers(features: pd.DataFrame, champions: Champions) -> pd.DataFrame:
    """One row per customer of a feature table (indexed by customer_id), in SCORE_COLUMNS.
    Features of an absent optional input are scored as missing, as the service scores a
    customer sent without them."""
    absent = absent_inputs(features.columns, champions)
    if absent:
        kinds = optional_input_features()
        features = features.assign(
            **{
                n: pd.Series(None, features.index, object if kinds[n] == "categorical" else float)
                for n in absent
            }
        )
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
