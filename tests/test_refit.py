"""The registered model knows the newest behaviour: a refit on every labelled cutoff."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from crm_ltv.training.pipeline import (
    ModelData,
    _intercept,
    cutoff_weights,
    fit_churn,
    refit_bundle,
    window_shift,
)
from tests.conftest import half_life_aucs, turned_over


def test_the_refit_learns_from_every_labelled_row_with_the_chosen_rounds(
    small_split, small_trained, train_config, feature_config
):
    refit = refit_bundle(small_split, train_config, feature_config, small_trained)
    evaluated = small_trained.bundle
    assert refit.churn_booster.current_iteration() == small_trained.churn.rounds_[0]
    assert refit.ltv_boosters[0].current_iteration() == small_trained.ltv.rounds_[0]
    # The evaluation fit's slope, out of sample; the intercept is the newest horizon's level.
    assert refit.calibration.coef == evaluated.calibration.coef
    assert refit.level["cutoff"] > evaluated.level["cutoff"]
    assert refit.rfm_cuts != evaluated.rfm_cuts  # the whole labelled population's
    assert refit.bgnbd.to_params() != evaluated.bgnbd.to_params()  # fitted on it again
    X = small_split.test[small_split.feature_names]
    ours, theirs = refit.predict(X), evaluated.predict(X)
    assert not np.allclose(ours["churn_probability"], theirs["churn_probability"])
    # It has seen the test window: it ranks those labels better than the evaluation fit (its
    # level is the next horizon's, not the test window's).
    churned = small_split.test["churned"].to_numpy()
    auc = [roc_auc_score(churned, p["churn_probability"]) for p in (ours, theirs)]
    assert auc[0] > auc[1]


def test_a_fit_s_level_is_the_expected_total_and_churn_rate(
    small_split, small_trained, train_config
):
    """The evaluation fit scores the test customers at the level the history expects of the
    test window (training.datasets.LevelTarget), whatever its training windows' level."""
    value, buyers = small_split.levels["evaluation"].expected(train_config.level.growth)
    predicted = small_trained.bundle.predict(small_split.test[small_split.feature_names])
    assert predicted["predicted_value"].sum() == pytest.approx(value, rel=1e-9)
    rate = 1 - buyers / len(small_split.test)
    assert predicted["churn_probability"].mean() == pytest.approx(rate, abs=1e-6)


def test_an_isotonic_calibration_is_left_and_its_level_says_so(small_split, small_trained):
    """The level recorded a churn rate it never applied (a step function has no intercept)."""
    from dataclasses import replace

    from crm_ltv.training.models import Calibration
    from crm_ltv.training.pipeline import set_level

    steps = Calibration("isotonic", x=(-5.0, 0.0, 5.0), y=(0.1, 0.5, 0.9))
    bundle = replace(small_trained.bundle, calibration=steps)
    target = small_split.levels["evaluation"]
    leveled = set_level(bundle, small_split.test, target, 0.5)
    assert leveled.calibration == steps and leveled.level["churn_rate"] is None
    X = small_split.test[small_split.feature_names]
    before, after = bundle.predict(X), leveled.predict(X)
    np.testing.assert_array_equal(before["churn_probability"], after["churn_probability"])
    assert after["predicted_value"].sum() == pytest.approx(target.expected(0.5)[0], rel=1e-9)


def test_each_training_window_boosts_from_its_own_level():
    base = np.log(np.array([1.0, 3.0, 2.0, 2.0]))
    cutoffs = pd.Series(pd.to_datetime(["2024-01-01", "2024-01-01", "2024-02-01", "2024-02-01"]))
    value = window_shift(base, pd.Series([8.0, 0.0, 1.0, -5.0]), cutoffs, "ltv")
    np.testing.assert_allclose(value, np.log([2.0, 2.0, 0.25, 0.25]))  # spend over baseline's
    churn = window_shift(base, pd.Series([1, 0, 1, 1]), cutoffs, "churn")
    assert expit(base[:2] + churn[:2]).mean() == pytest.approx(0.5)
    assert expit(base[2:] + churn[2:]).mean() == pytest.approx(0.999)  # clipped off 1


def test_the_churn_level_is_reached_from_logits_far_beyond_30():
    """A degenerate calibration (a one-split booster, a huge Platt slope) puts every logit at
    +-200: the fixed (-30, 30) bracket had no sign change and the run crashed."""
    for logit in (np.full(50, 200.0), np.r_[np.full(25, -500.0), np.full(25, 60.0)]):
        for rate in (0.01, 0.3, 0.99):
            shift = _intercept(logit, rate)
            assert float(expit(logit + shift).mean()) == pytest.approx(rate, abs=1e-6)


def test_a_training_row_weighs_half_for_every_half_life_before_the_newest_cutoff():
    cutoffs = pd.Series(pd.to_datetime(["2024-01-01", "2024-04-10", "2024-07-09", "2024-04-10"]))
    weights = cutoff_weights(cutoffs, 90.0)
    # 190, 90 and 0 days before 2024-07-09, whose rows weigh 1
    np.testing.assert_allclose(weights, 0.5 ** (np.array([190, 90, 0, 90]) / 90))
    assert cutoff_weights(cutoffs, None) is None  # LightGBM's equal weights


@pytest.mark.parametrize("rounds", [None, (100,)])
def test_a_short_half_life_learns_the_newest_windows(small_split, train_config, rounds):
    """Churn labels of every training cutoff but the newest turned over: with equal weights the
    model learns the old windows' (inverted) order; with a half-life of a day, the newest's;
    early-stopped on the (true) validation window, or refit with fixed rounds."""
    newest = small_split.train["cutoff"].max()
    assert 0.5 < (small_split.train["cutoff"] < newest).mean() < 1  # most rows are older
    turned = replace(small_split, train=turned_over(small_split.train, newest))
    aucs = half_life_aucs(
        train_config,
        lambda config: fit_churn(turned, ModelData.of(turned, config), config, rounds=rounds),
        small_split.test[small_split.feature_names],
        small_split.test["churned"],
    )
    assert aucs[None] < 0.5 and aucs[1.0] > 0.8, aucs
