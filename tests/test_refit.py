"""The registered model knows the newest behaviour: a refit on every labelled cutoff."""

from __future__ import annotations

import numpy as np

from crm_ltv.training.pipeline import refit_bundle


def test_the_refit_learns_from_every_labelled_row_with_the_chosen_rounds(
    small_split, small_trained, train_config, feature_config
):
    refit = refit_bundle(small_split, train_config, feature_config, small_trained)
    evaluated = small_trained.bundle
    assert refit.churn_booster.current_iteration() == small_trained.churn.rounds_[0]
    assert refit.ltv_boosters[0].current_iteration() == small_trained.ltv.rounds_[0]
    assert refit.calibration == evaluated.calibration  # the evaluation fit's, out of sample
    assert refit.rfm_cuts != evaluated.rfm_cuts  # the whole labelled population's
    assert refit.bgnbd.to_params() != evaluated.bgnbd.to_params()  # fitted on it again
    X = small_split.test[small_split.feature_names]
    ours, theirs = refit.predict(X), evaluated.predict(X)
    assert not np.allclose(ours["churn_probability"], theirs["churn_probability"])
    # It has seen the test window: it predicts those labels better than the evaluation fit.
    churned = small_split.test["churned"].to_numpy()
    loss = [np.mean((p["churn_probability"].to_numpy() - churned) ** 2) for p in (ours, theirs)]
    assert loss[0] < loss[1]
