"""Baselines: BG/NBD and Gamma-Gamma recover known parameters; the RFM cells look up honestly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crm_ltv.training.baselines import BgNbd, BgNbdBaseline, GammaGamma, RfmBaseline


def simulate_bgnbd(n: int, r: float, alpha: float, a: float, b: float, seed: int = 0):
    """Customers observed for T after their first purchase: Poisson purchases at their own
    gamma rate, each purchase followed by dropout with their own beta probability."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    T = rng.uniform(20, 60, n)
    x, t_x, clock = np.zeros(n), np.zeros(n), np.zeros(n)
    active = np.ones(n, dtype=bool)
    while active.any():
        clock[active] += rng.exponential(1 / rate[active])
        bought = active & (clock <= T)
        x[bought] += 1
        t_x[bought] = clock[bought]
        active = bought & (rng.random(n) >= p)
    return x, t_x, T


def test_bgnbd_recovers_known_parameters():
    truth = np.array([0.25, 4.0, 0.8, 2.5])  # r, alpha, a, b: CDNOW-like, in weeks
    x, t_x, T = simulate_bgnbd(40_000, *truth)
    fitted = BgNbd().fit(x, t_x, T).params_
    np.testing.assert_allclose(fitted, truth, rtol=0.15)


def test_gamma_gamma_recovers_known_parameters():
    p, q, gamma = 6.0, 4.0, 15.0
    rng = np.random.default_rng(1)
    n = 20_000
    x = 1 + rng.poisson(3, n)
    nu = rng.gamma(q, 1 / gamma, n)
    mean_spend = rng.gamma(p * x, 1 / (nu * x))  # the mean of x gamma(p, nu) spends
    fitted = GammaGamma().fit(x, mean_spend).params_
    np.testing.assert_allclose(fitted, [p, q, gamma], rtol=0.15)


@pytest.mark.parametrize("unit", [100.0, 10_000.0, 0.01])
def test_gamma_gamma_fits_spend_in_any_currency_unit(unit):
    """The same spend in pence (or yen) fitted gamma at the search's bound (e^10 = 22,026) and
    ranked customers otherwise: p and q do not depend on the unit, gamma and the expected spend
    scale with it."""
    rng = np.random.default_rng(2)
    n = 5_000
    x = 1 + rng.poisson(3, n)
    nu = rng.gamma(4.0, 1 / 300.0, n)  # gamma 300, as a shop's pounds read (Online Retail II)
    spend = rng.gamma(6.0 * x, 1 / (nu * x))
    pounds, other = GammaGamma().fit(x, spend), GammaGamma().fit(x, spend * unit)
    np.testing.assert_allclose(other.params_, pounds.params_ * [1, 1, unit], rtol=1e-4)
    np.testing.assert_allclose(
        other.expected_spend(x, spend * unit), pounds.expected_spend(x, spend) * unit, rtol=1e-4
    )


def test_bgnbd_predictions_behave():
    model = BgNbd()
    model.params_ = np.array([0.25, 4.0, 0.8, 2.5])
    x = np.array([0, 3, 3, 10])
    t_x = np.array([0, 30, 5, 38])
    T = np.array([40, 40, 40, 40])
    alive = model.p_alive(x, t_x, T)
    assert alive[0] == 1.0  # no repeat purchase: a BG/NBD customer cannot have dropped out
    assert alive[1] > alive[2]  # same purchases, the later last purchase is likelier alive
    quiet = model.p_no_purchase(13, x, t_x, T)
    assert np.all((quiet > 0) & (quiet < 1))
    expected = model.expected_purchases(13, x, t_x, T)
    assert expected[3] > expected[1] > expected[2] > 0
    assert model.expected_purchases(26, x, t_x, T)[1] > expected[1]  # a longer window, more


def test_bgnbd_baseline_reads_the_feature_table():
    x, t_x, T = simulate_bgnbd(5_000, 0.25, 4.0, 0.8, 2.5, seed=2)
    features = pd.DataFrame(
        {
            "frequency": x + 1,
            "tenure_days": T * 7,
            "recency_days": (T - t_x) * 7,
            "monetary_total": (x + 1) * 50.0,
        }
    )
    baseline = BgNbdBaseline(horizon_days=91, time_unit_days=7).fit(features)
    np.testing.assert_allclose(baseline.bgnbd_.params_, [0.25, 4.0, 0.8, 2.5], rtol=0.35)
    predicted = baseline.predict(features)
    assert predicted.index.equals(features.index)
    assert predicted["churn_probability"].between(0, 1).all()
    assert (predicted["predicted_value"] >= 0).all()


def test_rfm_baseline_predicts_cell_means_and_falls_back():
    X = pd.DataFrame(
        {"r_score": [5, 5, 1, 1, 3], "f_score": [5, 5, 1, 1, 3], "m_score": [5, 4, 1, 1, 3]}
    )
    y = pd.DataFrame({"churned": [0, 1, 1, 1, 0], "future_value": [100, 0, 0, 10, 20]})
    baseline = RfmBaseline().fit(X, y)
    new = pd.DataFrame({"r_score": [5, 5, 2], "f_score": [5, 5, 2], "m_score": [5, 1, 2]})
    predicted = baseline.predict(new)
    assert predicted.loc[0].tolist() == [0.0, 100.0]  # its own (5, 5, 5) cell
    assert predicted.loc[1].tolist() == [0.5, 50.0]  # no (5, 5, 1) cell: the (5, 5) cell
    assert predicted.loc[2].tolist() == pytest.approx([0.6, 26.0])  # nothing: overall mean
