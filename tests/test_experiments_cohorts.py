"""Cohort retention, lifecycle transitions and LTV:CAC with payback on a tiny hand-checked
history: three customers, four months."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from crm_ltv.experiments.cohorts import (
    NOT_YET,
    cohort_retention,
    lifecycle_transitions,
    ltv_cac_table,
    retention_headline,
)
from crm_ltv.experiments.config import CohortConfig
from crm_ltv.experiments.plots import retention_heatmap, transition_heatmap
from tests.conftest import frame

TX = frame(
    [
        ("A", "2024-01-05 10:00", 50.0),
        ("A", "2024-02-10 10:00", 20.0),
        ("A", "2024-04-01 10:00", 30.0),
        ("B", "2024-01-20 10:00", 40.0),
        ("B", "2024-01-25 10:00", -10.0),  # a refund: spend, not a purchase
        ("C", "2024-02-03 10:00", 100.0),
        ("C", "2024-03-03 10:00", 10.0),
    ]
)
CUSTOMERS = pd.DataFrame(
    {
        "customer_id": ["A", "B", "C"],
        "acquisition_channel": ["referral", "referral", "social"],
        "acquisition_cost": [10.0, 90.0, 200.0],
    }
)


def test_retention_by_first_purchase_month_unobserved_months_blank():
    table = cohort_retention(TX, max_months=4)
    assert table.index.tolist() == ["2024-01", "2024-02"]
    assert table["customers"].tolist() == [2, 1]
    jan, feb = table.loc["2024-01"], table.loc["2024-02"]
    # A and B start in January; A buys in February and April, B never again (a refund only)
    assert jan[["m0", "m1", "m2", "m3"]].tolist() == [1.0, 0.5, 0.0, 0.5]
    assert math.isnan(jan["m4"])  # May 2024 is after the data
    assert feb[["m0", "m1", "m2"]].tolist() == [1.0, 1.0, 0.0]
    assert feb[["m3", "m4"]].isna().all()
    headline = retention_headline(table, (1, 3, 4))
    assert headline[1] == pytest.approx((0.5 * 2 + 1.0 * 1) / 3)  # weighted by cohort size
    assert headline[3] == 0.5  # only January is observed three months on
    assert 4 not in headline


def test_retention_heatmap_is_annotated_with_sizes_on_the_axis():
    table = cohort_retention(TX, max_months=4)
    figure = retention_heatmap(table)
    ax = figure.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["50", "0", "50", "100", "0"]  # every observed month after month 0, in %
    assert [t.get_text() for t in ax.get_yticklabels()] == ["2024-01  (n=2)", "2024-02  (n=1)"]


def test_lifecycle_transitions_use_the_feature_builders_stages(feature_config):
    counts = lifecycle_transitions(
        TX, pd.Timestamp("2024-01-31"), pd.Timestamp("2024-04-30"), feature_config, CUSTOMERS
    )
    # At the end of January A and B are new buyers; C has not bought yet. By the end of April
    # A and B are past 90 days of tenure (developing); C bought in February: new.
    assert counts.loc["new", "developing"] == 2
    assert counts.loc[NOT_YET, "new"] == 1
    assert counts.to_numpy().sum() == 3
    figure = transition_heatmap(counts, "2024-01-31", "2024-04-30")
    assert "100%\n2" in [t.get_text() for t in figure.axes[0].texts]


def test_ltv_cac_and_payback_per_channel_and_cohort(feature_config):
    config = CohortConfig(value_cohort="M", ltv_cac_target=3.0)
    table = ltv_cac_table(TX, CUSTOMERS, pd.Timestamp("2024-04-30"), feature_config, config)
    assert table["cohort"].tolist() == ["all", "all", "2024-01", "2024-02"]
    overall = table.loc[table["cohort"] == "all"].set_index("channel")
    referral, social = overall.loc["referral"], overall.loc["social"]
    assert referral["customers"] == 2 and referral["mean_cac"] == 50.0
    assert referral["mean_value_to_date"] == pytest.approx((100 + 30) / 2)  # net of the refund
    assert referral["value_to_date_to_cac"] == pytest.approx(65 / 50)
    assert social["value_to_date_to_cac"] == pytest.approx(110 / 200)
    # mean cumulative spend of A and B by month since their first: 40, 50, 50, 65 >= CAC 50 at 1
    assert referral["payback_months"] == 1
    assert np.isnan(social["payback_months"])  # C's 110 never covers 200
    assert (table["under_target"] == (table["historic_ltv_to_cac"] < 3.0)).all()
    assert social["historic_ltv_to_cac"] == pytest.approx(social["mean_historic_ltv"] / 200)
    january = table.loc[table["cohort"] == "2024-01"]
    assert january["channel"].tolist() == ["referral"] and january["customers"].tolist() == [2]
