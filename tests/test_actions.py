"""One action catalogue: the sample's campaigns, the campaigns loader and the policy share it."""

from __future__ import annotations

from datetime import datetime

import pytest
import yaml

from crm_ltv.features.actions import (
    ACTION_NAMES,
    ACTIONS,
    DECISIONS,
    NO_ACTION,
    misspelt_action,
    unknown_actions,
)
from crm_ltv.features.config import ConfigError, SampleConfig, load_config
from crm_ltv.features.sample import generate_sample
from crm_ltv.serving.config import NbaConfig
from crm_ltv.serving.nba import Customer, decide
from tests.conftest import CONFIGS


def test_the_policy_prices_every_action_of_the_catalogue_and_the_sample_sends_them():
    policy = load_config(NbaConfig, CONFIGS / "nba.yaml")
    assert set(policy.actions) == set(ACTION_NAMES)
    sample = load_config(SampleConfig, CONFIGS / "sample.yaml")
    assert set(sample.campaigns.effects) <= set(ACTION_NAMES)
    assert unknown_actions(["win_back", "winback_discount", "winback_discount"]) == [
        "winback_discount"
    ]


def test_the_generated_campaigns_use_catalogue_names(small_sample_config):
    tiny = small_sample_config.model_copy(update={"n_customers": 300})
    campaigns = generate_sample(tiny).campaigns
    assert set(campaigns["action"].astype(str)) == set(tiny.campaigns.effects)
    assert not unknown_actions(campaigns["action"].unique())


def test_a_sample_config_with_an_unknown_action_names_it(tmp_path):
    raw = yaml.safe_load((CONFIGS / "sample.yaml").read_text())
    raw["campaigns"]["effects"]["loyalty_reward"] = raw["campaigns"]["effects"].pop(
        "vip_invitation"
    )
    path = tmp_path / "sample.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(
        ConfigError, match=r"campaigns: .*effects: unknown action\(s\) \['loyalty_reward'\]"
    ):
        load_config(SampleConfig, path)


def test_a_decision_explains_itself_with_the_catalogue_description():
    policy = load_config(NbaConfig, CONFIGS / "nba.yaml")
    loyal = Customer(
        as_of=datetime(2025, 6, 30),
        churn_probability=0.1,
        predicted_value=100.0,
        rfm_segment="Loyal",
        lifecycle_stage="loyal",
    )
    decision = decide(loyal, policy)
    assert decision.action == "thank_you"
    assert decision.reason.startswith(ACTIONS["thank_you"] + ":")


def test_an_nba_yaml_from_before_the_catalogue_still_loads(tmp_path):
    """Its per-action `description` is read and ignored: the catalogue says what an action is."""
    raw = yaml.safe_load((CONFIGS / "nba.yaml").read_text())
    raw["actions"]["win_back"]["description"] = "win-back offer"
    path = tmp_path / "nba.yaml"
    path.write_text(yaml.safe_dump(raw))
    policy = load_config(NbaConfig, path)
    assert policy.actions["win_back"].cost == raw["actions"]["win_back"]["cost"]


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("winback", "win_back"),
        ("Win-Back", "win_back"),
        ("thank you", "thank_you"),
        ("recomendation", "recommendation"),
        ("recommendations", "recommendation"),  # a letter more: a typo, not a variant
        ("win_back", None),
        ("birthday_coupon", None),
        # a shop's variant of a name, refused as a typo of it (tester K): another action
        ("win_back_2", None),
        ("win_back2", None),
        ("welcome_offer_v2", None),
        ("Thank-You-2", None),
    ],
)
def test_a_misspelt_action_is_told_from_a_shops_variant_of_one(name, meant):
    assert misspelt_action(name) == meant


def test_no_action_is_spelt_against_when_a_decision_may_be_it():
    """Tester K: 'No_Action' in a decision log was a treatment row of an action of that name."""
    assert misspelt_action("No_Action") is None  # not a catalogue action's typo
    assert misspelt_action("No_Action", DECISIONS) == NO_ACTION
    assert misspelt_action("no-action", DECISIONS) == NO_ACTION
