"""Training and batch scoring on a local Dask cluster of two workers: the snapshot table equals
the single-process split's, the boosters trained with lightgbm.dask score within a stated
tolerance of the single-process ones, and the scores of the cluster equal the single-process
scores of the same models."""

from __future__ import annotations

from dataclasses import replace

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from crm_ltv.features.builders import build_features
from crm_ltv.features.config import ConfigError, DataConfig, override
from crm_ltv.features.inputs import load_inputs
from crm_ltv.features.paths import Paths
from crm_ltv.training.datasets import build_time_split
from crm_ltv.training.metrics import normalized_gini
from crm_ltv.training.pipeline import labelled_split, refit_bundle, train_models
from crm_ltv.training.scoring import Champion, Champions, score_customers
from tests.conftest import half_life_aucs, turned_over

pytestmark = pytest.mark.dask
features_cluster = pytest.importorskip("crm_ltv.features.cluster")
training_cluster = pytest.importorskip("crm_ltv.training.cluster")

# How close the cluster's boosters come to the single-process ones on the test snapshot
# (1,000 customers): data-parallel LightGBM finds bins and splits from every worker's rows, and
# the rounds are chosen after training; which worker holds which partition moves the result a
# little. Measured (2026-12-05, float32 features, 8 training cutoffs, at most 80 rounds): AUC
# 0.8818 vs 0.8797, Gini 0.7561 vs 0.7576, mean churn probability 0.8439 vs 0.8441; the refits
# AUC 0.8827 vs 0.8889, Gini 0.7906 vs 0.7899, mean 0.8454 vs 0.8459. Data-parallel boosting
# syncs every round, so few rounds keep this test fast on a busy machine.
AUC_TOLERANCE = 0.01
GINI_TOLERANCE = 0.02
MEAN_PROBABILITY_TOLERANCE = 0.005


@pytest.fixture(scope="module")
def config(train_config):
    """Fewer rounds than the default 2000 (tiny data stops early anyway) and the newest 8
    training cutoffs; no seasonal level, which the Dask engine does not apply."""
    churn = override(train_config.churn, "test", n_estimators=80, early_stopping_rounds=20)
    ltv = override(train_config.ltv, "test", n_estimators=80, early_stopping_rounds=20)
    level = override(train_config.level, "test", seasonal=False)
    split = override(train_config.split, "test", max_train_cutoffs=8)
    return override(
        train_config, "test", churn=churn, ltv=ltv, level=level, split=split, refit=False
    )


@pytest.fixture(scope="module")
def splits(dask_client, dask_sample_files, config, feature_config, tmp_path_factory):
    home = tmp_path_factory.mktemp("dask-train")
    inputs = load_inputs(DataConfig(), Paths(home), dask_sample_files[0], dask_sample_files[2])
    single = build_time_split(
        inputs.transactions.frame, config.snapshots, config.split, feature_config,
        inputs.customers_frame, seed=config.seed,
    )  # fmt: skip
    data = features_cluster.load_partitioned(
        dask_client, DataConfig(), home / "rejects", dask_sample_files[1], dask_sample_files[2],
        lambda _: None, 3,
    )  # fmt: skip
    on_cluster = training_cluster.split_on_cluster(
        data, config, feature_config, lambda _: None, labelled=True
    )
    return single, on_cluster


def test_the_snapshot_table_on_the_cluster_equals_the_single_process_split(splits):
    single, on_cluster = splits
    sample = on_cluster.sample  # a history this small is sampled whole
    assert on_cluster.plan == single.plan
    assert sample.rfm_cuts == single.rfm_cuts
    assert sample.history_start == single.history_start  # what the bundle carries
    assert on_cluster.rows == {"train": len(single.train), "valid": len(single.valid),
                               "test": len(single.test)}  # fmt: skip
    for part in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(sample, part), getattr(single, part))


@pytest.fixture(scope="module")
def trained(splits, config):
    """Both boosters of the split, single-process and with lightgbm.dask."""
    single, on_cluster = splits
    local = train_models(single, config)
    return local, training_cluster.train_on_cluster(on_cluster, on_cluster.sample, config)


def test_boosters_trained_with_lightgbm_dask_score_close_to_the_single_process_ones(
    splits, trained
):
    single, _ = splits
    local, dask = trained
    X, test = single.test[single.feature_names], single.test
    a, b = local.bundle.predict(X), dask.bundle.predict(X)
    auc = [roc_auc_score(test["churned"], p["churn_probability"]) for p in (a, b)]
    assert abs(auc[0] - auc[1]) < AUC_TOLERANCE, auc
    assert auc[1] > 0.8  # it learned: well above chance on the sample
    gini = [normalized_gini(test["future_value"], p["predicted_value"]) for p in (a, b)]
    assert abs(gini[0] - gini[1]) < GINI_TOLERANCE, gini
    mean = [p["churn_probability"].mean() for p in (a, b)]
    assert abs(mean[0] - mean[1]) < MEAN_PROBABILITY_TOLERANCE, mean
    assert dask.bundle.bgnbd is not None and dask.bundle.churn_offset == local.bundle.churn_offset
    assert 0 < dask.churn.best_iteration_ <= 80 and 0 < dask.ltv.best_iteration_ <= 80


def test_scores_written_by_the_workers_equal_the_single_process_scores(
    dask_client, dask_sample_files, trained, feature_config, tmp_path
):
    bundle = trained[1].bundle
    champions = Champions.pair(
        Champion("churn", "1", "churn", bundle), Champion("ltv", "1", "ltv", bundle)
    )
    data = features_cluster.load_partitioned(
        dask_client, DataConfig(), tmp_path / "rejects", dask_sample_files[1],
        dask_sample_files[2], lambda _: None, 3,
    )  # fmt: skip
    frames = features_cluster.features_on_cluster(
        data, "2025-12-31", feature_config, champions.rfm_cuts,
        history_start=champions.history_start,
    )  # fmt: skip
    scored = training_cluster.score_on_cluster(dask_client, frames, champions)
    rows = features_cluster.write_parts(dask_client, scored, tmp_path / "scores", index=False)
    assert len(list((tmp_path / "scores").glob("part-*.parquet"))) == 3
    written = pd.read_parquet(tmp_path / "scores")
    inputs = load_inputs(DataConfig(), Paths(tmp_path), dask_sample_files[0], dask_sample_files[2])
    table = build_features(
        inputs.transactions.frame, "2025-12-31", feature_config, inputs.customers_frame,
        champions.rfm_cuts, history_start=champions.history_start,
    )  # fmt: skip
    expected = score_customers(table, champions)
    assert rows == len(written) == len(expected) > 900
    got = written.sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True))


def test_the_refit_on_the_cluster_learns_every_labelled_row_close_to_the_single_process_refit(
    splits, trained, config, feature_config
):
    """The registered model knows the newest behaviour on Dask too: both boosters again on
    every labelled cutoff with the evaluation's rounds, the RFM cut points of every labelled
    row, within the same tolerances of `refit_bundle` on one process given the same rounds
    (the cluster's evaluation fit stops after 1 to 12 churn rounds from run to run, as its
    workers hold other partitions, where the single process stops after 4: refits of other
    lengths differed by up to 0.011 AUC)."""
    single, on_cluster = splits
    _, dask = trained
    expected = refit_bundle(single, config, feature_config, dask)
    refit = training_cluster.refit_on_cluster(
        on_cluster, on_cluster.sample, config, feature_config, dask
    )
    everything = labelled_split(single, feature_config)
    assert refit.rfm_cuts == everything.rfm_cuts == expected.rfm_cuts != dask.bundle.rfm_cuts
    assert refit.churn_booster.current_iteration() == dask.churn.rounds_[0]
    assert refit.ltv_boosters[0].current_iteration() == dask.ltv.rounds_[0]
    assert refit.calibration == dask.bundle.calibration
    # The newest labelled cutoff (the test snapshot) is now training data: its fit moves.
    X, test = single.test[single.feature_names], single.test
    assert not refit.predict(X).equals(dask.bundle.predict(X))
    a, b = expected.predict(X), refit.predict(X)
    auc = [roc_auc_score(test["churned"], p["churn_probability"]) for p in (a, b)]
    assert abs(auc[0] - auc[1]) < AUC_TOLERANCE, auc
    gini = [normalized_gini(test["future_value"], p["predicted_value"]) for p in (a, b)]
    assert abs(gini[0] - gini[1]) < GINI_TOLERANCE, gini
    mean = [p["churn_probability"].mean() for p in (a, b)]
    assert abs(mean[0] - mean[1]) < MEAN_PROBABILITY_TOLERANCE, mean


@pytest.mark.parametrize(
    ("objective", "metric"),
    [("binary", "auc"), ("binary", "binary_logloss"), ("tweedie", "tweedie")],
)
def test_the_rounds_kept_are_those_lightgbms_early_stopping_keeps(objective, metric):
    """lightgbm.dask cannot stop early: the cluster's boosters train every round and keep the
    rounds LightGBM's own early stopping would have kept, watching the same metric."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4_000, 5))
    signal = X[:, 0] - 0.5 * X[:, 1] + rng.normal(scale=1.5, size=4_000)
    y = (signal > 0).astype(float) if objective == "binary" else np.exp(signal) * (signal > 0.5)
    params = {"objective": objective, "metric": metric, "learning_rate": 0.3, "num_leaves": 31,
              "min_data_in_leaf": 5, "verbose": -1, "seed": 1, "deterministic": True}  # fmt: skip
    train, valid = lgb.Dataset(X[:3_000], y[:3_000]), (X[3_000:], y[3_000:])
    stopped = lgb.train(
        params, train, 300, valid_sets=[lgb.Dataset(*valid, reference=train)],
        callbacks=[lgb.early_stopping(10, verbose=False)],
    )  # fmt: skip
    every = lgb.train(params, train, 300)
    rounds, value = training_cluster.best_rounds(
        every, valid[0], valid[1], np.zeros(len(valid[1])), metric, 10
    )
    assert 1 < rounds == stopped.best_iteration < 300
    assert value == pytest.approx(stopped.best_score["valid_0"][metric], rel=1e-6)


def test_a_metric_the_cluster_cannot_watch_is_a_config_error(config):
    churn = override(
        config.churn, "test", params={**config.churn.params, "metric": "average_precision"}
    )
    with pytest.raises(
        ConfigError, match="metric average_precision: --engine dask early-stops a binary"
    ):
        training_cluster.check_supported(override(config, "test", churn=churn))
    training_cluster.check_supported(config)  # the shipped settings: auc and tweedie


def test_without_a_refit_the_cluster_keeps_only_the_training_rows(
    dask_client, dask_sample_files, splits, config, feature_config, tmp_path
):
    _, labelled = splits
    data = features_cluster.load_partitioned(
        dask_client, DataConfig(), tmp_path / "rejects", dask_sample_files[1],
        dask_sample_files[2], lambda _: None, 3,
    )  # fmt: skip
    split = training_cluster.split_on_cluster(data, config, feature_config, lambda _: None)
    assert not config.refit and not split.labelled
    held = sum(map(len, dask_client.gather(split.frames)))
    assert held == split.rows["train"] < sum(map(len, dask_client.gather(labelled.frames)))
    assert split.rows == labelled.rows  # the counts are still the whole split's
    with pytest.raises(ValueError, match="kept every labelled row"):
        training_cluster.refit_on_cluster(split, split.sample, config, feature_config, None)


def test_older_training_cutoffs_weigh_less_on_the_cluster_too(splits, config):
    """As on one process (test_refit.py, `test_a_short_half_life_learns_the_newest_windows`):
    with every training cutoff's churn labels but the newest turned over, equal weights learn
    the inverted order, a half-life of a day the newest cutoff's."""
    single, on_cluster = splits
    newest = single.train["cutoff"].max()
    sample = replace(on_cluster.sample, train=turned_over(on_cluster.sample.train, newest))
    frames = on_cluster.client.map(turned_over, on_cluster.frames, newest=newest)
    turned = replace(on_cluster, frames=frames, sample=sample)
    aucs = half_life_aucs(
        config,
        lambda weighted: training_cluster.train_on_cluster(turned, sample, weighted).churn,
        single.test[single.feature_names],
        single.test["churned"],
    )
    assert aucs[None] < 0.5 and aucs[1.0] > 0.8, aucs
