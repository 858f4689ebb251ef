"""On the built-in sample, the LightGBM models beat both baselines on the held-out snapshot,
and the churn ranking agrees with the generator's ground truth better than the baselines'."""

from __future__ import annotations

import numpy as np
import pytest

from crm_ltv.features.config import SampleConfig, load_config
from crm_ltv.features.sample import generate_sample
from crm_ltv.training.datasets import build_time_split
from crm_ltv.training.pipeline import evaluate_models, train_models
from tests.conftest import CONFIGS, parsed_sample


@pytest.fixture(scope="module")
def evaluation(feature_config, train_config):
    sample = generate_sample(load_config(SampleConfig, CONFIGS / "sample.yaml"))
    tx, customers = parsed_sample(sample)
    split = build_time_split(
        tx, train_config.snapshots, train_config.split, feature_config, customers
    )
    truth = sample.truth_customers.set_index("customer_id")["dropout_at"]
    dropped = truth.reindex(split.test["customer_id"]).to_numpy() <= split.plan.test.to_datetime64()
    models = train_models(split, train_config)
    return evaluate_models(models, split, dropped.astype(np.int64))


@pytest.mark.parametrize("baseline", ["bgnbd", "rfm"])
def test_churn_model_beats_the_baseline(evaluation, baseline):
    ours, theirs = evaluation.churn["lightgbm"], evaluation.churn[baseline]
    assert ours["roc_auc"] > theirs["roc_auc"]
    assert ours["pr_auc"] > theirs["pr_auc"]
    assert ours["log_loss"] < theirs["log_loss"]
    assert ours["expected_calibration_error"] < theirs["expected_calibration_error"]
    assert ours["truth_dropout_auc"] > theirs["truth_dropout_auc"]


@pytest.mark.parametrize("baseline", ["bgnbd", "rfm"])
def test_ltv_model_beats_the_baseline(evaluation, baseline):
    ours, theirs = evaluation.ltv["lightgbm"], evaluation.ltv[baseline]
    assert ours["normalized_gini"] > theirs["normalized_gini"]
    assert ours["spearman"] > theirs["spearman"]
    assert ours["mae"] < theirs["mae"]
    assert ours["top10_value_share"] > theirs["top10_value_share"]


def test_churn_probabilities_are_calibrated(evaluation):
    assert evaluation.churn["lightgbm"]["expected_calibration_error"] < 0.02
