"""A scoring request, end to end and free of HTTP: checks, features, scores, reasons, actions.

Features are built by `features.builders` (the code training uses) with the champion's RFM
reference cut points, and scored by `training.scoring.ModelInputs` and `ModelScores` (the code
behind `crm-ltv score`), so the service and the batch command agree to the last digit. A request
stays in numpy columns throughout (`FeatureColumns`): on a few customers a DataFrame's
per-column overhead would cost more than the features and the models together.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import pandas as pd

from crm_ltv.features.arrays import Codes, CustomerAttributes, TransactionArrays
from crm_ltv.features.builders import Column, FeatureColumns, feature_columns
from crm_ltv.features.config import LIFECYCLE_STAGES, FeatureConfig
from crm_ltv.features.loading import label_of
from crm_ltv.features.registry import MAX_ABS_FEATURE, FeatureSpec, feature_registry
from crm_ltv.features.rfm import RFM_SEGMENTS
from crm_ltv.serving.config import NbaConfig, ServingConfig
from crm_ltv.serving.nba import Customer, Decision, decide
from crm_ltv.serving.schemas import (
    CustomerIn,
    CustomerScore,
    customer_label,
    request_error,
)
from crm_ltv.training.attributions import path_table
from crm_ltv.training.scoring import Champions, ModelInputs, ModelScores
from crm_ltv.training.uplift import UpliftChampion

Scored = tuple[Customer, list[dict]]  # the policy's view of a scored customer, reason codes
# Categorical features whose values the service can check; the others are free text.
KNOWN_VALUES = {"rfm_segment": RFM_SEGMENTS, "lifecycle_stage": LIFECYCLE_STAGES}


def _out_of_bounds(value: float, spec: FeatureSpec) -> str | None:
    """How a feature value lies outside what the builders make, or None."""
    if spec.low is not None and value < spec.low:
        return f"below {spec.low:g}"
    if spec.high is not None and value > spec.high:
        return f"above {spec.high:g}"
    if spec.integer and not float(value).is_integer():
        hidden = "." not in f"{value:g}"  # the message's :g shows 2.0000001 as 2
        return "not a whole number" + (f" ({value!r})" if hidden else "")
    return None


@dataclass(frozen=True)
class Scorer:
    champions: Champions
    feature_config: FeatureConfig
    nba: NbaConfig
    settings: ServingConfig
    uplift: UpliftChampion | None = None  # effects per action; the nba.yaml priors without it

    def __post_init__(self) -> None:
        if self.settings.reason_method == "path":  # tabulated while loading, not on a request
            for champion in (self.champions.churn, self.champions.ltv):
                for booster in champion.bundle.boosters(champion.kind):
                    path_table(booster)

    @functools.cached_property
    def model_features(self) -> list[str]:
        """What the champion models read, in the churn model's order, then what the uplift
        model reads besides: a request that sends features must send these (no silent fall back
        to the priors for want of an uplift input)."""
        names = list(self.champions.churn.bundle.feature_names)
        uplift = self.uplift.bundle.feature_names if self.uplift is not None else ()
        for more in (self.champions.ltv.bundle.feature_names, uplift):
            names += [n for n in more if n not in names]
        return names

    @functools.cached_property
    def versions(self) -> dict[str, str]:
        """The registered versions answering: churn, ltv and, when loaded, uplift."""
        uplift = {"uplift": self.uplift.version} if self.uplift is not None else {}
        return self.champions.versions | uplift

    @functools.cached_property
    def categorical_features(self) -> set[str]:
        return {s.name for s in feature_registry(self.feature_config) if s.kind == "categorical"}

    @functools.cached_property
    def feature_bounds(self) -> dict[str, FeatureSpec]:
        """What the builders can produce, per bounded feature (a row outside is a mistake)."""
        specs = feature_registry(self.feature_config)
        return {s.name: s for s in specs if s.low is not None or s.high is not None or s.integer}

    @functools.cached_property
    def known_features(self) -> set[str]:
        """Names a feature row may carry: the registry's and whatever the models read."""
        return set(self.model_features) | {s.name for s in feature_registry(self.feature_config)}

    def check(self, customers: Sequence[CustomerIn]) -> None:
        """Problems the schema cannot see; all of them in one error."""
        limit = self.settings.max_batch_customers
        if not customers:
            raise request_error([(("customers",), "empty: give at least one customer")])
        if len(customers) > limit:  # refused whole: no need to read its customers
            raise request_error(
                [(("customers",), f"{len(customers):,} customers; at most {limit:,} per request")]
            )
        problems: list[tuple[tuple[str | int, ...], str]] = []
        first: dict[str, int] = {}
        for i, customer in enumerate(customers):
            where = ("customers", i)
            label = customer_label(customer.customer_id)
            if customer.customer_id in first:
                problems.append(
                    (where, f"{label}: duplicated (also at index {first[customer.customer_id]})")
                )
            first.setdefault(customer.customer_id, i)
            n_tx = len(customer.transactions or ())
            if n_tx > self.settings.max_transactions_per_customer:
                problems.append(
                    (
                        where,
                        f"{label}: {n_tx:,} transactions; at most "
                        f"{self.settings.max_transactions_per_customer:,} (send its feature "
                        "row instead: `crm-ltv features --champions`; or raise "
                        "max_transactions_per_customer in configs/serving.yaml)",
                    )
                )
            if customer.features is not None:
                problems += [(where, f"{label}: {p}") for p in self._feature_problems(customer)]
        if problems:
            raise request_error(problems)

    def _feature_problems(self, customer: CustomerIn) -> list[str]:
        given = customer.features or {}
        needed = self.model_features
        known = self.known_features
        categorical = self.categorical_features
        problems = []
        unknown = sorted(set(given) - known)
        if unknown:
            named = ", ".join(repr(n) for n in unknown)
            problems.append(f"features: unknown {named} (no feature of that name)")
        missing = [n for n in needed if n not in given]
        if missing:
            problems.append(f"features: missing {', '.join(missing)} (null for unknown values)")
        for name, value in given.items():
            if name not in known or value is None:
                continue
            if name in categorical:
                if not isinstance(value, str):
                    problems.append(f"features.{name}: expected text, got {value!r}")
                elif name in KNOWN_VALUES and _label(value) not in KNOWN_VALUES[name]:
                    problems.append(
                        f"features.{name}: {value!r} is not one of {list(KNOWN_VALUES[name])}"
                    )
            elif isinstance(value, str):
                problems.append(f"features.{name}: expected a number, got {value!r}")
            elif name in self.feature_bounds:
                wrong = _out_of_bounds(value, self.feature_bounds[name])
                if wrong is not None:
                    problems.append(f"features.{name}: {value:g} is {wrong}")
        return problems

    @functools.cached_property
    def sum_bounds(self) -> dict[str, tuple[float, float]]:
        """Features that sum amounts, with the bounds a feature row is held to: the only ones
        lines within the schema's bounds can pass (10,000 lines of 1e12 make 1e16). Only
        MAX_ABS_FEATURE is checked: a feature's own bound (0 for a count) is the builders'."""
        out = {}
        for name, spec in self.feature_bounds.items():
            low = -MAX_ABS_FEATURE if spec.low == -MAX_ABS_FEATURE else -math.inf
            high = MAX_ABS_FEATURE if spec.high == MAX_ABS_FEATURE else math.inf
            if math.isfinite(low) or math.isfinite(high):
                out[name] = (low, high)
        return out

    def _check_sums(
        self, groups: Sequence[FeatureColumns], customers: Sequence[CustomerIn]
    ) -> None:
        """Features built from a request's lines are held to a feature row's bounds: the same
        customer is not scored one way and refused the other."""
        index = {c.customer_id: i for i, c in enumerate(customers)}
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for group in groups:
            for name, (low, high) in self.sum_bounds.items():
                values = group.columns.get(name)
                if values is None or values.dtype == object:
                    continue
                for j in np.flatnonzero((values < low) | (values > high)):
                    cid = str(group.customer_ids[j])
                    wrong = f"below {low:g}" if values[j] < low else f"above {high:g}"
                    problems.append(
                        (
                            ("customers", index[cid]),
                            f"{customer_label(cid)}: transactions: add up to features.{name} "
                            f"{values[j]:g}, {wrong} (amounts no customer spends)",
                        )
                    )
        if problems:
            raise request_error(sorted(problems, key=lambda p: p[0][1]))

    def feature_groups(self, customers: Sequence[CustomerIn]) -> list[FeatureColumns]:
        """Features of every customer with a purchase history: one group per as_of built from
        transactions (features.builders, the code training uses), one of given feature rows."""
        by_cutoff: dict[datetime, list[CustomerIn]] = {}
        for customer in customers:
            if customer.transactions is not None:
                assert customer.as_of is not None
                by_cutoff.setdefault(customer.as_of, []).append(customer)
        groups = [self._built(group, cutoff) for cutoff, group in by_cutoff.items()]
        given = [c for c in customers if c.features is not None]
        if given:
            groups.append(self._given(given))
        return [g for g in groups if len(g)]

    def _built(self, customers: Sequence[CustomerIn], cutoff: datetime) -> FeatureColumns:
        # Plain lists, no tuple per row: the cyclic GC would scan the request's objects often.
        rows = [tx for c in customers for tx in c.transactions or ()]
        arrays = TransactionArrays.from_lists(
            [c.customer_id for c in customers],  # distinct: `check` refused duplicates
            [len(c.transactions or ()) for c in customers],
            [tx["timestamp"] for tx in rows],
            [tx["amount"] for tx in rows],
            [tx.get("order_id") for tx in rows],
            [tx.get("category") for tx in rows],
            [tx.get("channel") for tx in rows],
        )
        attributes = CustomerAttributes(
            np.array([c.customer_id for c in customers], dtype=object),
            np.array([c.signup_date for c in customers], dtype="datetime64[us]"),
            Codes.from_values([c.acquisition_channel for c in customers]),
        )
        return feature_columns(
            arrays,
            cutoff,
            self.feature_config,
            attributes,
            **self.champions.feature_args(),
        )

    def _given(self, customers: Sequence[CustomerIn]) -> FeatureColumns:
        rows = [c.features or {} for c in customers]
        names = dict.fromkeys(name for row in rows for name in row)
        categorical = self.categorical_features
        columns = {
            name: np.array([_label(row.get(name)) for row in rows], dtype=object)
            if name in categorical  # read as the builders write them: ' books ' is 'books'
            else np.array([row.get(name) for row in rows], dtype="float64")  # None -> NaN
            for name in names
        }
        return FeatureColumns(pd.Index([c.customer_id for c in customers], dtype="str"), columns)

    def score_with_views(
        self, customers: Sequence[CustomerIn], now: datetime
    ) -> list[tuple[CustomerScore, Customer]]:
        """Each answer with the policy's view of its customer, which the holdout and the
        decision log read as the policy did."""
        self.check(customers)
        groups = self.feature_groups(customers)
        self._check_sums(groups, customers)
        scored: dict[str, Scored] = {}
        for group in groups:
            scored |= self._scored(group, now)
        out = []
        for customer in customers:
            contacts = customer.last_contacts()
            if customer.customer_id in scored:
                view, reasons = scored[customer.customer_id]
                view = replace(view, as_of=customer.as_of or now, last_contacts=contacts)
            else:  # no purchase up to as_of: a cold start, nothing for the models
                view, reasons = Customer(customer.as_of or now, last_contacts=contacts), []
            out.append((self._answer(customer, view, reasons, decide(view, self.nba)), view))
        return out

    def _scored(self, group: FeatureColumns, now: datetime) -> dict[str, Scored]:
        inputs = ModelInputs.of(group.columns, self.champions)
        scores = ModelScores.of(inputs, self.champions)
        reasons = self._reasons(len(group), inputs)
        effects = self.uplift.effects(group.columns) if self.uplift is not None else None
        per_action = list(effects.items()) if effects is not None else []
        texts = {
            name: _texts(group.columns.get(name), len(group))
            for name in ("rfm_segment", "lifecycle_stage", "favourite_category")
        }
        counts = {
            name: _counts(group.columns.get(name), len(group))
            for name in ("frequency", "recency_days")
        }
        return {
            str(cid): (
                Customer(
                    now,
                    float(scores.churn_probability[i]),
                    float(scores.predicted_value[i]),
                    texts["rfm_segment"][i],
                    texts["lifecycle_stage"][i],
                    texts["favourite_category"][i],
                    counts["frequency"][i],
                    counts["recency_days"][i],
                    effects={action: float(values[i]) for action, values in per_action},
                ),
                reasons[i],
            )
            for i, cid in enumerate(group.customer_ids)
        }

    def _answer(
        self, customer: CustomerIn, view: Customer, reasons: list[dict], decision: Decision
    ) -> CustomerScore:
        # One validation of plain values (pydantic's core) costs less than nested constructors.
        return CustomerScore.model_validate(
            {
                "customer_id": customer.customer_id,
                "as_of": view.as_of,  # a feature row's: now, as the decision log has it
                "cold_start": view.churn_probability is None,
                "churn_probability": view.churn_probability,
                "predicted_value": view.predicted_value,
                "horizon_days": self.champions.horizon_days,
                "rfm_segment": view.rfm_segment,
                "lifecycle_stage": view.lifecycle_stage,
                "reasons": reasons,
                "next_best_action": {
                    "action": decision.action,
                    "expected_value": decision.expected_value,
                    "reason": decision.reason,
                    "category": decision.category,
                    "effect_source": decision.effect_source,
                    "weighed_action": decision.weighed,
                    "uplift_version": (
                        self.uplift.version
                        if self.uplift is not None and decision.effect_source == "uplift"
                        else None
                    ),
                },
                "model_versions": self.versions,
            }
        )

    def _reasons(self, n_customers: int, inputs: ModelInputs) -> list[list[dict]]:
        """The largest feature contributions of each model, per customer, with the value the
        model saw (categories decoded from their vocabulary index), as `Reason` fields."""
        top = self.settings.top_reasons
        out: list[list[dict]] = [[] for _ in range(n_customers)]
        if top == 0:
            return out
        for champion, encoded in (
            (self.champions.churn, inputs.churn),
            (self.champions.ltv, inputs.ltv),
        ):
            bundle, kind = champion.bundle, champion.kind
            values = bundle.contributions(kind, encoded, self.settings.reason_method)[:, :-1]
            order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :top]
            contributions = np.take_along_axis(values, order, axis=1).tolist()
            seen = np.take_along_axis(encoded, order, axis=1).tolist()
            names = bundle.model_features
            vocabularies = [bundle.vocabularies.get(name) for name in names]
            for i, reasons in enumerate(out):
                for j, value, contribution in zip(order[i], seen[i], contributions[i], strict=True):
                    reasons.append(
                        {
                            "model": kind,
                            "feature": names[j],
                            "value": _decoded(value, vocabularies[j]),
                            "contribution": contribution,
                        }
                    )
        return out


def _decoded(value: float, vocabulary: tuple[str, ...] | None) -> float | str | None:
    if math.isnan(value):
        return None
    return vocabulary[int(value)] if vocabulary is not None else value


def _counts(values: Column | None, size: int) -> list[int | None]:
    """A count column as ints, None where missing (a feature row may leave it out)."""
    if values is None:
        return [None] * size
    numbers = np.asarray(values, dtype="float64")
    return [None if np.isnan(v) else int(v) for v in numbers.tolist()]


def _texts(values: Column | None, size: int) -> list[str | None]:
    """A categorical column as text, None where missing (or where the column is absent)."""
    if values is None:
        return [None] * size
    if isinstance(values, pd.Categorical):  # by code: cheaper than converting the values
        names = [str(name) for name in values.categories]
        return [names[code] if code >= 0 else None for code in values.codes.tolist()]
    return [None if pd.isna(v) else str(v) for v in values]


def _label(value: object) -> object:
    return label_of(value) if isinstance(value, str) else value
