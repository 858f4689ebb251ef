"""Holdouts, exploration and propensities (serving.holdout): pure functions, no server."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from crm_ltv.features.actions import ACTION_NAMES
from crm_ltv.features.config import ConfigError, load_config
from crm_ltv.serving.config import NO_ACTION, HoldoutConfig, NbaConfig
from crm_ltv.serving.decisions import DecisionLog
from crm_ltv.serving.holdout import (
    apply_holdout,
    assign,
    candidates,
    period_of,
    propensity,
    unit_draw,
)
from crm_ltv.serving.nba import Customer, decide
from crm_ltv.serving.schemas import CustomerScore, NextBestAction
from tests.conftest import CONFIGS

CONFIG = HoldoutConfig(share=0.1, period="week", exploration=0.2, salt="test")
IDS = [f"c{i:05d}" for i in range(20_000)]


def test_periods_are_iso_weeks_or_months():
    assert period_of(datetime(2025, 6, 30), "week") == "2025-W27"
    assert period_of(datetime(2024, 12, 30), "week") == "2025-W01"  # ISO year of the week
    assert period_of(datetime(2025, 6, 30), "month") == "2025-06"
    with pytest.raises(ValueError, match="period"):
        period_of(datetime(2025, 6, 30), "day")


def test_assignment_is_stable_within_a_period_and_redrawn_in_the_next():
    eligible = ("recommendation", "win_back")
    first = [assign(c, "2025-W27", "win_back", eligible, CONFIG) for c in IDS[:2000]]
    again = [assign(c, "2025-W27", "win_back", eligible, CONFIG) for c in IDS[:2000]]
    assert first == again
    later = [assign(c, "2025-W28", "win_back", eligible, CONFIG).holdout for c in IDS[:2000]]
    held = [a.holdout for a in first]
    # Independent draws per period: about share^2 of customers held out twice, not share.
    both = np.mean(np.array(held) & np.array(later))
    assert both < 0.05 and np.mean(held) > 0.05
    salted = [
        assign(c, "2025-W27", "win_back", eligible, CONFIG.model_copy(update={"salt": "new"}))
        for c in IDS[:2000]
    ]
    assert [a.holdout for a in salted] != held


def test_holdout_and_exploration_shares_are_the_configured_ones():
    eligible = ("recommendation", "win_back")
    got = [assign(c, "2025-W27", "win_back", eligible, CONFIG) for c in IDS]
    held = np.array([a.holdout for a in got])
    explored = np.array([a.explored for a in got])
    n = len(IDS)
    # Binomial standard errors: 0.1 +- 4 sigma (0.0085), 0.9 x 0.2 = 0.18 +- 4 sigma (0.011).
    assert abs(held.mean() - 0.1) < 4 * np.sqrt(0.1 * 0.9 / n)
    assert abs(explored.mean() - 0.18) < 4 * np.sqrt(0.18 * 0.82 / n)
    assert not (held & explored).any()
    assert all(a.action == NO_ACTION for a in got if a.holdout)
    assert all(a.action == "win_back" for a in got if not a.holdout and not a.explored)
    # Each action's observed share matches its propensity.
    for action in candidates("win_back", eligible):
        share = np.mean([a.action == action for a in got])
        p = propensity(action, "win_back", candidates("win_back", eligible), 0.1, 0.2)
        assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-9, action


def test_propensities_sum_to_one_over_the_candidates_and_match_the_action_taken():
    for policy, eligible in [
        ("win_back", ("recommendation", "win_back")),
        (NO_ACTION, ("thank_you",)),
        (NO_ACTION, ()),
        ("welcome_offer", ("welcome_offer",)),
    ]:
        choices = candidates(policy, eligible)
        assert NO_ACTION in choices and policy in choices
        for share, exploration in [(0.1, 0.05), (0.0, 0.0), (0.3, 0.5)]:
            total = sum(propensity(a, policy, choices, share, exploration) for a in choices)
            assert total == pytest.approx(1.0)
            # An action outside the candidates is never sent: no support, propensity 0.
            assert propensity("vip_invitation", policy, choices, share, exploration) == 0.0
    for c in IDS[:500]:
        a = assign(c, "2025-06", "win_back", ("win_back", "recommendation"), CONFIG)
        choices = candidates("win_back", ("win_back", "recommendation"))
        assert a.propensity == propensity(a.action, "win_back", choices, 0.1, 0.2) > 0


def test_draws_are_uniform_and_depend_on_every_input():
    draws = np.array([unit_draw("s", "holdout", c, "2025-W27") for c in IDS])
    assert ((draws >= 0) & (draws < 1)).all()
    assert np.histogram(draws, bins=10, range=(0, 1))[0].min() > 0.9 * len(IDS) / 10
    assert unit_draw("s", "holdout", "a", "p") != unit_draw("s", "explore", "a", "p")


def _score(
    cid: str,
    action: str,
    churn: float | None = 0.8,
    value: float = 40.0,
    segment: str = "At Risk",
    stage: str = "at-risk",
) -> CustomerScore:
    cold = churn is None
    return CustomerScore(
        customer_id=cid,
        as_of=datetime(2025, 6, 30),
        cold_start=cold,
        churn_probability=churn,
        predicted_value=None if cold else value,
        horizon_days=90,
        rfm_segment=None if cold else segment,
        lifecycle_stage=None if cold else stage,
        reasons=[],
        next_best_action=NextBestAction(action=action, expected_value=1.0, reason="policy"),
        model_versions={},
    )


def _view(answer: CustomerScore, **more) -> Customer:
    """The policy's view of the answer's customer, as Scorer.score_with_views returns it."""
    return Customer(
        answer.as_of,
        answer.churn_probability,
        answer.predicted_value,
        answer.rfm_segment,
        answer.lifecycle_stage,
        **more,
    )


def test_apply_holdout_sends_no_action_to_the_held_out_and_says_why():
    nba = load_config(NbaConfig, CONFIGS / "nba.yaml")
    config = HoldoutConfig(share=0.3, exploration=0.3, salt="t")
    ids = IDS[:300]
    answers = [_score(c, "win_back") for c in ids]
    # the views carry an uplift model's effect: the logged prior values must not take it
    views = [_view(a, effects={"win_back": 0.5}) for a in answers]
    out, assigned = apply_holdout(list(zip(answers, views, strict=True)), nba, config)
    assert [o.customer_id for o in out] == ids
    kinds = {"holdout": 0, "explored": 0, "policy": 0}
    for o, a in zip(out, assigned, strict=True):
        assert o.holdout == a.holdout and o.explored == a.explored
        assert o.propensity == pytest.approx(a.propensity)
        assert o.next_best_action.action == a.action
        assert a.policy_action == "win_back" and a.period == "2025-06"  # month by default
        assert set(a.eligible_actions) <= set(ACTION_NAMES)
        if a.holdout:
            kinds["holdout"] += 1
            assert o.next_best_action.action == NO_ACTION
            assert o.next_best_action.reason.startswith("holdout")
        elif a.explored and a.action != "win_back":
            kinds["explored"] += 1
            assert a.action == NO_ACTION  # win_back is this customer's one eligible action
            assert o.next_best_action.reason.startswith("exploration")
            # an explored no_action weighs no action: no effect source, nothing weighed
            assert o.next_best_action.effect_source is None
            assert o.next_best_action.weighed_action is None
        elif a.explored:  # the draw was the policy's own choice: said too
            assert o.next_best_action.reason.startswith("exploration: drawn at random among")
            assert o.next_best_action.reason.endswith("the policy's own choice; policy")
        else:
            kinds["policy"] += 1
            assert o.next_best_action.reason == "policy"
    assert min(kinds.values()) > 0
    # win_back is eligible for an at-risk customer at churn 0.8 worth 40 / 0.2 = 200 if won back
    assert "win_back" in assigned[0].eligible_actions
    # priced with the prior (7% for At Risk), not the view's uplift effect of 50%
    assert assigned[0].prior_expected_values == {"win_back": pytest.approx(0.07 * 200 - 4.0)}
    # the shares as configured (tester G: a holdout of 0.004 read `0%` of customers)
    said = {o.next_best_action.reason.split(" (")[1].split(" of ")[0] for o in out
            if o.holdout or (o.explored and o.next_best_action.action == NO_ACTION)}  # fmt: skip
    assert said == {"30%"}
    small = HoldoutConfig(share=0.004, exploration=0.0125, salt="t")
    out, _ = apply_holdout(list(zip(answers, views, strict=True)), nba, small)
    reasons = {o.next_best_action.reason.split(" of ")[0] for o in out if o.holdout or o.explored}
    assert any(r.endswith("(0.4%") for r in reasons) and any(r.endswith("(1.25%") for r in reasons)


def test_a_cold_start_is_logged_with_its_configured_action_as_the_one_eligible():
    """A cold start has no scores for the rules to read: the candidates are the cold-start
    action and no_action, and there is no prior value to log."""
    nba = load_config(NbaConfig, CONFIGS / "nba.yaml")
    config = HoldoutConfig(share=0.1, exploration=0.1, salt="t")
    answer = _score("c1", "welcome_offer", churn=None)
    _, [assigned] = apply_holdout([(answer, _view(answer))], nba, config)
    assert assigned.eligible_actions == ("welcome_offer",)
    assert assigned.prior_expected_values == {}


def test_an_explored_money_losing_action_reports_its_negative_value():
    """A loyal customer worth 20 at churn 0.2: thank_you is eligible but earns 0.01 x 25 - 0.3
    = -0.05, so the policy sends nothing; when exploration draws it, the answer says -0.05."""
    nba = load_config(NbaConfig, CONFIGS / "nba.yaml")
    config = HoldoutConfig(share=0.0, exploration=0.9, salt="t")
    ids = IDS[:60]
    answers = [_score(c, NO_ACTION, 0.2, 20.0, "Loyal", "loyal") for c in ids]
    for a in answers:
        a.next_best_action.expected_value = 0.0
    out, assigned = apply_holdout([(a, _view(a)) for a in answers], nba, config)
    assert assigned[0].eligible_actions == ("thank_you",)
    assert assigned[0].prior_expected_values == {"thank_you": pytest.approx(-0.05)}
    sent = [o for o in out if o.next_best_action.action == "thank_you"]
    assert sent and all(o.explored for o in sent)
    assert all(o.next_best_action.expected_value == pytest.approx(-0.05) for o in sent)
    # an explored action is priced with its prior, and says so
    assert all(
        (o.next_best_action.effect_source, o.next_best_action.weighed_action)
        == ("prior", "thank_you")
        for o in sent
    )
    assert all(a.share == 0.0 and a.exploration == 0.9 for a in assigned)


def test_an_explored_action_the_uplift_model_covers_is_priced_with_its_effect():
    """Tester R: an explored thank_you came back at its prior's value, labelled `prior`, where
    the uplift model said it loses money (why the policy had not chosen it). It is priced as
    the policy prices it, says `uplift` and the version; the log keeps the priors' values."""
    nba = load_config(NbaConfig, CONFIGS / "nba.yaml")
    config = HoldoutConfig(share=0.0, exploration=0.9, salt="t")
    answers = [_score(c, NO_ACTION, 0.2, 20.0, "Loyal", "loyal") for c in IDS[:60]]
    for a in answers:
        a.model_versions.update({"churn": "1", "ltv": "1", "uplift": "3"})
    views = [_view(a, effects={"thank_you": -0.02}) for a in answers]
    out, assigned = apply_holdout(list(zip(answers, views, strict=True)), nba, config)
    sent = [o.next_best_action for o in out if o.next_best_action.action == "thank_you"]
    assert sent and all(o.explored for o in out if o.next_best_action.action == "thank_you")
    for action in sent:  # -0.02 x 20 / 0.8 - 0.3 = -0.8
        assert action.expected_value == pytest.approx(-0.02 * 25 - 0.3)
        assert (action.effect_source, action.uplift_version, action.weighed_action) == (
            "uplift",
            "3",
            "thank_you",
        )
    assert assigned[0].prior_expected_values == {"thank_you": pytest.approx(-0.05)}


def test_the_decision_log_writes_json_even_for_a_value_that_is_not_a_number(tmp_path):
    """pydantic's encoder writes NaN and Infinity by default, which JSON readers refuse."""
    log = DecisionLog(tmp_path / "logs" / "decisions.jsonl")
    answers = [_score("a", "win_back", value=float("inf")), _score("b", "win_back", churn=None)]
    views = [_view(answers[0], favourite_category="garden", frequency=3, recency_days=20),
             _view(answers[1])]  # fmt: skip
    log.append(answers, "req-1", datetime(2025, 7, 1), None, views)

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    lines = log.path.read_text().splitlines()
    rows = [json.loads(line, parse_constant=refuse) for line in lines]
    assert [r["customer_id"] for r in rows] == ["a", "b"]
    assert rows[0]["predicted_value"] is None and rows[0]["churn_probability"] == 0.8
    # what the policy's rules read beyond the answer, for policy-eval's rivals
    assert (rows[0]["frequency"], rows[0]["recency_days"], rows[0]["favourite_category"]) == (
        3,
        20,
        "garden",
    )
    assert rows[1]["frequency"] is None and rows[1]["favourite_category"] is None
    # customer ids and scores: not executable, nor readable by others (tester S: rwxr-xr-x)
    assert log.path.stat().st_mode & 0o117 == 0, oct(log.path.stat().st_mode)


def _decided(cid: str, view: Customer, nba: NbaConfig, uplift: str | None) -> CustomerScore:
    """The answer the scorer gives for `view` (Scorer._answer): the policy's decision."""
    decision = decide(view, nba)
    return CustomerScore(
        customer_id=cid, as_of=view.as_of, cold_start=False,
        churn_probability=view.churn_probability, predicted_value=view.predicted_value,
        horizon_days=90, rfm_segment=view.rfm_segment, lifecycle_stage=view.lifecycle_stage,
        reasons=[],
        next_best_action=NextBestAction(
            action=decision.action, expected_value=decision.expected_value,
            reason=decision.reason, category=decision.category,
            effect_source=decision.effect_source, weighed_action=decision.weighed,
            uplift_version=uplift if decision.effect_source == "uplift" else None,
        ),
        model_versions={"churn": "1", "ltv": "1", **({"uplift": uplift} if uplift else {})},
    )  # fmt: skip


def test_the_decision_log_says_what_each_expected_value_was_priced_with(tmp_path):
    """Tester G: an answer said `effect_source: uplift`, `uplift_version: 1`, its log line only
    `expected_value: 5.30` beside the priors' 2.17: which effect priced it was not on record.
    Each line names the action weighed, its effect and where that came from, as the answer
    does; a line before them (no such keys) is still read."""
    from crm_ltv.experiments.outcomes import read_decisions

    nba = load_config(NbaConfig, CONFIGS / "nba.yaml")
    config = HoldoutConfig(share=0.3, exploration=0.3, salt="t")
    # win_back for an at-risk customer worth 40 / 0.2 = 200 if won back: the uplift model's
    # 15% for half of them, the At Risk prior of 7% for the others
    scored = []
    for i, cid in enumerate(IDS[:200]):
        view = Customer(datetime(2025, 6, 30), 0.8, 40.0, "At Risk", "at-risk",
                        effects={"win_back": 0.15} if i % 2 else {})  # fmt: skip
        scored.append((_decided(cid, view, nba, "3" if i % 2 else None), view))
    out, assigned = apply_holdout(scored, nba, config)
    log = DecisionLog(tmp_path / "logs" / "decisions.jsonl")
    log.append(out, "req-1", datetime(2025, 7, 1), assigned, [v for _, v in scored])
    lines = [json.loads(line) for line in log.path.read_text().splitlines()]
    kinds = set()
    for line, answer in zip(lines, out, strict=True):
        sent = answer.next_best_action
        assert (line["weighed_action"], line["effect_source"], line["uplift_version"]) == (
            sent.weighed_action, sent.effect_source, sent.uplift_version)  # fmt: skip
        if line["action"] == "win_back":  # the policy's or explored: priced as the policy does
            modelled = line["effect_source"] == "uplift"
            assert line["effect"] == (0.15 if modelled else 0.07)
            assert line["uplift_version"] == ("3" if modelled else None)
            assert line["effect"] * 200 - 4.0 == pytest.approx(line["expected_value"])
            kinds.add(line["effect_source"])
        else:  # held out, or explored no_action: nothing weighed, no effect
            assert [line[k] for k in ("weighed_action", "effect", "effect_source")] == [None] * 3
    assert kinds == {"uplift", "prior"}
    new = ("weighed_action", "effect", "effect_source", "uplift_version")
    older = {k: v for k, v in lines[0].items() if k not in new}
    with log.path.open("a") as file:
        file.write(json.dumps(older) + "\n")
    read = read_decisions(log.path)
    assert len(read) == len(lines) + 1 and read["effect"].iloc[:-1].notna().any()
    assert pd.isna(read["effect_source"].iloc[-1])


def test_a_bento_served_by_hand_without_a_home_writes_no_decision_inside_it(tmp_path, monkeypatch):
    """BentoML serves a Bento from its src folder: the log would land in the Bento (customer
    ids and scores shipped by `bentoml export`), where `crm-ltv outcomes` never looks."""
    from crm_ltv.serving.service import decision_log_path

    src = tmp_path / "bentos" / "crm-ltv" / "abc" / "src"
    src.mkdir(parents=True)
    (src.parent / "bento.yaml").write_text("service: crm_ltv.serving.service:CrmLtv\n")
    monkeypatch.chdir(src)
    monkeypatch.delenv("CRM_LTV_HOME", raising=False)
    with pytest.raises(ConfigError, match=r"would lie inside the Bento.*set CRM_LTV_HOME"):
        decision_log_path()
    assert not (src / "logs").exists()
    monkeypatch.setenv("CRM_LTV_HOME", str(tmp_path))
    assert decision_log_path() == tmp_path / "logs" / "decisions.jsonl"


def test_an_explored_recommendation_names_the_favourite_category():
    """Exploration that sends a recommendation in place of the policy's choice recommends from
    the customer's favourite category, as the policy would have (it sent none before); a
    held-out customer whose policy chose no_action anyway is told so."""
    nba = load_config(NbaConfig, CONFIGS / "nba.yaml")
    config = HoldoutConfig(share=0.2, exploration=0.9, salt="t")
    answers = [_score(c, NO_ACTION, 0.3, 40.0, "Potential Loyalist", "developing") for c in IDS]
    views = [_view(a, favourite_category="garden", frequency=3, recency_days=20) for a in answers]
    out, assigned = apply_holdout(list(zip(answers, views, strict=True)), nba, config)
    assert assigned[0].eligible_actions == ("recommendation",)
    sent = [o.next_best_action for o in out if o.next_best_action.action == "recommendation"]
    assert sent and all(n.category == "garden" for n in sent)
    held = [o.next_best_action.reason for o in out if o.holdout]
    assert held and all(
        r.startswith("holdout: in the randomized control group, whose action is no_action, the "
                     "policy's own choice; ") for r in held
    )  # fmt: skip
