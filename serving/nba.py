"""Next-best-action: the action with the largest expected incremental value, or none.

The actions are the catalogue's (features.actions); configs/nba.yaml prices and targets them.
Expected incremental value = effect x value_if_purchase - cost. The effect is the increase of
the purchase probability an action brings: the uplift champion's prediction for this customer
where it has a model of the action, else the prior per RFM segment of configs/nba.yaml; and
value_if_purchase = predicted_value / P(purchase) is what a customer who buys brings in the
horizon, so a valuable customer at risk (small predicted value, large value if won back) can
still be worth a win-back offer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from crm_ltv.features.actions import ACTIONS
from crm_ltv.features.builders import OTHER
from crm_ltv.serving.config import NO_ACTION, Action, NbaConfig

EffectSource = Literal["uplift", "prior"]
MAX_PERCENT_DECIMALS = 6  # of an effect in a reason: within half a cent up to a value of 1e6


@dataclass(frozen=True)
class Customer:
    """What the policy looks at; scores are None for a cold start."""

    as_of: datetime
    churn_probability: float | None = None
    predicted_value: float | None = None
    rfm_segment: str | None = None
    lifecycle_stage: str | None = None
    favourite_category: str | None = None
    frequency: int | None = None  # purchase days up to as_of
    recency_days: int | None = None
    last_contacts: Mapping[str, datetime] = field(default_factory=dict)  # action -> last sent
    # action -> predicted change of the purchase probability (uplift model); priors elsewhere
    effects: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    action: str
    expected_value: float | None
    reason: str
    category: str | None = None
    effect_source: EffectSource | None = None  # of `weighed`
    weighed: str | None = None  # the action priced: the chosen one, or the best when none pays


def effect_of(name: str, action: Action, customer: Customer) -> tuple[float, EffectSource]:
    """The uplift model's effect of `name` for this customer, else the configured prior."""
    predicted = customer.effects.get(name)
    if predicted is not None:
        return predicted, "uplift"
    return action.effect.of(customer.rfm_segment), "prior"


def value_if_purchase(customer: Customer, config: NbaConfig) -> float:
    assert customer.churn_probability is not None and customer.predicted_value is not None
    purchase = max(1.0 - customer.churn_probability, config.min_purchase_probability)
    return customer.predicted_value / purchase


def contact_capped(name: str, customer: Customer, config: NbaConfig) -> str | None:
    """Why `name` may not be sent again yet, or None."""
    last = customer.last_contacts.get(name)
    if last is not None and last > customer.as_of - timedelta(days=config.contact_cap_days):
        return f"{name} already sent {last:%Y-%m-%d} (cap {config.contact_cap_days} days)"
    return None


def ineligibility(name: str, action: Action, customer: Customer, config: NbaConfig) -> str | None:
    """Why `action` may not be taken for this scored customer, or None when it may; the
    contact cap last, so that it is the reason only where it alone stands in the way."""
    why = _rule_fails(name, action, customer, config)
    return why if why is not None else contact_capped(name, customer, config)


def _rule_fails(name: str, action: Action, customer: Customer, config: NbaConfig) -> str | None:
    rule = action.eligible
    if rule.lifecycle_stages is not None and customer.lifecycle_stage not in rule.lifecycle_stages:
        return f"{name} needs lifecycle stage in {list(rule.lifecycle_stages)}"
    if rule.rfm_segments is not None and customer.rfm_segment not in rule.rfm_segments:
        return f"{name} needs RFM segment in {list(rule.rfm_segments)}"
    if action.recommend_favourite_category and recommended_category(action, customer) is None:
        return f"{name} needs a favourite category ({customer.favourite_category or 'none'})"
    assert customer.churn_probability is not None and customer.predicted_value is not None
    p, value = customer.churn_probability, customer.predicted_value
    counts = (
        (rule.min_frequency, customer.frequency, "purchase days"),
        (rule.min_recency_days, customer.recency_days, "days since the last purchase"),
    )
    for bound, actual, label in counts:
        if bound is not None and (actual is None or actual < bound):
            return (
                f"{name} needs {label} at least {bound} ({'unknown' if actual is None else actual})"
            )
    bounds = (
        (rule.min_churn_probability, p, "churn probability", 1),
        (rule.max_churn_probability, p, "churn probability", -1),
        (rule.min_predicted_value, value, "predicted value", 1),
        (rule.min_value_if_purchase, value_if_purchase(customer, config), "value if purchase", 1),
    )
    for bound, actual, label, direction in bounds:
        if bound is not None and (actual - bound) * direction < 0:
            word = "at least" if direction > 0 else "at most"
            return f"{name} needs {label} {word} {_shown(bound)} ({_short_of(actual, bound)})"
    return None


def _shown(bound: float) -> str:
    """A bound as nba.yaml gives it: `50`, `0.5`; every digit where six do not hold it."""
    short = f"{bound:g}"
    return short if float(short) == bound else repr(bound)


def _short_of(actual: float, bound: float) -> str:
    """`actual`, which fails `bound`, to 3 significant digits, or as many more as it takes to
    stay on its side of the bound: 49.9993 read `50` beside "at least 50", and 0.4996 `0.5`.
    A value of 1 or more is written out, not in an exponent (12,345.6 read `1.23e+04`)."""
    for digits in range(3, 17):
        shown = f"{actual:.{digits}g}"
        if "e" in shown and abs(actual) >= 1:
            shown = f"{actual:.{max(digits - len(f'{abs(actual):.0f}'), 0)}f}"
        if (float(shown) - bound) * (actual - bound) > 0:
            return shown
    return repr(actual)


def decide(customer: Customer, config: NbaConfig) -> Decision:
    if customer.churn_probability is None or customer.predicted_value is None:
        return _cold_start(customer, config)
    value = value_if_purchase(customer, config)
    best: tuple[float, str, Action, float, EffectSource] | None = None
    capped = []  # why the actions of the customer's stage were not taken (a contact cap, ...)
    for name, action in config.actions.items():
        why = _rule_fails(name, action, customer, config)
        if why is not None:
            stages = action.eligible.lifecycle_stages
            if stages is None or customer.lifecycle_stage in stages:
                # the stage's own action stopped by another rule (data without categories
                # leave every developing customer without one): said, not a bare "none"
                capped.append(why)
            continue
        cap = contact_capped(name, customer, config)
        if cap is not None:
            capped.append(cap)
            continue
        effect, source = effect_of(name, action, customer)
        gain = effect * value - action.cost
        if best is None or gain > best[0]:
            best = (gain, name, action, effect, source)
    if best is None:
        stage = customer.lifecycle_stage
        if not capped:  # no action of the customer's stage at all: said, not a bare "none"
            capped.append(
                f"no action targets lifecycle stage {stage}" if stage else "lifecycle stage unknown"
            )
        reason = f"no action is eligible for this customer ({'; '.join(capped)})"
        return Decision(NO_ACTION, 0.0, reason)
    gain, name, action, effect, source = best
    # an uplift effect is a model's estimate: shown to a tenth of a point at least, as before
    shown = percent(effect, value, 0 if source == "prior" else 1)
    arithmetic = f"{shown} x {value:.2f} - {action.cost:.2f} = {gain:+.2f} ({source} effect)"
    if gain <= 0:
        reason = f"nothing pays: best is {name} at {arithmetic}"
        return Decision(NO_ACTION, 0.0, reason, None, source, name)
    category = recommended_category(action, customer)
    return Decision(name, gain, f"{ACTIONS[name]}: {arithmetic}", category, source, name)


def percent(effect: float, times: float, decimals: int = 0) -> str:
    """`effect` as a percent with the fewest decimals, from `decimals` on, whose rounding moves
    `effect x times` by less than half a cent, so that the arithmetic a reason shows adds up:
    the shipped priors stay whole (`5%`), 0.004 is `0.4%` (`.0%` showed `0%`), 0.025 `2.5%`."""
    for places in range(decimals, MAX_PERCENT_DECIMALS):
        shown = f"{effect:.{places}%}"
        if abs(float(shown[:-1]) / 100 - effect) * abs(times) < 0.005:
            return shown
    return f"{effect:.{MAX_PERCENT_DECIMALS}%}"


def recommended_category(action: Action, customer: Customer) -> str | None:
    """The category an action names: the customer's favourite, where the action recommends
    from it; never the pool of rare categories, which is no category to recommend from."""
    favourite = customer.favourite_category
    if not action.recommend_favourite_category or favourite in (None, "", OTHER):
        return None
    return favourite


def _cold_start(customer: Customer, config: NbaConfig) -> Decision:
    name = config.cold_start.action
    if name == NO_ACTION:
        return Decision(NO_ACTION, None, f"cold start: {config.cold_start.reason}")
    capped = contact_capped(name, customer, config)
    if capped is not None:
        return Decision(NO_ACTION, None, f"cold start: {capped}")
    return Decision(name, None, f"cold start: {config.cold_start.reason}")
