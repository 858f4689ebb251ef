"""Evaluation metrics on hand-checkable inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from crm_ltv.training.metrics import (
    calibration_error_by_chance,
    churn_metrics,
    decile_table,
    expected_calibration_error,
    ltv_metrics,
    normalized_gini,
)


def test_calibration_error_is_zero_when_rates_match_and_grows_with_the_gap():
    y = np.array([1, 0, 0, 0] * 25 + [1, 1, 1, 0] * 25)
    p = np.array([0.25] * 100 + [0.75] * 100)
    assert expected_calibration_error(y, p) == pytest.approx(0.0)
    assert expected_calibration_error(y, np.clip(p + 0.1, 0, 1)) == pytest.approx(0.1)
    # a probability of exactly 1 falls in the last bin, beside 0.95: |1 - (0.95 + 1) / 2|
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([0.95, 1.0])) == (
        pytest.approx(0.475)
    )


def test_calibration_error_by_chance_bounds_a_calibrated_model_and_shrinks_with_customers():
    """Labels drawn exactly from the probabilities are calibrated by construction: their ECE
    stays under the figure in about 95 of 100 fresh draws, and the figure falls as customers
    grow."""
    rng = np.random.default_rng(11)
    small, large = rng.beta(1, 2, 471), rng.beta(1, 2, 20_000)
    bound = calibration_error_by_chance(small)
    assert bound == calibration_error_by_chance(small)  # its own seed: the same on a rerun
    fresh = [expected_calibration_error(rng.random(471) < small, small) for _ in range(2000)]
    assert 0.93 <= np.mean(np.array(fresh) <= bound) <= 0.97
    assert bound > 0.05  # a calibrated model's ECE on 471 customers passes 0.05 by chance
    assert calibration_error_by_chance(large) < 0.015 < bound
    assert np.isnan(calibration_error_by_chance(np.array([])))


def test_normalized_gini_is_one_for_the_perfect_order_and_minus_one_reversed():
    y = np.array([0.0, 0, 5, 10, 100])
    assert normalized_gini(y, y) == pytest.approx(1.0)
    assert normalized_gini(y, -y) == pytest.approx(-1.0)
    assert normalized_gini(y, y + 1000) == pytest.approx(1.0)  # ranking only


def test_ties_count_as_their_mean_whatever_the_row_order():
    """Rows come sorted by customer id: a model with few distinct scores (the RFM heuristic)
    had its Gini and top-10% share set by the ids' order (a constant: Gini +1 or -1)."""
    y = np.array([100.0, 50, 0, 0, 0, 0, 0, 0, 0, 0])
    flat = np.zeros(10)
    for order in (np.arange(10), np.arange(10)[::-1]):
        metrics = ltv_metrics(y[order], flat)
        assert metrics["normalized_gini"] == pytest.approx(0.0)
        assert metrics["top10_value_share"] == pytest.approx(0.1)  # one of ten, a mean one
    # two scores: the top three tie; the top 10% (one customer) gets their mean
    score = np.array([1.0, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    for first in ([0, 1, 2], [2, 1, 0]):
        order = np.r_[first, np.arange(3, 10)]
        assert ltv_metrics(y[order], score[order])["top10_value_share"] == pytest.approx(1 / 3)
    churned = np.array([1, 0] * 50)
    for order in (np.arange(100), np.arange(100)[::-1]):
        assert churn_metrics(churned[order], np.full(100, 0.3))["lift_top10pct"] == 1.0
    # the ten churners first: taking the first rows of a tie would say lift 10
    first = np.r_[np.ones(10), np.zeros(90)]
    assert churn_metrics(first, np.full(100, 0.3))["lift_top10pct"] == pytest.approx(1.0)


def test_value_shares_of_no_value_are_nan_not_a_number_that_passes():
    y = np.zeros(20)
    metrics = ltv_metrics(y, np.arange(20.0))
    assert np.isnan(metrics["normalized_gini"]) and np.isnan(metrics["top10_value_share"])
    assert np.isnan(metrics["total_predicted_over_actual"])
    refunds = np.r_[-50.0, np.zeros(19)]  # a share of a negative total ranked upside down
    assert np.isnan(ltv_metrics(refunds, np.arange(20.0))["top10_value_share"])
    # a constant side has no order to correlate: NaN, and no SciPy warning on the way
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(ltv_metrics(y, np.arange(20.0))["spearman"])
        assert np.isnan(ltv_metrics(np.arange(20.0), np.full(20, 3.0))["spearman"])
        assert ltv_metrics(np.arange(20.0), np.arange(20.0))["spearman"] == pytest.approx(1.0)


def test_churn_metrics_of_a_perfect_and_a_useless_score():
    y = np.array([0, 1] * 50)
    perfect = churn_metrics(y, y.astype(float))
    assert perfect["roc_auc"] == 1.0 and perfect["lift_top10pct"] == pytest.approx(2.0)
    flat = churn_metrics(y, np.full(100, 0.5))
    assert flat["roc_auc"] == 0.5 and flat["brier"] == pytest.approx(0.25)


def test_ltv_metrics_and_deciles_account_for_all_value():
    rng = np.random.default_rng(0)
    y = rng.gamma(0.3, 100, 1000)
    pred = y * rng.uniform(0.5, 1.5, 1000)
    metrics = ltv_metrics(y, pred)
    assert metrics["total_actual"] == pytest.approx(y.sum())
    assert 0.5 < metrics["top10_value_share"] <= 1.0
    assert metrics["spearman"] > 0.9
    table = decile_table(y, pred)
    assert table["decile"].tolist() == list(range(1, 11))  # 1 is the highest predicted
    assert table["customers"].tolist() == [100] * 10
    assert table["share_of_actual"].sum() == pytest.approx(1.0)
    assert table["mean_predicted"].is_monotonic_decreasing


def test_gains_legend_gives_the_share_captured_by_the_top_tenth():
    """15 customers: the top 10% is 2 of them (13.3%); a model that ranks the only two buyers
    first captures 100% there, random captures 13.3%."""
    from crm_ltv.training.plots import gains_plot

    y = np.zeros(15)
    y[[3, 7]] = 1.0
    scores = np.zeros(15)
    scores[[3, 7]] = 1.0
    figure = gains_plot(y, {"perfect": scores}, "buyers")
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert labels[0] == "perfect (top 10%: 100.0% of buyers)"


def test_the_decile_plot_draws_each_model_against_its_own_deciles():
    """Tester W: every model's predictions were drawn over LightGBM's deciles' actual value;
    a model that ranks otherwise has other customers in each decile."""
    from crm_ltv.training.plots import decile_plot

    rng = np.random.default_rng(0)
    y = rng.gamma(1.0, 50.0, 200)
    tables = {"good": decile_table(y, y + rng.normal(0, 5, 200)),
              "poor": decile_table(y, rng.uniform(0, 100, 200))}  # fmt: skip
    assert not np.allclose(tables["good"]["mean_actual"], tables["poor"]["mean_actual"])
    axes = decile_plot(tables, 90).axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    for name, table in tables.items():
        assert np.allclose(lines[f"{name} actual"].get_ydata(), table["mean_actual"])
        assert np.allclose(lines[f"{name} predicted"].get_ydata(), table["mean_predicted"])
        colours = {lines[f"{name} {what}"].get_color() for what in ("actual", "predicted")}
        assert len(colours) == 1  # a model's two lines in its own colour
    assert axes.get_ylabel() == "mean spend in the next 90 days per customer"


def test_metrics_are_written_as_strict_json():
    """A NaN metric was written as NaN: not JSON to any reader but Python's."""
    import json

    from crm_ltv.training.job import json_safe

    summary = {"ltv": {"lightgbm": ltv_metrics(np.zeros(20), np.arange(20.0))}, "n": [1.5, -np.inf]}
    text = json.dumps(json_safe(summary), allow_nan=False)
    assert json.loads(text)["ltv"]["lightgbm"]["normalized_gini"] is None
    assert json.loads(text)["n"] == [1.5, None]


def test_the_comparison_table_keeps_its_columns_apart_for_money_in_cents():
    """An RMSE and MAE past 9,999 (a shop's cents) ran into their neighbours:
    '0.5619164350.200339437.7557'."""
    from crm_ltv.training.pipeline import Evaluation
    from crm_ltv.training.run_log import MODEL_ORDER, comparison_table

    churn = {"roc_auc": 0.8091, "pr_auc": 0.8215}
    ltv = {
        "normalized_gini": 0.8325,
        "spearman": 0.5619,
        "rmse": 164350.2003,
        "mae": 39437.7557,
        "top10_value_share": 0.6022,
        "total_predicted_over_actual": 1.026,
    }
    table = comparison_table(
        Evaluation({}, {m: churn for m in MODEL_ORDER}, {m: ltv for m in MODEL_ORDER})
    )  # fmt: skip
    row = table.splitlines()[2].split()
    assert row == ["lightgbm", "0.8091", "0.8215", "|", "0.8325", "0.5619", "164,350",
                   "39,438", "0.6022", "1.0260"]  # fmt: skip
