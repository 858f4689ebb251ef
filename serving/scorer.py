"""A scoring request, end to end and free of HTTP: checks, features, scores, reasons, actions.

Features are built by `features.builders` (the code training uses) with the champion's RFM
reference cut points, and scored by `training.scoring.score_customers` (the code behind
`crm-ltv score`), so the service and the batch command agree to the last digit.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from features.builders import build_features
from features.config import LIFECYCLE_STAGES, FeatureConfig
from features.registry import feature_registry
from features.rfm import RFM_SEGMENTS
from serving.config import NbaConfig, ServingConfig
from serving.nba import Customer, Decision, decide
from serving.schemas import (
    CustomerIn,
    CustomerScore,
    NextBestAction,
    Reason,
    customer_label,
    request_error,
)
from training.scoring import Champions, ModelInputs, score_customers

# Categorical features whose values the service can check; the others are free text.
KNOWN_VALUES = {"rfm_segment": RFM_SEGMENTS, "lifecycle_stage": LIFECYCLE_STAGES}
TRANSACTION_COLUMNS = ("customer_id", "timestamp", "amount", "order_id", "category", "channel")


@dataclass(frozen=True)
class Scorer:
    champions: Champions
    feature_config: FeatureConfig
    nba: NbaConfig
    settings: ServingConfig

    @functools.cached_property
    def model_features(self) -> list[str]:
        """What the champion models read, in the churn model's order."""
        names = [str(n) for n in self.champions.churn.model.feature_names_in_]
        extra = [str(n) for n in self.champions.ltv.model.feature_names_in_ if n not in names]
        return names + extra

    @functools.cached_property
    def categorical_features(self) -> set[str]:
        return {s.name for s in feature_registry(self.feature_config) if s.kind == "categorical"}

    @functools.cached_property
    def known_features(self) -> set[str]:
        """Names a feature row may carry: the registry's and whatever the models read."""
        return set(self.model_features) | {s.name for s in feature_registry(self.feature_config)}

    def check(self, customers: Sequence[CustomerIn]) -> None:
        """Problems the schema cannot see; all of them in one error."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        limit = self.settings.max_batch_customers
        if not customers:
            problems.append((("customers",), "empty: give at least one customer"))
        if len(customers) > limit:
            problems.append(
                (("customers",), f"{len(customers):,} customers; at most {limit:,} per request")
            )
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
                        f"{self.settings.max_transactions_per_customer:,}",
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
            problems.append(f"features: unknown {', '.join(unknown)}")
        missing = [n for n in needed if n not in given]
        if missing:
            problems.append(f"features: missing {', '.join(missing)} (null for unknown values)")
        for name, value in given.items():
            if name not in known or value is None:
                continue
            if name in categorical:
                if not isinstance(value, str):
                    problems.append(f"features.{name}: expected text, got {value!r}")
                elif name in KNOWN_VALUES and value not in KNOWN_VALUES[name]:
                    problems.append(
                        f"features.{name}: {value!r} is not one of {list(KNOWN_VALUES[name])}"
                    )
            elif isinstance(value, str):
                problems.append(f"features.{name}: expected a number, got {value!r}")
        return problems

    def feature_table(self, customers: Sequence[CustomerIn]) -> pd.DataFrame:
        """Features of every customer with a purchase history, in request order."""
        parts = []
        with_transactions = [c for c in customers if c.transactions is not None]
        by_cutoff: dict[datetime, list[CustomerIn]] = {}
        for customer in with_transactions:
            assert customer.as_of is not None
            by_cutoff.setdefault(customer.as_of, []).append(customer)
        for cutoff, group in by_cutoff.items():
            parts.append(
                build_features(
                    _transactions_frame(group),
                    pd.Timestamp(cutoff),
                    self.feature_config,
                    _customers_frame(group),
                    self.champions.rfm_cuts,
                )
            )
        given = [c for c in customers if c.features is not None]
        if given:
            parts.append(self._given_features(given))
        if not parts:
            return pd.DataFrame(index=pd.Index([], name="customer_id", dtype="str"))
        table = parts[0] if len(parts) == 1 else pd.concat(parts)
        order = [c.customer_id for c in customers if c.customer_id in table.index]
        return table.loc[order]

    def _given_features(self, customers: Sequence[CustomerIn]) -> pd.DataFrame:
        rows = [c.features or {} for c in customers]
        index = pd.Index([c.customer_id for c in customers], name="customer_id", dtype="str")
        table = pd.DataFrame.from_records(rows, index=index)
        categorical = self.categorical_features
        for name in table.columns:
            if name in categorical:
                table[name] = table[name].astype("object")
            else:
                table[name] = table[name].astype("float64")
        return table

    def score(self, customers: Sequence[CustomerIn], now: datetime) -> list[CustomerScore]:
        self.check(customers)
        table = self.feature_table(customers)
        scores: dict[str, dict[str, object]] = {}
        reasons: dict[str, list[Reason]] = {}
        if not table.empty:  # else cold starts only: nothing for the models
            inputs = ModelInputs.of(table, self.champions)
            scored = score_customers(table, self.champions, inputs)
            scores = scored.set_index("customer_id").to_dict("index")
            reasons = self._reasons(table, inputs)
        out = []
        for customer in customers:
            as_of = customer.as_of or now
            contacts: dict[str, datetime] = {}
            for contact in customer.contacts:
                contacts[contact.action] = max(
                    contacts.get(contact.action, contact.sent_at), contact.sent_at
                )
            if customer.customer_id not in scores:
                decision = decide(Customer(as_of, last_contacts=contacts), self.nba)
                out.append(self._answer(customer, None, [], decision))
                continue
            row = scores[customer.customer_id]
            view = Customer(
                as_of,
                float(row["churn_probability"]),  # type: ignore[arg-type]
                float(row["predicted_value"]),  # type: ignore[arg-type]
                str(row["rfm_segment"]),
                str(row["lifecycle_stage"]),
                _favourite(table, customer.customer_id),
                contacts,
            )
            out.append(
                self._answer(customer, view, reasons[customer.customer_id], decide(view, self.nba))
            )
        return out

    def _answer(
        self,
        customer: CustomerIn,
        view: Customer | None,
        reasons: list[Reason],
        decision: Decision,
    ) -> CustomerScore:
        return CustomerScore(
            customer_id=customer.customer_id,
            as_of=customer.as_of,
            cold_start=view is None,
            churn_probability=None if view is None else view.churn_probability,
            predicted_value=None if view is None else view.predicted_value,
            horizon_days=self.champions.horizon_days,
            rfm_segment=None if view is None else view.rfm_segment,
            lifecycle_stage=None if view is None else view.lifecycle_stage,
            reasons=reasons,
            next_best_action=NextBestAction(
                action=decision.action,
                expected_value=decision.expected_value,
                reason=decision.reason,
                category=decision.category,
            ),
            model_versions=self.champions.versions,
        )

    def _reasons(self, table: pd.DataFrame, inputs: ModelInputs) -> dict[str, list[Reason]]:
        """The largest feature contributions of each model, per customer, with the value the
        model saw (categories decoded from their vocabulary index)."""
        top = self.settings.top_reasons
        out: dict[str, list[Reason]] = {str(c): [] for c in table.index}
        if top == 0:
            return out
        for kind, model, encoded in (
            ("churn", self.champions.churn.model, inputs.churn),
            ("ltv", self.champions.ltv.model, inputs.ltv),
        ):
            contributions = model.contributions_encoded(encoded, table.index)
            values = contributions.to_numpy()[:, :-1]  # without "(base)"
            order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :top]
            names = model.model_features_
            for i, customer_id in enumerate(table.index):
                for j in order[i]:
                    out[str(customer_id)].append(
                        Reason(
                            model=kind,
                            feature=names[j],
                            value=_decoded(encoded[i, j], model.vocabularies_.get(names[j])),
                            contribution=float(values[i, j]),
                        )
                    )
        return out


def _decoded(value: float, vocabulary: tuple[str, ...] | None) -> float | str | None:
    if np.isnan(value):
        return None
    return vocabulary[int(value)] if vocabulary is not None else float(value)


def _transactions_frame(customers: Sequence[CustomerIn]) -> pd.DataFrame:
    rows = [
        (c.customer_id, tx.timestamp, tx.amount, tx.order_id, tx.category, tx.channel)
        for c in customers
        for tx in c.transactions or ()
    ]
    frame = pd.DataFrame(rows, columns=list(TRANSACTION_COLUMNS))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame["amount"] = frame["amount"].astype("float64")
    return frame


def _customers_frame(customers: Sequence[CustomerIn]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [c.customer_id for c in customers],
            "signup_date": pd.to_datetime([c.signup_date for c in customers]),
            "acquisition_channel": pd.Series(
                [c.acquisition_channel for c in customers], dtype="object"
            ),
        }
    )


def _value(value: object) -> float | str | None:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        return None if np.isnan(number) else number
    return str(value)


def _favourite(table: pd.DataFrame, customer_id: str) -> str | None:
    if "favourite_category" not in table.columns:
        return None
    value = _value(table.at[customer_id, "favourite_category"])
    return None if value is None else str(value)
