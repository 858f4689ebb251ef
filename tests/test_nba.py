"""The next-best-action policy of configs/nba.yaml, rule by rule (pure functions, no models)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
import yaml

from crm_ltv.features.config import ConfigError, load_config
from crm_ltv.serving.config import NO_ACTION, NbaConfig, outdated_rules
from crm_ltv.serving.nba import Customer, decide, ineligibility, value_if_purchase
from tests.conftest import CONFIGS

AS_OF = datetime(2025, 6, 30)


@pytest.fixture(scope="module")
def policy() -> NbaConfig:
    return load_config(NbaConfig, CONFIGS / "nba.yaml")


def customer(**kw) -> Customer:
    return Customer(as_of=AS_OF, **kw)


def test_new_buyer_gone_quiet_gets_the_welcome_offer(policy):
    c = customer(churn_probability=0.8, predicted_value=12.0, rfm_segment="New",
                 lifecycle_stage="new", favourite_category="books", frequency=1,
                 recency_days=20)  # fmt: skip
    decision = decide(c, policy)
    assert decision.action == "welcome_offer"
    # 8% x (12 / 0.2) - 2 = 2.8
    assert decision.expected_value == pytest.approx(0.08 * 60 - 2.0)
    assert "8% x 60.00 - 2.00" in decision.reason and decision.category is None


def test_new_buyer_still_active_is_not_welcomed(policy):
    c = customer(churn_probability=0.3, predicted_value=40.0, rfm_segment="Potential Loyalist",
                 lifecycle_stage="new", favourite_category="books", frequency=2,
                 recency_days=20)  # fmt: skip
    decision = decide(c, policy)
    assert decision.action == "recommendation"  # welcome needs churn >= 0.5
    assert decision.category == "books"


def test_repeat_buyer_gets_a_recommendation_from_the_favourite_category(policy):
    c = customer(churn_probability=0.6, predicted_value=30.0, rfm_segment="Potential Loyalist",
                 lifecycle_stage="developing", favourite_category="garden", frequency=3,
                 recency_days=20)  # fmt: skip
    decision = decide(c, policy)
    assert decision.action == "recommendation" and decision.category == "garden"
    assert decision.expected_value == pytest.approx(0.03 * 30.0 / 0.4 - 0.2)


@pytest.mark.parametrize("segment", ["Champions", "Loyal", "Potential Loyalist", "At Risk"])
def test_every_developing_repeat_buyer_is_recommended_to_whatever_the_segment(policy, segment):
    """With few purchase days per customer, 3 or 4 score F=4: a developing repeat buyer in
    Champions or Loyal got no action at all (57% of the sample's new and developing repeat
    buyers) while the shipped policy's table promised them a recommendation."""
    c = customer(churn_probability=0.4, predicted_value=30.0, rfm_segment=segment,
                 lifecycle_stage="developing", favourite_category="garden", frequency=4,
                 recency_days=151)  # fmt: skip
    decision = decide(c, policy)
    assert decision.action == "recommendation" and decision.category == "garden", decision


def test_a_new_buyer_is_welcomed_once_quiet_and_recommended_to_once_a_repeat_buyer(policy):
    """The catalogue's promises: a welcome for a new buyer who went quiet (not the day after a
    first order), a recommendation for a repeat buyer from a category they favour."""
    new = dict(churn_probability=0.8, predicted_value=12.0, rfm_segment="New",
               lifecycle_stage="new", favourite_category="books")  # fmt: skip
    just_bought = decide(customer(**new, frequency=1, recency_days=1), policy)
    assert just_bought.action == NO_ACTION
    quiet_1 = customer(**new, frequency=1, recency_days=1)
    why = ineligibility("welcome_offer", policy.actions["welcome_offer"], quiet_1, policy)
    assert why == "welcome_offer needs days since the last purchase at least 14 (1)"
    assert decide(customer(**new, frequency=1, recency_days=14), policy).action == "welcome_offer"
    once = dict(new, churn_probability=0.3, predicted_value=40.0)
    assert decide(customer(**once, frequency=1, recency_days=20), policy).action == NO_ACTION
    assert decide(customer(**once, frequency=2, recency_days=20), policy).action == (
        "recommendation"
    )
    for favourite in (None, "(other)"):  # no category to recommend from
        c = customer(**dict(once, favourite_category=favourite), frequency=2, recency_days=20)
        assert decide(c, policy).action == NO_ACTION
        why = ineligibility("recommendation", policy.actions["recommendation"], c, policy)
        assert why == f"recommendation needs a favourite category ({favourite or 'none'})"
    unknown = customer(**once)  # a feature row without frequency: not a known repeat buyer
    assert "purchase days at least 2 (unknown)" in ineligibility(
        "recommendation", policy.actions["recommendation"], unknown, policy
    )


def test_loyal_customer_gets_a_thank_you(policy):
    c = customer(churn_probability=0.2, predicted_value=80.0, rfm_segment="Loyal",
                 lifecycle_stage="loyal")  # fmt: skip
    assert decide(c, policy).action == "thank_you"  # below the VIP value floor of 150


def test_valuable_champion_gets_the_vip_invitation(policy):
    c = customer(churn_probability=0.1, predicted_value=400.0, rfm_segment="Champions",
                 lifecycle_stage="loyal")  # fmt: skip
    decision = decide(c, policy)
    assert decision.action == "vip_invitation"
    assert decision.expected_value == pytest.approx(0.05 * 400 / 0.9 - 5.0)


def test_valuable_customer_at_risk_gets_the_win_back_offer(policy):
    # Small expected value (most likely gone) but large if they buy: 12 / 0.1 = 120.
    c = customer(churn_probability=0.9, predicted_value=12.0, rfm_segment="Can't Lose Them",
                 lifecycle_stage="at-risk")  # fmt: skip
    assert value_if_purchase(c, policy) == pytest.approx(120.0)
    decision = decide(c, policy)
    assert decision.action == "win_back"
    assert decision.expected_value == pytest.approx(0.10 * 120 - 4.0)


def test_value_if_purchase_floors_the_purchase_probability(policy):
    """A customer certain (or all but certain) to churn is not worth infinitely much if they
    buy: the purchase probability is floored at min_purchase_probability (0.05)."""
    for churn in (1.0, 0.99):
        c = customer(churn_probability=churn, predicted_value=12.0)
        assert value_if_purchase(c, policy) == pytest.approx(12.0 / 0.05)


@pytest.mark.parametrize(
    ("kw", "action", "gain"),
    [
        # welcome_offer needs churn probability at least 0.5: 8% x (30 / 0.5) - 2
        (dict(churn_probability=0.5, predicted_value=30.0, rfm_segment="New",
              lifecycle_stage="new", frequency=1, recency_days=20), "welcome_offer", 2.8),
        # win_back needs churn at least 0.5 and value if purchase at least 50: 10% x 50 - 4
        (dict(churn_probability=0.5, predicted_value=25.0, rfm_segment="Can't Lose Them",
              lifecycle_stage="at-risk"), "win_back", 1.0),
        # vip_invitation needs a predicted value at least 150: 5% x (150 / 0.9) - 5
        (dict(churn_probability=0.1, predicted_value=150.0, rfm_segment="Champions",
              lifecycle_stage="loyal"), "vip_invitation", 0.05 * 150 / 0.9 - 5.0),
    ],
    ids=["min churn probability", "min value if purchase", "min predicted value"],
)  # fmt: skip
def test_a_bound_met_exactly_is_eligible(policy, kw, action, gain):
    """nba.yaml's bounds read "at least": a customer exactly at one is eligible."""
    decision = decide(customer(**kw), policy)
    assert decision.action == action
    assert decision.expected_value == pytest.approx(gain)


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        # value if purchase 2.6987 / (1 - 0.946026) = 49.9993: it read "at least 50 (50)"
        (dict(churn_probability=0.9460260338259987, predicted_value=2.698662409763479),
         "win_back needs value if purchase at least 50 (49.999)"),
        # it read "at least 0.5 (0.5)"
        (dict(churn_probability=0.4996, predicted_value=100.0),
         "win_back needs churn probability at least 0.5 (0.4996)"),
        # three significant digits where they fall short already, as before
        (dict(churn_probability=0.4, predicted_value=100.0),
         "win_back needs churn probability at least 0.5 (0.4)"),
    ],
    ids=["value if purchase", "churn probability", "3 digits"],
)  # fmt: skip
def test_a_failed_bound_shows_the_actual_value_short_of_it(policy, kw, why):
    """A value just short of a bound is shown with the digits that keep it short, never
    rounded onto the bound ("at least 50 (50)" read as if the bound were met)."""
    c = customer(**kw, rfm_segment="Can't Lose Them", lifecycle_stage="at-risk")
    assert ineligibility("win_back", policy.actions["win_back"], c, policy) == why
    assert decide(c, policy).reason == f"no action is eligible for this customer ({why})"


def test_a_bound_of_many_digits_is_shown_with_them():
    """A bound that six digits round (0.50000004 read "0.5") is shown in full: the actual
    0.50000001 short of it read "at least 0.5 (0.5)"."""
    raw = yaml.safe_load((CONFIGS / "nba.yaml").read_text())
    raw["actions"]["win_back"]["eligible"]["min_churn_probability"] = 0.50000004
    c = customer(churn_probability=0.50000001, predicted_value=100.0,
                 rfm_segment="Can't Lose Them", lifecycle_stage="at-risk")  # fmt: skip
    policy = NbaConfig.model_validate(raw)
    assert ineligibility("win_back", policy.actions["win_back"], c, policy) == (
        "win_back needs churn probability at least 0.50000004 (0.5)"
    )


def _with_effect(action: str, default: float) -> NbaConfig:
    """The shipped policy with one action's prior effect set to `default` for every segment."""
    raw = yaml.safe_load((CONFIGS / "nba.yaml").read_text())
    raw["actions"][action]["effect"] = {"default": default}
    return NbaConfig.model_validate(raw)


def _arithmetic_holds(reason: str) -> bool:
    """Whether `effect% x value - cost = gain` in a reason adds up to the cent (within the
    rounding of the value and cost it shows)."""
    found = re.search(r"(-?[\d.]+)% x ([\d.]+) - ([\d.]+) = ([-+][\d.]+)", reason)
    assert found is not None, reason
    effect, value, cost, gain = (float(g) for g in found.groups())
    return abs(effect / 100 * value - cost - gain) <= 0.01


@pytest.mark.parametrize(
    ("action", "effect", "kw", "shown"),
    [
        # 0.004 read "0%": "0% x 124.38 - 0.30 = +0.20" (0% of it less 0.30 is -0.30)
        ("thank_you", 0.004, dict(churn_probability=0.6, predicted_value=49.75,
         rfm_segment="Loyal", lifecycle_stage="loyal"), "0.4% x 124.38 - 0.30 = +0.20"),
        # 0.025 read "2%": "2% x 141.13 - 0.20 = +3.33" (2% of it less 0.20 is 2.62)
        ("recommendation", 0.025, dict(churn_probability=0.6, predicted_value=56.452,
         rfm_segment="Promising", lifecycle_stage="developing", favourite_category="books",
         frequency=3, recency_days=20), "2.5% x 141.13 - 0.20 = +3.33"),
        # a prior too small to pay: the "nothing pays" reason shows it alike
        ("thank_you", 0.001, dict(churn_probability=0.6, predicted_value=49.75,
         rfm_segment="Loyal", lifecycle_stage="loyal"),
         "nothing pays: best is thank_you at 0.1% x 124.38 - 0.30 = -0.18"),
    ],
    ids=["0.4%", "2.5%", "nothing pays"],
)  # fmt: skip
def test_a_prior_effect_is_shown_with_the_digits_its_arithmetic_needs(action, effect, kw, shown):
    """A prior that is not a whole percent is shown with its decimals, so that the reason's
    sum adds up; the shipped whole priors stay as they read (`8% x 60.00`, test above)."""
    decision = decide(customer(**kw), _with_effect(action, effect))
    assert shown in decision.reason and _arithmetic_holds(decision.reason), decision.reason


@pytest.mark.parametrize(
    "order", [["thank_you", "vip_invitation"], ["vip_invitation", "thank_you"]]
)
def test_of_two_actions_worth_the_same_the_one_listed_first_wins(order):
    """README: a tie goes to the order of `actions` in nba.yaml."""
    same = {"cost": 0.3, "eligible": {"lifecycle_stages": ["loyal"]}, "effect": {"default": 0.01}}
    policy = NbaConfig.model_validate(
        {"actions": {name: same for name in order}, "cold_start": {"action": NO_ACTION}}
    )
    c = customer(churn_probability=0.2, predicted_value=80.0, rfm_segment="Loyal",
                 lifecycle_stage="loyal")  # fmt: skip
    assert decide(c, policy).action == order[0]


def test_cheap_customer_at_risk_gets_nothing(policy):
    c = customer(churn_probability=0.95, predicted_value=1.0, rfm_segment="Hibernating",
                 lifecycle_stage="at-risk")  # fmt: skip
    decision = decide(c, policy)
    assert decision.action == NO_ACTION and decision.expected_value == 0.0
    assert "no action is eligible" in decision.reason  # win-back needs 50 if they buy


def test_no_action_when_the_best_eligible_action_does_not_pay(policy):
    c = customer(churn_probability=0.5, predicted_value=2.0, rfm_segment="Loyal",
                 lifecycle_stage="loyal")  # fmt: skip
    decision = decide(c, policy)
    assert decision.action == NO_ACTION
    assert decision.reason.startswith("nothing pays: best is thank_you")


def test_contact_cap_blocks_a_repeat_within_the_window(policy):
    base = dict(churn_probability=0.9, predicted_value=12.0, rfm_segment="Can't Lose Them",
                lifecycle_stage="at-risk")  # fmt: skip
    recent = customer(**base, last_contacts={"win_back": AS_OF - timedelta(days=10)})
    assert decide(recent, policy).action == NO_ACTION
    old = customer(**base, last_contacts={"win_back": AS_OF - timedelta(days=31)})
    assert decide(old, policy).action == "win_back"


@pytest.mark.parametrize(
    ("before", "action"),
    [(timedelta(days=30), "win_back"), (timedelta(days=30, seconds=-1), NO_ACTION),
     (timedelta(0), NO_ACTION)],
    ids=["exactly 30 days", "a second less", "at as_of"],
)  # fmt: skip
def test_the_contact_cap_counts_clock_time_from_the_contact(policy, before, action):
    """README: capped while sent less than contact_cap_days x 24 hours before as_of."""
    c = customer(churn_probability=0.9, predicted_value=12.0, rfm_segment="Can't Lose Them",
                 lifecycle_stage="at-risk", last_contacts={"win_back": AS_OF - before})  # fmt: skip
    assert decide(c, policy).action == action


def test_an_action_stopped_by_its_contact_cap_alone_is_named(policy):
    """A customer only win_back suits, sent one 29 days ago: the answer says the cap stopped
    it, not that nothing suits them; an action they are not eligible for is not listed."""
    at_risk = dict(churn_probability=0.9, predicted_value=12.0, rfm_segment="Can't Lose Them",
                   lifecycle_stage="at-risk")  # fmt: skip
    sent = {"win_back": AS_OF - timedelta(days=29), "thank_you": AS_OF - timedelta(days=1)}
    decision = decide(customer(**at_risk, last_contacts=sent), policy)
    assert decision.action == NO_ACTION
    assert decision.reason == (
        "no action is eligible for this customer (win_back already sent "
        f"{AS_OF - timedelta(days=29):%Y-%m-%d} (cap 30 days))"
    )
    later = {"win_back": AS_OF - timedelta(days=30)}
    assert decide(customer(**at_risk, last_contacts=later), policy).action == "win_back"


def test_a_customer_whose_stages_action_fails_another_rule_is_told_which(policy):
    """A developing customer of a shop without categories: recommendation, the stage's one
    action, needs a favourite category; the answer names that, not a bare "none"."""
    developing = customer(churn_probability=0.8, predicted_value=217.0, frequency=4,
                          rfm_segment="Need Attention", lifecycle_stage="developing",
                          recency_days=60)  # fmt: skip
    decision = decide(developing, policy)
    assert decision.action == NO_ACTION
    assert decision.reason == (
        "no action is eligible for this customer (recommendation needs a favourite category (none))"
    )


@pytest.mark.parametrize(
    ("stage", "why"),
    [("lapsed", "no action targets lifecycle stage lapsed"), (None, "lifecycle stage unknown")],
)
def test_a_customer_whose_stage_has_no_action_is_told_so(policy, stage, why):
    """A lapsed Can't Lose Them customer, whom win_back would pay for were they at-risk, and a
    feature row without a stage were told a bare "no action is eligible for this customer"."""
    c = customer(churn_probability=0.945, predicted_value=11.75, rfm_segment="Can't Lose Them",
                 lifecycle_stage=stage)  # fmt: skip
    decision = decide(c, policy)
    assert decision.action == NO_ACTION
    assert decision.reason == f"no action is eligible for this customer ({why})"


def test_cold_start_gets_the_configured_action_unless_capped(policy):
    assert decide(customer(), policy).action == "welcome_offer"
    assert decide(customer(), policy).expected_value is None
    capped = customer(last_contacts={"welcome_offer": AS_OF - timedelta(days=1)})
    decision = decide(capped, policy)
    assert decision.action == NO_ACTION and "already sent" in decision.reason


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"actions": {"no_action": {"cost": 0, "effect": {"default": 0}}}}, "reserved"),
        ({"cold_start": {"action": "surprise"}}, "cold_start.action"),
        ({"actions": {"thank_you": {"cost": 1, "effect": {"default": 0.1,
          "segments": {"Heroes": 0.2}}}}}, "Heroes"),
        ({"actions": {"thank_you": {"cost": -1, "effect": {"default": 0.1}}}}, "cost"),
        ({"actions": {"winback_discount": {"cost": 1, "effect": {"default": 0.1}}}},
         r"actions: unknown action\(s\) \['winback_discount'\]; the action catalogue"),
        ({"actions": {"Win-Back": {"cost": 1, "effect": {"default": 0.1}}}},
         r"did you mean 'Win-Back' -> 'win_back'\?"),
        # a close typo, as a request's contact of that name is told (no hint here before)
        ({"actions": {"winback": {"cost": 1, "effect": {"default": 0.1}}}},
         r"did you mean 'winback' -> 'win_back'\?"),
        # bounds that cannot both hold: served, the action was eligible for no one
        ({"actions": {"thank_you": {"cost": 0.3, "effect": {"default": 0.01}, "eligible": {
          "min_churn_probability": 0.9, "max_churn_probability": 0.1}}}},
         r"actions\.thank_you\.eligible: min_churn_probability 0\.9 > max_churn_probability "
         r"0\.1: no customer could be eligible$"),
    ],
)  # fmt: skip
def test_bad_policy_is_a_config_error_naming_the_field(tmp_path, change, message):
    raw = yaml.safe_load((CONFIGS / "nba.yaml").read_text())
    raw.update(change)
    path = tmp_path / "nba.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        load_config(NbaConfig, path)


def test_a_min_equal_to_its_max_is_a_bound_met_exactly(tmp_path):
    """Bounds read "at least" and "at most": a min equal to its max holds for that value."""
    raw = yaml.safe_load((CONFIGS / "nba.yaml").read_text())
    raw["actions"]["win_back"]["eligible"]["max_churn_probability"] = 0.5
    path = tmp_path / "nba.yaml"
    path.write_text(yaml.safe_dump(raw))
    policy = load_config(NbaConfig, path)
    c = customer(churn_probability=0.5, predicted_value=25.0, rfm_segment="Can't Lose Them",
                 lifecycle_stage="at-risk")  # fmt: skip
    assert decide(c, policy).action == "win_back"


# --- effects from the uplift model --------------------------------------------------------------

# win_back is the one eligible action: 10% (prior) x 120 - 4 = 8 (test above).
AT_RISK = {"churn_probability": 0.9, "predicted_value": 12.0, "rfm_segment": "Can't Lose Them",
           "lifecycle_stage": "at-risk"}  # fmt: skip


def test_an_uplift_effect_replaces_the_prior(policy):
    prior = decide(customer(**AT_RISK), policy)
    assert (prior.action, prior.effect_source, prior.weighed) == ("win_back", "prior", "win_back")
    strong = decide(customer(**AT_RISK, effects={"win_back": 0.2}), policy)
    assert strong.action == "win_back" and strong.effect_source == "uplift"
    assert strong.expected_value == pytest.approx(0.2 * 120 - 4.0)
    assert "20.0% x 120.00 - 4.00" in strong.reason and "(uplift effect)" in strong.reason
    # The model says 2%: 0.02 x 120 - 4 < 0, nothing pays, and the answer says whose effect.
    weak = decide(customer(**AT_RISK, effects={"win_back": 0.02}), policy)
    assert weak.action == NO_ACTION and weak.expected_value == 0.0
    assert weak.reason.startswith("nothing pays: best is win_back at 2.0% x 120.00")
    assert (weak.effect_source, weak.weighed) == ("uplift", "win_back")
    # A negative effect: sending would lose customers, never chosen.
    harm = decide(customer(**AT_RISK, effects={"win_back": -0.05}), policy)
    assert harm.action == NO_ACTION and "-5.0% x 120.00" in harm.reason


def test_an_uplift_effect_is_shown_with_the_digits_its_arithmetic_needs(policy):
    """An uplift effect, shown to a tenth of a point, read "15.1% x 120.00 - 4.00 = +14.08"
    for 15.066%: 15.1% of 120 is 18.12, not 18.08. It gets the digits it needs."""
    decision = decide(customer(**AT_RISK, effects={"win_back": 0.15066}), policy)
    assert "15.07% x 120.00 - 4.00 = +14.08" in decision.reason, decision.reason
    assert _arithmetic_holds(decision.reason)
    round_effect = decide(customer(**AT_RISK, effects={"win_back": 0.2}), policy)
    assert "20.0% x 120.00" in round_effect.reason  # a tenth of a point at least, as before


def test_an_action_that_exactly_pays_for_itself_is_not_sent(policy):
    """A gain of exactly 0 is a contact for nothing: no action, and the answer says so."""
    import math

    value = value_if_purchase(customer(**AT_RISK), policy)
    effect = 4.0 / value
    while effect * value - 4.0 > 0:  # the float nearest to an exact 0 gain, from below
        effect = math.nextafter(effect, 0.0)
    while effect * value - 4.0 < 0:
        effect = math.nextafter(effect, 1.0)
    assert effect * value - 4.0 == 0.0
    decision = decide(customer(**AT_RISK, effects={"win_back": effect}), policy)
    assert decision.action == NO_ACTION and decision.expected_value == 0.0
    assert decision.reason.startswith("nothing pays: best is win_back") and "= +0.00" in (
        decision.reason
    )


def test_an_action_without_a_model_keeps_its_prior(policy):
    effects = {"win_back": 0.5, "vip_invitation": 0.5}  # neither eligible for this customer
    loyal = customer(churn_probability=0.2, predicted_value=80.0, rfm_segment="Loyal",
                     lifecycle_stage="loyal", effects=effects)  # fmt: skip
    decision = decide(loyal, policy)  # thank_you: no campaign teaches it, its prior stands
    assert decision.action == "thank_you" and decision.effect_source == "prior"
    # nothing pays on priors: the source says prior
    unpaid = decide(customer(churn_probability=0.5, predicted_value=2.0, rfm_segment="Loyal",
                             lifecycle_stage="loyal"), policy)  # fmt: skip
    assert unpaid.action == NO_ACTION and (unpaid.effect_source, unpaid.weighed) == (
        "prior", "thank_you")  # fmt: skip


def test_a_value_far_from_its_bound_is_written_out():
    """Tester G: a value of 12,345.6 short of a bound read `(1.23e+04)`."""
    raw = yaml.safe_load((CONFIGS / "nba.yaml").read_text())
    raw["actions"]["vip_invitation"]["eligible"]["min_predicted_value"] = 20000
    policy = NbaConfig.model_validate(raw)
    c = customer(churn_probability=0.1, predicted_value=12345.6, rfm_segment="Champions",
                 lifecycle_stage="loyal")  # fmt: skip
    said = ineligibility("vip_invitation", policy.actions["vip_invitation"], c, policy)
    assert said == "vip_invitation needs predicted value at least 20000 (12346)"
    c = customer(churn_probability=0.1, predicted_value=19999.9996, rfm_segment="Champions",
                 lifecycle_stage="loyal")  # fmt: skip
    said = ineligibility("vip_invitation", policy.actions["vip_invitation"], c, policy)
    assert said == "vip_invitation needs predicted value at least 20000 (19999.9996)"


def test_rules_an_older_init_wrote_are_named_where_the_policy_is_read(tmp_path):
    """A home's nba.yaml replaces the packaged actions whole: one written before 2026-12-06
    kept a recommendation for five segments only (and one before 2026-12-05 a welcome offer
    the day after a first order), and `serve` said nothing (tester K). Edited rules are the
    user's: no warning."""
    path = tmp_path / "nba.yaml"
    assert outdated_rules(load_config(NbaConfig, CONFIGS / "nba.yaml"), path) is None
    raw = yaml.safe_load((CONFIGS / "nba.yaml").read_text())
    del raw["actions"]["welcome_offer"]["eligible"]["min_recency_days"]
    raw["actions"]["recommendation"]["eligible"] = {
        "lifecycle_stages": ["developing", "new"],
        "rfm_segments": ["Potential Loyalist", "Promising", "Need Attention", "About to Sleep",
                         "New"],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(raw))
    said = outdated_rules(load_config(NbaConfig, path), path)
    assert said == (
        f"warning: {path}: eligibility as an older `crm-ltv init` wrote it, a packaged default "
        "since changed, for welcome_offer (before 2026-12-05; now min_recency_days: 14, gone "
        "quiet rather than the day after a first order); recommendation (before 2026-12-05; now "
        "min_frequency: 2 in any segment: the list left most developing customers out): edit "
        "it, or compare with the file `crm-ltv init FOLDER` writes (README: Next-best-action)"
    )
    # the segment list and repeat buyers of 2026-12-05 and 2026-12-06
    raw["actions"]["recommendation"]["eligible"]["min_frequency"] = 2
    path.write_text(yaml.safe_dump(raw))
    said = outdated_rules(load_config(NbaConfig, path), path)
    assert said is not None and "recommendation (before 2026-12-06; now min_frequency: 2" in said
    raw["actions"]["welcome_offer"]["eligible"]["min_churn_probability"] = 0.6  # edited: theirs
    path.write_text(yaml.safe_dump(raw))
    said = outdated_rules(load_config(NbaConfig, path), path)
    assert said is not None and "welcome_offer" not in said and "recommendation (before" in said
