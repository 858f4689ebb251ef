"""The rival policies of off-policy evaluation, as each would act on logged customers.

Every policy is a matrix of action probabilities, one row per customer and one column per arm
(the configured actions, then no_action), so that deterministic and random policies are
evaluated alike (`crm-ltv policy-eval`, experiments.policy_eval). The next-best-action policies
are the service's own `nba.decide`, with the uplift model's effects or with the priors; the
logging distribution of a simulated history is the service's holdout and exploration
(serving.holdout.propensity). No copy of policy logic lives elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crm_ltv.serving.config import NO_ACTION, NbaConfig
from crm_ltv.serving.holdout import propensity
from crm_ltv.serving.nba import Customer, decide, effect_of, value_if_purchase

# Columns of a contexts frame: what the policy looks at, per logged customer.
CONTEXT_COLUMNS = (
    "as_of",
    "churn_probability",
    "predicted_value",
    "rfm_segment",
    "lifecycle_stage",
)
# What the rules of nba.yaml read beyond the scores (decision logs of before 2026-12-05 lack
# them: a rule on them then fails, as for a feature row that leaves them out).
OPTIONAL_CONTEXT_COLUMNS = ("frequency", "recency_days", "favourite_category")


@dataclass(frozen=True)
class PolicySet:
    """Each policy's action probabilities (n x arms) and one line on how it acts."""

    arms: tuple[str, ...]
    probabilities: dict[str, np.ndarray]
    notes: dict[str, str]


def arms_of(nba: NbaConfig) -> tuple[str, ...]:
    return (*nba.actions, NO_ACTION)


def arm_costs(nba: NbaConfig) -> np.ndarray:
    """The contact cost of each arm (no_action costs nothing)."""
    return np.array([nba.actions[a].cost for a in nba.actions] + [0.0])


def policy_customers(
    contexts: pd.DataFrame, effects: Mapping[str, np.ndarray] | None = None
) -> list[Customer]:
    """The policy's view of each logged customer (no contact history: a rival is judged on
    who the customer is, not on what the logging policy sent them before)."""
    missing = [c for c in CONTEXT_COLUMNS if c not in contexts]
    if missing:
        raise ValueError(f"contexts: no column {missing[0]!r} (expected {list(CONTEXT_COLUMNS)})")
    churn = contexts["churn_probability"].astype(float).to_numpy()
    value = contexts["predicted_value"].astype(float).to_numpy()
    segment = contexts["rfm_segment"].astype(object).to_numpy()
    stage = contexts["lifecycle_stage"].astype(object).to_numpy()
    as_of = pd.to_datetime(contexts["as_of"]).dt.to_pydatetime()
    absent = pd.Series(np.nan, index=contexts.index)
    frequency, recency, favourite = (
        contexts.get(name, absent).to_numpy(dtype=object) for name in OPTIONAL_CONTEXT_COLUMNS
    )
    out = []
    for i in range(len(contexts)):
        scored = not (np.isnan(churn[i]) or np.isnan(value[i]))
        out.append(
            Customer(
                as_of[i],
                float(churn[i]) if scored else None,
                float(value[i]) if scored else None,
                _text(segment[i]),
                _text(stage[i]),
                _text(favourite[i]),
                _count(frequency[i]),
                _count(recency[i]),
                effects={a: float(v[i]) for a, v in (effects or {}).items()},
            )
        )
    return out


def _count(value: object) -> int | None:
    return None if value is None or pd.isna(value) else int(value)  # type: ignore[arg-type]


def _text(value: object) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def one_hot(actions: list[str], arms: tuple[str, ...]) -> np.ndarray:
    index = {a: i for i, a in enumerate(arms)}
    out = np.zeros((len(actions), len(arms)))
    out[np.arange(len(actions)), [index[a] for a in actions]] = 1.0
    return out


def decided_actions(customers: list[Customer], nba: NbaConfig) -> list[str]:
    return [decide(c, nba).action for c in customers]


def best_single_action(customers: list[Customer], nba: NbaConfig) -> str:
    """The action the priors value most on average over these scored customers (effect x value
    if purchase - cost, as nba prices it), eligibility aside: a blanket campaign."""
    scored = [c for c in customers if c.churn_probability is not None]
    if not scored:
        return next(iter(nba.actions))
    value = np.array([value_if_purchase(c, nba) for c in scored])

    def mean_gain(name: str) -> float:
        action = nba.actions[name]
        effect = np.array([effect_of(name, action, c)[0] for c in scored])
        return float(np.mean(effect * value) - action.cost)

    return max(nba.actions, key=mean_gain)


def rival_policies(
    contexts: pd.DataFrame,
    nba: NbaConfig,
    effects: Mapping[str, np.ndarray] | None,
    churn_share: float,
    churn_action: str,
) -> PolicySet:
    """uplift (when effects are given), priors, best_single, churn_risk, random and nothing."""
    if churn_action not in nba.actions:
        raise ValueError(f"churn_action {churn_action!r} is not an action of nba.yaml")
    arms = arms_of(nba)
    n = len(contexts)
    plain = policy_customers(contexts)
    probabilities: dict[str, np.ndarray] = {}
    notes: dict[str, str] = {}
    if effects:
        probabilities["uplift"] = one_hot(
            decided_actions(policy_customers(contexts, effects), nba), arms
        )
        notes["uplift"] = (
            "next-best-action with the uplift champion's effects (priors for actions it has no "
            "model of)"
        )
    probabilities["priors"] = one_hot(decided_actions(plain, nba), arms)
    notes["priors"] = "next-best-action with the priors of configs/nba.yaml"
    single = best_single_action(plain, nba)
    probabilities["best_single"] = one_hot([single] * n, arms)
    notes["best_single"] = f"{single} for everyone (the action the priors value most on average)"
    churn = contexts["churn_probability"].astype(float).fillna(-1.0).to_numpy()
    k = round(churn_share * int((churn >= 0).sum()))
    top = np.argsort(-churn, kind="stable")[:k]
    chosen = np.full(n, NO_ACTION, dtype=object)
    chosen[top] = churn_action
    probabilities["churn_risk"] = one_hot(list(chosen), arms)
    notes["churn_risk"] = f"{churn_action} to the {churn_share:.0%} highest churn probabilities"
    probabilities["random"] = np.full((n, len(arms)), 1.0 / len(arms))
    notes["random"] = f"one of {', '.join(arms)} uniformly at random"
    probabilities["nothing"] = one_hot([NO_ACTION] * n, arms)
    notes["nothing"] = "no contact: the reference (0 by definition)"
    return PolicySet(arms, probabilities, notes)


def logging_probabilities(
    contexts: pd.DataFrame, nba: NbaConfig, share: float, exploration: float
) -> np.ndarray:
    """The service's randomization around the priors policy (serving.holdout), exploring over
    every arm so that each rival has support: P(arm | customer), n x arms."""
    arms = arms_of(nba)
    policy = decided_actions(policy_customers(contexts), nba)
    by_action = {p: [propensity(a, p, arms, share, exploration) for a in arms] for p in set(policy)}
    return np.array([by_action[p] for p in policy])
