"""Cohort retention, lifecycle transitions and LTV:CAC with payback on a tiny hand-checked
history: three customers, four months."""

from __future__ import annotations

import math
import warnings

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
from crm_ltv.experiments.text import format_ltv_cac
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
        ("A", "2024-04-30 00:00", 5.0),  # the data covers April to its last day
    ]
)
# What happens after the reports' date (2024-04-30): nothing of it may reach them.
LATER = frame([("C", "2024-05-20 10:00", 500.0), ("A", "2024-05-31 10:00", 1000.0)])
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


def test_a_month_the_data_ends_in_is_not_read_as_customers_lost():
    partial = TX.loc[TX["timestamp"] < "2024-04-30"]  # up to April 1st only
    table = cohort_retention(partial, max_months=4)
    assert table.loc["2024-01", ["m0", "m1", "m2"]].tolist() == [1.0, 0.5, 0.0]
    assert math.isnan(table.loc["2024-01", "m3"])  # April: not over, so not observed
    assert math.isnan(table.loc["2024-02", "m2"])


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


def _historic_ltv(order_value: float, orders: int, tenure_days: int) -> float:
    """configs/features.yaml's formula by hand: AOV x orders per year (tenure at least 90
    days) x 3 years."""
    return order_value * orders / max(tenure_days, 90) * 365.25 * 3.0


# At 2024-04-30: A 4 orders, 105 net over 116 days; B 1 order (and a refund), 30 over 101; C 2
# orders, 110 over 87 (counted as 90).
HISTORIC = {"A": _historic_ltv(105 / 4, 4, 116), "B": _historic_ltv(30, 1, 101),
            "C": _historic_ltv(55, 2, 87)}  # fmt: skip


def test_ltv_cac_and_payback_per_channel_and_cohort(feature_config):
    config = CohortConfig(value_cohort="M", ltv_cac_target=10.0)
    history = pd.concat([TX, LATER], ignore_index=True)
    table = ltv_cac_table(history, CUSTOMERS, pd.Timestamp("2024-04-30"), feature_config, config)
    assert table["cohort"].tolist() == ["all", "all", "2024-01", "2024-02"]
    overall = table.loc[table["cohort"] == "all"].set_index("channel")
    referral, social = overall.loc["referral"], overall.loc["social"]
    assert referral["customers"] == 2 and referral["mean_cac"] == 50.0
    assert referral["mean_margin_to_date"] == pytest.approx((105 + 30) / 2)  # net of the refund
    assert referral["value_to_date_to_cac"] == pytest.approx(67.5 / 50)
    assert social["value_to_date_to_cac"] == pytest.approx(110 / 200)
    # mean cumulative spend of A and B by month since their first: 40, 50, 50, 67.5: CAC 50 at 1
    assert referral["payback_months"] == 1
    assert np.isnan(social["payback_months"])  # C's 110 never covers 200
    referral_ltv = (HISTORIC["A"] + HISTORIC["B"]) / 2
    assert referral["mean_historic_ltv"] == pytest.approx(referral_ltv)
    assert social["mean_historic_ltv"] == pytest.approx(HISTORIC["C"])
    assert referral["historic_ltv_to_cac"] == pytest.approx(referral_ltv / 50)  # 13.2
    assert social["historic_ltv_to_cac"] == pytest.approx(HISTORIC["C"] / 200)  # 6.7
    assert overall["under_target"].to_dict() == {"referral": False, "social": True}  # target 10
    january = table.loc[table["cohort"] == "2024-01"]
    assert january["channel"].tolist() == ["referral"] and january["customers"].tolist() == [2]
    # a channel that costs nothing (organic) has nothing to pay back: no payback, no ratio
    free = CUSTOMERS.assign(acquisition_cost=0.0)
    free = ltv_cac_table(history, free, pd.Timestamp("2024-04-30"), feature_config, config)
    assert free[["payback_months", "historic_ltv_to_cac"]].isna().all().all()
    assert free["under_target"].isna().all()  # no ratio: neither under nor over (tester W)
    assert "UNDER" not in format_ltv_cac(free, 10, 1.0) and "<NA>" not in format_ltv_cac(
        free, 10, 1.0
    )


def test_ltv_cac_counts_customers_who_never_bought_and_compares_margin(feature_config):
    """D signed up in March and never bought: their CAC was spent for nothing. E signs up after
    the date: not acquired yet. Half of revenue is margin."""
    signed = CUSTOMERS.assign(
        signup_date=pd.to_datetime(["2024-01-05", "2024-01-20", "2024-02-03"])
    )
    later = pd.DataFrame(
        {
            "customer_id": ["D", "E"],
            "acquisition_channel": ["social", "social"],
            "acquisition_cost": [50.0, 70.0],
            "signup_date": pd.to_datetime(["2024-03-01", "2024-06-01"]),
        }
    )
    customers = pd.concat([signed, later], ignore_index=True)
    config = CohortConfig(value_cohort="M", gross_margin=0.5)
    history = pd.concat([TX, LATER], ignore_index=True)
    table = ltv_cac_table(history, customers, pd.Timestamp("2024-04-30"), feature_config, config)
    social = table.loc[(table["cohort"] == "all") & (table["channel"] == "social")].iloc[0]
    assert social["customers"] == 2 and social["mean_cac"] == 125.0  # C and D, not E
    assert social["mean_margin_to_date"] == pytest.approx(0.5 * (110 + 0) / 2)
    assert social["value_to_date_to_cac"] == pytest.approx(27.5 / 125)
    march = table.loc[table["cohort"] == "2024-03"]  # D's cohort: the month of signup
    assert march["channel"].tolist() == ["social"] and march["customers"].tolist() == [1]
    assert march["mean_margin_to_date"].tolist() == [0.0]
    assert np.isnan(march["payback_months"].iloc[0])  # 0 never covers 50
    referral = table.loc[(table["cohort"] == "all") & (table["channel"] == "referral")].iloc[0]
    assert referral["mean_margin_to_date"] == pytest.approx(0.5 * 67.5)
    assert referral["mean_historic_ltv"] == pytest.approx(0.5 * (HISTORIC["A"] + HISTORIC["B"]) / 2)
    assert social["mean_historic_ltv"] == pytest.approx(0.5 * HISTORIC["C"] / 2)  # D brought 0


def test_payback_compares_the_spend_and_cac_of_the_same_customers():
    """X (CAC 100) is observed three months and has spent 90; Y (CAC 0) a month. Against the
    mean CAC of both (50) X's 90 paid back by month 2: the cohorts' mix, not their spend."""
    from crm_ltv.experiments.cohorts import _payback_months

    cumulative = pd.DataFrame({0: [10.0, 5.0], 1: [20.0, np.nan], 2: [90.0, np.nan]})
    table = pd.DataFrame({"customer_id": ["X", "Y"]})
    customers = pd.DataFrame(
        {"customer_id": ["X", "Y"], "acquisition_channel": ["ads", "ads"],
         "acquisition_cost": [100.0, 0.0]}
    )  # fmt: skip
    assert np.isnan(_payback_months(cumulative, table, customers)["ads"])
    paid = cumulative.copy()
    paid.loc[0, 2] = 120.0
    assert _payback_months(paid, table, customers)["ads"] == 2.0


def test_a_buyer_without_a_signup_date_keeps_the_first_purchase_cohort(feature_config):
    """C is not in the customers table (its row rejected, say) and B's signup is blank: their
    unknown signup month was cast to int64 (a RuntimeWarning on stderr, NaN turned into an
    integer); they keep the month of their first purchase."""
    customers = CUSTOMERS.assign(signup_date=pd.to_datetime(["2024-01-05", None, None])).iloc[:2]
    config = CohortConfig(value_cohort="M")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = ltv_cac_table(TX, customers, pd.Timestamp("2024-04-30"), feature_config, config)
    cohorts = table.loc[table["cohort"] != "all"].groupby("cohort")["customers"].sum()
    assert cohorts.to_dict() == {"2024-01": 2, "2024-02": 1}  # A and B, C
