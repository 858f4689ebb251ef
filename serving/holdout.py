"""Holdouts and propensities: who gets the policy's action, who is held out, and how likely.

The next round learns from what the service decided only if the decisions were randomized in
a known way. So a configured share of customers (stable per customer and period, by a hash) is
held out and gets no_action whatever the policy chose: the control group of `crm-ltv outcomes`.
Of the others, an exploration share gets a uniformly random eligible action (or no_action), so
that policies other than the one serving can be evaluated off-policy. Each decision carries the
probability of the action it took (its propensity): the weights of `crm-ltv policy-eval`.

With holdout share h, exploration e and candidates C (the eligible actions, no_action and the
policy's own action), the probability of action a for a customer the policy gives action p is
    P(a) = h [a = no_action] + (1 - h) ((1 - e) [a = p] + e / |C| [a in C]).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from crm_ltv.serving.config import NO_ACTION, HoldoutConfig, NbaConfig
from crm_ltv.serving.nba import (
    Customer,
    EffectSource,
    effect_of,
    ineligibility,
    recommended_category,
    value_if_purchase,
)
from crm_ltv.serving.schemas import CustomerScore


@dataclass(frozen=True)
class Assignment:
    """What one customer got, what the policy wanted, and how likely that was."""

    action: str  # what is sent (no_action when held out)
    policy_action: str  # what the policy chose
    holdout: bool
    explored: bool  # the action was drawn at random among the candidates
    propensity: float  # P(action | customer) under the policy with holdout and exploration
    period: str  # the period of the holdout hash ("2025-W27", "2025-06")
    share: float  # the holdout share and exploration it was drawn with (logged with it)
    exploration: float
    eligible_actions: tuple[str, ...] = ()  # the policy's eligible actions (no_action aside)
    # Expected incremental value of each eligible action with the configured priors (the
    # policy's own figure for its action, uplift or prior, is the answer's expected_value).
    prior_expected_values: dict[str, float] = field(default_factory=dict)
    # The effect the answer's expected_value was priced with: of its weighed_action, from the
    # source its effect_source names (None where no action was weighed)
    effect: float | None = None


def period_of(moment: datetime, period: str) -> str:
    """The holdout period of `moment`: its ISO week ('2025-W27') or month ('2025-06')."""
    if period == "week":
        year, week, _ = moment.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{moment.year}-{moment.month:02d}"
    raise ValueError(f"period: expected 'week' or 'month', got {period!r}")


def unit_draw(salt: str, purpose: str, customer_id: str, period: str) -> float:
    """A uniform number in [0, 1) fixed by its inputs (SHA-256): the same customer in the same
    period draws the same, whichever worker answers and however often they are scored."""
    digest = hashlib.sha256(f"{salt}|{purpose}|{customer_id}|{period}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def candidates(policy_action: str, eligible: Sequence[str]) -> tuple[str, ...]:
    """What exploration draws from: the eligible actions, no_action and the policy's choice."""
    return tuple(sorted({*eligible, policy_action, NO_ACTION}))


def propensity(
    action: str, policy_action: str, choices: Sequence[str], share: float, exploration: float
) -> float:
    """P(action) for a customer the policy gives `policy_action` (formula in the docstring)."""
    p = share * (action == NO_ACTION)
    p += (1 - share) * ((1 - exploration) * (action == policy_action))
    p += (1 - share) * (exploration / len(choices) * (action in choices))
    return float(p)


def assign(
    customer_id: str,
    period: str,
    policy_action: str,
    eligible: Sequence[str],
    config: HoldoutConfig,
) -> Assignment:
    """Held out, explored or the policy's action, with the propensity of the one taken."""
    choices = candidates(policy_action, eligible)
    holdout = unit_draw(config.salt, "holdout", customer_id, period) < config.share
    explored = not holdout and (
        unit_draw(config.salt, "explore", customer_id, period) < config.exploration
    )
    if holdout:
        action = NO_ACTION
    elif explored:
        pick = unit_draw(config.salt, "explore-action", customer_id, period)
        action = choices[int(pick * len(choices))]
    else:
        action = policy_action
    p = propensity(action, policy_action, choices, config.share, config.exploration)
    return Assignment(
        action,
        policy_action,
        holdout,
        explored,
        p,
        period,
        config.share,
        config.exploration,
        tuple(eligible),
    )


def eligible_actions(view: Customer, config: NbaConfig) -> tuple[str, ...]:
    """The actions the policy may take for this customer (nba.ineligibility decides)."""
    if view.churn_probability is None or view.predicted_value is None:
        return ()
    return tuple(
        name
        for name, action in config.actions.items()
        if ineligibility(name, action, view, config) is None
    )


def prior_expected_values(
    view: Customer, config: NbaConfig, eligible: Sequence[str]
) -> dict[str, float]:
    """Each eligible action's expected value with the configured priors, priced as nba.decide
    prices it (effect x value if purchase - cost), negative where it does not pay for itself:
    an explored send of a money-losing action says so."""
    if not eligible:
        return {}
    value = value_if_purchase(view, config)
    out = {}
    for name in eligible:
        action = config.actions[name]
        out[name] = round(effect_of(name, action, view)[0] * value - action.cost, 4)
    return out


def share_said(share: float) -> str:
    """A configured share as a percent with the digits it has: a holdout of 0.004 read `0%`
    with `.0%` (tester G); 0.1 stays `10%`."""
    return f"{share * 100:g}%"


def apply_holdout(
    scored: Sequence[tuple[CustomerScore, Customer]],
    nba: NbaConfig,
    config: HoldoutConfig,
) -> tuple[list[CustomerScore], list[Assignment]]:
    """The answers with holdouts and exploration applied (`holdout` set, the action replaced
    where it changed), and each customer's assignment for the decision log. Each answer comes
    with the policy's view of its customer (Scorer.score_with_views): the candidates are the
    actions the policy could take, priced with the priors."""
    out, assignments = [], []
    for answer, seen in scored:
        view = replace(seen, effects={})
        policy = answer.next_best_action
        eligible = eligible_actions(view, nba)
        if answer.cold_start and policy.action != NO_ACTION:
            eligible = (policy.action,)  # a cold start has only its configured action
        assigned = assign(
            answer.customer_id,
            period_of(view.as_of, config.period),
            policy.action,
            eligible,
            config,
        )
        values = prior_expected_values(view, nba, eligible) if not answer.cold_start else {}
        assigned = replace(assigned, prior_expected_values=values)
        sent = _answered(answer, assigned, config, seen, nba)
        weighed = sent.next_best_action.weighed_action
        effect = effect_of(weighed, nba.actions[weighed], seen)[0] if weighed else None
        assignments.append(replace(assigned, effect=effect))
        out.append(sent)
    return out, assignments


def _answered(
    answer: CustomerScore,
    assigned: Assignment,
    config: HoldoutConfig,
    seen: Customer,
    nba: NbaConfig,
) -> CustomerScore:
    """The answer as sent: flags and propensity always; the action, its value and reason
    replaced where the holdout or exploration changed the policy's choice. An explored action
    is priced as the policy prices it, with the uplift model's effect where it has one (tester
    R: a modelled action came back priced with the prior, +56.67 where the model said it
    loses money, which is why the policy had not chosen it); the log keeps the priors'."""
    flags = {
        "holdout": assigned.holdout,
        "explored": assigned.explored,
        "propensity": round(assigned.propensity, 6),
    }
    policy = answer.next_best_action
    if assigned.action == policy.action and not (assigned.holdout or assigned.explored):
        return answer.model_copy(update=flags)  # most answers: the policy's, as it was
    drawn = ", ".join(candidates(policy.action, assigned.eligible_actions))
    if assigned.action == policy.action:
        said = (
            "holdout: in the randomized control group, whose action is no_action"
            if assigned.holdout
            else f"exploration: drawn at random among {drawn}"
        )
        sent = policy.model_copy(
            update={"reason": f"{said}, the policy's own choice; {policy.reason}"}
        )
        return answer.model_copy(update={**flags, "next_best_action": sent})
    if assigned.holdout:
        why = (
            f"holdout: in the randomized control group ({share_said(config.share)} of "
            f"customers per {config.period}); the policy chose {policy.action}"
        )
        value: float | None = 0.0
    else:
        why = (
            f"exploration: drawn at random among {drawn} ({share_said(config.exploration)} of "
            f"customers outside the holdout); the policy chose {policy.action}"
        )
        value = 0.0
    source: EffectSource | None = None
    if not assigned.holdout and assigned.action in nba.actions and not answer.cold_start:
        effect, source = effect_of(assigned.action, nba.actions[assigned.action], seen)
        value = round(effect * value_if_purchase(seen, nba) - nba.actions[assigned.action].cost, 4)
    sent = policy.model_copy(
        update={
            "action": assigned.action,
            "expected_value": value,
            "reason": why,
            "category": (
                recommended_category(nba.actions[assigned.action], seen)
                if assigned.action in nba.actions
                else None
            ),
            "effect_source": source,
            "uplift_version": answer.model_versions.get("uplift") if source == "uplift" else None,
            "weighed_action": assigned.action if source is not None else None,
        }
    )
    return answer.model_copy(update={**flags, "next_best_action": sent})
