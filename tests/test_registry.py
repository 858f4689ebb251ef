"""The promotion gate as a pure decision."""

from __future__ import annotations

from crm_ltv.training.config import GateConfig, Threshold
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


def test_a_new_model_must_strictly_beat_the_champion():
    champion = {"roc_auc": 0.80, "expected_calibration_error": 0.01}
    better = {"roc_auc": 0.81, "expected_calibration_error": 0.01}
    assert decide_promotion(better, champion, GATE, "champion v3").promote
    worse = decide_promotion(champion | {"roc_auc": 0.79}, champion, GATE, "champion v3")
    assert not worse.promote and "does not beat champion v3's 0.8000" in worse.reason
    assert not decide_promotion(champion, champion, GATE).promote  # a tie keeps the champion


def test_lower_is_better_metrics_compare_the_other_way():
    gate = GateConfig(compare="log_loss")
    assert decide_promotion({"log_loss": 0.30}, {"log_loss": 0.32}, gate).promote
    assert not decide_promotion({"log_loss": 0.33}, {"log_loss": 0.32}, gate).promote
