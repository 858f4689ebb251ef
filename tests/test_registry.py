"""The promotion gate as a pure decision."""

from __future__ import annotations

import pytest

from crm_ltv.training.config import BY_CHANCE, GateConfig, Threshold
from crm_ltv.training.metrics import CHANCE_METRIC
from crm_ltv.training.registry import decide_promotion

GATE = GateConfig(
    compare="roc_auc",
    thresholds={"roc_auc": Threshold(min=0.7), "expected_calibration_error": Threshold(max=0.05)},
)


def test_first_model_is_promoted_only_if_it_passes_thresholds():
    good = {"roc_auc": 0.8, "expected_calibration_error": 0.01}
    assert decide_promotion(good, None, GATE).promote
    weak = decide_promotion({"roc_auc": 0.65, "expected_calibration_error": 0.01}, None, GATE)
    assert not weak.promote and "roc_auc 0.6500 < min 0.7" in weak.reason
    uncalibrated = decide_promotion({"roc_auc": 0.9, "expected_calibration_error": 0.2}, None, GATE)
    assert not uncalibrated.promote and "expected_calibration_error" in uncalibrated.reason


CHANCE_GATE = GATE.model_copy(
    update={"thresholds": GATE.thresholds | {
        "expected_calibration_error": Threshold(max=0.05, within_chance=True)}}
)  # fmt: skip


def test_calibration_error_within_chance_passes_with_a_note_and_beyond_it_fails():
    """A few hundred test customers give a calibrated model an ECE over 0.05 by chance: with
    `within_chance`, the bound refuses what the snapshot can tell apart from chance, says when
    it could not, and never passes twice the bound."""
    small = {"roc_auc": 0.8, "expected_calibration_error": 0.053, CHANCE_METRIC: 0.056}
    passed = decide_promotion(small, None, CHANCE_GATE)
    assert passed.promote and "fails" not in passed.reason
    assert "expected_calibration_error 0.0530 > max 0.05 but within chance (95% of calibrated " \
        "models read under 0.0560 on this test snapshot): passes" in passed.reason  # fmt: skip
    large = small | {"expected_calibration_error": 0.0508, CHANCE_METRIC: 0.0195}
    failed = decide_promotion(large, None, CHANCE_GATE)
    assert not failed.promote
    assert "expected_calibration_error 0.0508 > max 0.05 (95% of calibrated models read under " \
        "0.0195 on this test snapshot)" in failed.reason  # fmt: skip
    # a hundred customers: chance allows 0.14, but 0.11 is over twice the bound
    tiny = decide_promotion(small | {"expected_calibration_error": 0.11, CHANCE_METRIC: 0.14},
                            None, CHANCE_GATE)  # fmt: skip
    assert not tiny.promote and "but never past twice the max" in tiny.reason
    # under the bound, chance is not mentioned; without the flag or the figure, it is strict
    under = decide_promotion(small | {"expected_calibration_error": 0.04}, None, CHANCE_GATE)
    assert under.promote and "chance" not in under.reason
    unmeasured = {k: v for k, v in small.items() if k != CHANCE_METRIC}
    for strict in (decide_promotion(small, None, GATE),
                   decide_promotion(unmeasured, None, CHANCE_GATE)):  # fmt: skip
        assert not strict.promote and "0.0530 > max 0.05" in strict.reason
        assert "chance" not in strict.reason


def test_the_chance_figure_a_gate_reads_is_the_one_evaluation_writes():
    assert BY_CHANCE == {"expected_calibration_error": CHANCE_METRIC}


def test_a_metric_that_could_not_be_measured_fails_its_threshold():
    """NaN compares false both ways: an LTV model of a snapshot without spend passed every
    threshold and, without a baseline or champion, became champion."""
    ltv = GateConfig(
        compare="normalized_gini", baseline=None,
        thresholds={"normalized_gini": Threshold(min=0.3), "spearman": Threshold(min=0.2)},
    )  # fmt: skip
    nan = decide_promotion({"normalized_gini": float("nan"), "spearman": 0.5}, None, ltv)
    assert not nan.promote and "normalized_gini is nan (nothing the test" in nan.reason
    assert decide_promotion({"normalized_gini": 0.5, "spearman": 0.5}, None, ltv).promote
    # thresholds pass but the baseline is not beaten: said so, not "every threshold passes"
    beaten = decide_promotion({"normalized_gini": 0.5, "spearman": 0.5}, None,
                              ltv.model_copy(update={"baseline": "bgnbd"}),
                              baseline={"normalized_gini": 0.6})  # fmt: skip
    assert not beaten.promote
    assert beaten.reason.endswith("every threshold passes, but bgnbd is not beaten")


def test_a_new_model_must_strictly_beat_the_champion():
    champion = {"roc_auc": 0.80, "expected_calibration_error": 0.01}
    better = {"roc_auc": 0.81, "expected_calibration_error": 0.01}
    assert decide_promotion(better, champion, GATE, "champion v3").promote
    worse = decide_promotion(champion | {"roc_auc": 0.79}, champion, GATE, "champion v3")
    assert not worse.promote and "does not beat champion v3's 0.8000" in worse.reason
    assert not decide_promotion(champion, champion, GATE).promote  # a tie keeps the champion
    # a champion there but not comparable on this snapshot: not said to be missing
    uncompared = decide_promotion(better, None, GATE, "champion v3", uncompared=True)
    assert uncompared.promote and uncompared.reason.endswith("every threshold passes")
    assert "no champion yet" not in uncompared.reason
    # a lead within noise keeps it too, when the gate asks for more; the margin is shown as the
    # figures read (0.8632 - 0.8615), or in full when they read the same
    noisy = GateConfig(compare="roc_auc", baseline=None, min_gain_over_champion=0.001)
    close = decide_promotion({"roc_auc": 0.863166}, {"roc_auc": 0.863151}, noisy, "champion v1")
    assert not close.promote
    assert "0.8632 does not beat champion v1's 0.8632 (+1.5e-05; gain 1.5e-05, not more than " \
        "0.001)" in close.reason  # fmt: skip
    near = decide_promotion({"roc_auc": 0.86396}, {"roc_auc": 0.86304}, noisy, "champion v1")
    assert not near.promote and "(+0.0010; gain 0.00092, not more than 0.001)" in near.reason
    clear = decide_promotion({"roc_auc": 0.86317}, {"roc_auc": 0.86151}, noisy, "champion v1")
    assert clear.promote and "beats champion v1's 0.8615 (+0.0017)" in clear.reason


def test_lower_is_better_metrics_compare_the_other_way():
    gate = GateConfig(compare="log_loss")
    assert decide_promotion({"log_loss": 0.30}, {"log_loss": 0.32}, gate).promote
    assert not decide_promotion({"log_loss": 0.33}, {"log_loss": 0.32}, gate).promote


def test_a_new_model_must_also_beat_the_baseline_and_the_reason_gives_each_margin():
    gate = GateConfig(compare="roc_auc", baseline="bgnbd")
    ours, bgnbd, champion = {"roc_auc": 0.80}, {"roc_auc": 0.81}, {"roc_auc": 0.70}
    behind = decide_promotion(ours, champion, gate, "champion v2", bgnbd)
    assert not behind.promote
    assert "roc_auc 0.8000 does not beat bgnbd's 0.8100 (-0.0100)" in behind.reason
    assert "roc_auc 0.8000 beats champion v2's 0.7000 (+0.1000)" in behind.reason
    ahead = decide_promotion(ours, None, gate, baseline={"roc_auc": 0.75})
    assert ahead.promote and "beats bgnbd's 0.7500 (+0.0500)" in ahead.reason
    assert decide_promotion(
        ours, None, gate.model_copy(update={"baseline": None}), baseline=bgnbd
    ).promote
    # ahead of the baseline by a hair (a one-round booster on its offset): promoted, and said
    floor = gate.model_copy(update={"min_gain_over_champion": 0.001})
    hair = decide_promotion(ours, None, floor, baseline={"roc_auc": 0.80 - 8.6e-6})
    assert hair.promote and "(+8.6e-06; within the 0.001 a champion must" in hair.reason
    assert "a champion" not in ahead.reason
    # the same ranking summed in another order: +1.1e-16 is a tie, not a lead
    tie = decide_promotion({"roc_auc": 0.6905}, None, floor, baseline={"roc_auc": 0.6905 - 1.1e-16})
    assert not tie.promote
    assert "does not beat bgnbd's 0.6905 (+1.1e-16; equal but for floating-point" in tie.reason
    money = GateConfig(compare="rmse", baseline="bgnbd")  # lower is better, money-sized
    tie = decide_promotion({"rmse": 0.3 * 1e5}, None, money, baseline={"rmse": (0.1 + 0.2) * 1e5})
    assert not tie.promote and "equal but for floating-point rounding" in tie.reason


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"compare": "auc"}, "compare: unknown metric 'auc'"),
        ({"compare": "roc_auc", "thresholds": {"lift_top10pct_ceiling": {"min": 1}}},
         "thresholds: unknown metric 'lift_top10pct_ceiling'"),
        ({"compare": "roc_auc", "thresholds": {"roc_auc": {"min": 0.7, "within_chance": True}}},
         "thresholds: roc_auc: within_chance needs a max on expected_calibration_error"),
        ({"compare": "roc_auc",
          "thresholds": {"expected_calibration_error": {"min": 0.0, "within_chance": True}}},
         "thresholds: expected_calibration_error: within_chance needs a max"),
    ],
)  # fmt: skip
def test_a_gate_on_a_metric_without_a_direction_is_a_config_error(fields, message):
    with pytest.raises(ValueError, match=message):
        GateConfig(**fields)


def test_a_version_promoted_by_hand_again_says_so_once():
    """A rollback and a promote again stacked a second "Promoted by hand" before the first."""
    from crm_ltv.training.registry import promoted_description

    held = "spend; Gate: fails thresholds. No champion yet: `crm-ltv score` uses the newest"
    first = promoted_description(held, "2026-01-01 00:00:00 UTC")
    assert first == (
        "Promoted by hand on 2026-01-01 00:00:00 UTC (`crm-ltv promote`). spend; Gate: fails "
        "thresholds."
    )
    again = promoted_description(first, "2026-02-01 09:30:00 UTC")
    assert again == first.replace("2026-01-01 00:00:00", "2026-02-01 09:30:00")


def test_a_new_champion_ends_the_no_champion_yet_of_the_versions_held_before(tmp_path, monkeypatch):
    """Tester O: versions held back by a first run's gate kept saying "No champion yet: ...
    score uses vN" after another version became champion (their gate's reason stays)."""
    import mlflow

    from crm_ltv.training.registry import NOT_YET, set_champion

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)  # an earlier test's CLI call may have set another
    try:
        client = mlflow.MlflowClient()
        client.create_registered_model("churn")
        waiting = "fails thresholds: roc_auc 0.6 < min 0.7" + NOT_YET + "score uses v{v}"
        for v in ("1", "2", "3"):
            client.create_model_version("churn", (tmp_path / v).as_uri())
            client.update_model_version("churn", v, description=waiting.format(v=v))
        set_champion("churn", "3", "champion")
        for v in ("1", "2"):
            said = client.get_model_version("churn", v).description
            assert said == "fails thresholds: roc_auc 0.6 < min 0.7.", said
        assert client.get_model_version("churn", "3").description == waiting.format(v="3")
    finally:
        mlflow.set_tracking_uri("")
        mlflow.set_registry_uri("")


def test_a_version_is_registered_with_its_tags_in_one_step(tmp_path, monkeypatch):
    """Tester T: tagged one by one after it was registered, a version whose run was killed in
    between had no `gate` tag (held, not judged), and `promote` moved it unwarned."""
    import mlflow

    from crm_ltv.training.registry import register_version

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    try:

        def killed(*args, **kwargs):
            raise KeyboardInterrupt("the run stopped after the version was made")

        monkeypatch.setattr(mlflow.MlflowClient, "set_model_version_tag", killed)
        version = register_version((tmp_path / "m").as_uri(), "churn", {"gate": "held", "a": "1"})
        tags = mlflow.MlflowClient().get_model_version("churn", version).tags
        assert tags == {"gate": "held", "a": "1"}
    finally:
        mlflow.set_tracking_uri("")
        mlflow.set_registry_uri("")
