"""A/B statistics on fixed counts, each against a value computed independently: by hand from its
formula, or with another scipy routine than the one the code calls."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from crm_ltv.experiments import balance
from crm_ltv.experiments.ab import (
    NOT_DRAWN,
    SHARE,
    Design,
    ab_table,
    campaign_outcomes,
    compare_groups,
    design_figures,
    expected_split,
    minimum_detectable_lift,
    plan_sample_size,
    proportion_test,
    srm_check,
)
from crm_ltv.experiments.config import AbConfig, ExperimentsConfig
from crm_ltv.experiments.jobs import featureless_actions
from crm_ltv.experiments.text import design_lines
from crm_ltv.features.contract import DataError

CONFIG = AbConfig()
Z = stats.norm.ppf(0.975)  # 1.959964


def flags(n: int, converted: int) -> np.ndarray:
    return np.arange(n) < converted


def campaigns(cells: dict[tuple[str, str], tuple[int, int]], **extra: object) -> pd.DataFrame:
    """Rows for (action, group) -> (customers, conversions); revenue 10 per conversion."""
    rows = []
    for (action, group), (n, x) in cells.items():
        for i in range(n):
            rows.append({"action": action, "group": group, "converted": i < x,
                         "revenue": 10.0 * (i < x), "sent_at": pd.Timestamp("2024-01-01"),
                         **extra})  # fmt: skip
    return pd.DataFrame(rows)


def test_conversion_lift_and_its_intervals_on_fixed_counts():
    # 30 of 200 treated converted, 20 of 200 controls
    out = compare_groups(flags(200, 30), flags(200, 20), np.zeros(200), np.zeros(200), CONFIG)
    assert out["rate_treatment"] == 0.15 and out["rate_control"] == 0.10
    assert out["lift_abs"] == pytest.approx(0.05)
    assert out["lift_rel"] == pytest.approx(0.5)
    # Newcombe's hybrid score interval from the two Wilson intervals (scipy's binomtest)
    l1, u1 = stats.binomtest(30, 200).proportion_ci(0.95, method="wilson")
    l2, u2 = stats.binomtest(20, 200).proportion_ci(0.95, method="wilson")
    assert out["lift_abs_low"] == pytest.approx(
        0.05 - math.sqrt((0.15 - l1) ** 2 + (u2 - 0.10) ** 2)
    )
    assert out["lift_abs_high"] == pytest.approx(
        0.05 + math.sqrt((u1 - 0.15) ** 2 + (0.10 - l2) ** 2)
    )
    # Katz log interval of the risk ratio, minus 1
    se = math.sqrt(1 / 30 - 1 / 200 + 1 / 20 - 1 / 200)
    assert out["lift_rel_low"] == pytest.approx(1.5 * math.exp(-Z * se) - 1)
    assert out["lift_rel_high"] == pytest.approx(1.5 * math.exp(Z * se) - 1)
    # pooled two-proportion z-test by hand: pooled rate 0.125
    z = 0.05 / math.sqrt(0.125 * 0.875 * (2 / 200))
    assert out["test"] == "z"
    assert out["p_value"] == pytest.approx(2 * stats.norm.sf(z))
    assert out["p_value"] == pytest.approx(0.1306, abs=1e-4)
    assert out["significant"] is False


def test_fisher_exact_test_below_the_configured_cell_count():
    # 4 of 20 vs 0 of 20: a cell under 5, so the exact test
    test, p_value = proportion_test(4, 20, 0, 20, CONFIG.exact_test_below)
    assert test == "fisher"
    # two-sided: the hypergeometric probabilities of all tables no likelier than the one seen
    # (margins: 40 customers, 4 converted, 20 treated)
    pmf = stats.hypergeom(40, 4, 20).pmf(np.arange(5))
    assert p_value == pytest.approx(pmf[pmf <= pmf[4] * (1 + 1e-7)].sum())
    assert p_value == pytest.approx(0.10603, abs=1e-5)
    assert proportion_test(4, 20, 0, 20, exact_below=0)[0] == "z"
    # Cochran's rule reads expected counts: 0 of 60 vs 6 of 60 expects 3 per converted cell
    assert proportion_test(6, 60, 0, 60, CONFIG.exact_test_below)[0] == "fisher"
    # ...while 5 of 100 vs 5 of 100 observes cells of 5 but expects 5: the z-test
    assert proportion_test(5, 100, 5, 100, CONFIG.exact_test_below)[0] == "z"
    # and an observed cell of 4 with an expected one of 6: the z-test too
    assert proportion_test(4, 100, 8, 100, CONFIG.exact_test_below)[0] == "z"


def test_revenue_difference_is_welchs_interval():
    t = np.array([0.0, 0.0, 30.0, 50.0, 20.0])
    c = np.array([0.0, 10.0, 0.0, 5.0])
    out = compare_groups(t > 0, c > 0, t, c, CONFIG)
    vt, vc = t.var(ddof=1) / len(t), c.var(ddof=1) / len(c)
    df = (vt + vc) ** 2 / (vt**2 / (len(t) - 1) + vc**2 / (len(c) - 1))  # Welch-Satterthwaite
    half = stats.t.ppf(0.975, df) * math.sqrt(vt + vc)
    assert out["revenue_diff"] == pytest.approx(20.0 - 3.75)
    assert out["revenue_diff_low"] == pytest.approx(16.25 - half)
    assert out["revenue_diff_high"] == pytest.approx(16.25 + half)
    assert out["test"] == "fisher"  # 3/5 vs 2/4: cells under 5


def test_revenue_without_any_spread_has_a_difference_but_no_interval():
    """Every treated customer spent 3, every control 0: Welch's test divides by a standard
    error of 0, so the difference stands and the interval and p-value are left blank."""
    t, c = np.full(5, 3.0), np.zeros(5)
    out = compare_groups(t > 0, c > 0, t, c, CONFIG)
    assert out["revenue_diff"] == 3.0
    assert np.isnan(out["revenue_diff_low"]) and np.isnan(out["revenue_diff_high"])
    assert np.isnan(out["revenue_p_value"])


def test_a_group_without_conversions_has_no_relative_interval():
    """The log interval of the rate ratio needs conversions on both sides: with none treated
    the lift is -100% with no interval; with no control conversions there is no lift at all."""
    none, some, revenue = flags(100, 0), flags(100, 10), np.zeros(100)
    out = compare_groups(none, some, revenue, revenue, CONFIG)
    assert out["rate_treatment"] == 0.0 and out["lift_rel"] == -1.0
    assert np.isnan(out["lift_rel_low"]) and np.isnan(out["lift_rel_high"])
    out = compare_groups(some, none, revenue, revenue, CONFIG)
    assert np.isnan(out["lift_rel"]) and np.isnan(out["lift_rel_low"])
    assert np.isnan(out["lift_rel_high"])


def test_sample_ratio_mismatch_against_the_configured_split():
    fine = srm_check(505, 495, CONFIG)
    assert fine["srm_p_value"] == pytest.approx(stats.chi2.sf(2 * 5**2 / 500, 1))
    assert fine["srm_mismatch"] is False
    assert srm_check(560, 440, CONFIG)["srm_mismatch"] is True  # chi-square 14.4, p 0.00015
    skewed = AbConfig(expected_treatment_share=0.8)  # 80/20 sends: 800/200 is as planned
    assert srm_check(800, 200, skewed)["srm_p_value"] == pytest.approx(1.0)
    assert srm_check(500, 500, skewed)["srm_mismatch"] is True
    # an empty group is tested too: certain only when the other group is large
    assert srm_check(20, 0, CONFIG)["srm_p_value"] == pytest.approx(stats.chi2.sf(20, 1))
    few = srm_check(1, 0, AbConfig(expected_treatment_share=0.65))
    assert few["srm_p_value"] == pytest.approx(stats.chi2.sf(0.35 / 0.65, 1))
    assert few["srm_mismatch"] is False


def test_sample_ratio_check_expects_the_split_the_rows_carry():
    """The service's rows are drawn at (1 - h)(1 - e) / ((1 - h)(1 - e) + h), 0.73 in a shop's
    home, which `crm-ltv outcomes` writes per row: checked against the config's 0.5, every
    action of its file read MISMATCH."""
    cells = {("win_back", "treatment"): (730, 100), ("win_back", "control"): (270, 30)}
    drawn = campaigns(cells, expected_treatment_share=0.73)
    row = ab_table(campaign_outcomes(drawn), CONFIG).iloc[0]
    assert row["expected_treatment_share"] == pytest.approx(0.73)
    assert row["srm_p_value"] == pytest.approx(1.0) and not row["srm_mismatch"]
    split = expected_split(drawn, CONFIG, option=False)
    assert (split.share, split.source) == (pytest.approx(0.73), "campaigns file")
    assert "0.7300 (the file's expected_treatment_share column" in split.text
    # without the column: the config's 0.5, and 730/270 is no 50/50 draw
    plain = ab_table(campaign_outcomes(campaigns(cells)), CONFIG).iloc[0]
    assert plain["expected_treatment_share"] == 0.5 and plain["srm_mismatch"]
    assert expected_split(campaigns(cells), CONFIG, option=False).source == "config"
    assert "the file has no expected_treatment_share column" in (
        expected_split(campaigns(cells), CONFIG, option=False).text
    )
    blank = expected_split(drawn.assign(expected_treatment_share=np.nan), CONFIG, option=False)
    assert blank.source == "config"  # it said the column was not there
    assert "the file has an expected_treatment_share column with no value" in blank.text
    assert expected_split(drawn, CONFIG, option=True).source == "option"
    # rows drawn at other settings (the service's changed): each group's expectation is the
    # mean of its rows' own shares
    mixed = drawn.assign(expected_treatment_share=np.where(np.arange(len(drawn)) % 2, 0.8, 0.66))
    row = ab_table(campaign_outcomes(mixed), CONFIG).iloc[0]
    assert row["expected_treatment_share"] == pytest.approx(0.73)
    # a service without holdout draws treatment only (share 1): a control row refutes it
    assert srm_check(5, 0, CONFIG, 1.0)["srm_mismatch"] is False
    assert srm_check(5, 1, CONFIG, 1.0)["srm_mismatch"] is True


def test_a_group_without_controls_still_has_its_treatment_rate():
    out = compare_groups(flags(20, 5), flags(0, 0), np.zeros(20), np.zeros(0), CONFIG)
    assert out["rate_treatment"] == 0.25 and "rate_control" not in out
    assert "lift_abs" not in out and "p_value" not in out


def test_minimum_detectable_lift_at_the_observed_sizes():
    # Cohen's h = (z_0.975 + z_0.8) sqrt(1/n1 + 1/n2), back to a rate over the baseline
    h = (Z + stats.norm.ppf(0.8)) * math.sqrt(1 / 3000 + 1 / 2000)
    expected = math.sin(math.asin(math.sqrt(0.1)) + h / 2) ** 2 - 0.1
    assert minimum_detectable_lift(0.1, 3000, 2000, 0.8, 0.05) == pytest.approx(expected, rel=1e-3)
    assert minimum_detectable_lift(0.1, 3000, 2000, 0.8, 0.05) == pytest.approx(0.0256, abs=1e-4)
    # more customers, smaller detectable lifts
    assert minimum_detectable_lift(0.1, 30000, 20000, 0.8, 0.05) < expected / 3


def test_planner_sample_size_per_group():
    plan = plan_sample_size(0.10, 0.20, power=0.8, alpha=0.05)  # 10% -> 12%
    h = 2 * math.asin(math.sqrt(0.12)) - 2 * math.asin(math.sqrt(0.10))
    assert plan.target_rate == pytest.approx(0.12)
    # each arcsine-transformed rate has variance 1/n, so n = 2 ((z_0.975 + z_0.8) / h)^2
    assert plan.control == plan.treatment == math.ceil(2 * ((Z + stats.norm.ppf(0.8)) / h) ** 2)
    assert plan.control == 3835 and plan.total == 7670
    assert plan_sample_size(0.10, 0.20, power=0.9, alpha=0.05).control > plan.control
    assert plan_sample_size(0.10, -0.20, 0.8, 0.05).control < plan.control  # 8% is further
    with pytest.raises(ValueError, match="baseline"):
        plan_sample_size(0.6, 1.0, 0.8, 0.05)  # 120%
    with pytest.raises(ValueError, match="treatment share"):
        plan_sample_size(0.1, 0.2, 0.8, 0.05, treatment_share=1.0)


def test_planner_refuses_a_power_not_above_alpha_rather_than_blame_the_lift():
    """A two-sided test rejects with probability alpha under no effect: a power up to alpha is
    met at any size, and the planner said the lift was too small to detect."""
    for power, alpha in ((0.3, 0.5), (0.05, 0.05)):
        with pytest.raises(ValueError, match=r"power .* not above alpha .*--power.*--alpha"):
            plan_sample_size(0.09, 0.2, power, alpha)
    assert plan_sample_size(0.09, 0.2, 0.6, 0.5).control > 0  # just above: a plan


def test_planner_with_an_unequal_split_needs_more_customers():
    # a service holding out 0.3 and exploring 0.2 contacts 0.56 / (0.56 + 0.3)
    share = 0.56 / 0.86
    plan = plan_sample_size(0.09, 0.20, power=0.8, alpha=0.05, treatment_share=share)
    h = 2 * math.asin(math.sqrt(0.108)) - 2 * math.asin(math.sqrt(0.09))
    # var(h) = 1/n_t + 1/n_c with n_t = s N, n_c = (1 - s) N
    total = ((Z + stats.norm.ppf(0.8)) / h) ** 2 * (1 / share + 1 / (1 - share))
    assert plan.control == math.ceil((1 - share) * total)
    assert plan.treatment == pytest.approx(share * total, abs=1)
    assert plan.treatment_share == pytest.approx(share, abs=1e-3)
    equal = plan_sample_size(0.09, 0.20, power=0.8, alpha=0.05)
    assert equal.total == 2 * 4314
    assert plan.total > equal.total * 1.09  # about 10% more customers in all


def test_table_per_action_and_per_segment_from_campaign_rows():
    rows = pd.concat(
        [
            campaigns({("win_back", "treatment"): (200, 30), ("win_back", "control"): (200, 20)},
                      rfm_segment="At Risk"),
            campaigns({("win_back", "treatment"): (100, 5), ("win_back", "control"): (100, 5)},
                      rfm_segment="Lost"),
            campaigns({("thank_you", "treatment"): (50, 10), ("thank_you", "control"): (50, 10)},
                      rfm_segment="Lost"),
        ]
    )  # fmt: skip
    outcomes = campaign_outcomes(rows)
    by_action = ab_table(outcomes, CONFIG)
    assert by_action["action"].tolist() == ["thank_you", "win_back"]
    win_back = by_action.set_index("action").loc["win_back"]
    assert (win_back["n_treatment"], win_back["n_control"]) == (300, 300)
    assert win_back["rate_treatment"] == pytest.approx(35 / 300)
    assert win_back["revenue_diff"] == pytest.approx(10 * 10 / 300)
    by_segment = ab_table(outcomes, CONFIG, "rfm_segment").set_index(["action", "rfm_segment"])
    assert len(by_segment) == 3
    assert by_segment.loc[("win_back", "At Risk"), "lift_abs"] == pytest.approx(0.05)
    assert by_segment.loc[("win_back", "Lost"), "lift_abs"] == 0.0
    # Holm over the two segments of win_back: the smaller p doubled, the larger kept (>= it)
    p = by_segment.loc["win_back", "p_value"].sort_values()
    holm = by_segment.loc["win_back", "p_value_holm"].reindex(p.index)
    assert holm.iloc[0] == pytest.approx(min(1.0, 2 * p.iloc[0]))
    assert holm.iloc[1] == pytest.approx(max(holm.iloc[0], p.iloc[1]))
    # thank_you has one segment: nothing to adjust
    assert by_segment.loc[("thank_you", "Lost"), "p_value_holm"] == pytest.approx(
        by_segment.loc[("thank_you", "Lost"), "p_value"]
    )
    assert by_action["p_value_holm"].isna().all()  # per action alone: no adjustment


def test_outcome_from_revenue_when_the_flag_is_missing_and_rows_without_one_counted():
    frame = pd.DataFrame(
        {
            "action": ["win_back"] * 4,
            "group": ["treatment", "control", "treatment", "control"],
            "converted": pd.array([True, pd.NA, pd.NA, False], dtype="boolean"),
            "revenue": [12.0, 5.0, np.nan, 0.0],
            "sent_at": pd.Timestamp("2024-01-01"),
        }
    )
    outcomes = campaign_outcomes(frame)
    assert outcomes.without_outcome == 1  # no flag, no revenue
    assert outcomes.without_revenue == 0
    flagged_only = campaign_outcomes(frame.assign(revenue=[np.nan, 5.0, np.nan, 0.0]))
    assert flagged_only.without_revenue == 1  # counted: in the rates, not the revenue means
    assert outcomes.frame["converted"].tolist() == [True, True, False]
    only_revenue = campaign_outcomes(frame.drop(columns="converted"))
    assert only_revenue.frame["converted"].tolist() == [True, True, False]
    assert only_revenue.converted_from_revenue and not outcomes.converted_from_revenue
    with pytest.raises(DataError, match="neither a 'converted' nor a 'revenue'"):
        campaign_outcomes(frame.drop(columns=["converted", "revenue"]))
    with pytest.raises(DataError, match=r"^campaigns own\.csv: neither"):  # the file named
        campaign_outcomes(frame.drop(columns=["converted", "revenue"]), "campaigns own.csv")
    with pytest.raises(DataError, match=r"'revenue' column \(every 'revenue' blank\)"):
        campaign_outcomes(frame.drop(columns="converted").assign(revenue=np.nan))


def test_a_revenue_column_without_any_value_is_no_revenue_not_a_zero_difference():
    """The non-buyers' implied zeros alone made every action's revenue difference +0.00."""
    frame = pd.DataFrame(
        {
            "action": "win_back",
            "group": ["treatment", "control"] * 20,
            "converted": [True, False, False, False] * 10,
            "revenue": np.nan,
            "sent_at": pd.Timestamp("2024-01-01"),
        }
    )
    outcomes = campaign_outcomes(frame)
    assert not outcomes.has_revenue and outcomes.without_revenue == 0
    row = ab_table(outcomes, AbConfig()).iloc[0]
    assert math.isnan(row["revenue_diff"]) and row["rate_treatment"] == pytest.approx(0.5)


def test_a_blank_revenue_of_a_contact_that_did_not_convert_is_zero():
    """Exports leave the non-buyers' revenue blank: left out, revenue per customer became
    revenue per converter, and a +9 per customer effect was read as -10."""
    n = 100
    treated = np.arange(n) < 50
    converted = np.r_[np.arange(50) < 15, np.arange(50) < 5]  # 30% vs 10%
    frame = pd.DataFrame(
        {
            "action": "win_back",
            "group": np.where(treated, "treatment", "control"),
            "converted": converted,
            "revenue": np.where(converted, np.where(treated, 50.0, 60.0), np.nan),
            "sent_at": pd.Timestamp("2024-01-01"),
        }
    )
    outcomes = campaign_outcomes(frame)
    assert outcomes.without_revenue == 0
    row = ab_table(outcomes, AbConfig()).iloc[0]
    assert row["revenue_treatment"] == pytest.approx(15.0)
    assert row["revenue_control"] == pytest.approx(6.0)


def test_a_campaign_of_one_group_says_so_beside_its_sample_ratio_mismatch():
    """An SRM alarm alone read as broken logging; with one group it is a campaign without
    controls (an audit's reading), and both are said."""
    from crm_ltv.experiments.text import format_ab

    one = pd.DataFrame(
        {"action": ["win_back"], "n_treatment": [3388], "n_control": [0], "in_catalogue": [True],
         **srm_check(3388, 0, CONFIG)}
    )  # fmt: skip
    assert "- MISMATCH (no control group)" in format_ab(one, ["action"])
    # a 1/0 group printed an SRM p of 0.4624: no p-value where there is no split to test
    lone = pd.DataFrame(
        {"action": ["win_back", "thank_you"], "n_treatment": [1, 0], "n_control": [0, 2],
         "in_catalogue": [True, True],
         **pd.DataFrame([srm_check(1, 0, CONFIG), srm_check(0, 2, CONFIG)]).to_dict("list")}
    )  # fmt: skip
    shown = format_ab(lone, ["action"]).splitlines()
    assert shown[1].endswith(" - (no control group)") and "0.4624" not in shown[1]
    assert shown[2].endswith(" - (no treatment group)")


def test_an_action_outside_the_catalogue_that_misspells_one_is_named_with_it():
    """Tester I: 'Win_Back' showed apart as not in the catalogue, with no hint, where the
    service and nba.yaml say which name was meant."""
    from crm_ltv.experiments.text import format_ab

    names = ["win_back", "Win_Back", "winback_discount"]
    table = pd.DataFrame(
        {"action": names, "n_treatment": [10, 5, 5], "n_control": [10, 5, 5],
         "in_catalogue": [True, False, False],
         **pd.DataFrame([srm_check(10, 10, CONFIG)] + [srm_check(5, 5, CONFIG)] * 2).to_dict(
             "list")}
    )  # fmt: skip
    footnote = format_ab(table, ["action"]).splitlines()[-1]
    assert footnote.startswith("* not in the action catalogue")
    assert footnote.endswith("uses it; 'Win_Back' may misspell 'win_back'")  # a shop's own


def test_the_lift_plot_marks_what_the_table_calls_significant_per_action_and_per_segment():
    """Tester I: per action, the plot read 'blue: significant (Holm-adjusted p)' with every
    point grey, while the run said 3 of 4 actions won: it read the Holm column, empty without
    segments."""
    from matplotlib.colors import to_hex

    from crm_ltv.experiments.plots import lift_plot

    rows = pd.concat(
        [
            campaigns({("win_back", "treatment"): (400, 80), ("win_back", "control"): (400, 20)},
                      rfm_segment="At Risk"),
            campaigns({("thank_you", "treatment"): (50, 10), ("thank_you", "control"): (50, 10)},
                      rfm_segment="Lost"),
            campaigns({("vip_invitation", "treatment"): (400, 20),
                        ("vip_invitation", "control"): (400, 80)}, rfm_segment="Loyal"),
        ]
    )  # fmt: skip
    outcomes = campaign_outcomes(rows)
    for by, label in ((None, "a loss"), ("rfm_segment", "a loss (Holm-adjusted p)")):
        table = ab_table(outcomes, CONFIG, by)
        verdict = table["significant" if by is None else "significant_holm"].astype(bool)
        # thank_you ties, vip_invitation loses (tester K: drawn blue as a win), win_back wins
        assert verdict.tolist() == [False, True, True]
        figure = lift_plot(table, ["action"] if by is None else ["action", by])
        axes = figure.axes[0]
        colours = [to_hex(c) for c in axes.collections[-1].get_facecolors()]
        assert colours == [to_hex("tab:gray"), to_hex("tab:red"), to_hex("tab:blue")]
        assert axes.get_xlabel().endswith(label)


def test_the_lift_plot_follows_the_runs_verdict_on_imbalanced_and_mismatched_actions():
    """Tester J: a targeted campaign (the top spenders treated) was drawn blue, "significant:
    a gain", while its run said its groups differ before the send, not a causal lift, and
    counted no win; an SRM mismatch was not marked either. The table is built as `ab` builds
    it (ab_table, then the balance check on the features at send time)."""
    from matplotlib.colors import to_hex

    from crm_ltv.experiments.jobs import imbalanced_actions, with_balance
    from crm_ltv.experiments.plots import lift_plot

    rng = np.random.default_rng(5)
    spend = pd.Series(rng.lognormal(4.0, 1.0, 800))
    top = spend.rank(ascending=False).to_numpy() <= 400  # treated: the top half of spenders
    targeted = pd.DataFrame(
        {"customer_id": [f"t{i}" for i in range(800)], "action": "vip_invitation",
         "group": np.where(top, "treatment", "control"), "converted": top & (rng.random(800) < 0.4),
         "sent_at": pd.Timestamp("2024-01-01")}
    )  # fmt: skip
    drawn = rng.random(800) < 0.65  # a randomised send at about 65/35 against 50/50
    mismatched = pd.DataFrame(
        {"customer_id": [f"m{i}" for i in range(800)], "action": "recommendation",
         "group": np.where(drawn, "treatment", "control"), "converted": rng.random(800) < 0.2,
         "sent_at": pd.Timestamp("2024-01-01")}
    )  # fmt: skip
    rows = pd.concat([targeted, mismatched], ignore_index=True)
    rows["revenue"] = rows["converted"] * 10.0
    features = pd.DataFrame({"monetary": np.r_[spend, rng.lognormal(4.0, 1.0, 800)]})
    outcomes = campaign_outcomes(rows)
    table = ab_table(outcomes, CONFIG)
    table = with_balance(table, outcomes, features, ExperimentsConfig().balance, CONFIG)
    assert table["action"].tolist() == ["recommendation", "vip_invitation"]
    assert table["significant"].tolist() == [False, True]  # the selection reads as a win
    assert table["balance_imbalanced"].tolist() == [False, True]
    assert table["srm_mismatch"].tolist() == [True, False]

    figure = lift_plot(table, ["action"])
    axes = figure.axes[0]
    colours = [to_hex(c) for c in axes.collections[-1].get_facecolors()]
    assert colours == [to_hex("tab:gray"), to_hex("tab:orange")]  # not blue: no win
    labels = [t.get_text() for t in axes.get_yticklabels()]  # the table's rows, top down
    assert labels == ["recommendation  [SRM]", "vip_invitation  [imbalanced]"]
    (legend,) = ([t.get_text() for t in found.get_texts()] for found in figure.legends)
    assert legend[0] == "not significant"
    assert legend[1].startswith("[imbalanced] not causal")
    assert legend[2].startswith("[SRM] sample-ratio mismatch")
    # per segment the table has no balance of its own: the action's verdict is passed
    segments = ab_table(campaign_outcomes(rows.assign(stage="loyal")), CONFIG, "stage")
    axes = lift_plot(segments, ["action", "stage"], imbalanced_actions(table)).axes[0]
    colours = [to_hex(c) for c in axes.collections[-1].get_facecolors()]
    assert colours[1] == to_hex("tab:orange")
    assert axes.get_yticklabels()[1].get_text() == "vip_invitation / loyal  [imbalanced]"


def test_the_lift_plot_keeps_its_panel_wide_beside_long_marked_labels():
    """Review s18A #1: "(imbalanced: not causal, SRM mismatch)" after each segment's label
    squeezed a real `--by rfm_segment` plot's panel from 4.05 in (main) to 1.59 in, two x ticks
    wide. The marks are short, and the figure grows with its labels: the panel keeps its width."""
    from crm_ltv.experiments.plots import PANEL_WIDTH_IN, lift_plot

    segments = [
        "Champions",
        "Loyal Customers",
        "Can't Lose Them",
        "At Risk",
        "Need Attention",
        "(no purchase yet)",
        "Hibernating",
        "About To Sleep",
        "Promising",
        "New Customers",
    ]
    actions = ["vip_invitation", "recommendation", "win_back", "thank_you", "summer_promo", "birth"]
    table = pd.DataFrame(
        [{"action": a, "rfm_segment": s, "lift_abs": 0.05, "lift_abs_low": 0.01,
          "lift_abs_high": 0.09, "significant_holm": True, "srm_mismatch": a != "win_back"}
         for a in actions for s in segments]
    )  # fmt: skip

    def panel(figure) -> float:
        figure.canvas.draw()
        return figure.axes[0].get_position().width * figure.get_figwidth()

    marked = lift_plot(table, ["action", "rfm_segment"], {"vip_invitation", "recommendation"})
    assert marked.axes[0].get_yticklabels()[0].get_text().endswith("  [imbalanced] [SRM]")
    assert panel(marked) >= PANEL_WIDTH_IN - 0.01 > 4.05  # main's, with no marks at all
    unmarked = lift_plot(table.assign(srm_mismatch=False), ["action", "rfm_segment"])
    assert panel(marked) >= panel(unmarked) - 0.01


def test_a_row_without_a_lift_says_why_and_not_its_actions_verdict():
    """Tester Z: a segment with no control group was an empty row marked `[imbalanced]` (its
    action's verdict), with nothing of the group it lacks, which the CLI's line says."""
    from crm_ltv.experiments.plots import lift_plot

    nan = float("nan")
    table = pd.DataFrame(
        [{"action": "win_back", "stage": "loyal", "lift_abs": 0.05, "lift_abs_low": 0.01,
          "lift_abs_high": 0.09, "significant_holm": True, "srm_mismatch": False,
          "n_treatment": 40, "n_control": 40},
         {"action": "win_back", "stage": "new", "lift_abs": nan, "lift_abs_low": nan,
          "lift_abs_high": nan, "significant_holm": nan, "srm_mismatch": False,
          "n_treatment": 4, "n_control": 0},
         {"action": "thank_you", "stage": "new", "lift_abs": nan, "lift_abs_low": nan,
          "lift_abs_high": nan, "significant_holm": nan, "srm_mismatch": False,
          "n_treatment": 5, "n_control": 3}]
    )  # fmt: skip
    figure = lift_plot(table, ["action", "stage"], {"win_back"})
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels == [
        "win_back / loyal  [imbalanced]",
        "win_back / new  [no control group]",
        "thank_you / new  [no group drawn by chance]",
    ]
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend == ["[imbalanced] not causal: the groups differ before the send"]  # no grey


def test_a_plan_shows_the_lift_it_was_asked_and_says_when_ab_would_test_it_exactly():
    """Tester I: a lift of 0.0001 read '9.00% -> 9.00% (+0.0% relative, +0.00 points)', and 7
    customers per group came without a word on the approximation behind it. Review: a target
    near 0 or 1 read as the bound; the note reads Cochran's rule, as `ab` decides by it."""
    from crm_ltv.experiments.text import format_plan

    def shown(rate: float, lift: float) -> list[str]:
        return format_plan(plan_sample_size(rate, lift, 0.8, 0.05), 5).splitlines()

    tiny = shown(0.09, 0.0001)
    assert tiny[0].startswith("baseline 9.00000% -> 9.00090% (+0.010% relative, +0.00090 points)")
    assert len(tiny) == 1
    assert shown(0.1, 0.2) == [
        "baseline 10.00% -> 12.00% (+20.0% relative, +2.00 points), power 0.8, alpha 0.05 "
        "two-sided: 3,835 customers per group (7,670 in all)"
    ]
    assert shown(0.5, -0.99999)[0].startswith("baseline 50.00000% -> 0.00050% (-99.99900% rel")
    assert shown(0.99, 0.0101)[0].startswith("baseline 99.00000% -> 99.99990%")
    # 33 per group at 2% -> 22%: a control cell expects under 5 (Fisher's in ab), not under 30
    rare = shown(0.02, 10.0)
    assert rare[0].endswith("33 customers per group (66 in all)")
    assert rare[1].startswith("note: at these sizes a cell of the 2x2 table expects under 5")
    x_c = 1  # what ab would see at the planned rates: 0.66 expected control conversions
    assert proportion_test(7, 33, x_c, 33, 5)[0] == "fisher"


def test_run_notes_give_p_values_and_payback_as_the_tables_do():
    """Tester W: a note read "Holm-adjusted 0.9" beside the table's 0.8999, and "paid back
    after 0 months" for a channel paid back in the month of the first purchase."""
    from types import SimpleNamespace

    from crm_ltv.experiments.config import CohortConfig
    from crm_ltv.experiments.jobs import _ab_child_note, _channel_note

    row = pd.Series({"action": "win_back", "n_treatment": 10, "n_control": 9,
                     "rate_treatment": 0.2, "rate_control": 0.1, "lift_abs": 0.1,
                     "lift_abs_low": -0.1, "lift_abs_high": 0.3, "p_value": 4.28e-21,
                     "p_value_holm": 0.89994, "srm_mismatch": False,
                     "in_catalogue": True})  # fmt: skip
    note = _ab_child_note(row, ["action"])
    assert "p < 0.0001, Holm-adjusted p = 0.8999." in note, note
    # review s18A #6: drawn at shares 0 and 1 only, both groups there: not "one group is empty"
    undrawn = _ab_child_note(pd.Series({**row, "lift_abs": np.nan, "test": NOT_DRAWN}), ["action"])
    assert undrawn == (
        "action win_back: 10 treated, 9 controls: every contact drawn at a treatment share of 0 "
        "or 1 (expected_treatment_share): no group drawn by chance, so no lift is measured."
    )
    channel = SimpleNamespace(channel="affiliate", customers=5, mean_cac=9.29,
                              historic_ltv_to_cac=51.8, payback_months=0.0)  # fmt: skip
    assert "paid back within the month of the first purchase" in _channel_note(
        channel, CohortConfig()
    )
    later = SimpleNamespace(**{**vars(channel), "payback_months": 1.0})
    assert "paid back 1 month after the month of the first purchase" in _channel_note(
        later, CohortConfig()
    )


def test_the_ab_headline_names_no_win_with_a_sample_ratio_mismatch_the_largest():
    """Review s18A #5: recommendation (3,442/2,021 contacts, SRM p < 0.0001, "the lift cannot
    be trusted" in its own note) was the headline's "largest" win. It is counted, as the plot
    and `actions_significant_win` count it, but named apart."""
    from crm_ltv.experiments.jobs import _ab_headline

    table = pd.DataFrame(
        {"action": ["recommendation", "win_back", "thank_you"], "significant": [True, True, False],
         "lift_abs": [0.12, 0.03, 0.0], "srm_mismatch": [True, False, False]}
    )  # fmt: skip
    assert _ab_headline(table) == (
        "2 of 3 actions raise conversion significantly (largest: win_back; recommendation with "
        "a sample-ratio mismatch: untrusted); sample-ratio mismatch in recommendation."
    )
    only = table.assign(significant=[True, False, False])
    assert _ab_headline(only).startswith(
        "1 of 3 actions raise conversion significantly (recommendation with a sample-ratio "
        "mismatch: untrusted);"
    )


def _customers(n: int, seed: int = 5) -> pd.DataFrame:
    """Features at send time of `n` customers: a heavy-tailed spend and a recency."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "monetary": rng.lognormal(4.0, 1.0, n),
            "recency_days": rng.integers(0, 365, n).astype(float),
            "season_sin": np.full(n, 0.3),  # the send's own: the same for every row
        }
    )


def test_balance_flags_a_targeted_split_and_not_a_random_one_of_the_same_customers():
    features = _customers(4_000)
    config = ExperimentsConfig().balance
    rng = np.random.default_rng(1)
    randomised = balance.feature_balance(features, rng.random(4_000) < 0.5, config)
    assert not randomised.imbalanced and abs(randomised.smd) < 0.1
    assert randomised.features == 2  # the constant season left out
    top = features["monetary"].rank(ascending=False).to_numpy() <= 2_000  # the top spenders
    targeted = balance.feature_balance(features, top, config)
    assert targeted.imbalanced and targeted.feature == "monetary" and targeted.p_value < 1e-4
    assert targeted.smd > 1.0
    assert targeted.said().startswith("monetary SMD +1.")


def test_balance_weights_rows_by_their_known_chance_of_treatment():
    """Two sends drawn at 0.9 and 0.1 of older and newer customers: pooled, the treatment is
    mostly the first send's, yet each send was randomised. Weighted by 1/p and 1/(1-p) the
    groups are alike; unweighted they are not."""
    rng = np.random.default_rng(2)
    features = pd.DataFrame({"tenure_days": np.r_[rng.normal(400, 50, 3_000),
                                                  rng.normal(100, 50, 3_000)]})  # fmt: skip
    share = np.r_[np.full(3_000, 0.9), np.full(3_000, 0.1)]
    treated = rng.random(6_000) < share
    config = ExperimentsConfig().balance
    assert balance.feature_balance(features, treated, config).imbalanced
    weighted = balance.feature_balance(features, treated, config, share)
    assert not weighted.imbalanced and abs(weighted.smd) < 0.1


def test_balance_counts_a_customer_contacted_at_every_send_once():
    """400 customers contacted at ten sends: a difference of SMD 0.2 between 200 and 200
    customers is chance (p about 0.05), not beyond it ten times over."""
    z = np.random.default_rng(4).normal(size=400)
    z[:200] = (z[:200] - z[:200].mean()) / z[:200].std(ddof=1) + 0.2  # exactly SMD 0.2
    z[200:] = (z[200:] - z[200:].mean()) / z[200:].std(ddof=1)
    treated = np.arange(400) < 200
    features = pd.DataFrame({"monetary": np.tile(z, 10)})
    ids = np.tile(np.arange(400).astype(str), 10)
    config = ExperimentsConfig().balance
    rows = balance.feature_balance(features, np.tile(treated, 10), config)
    customers = balance.feature_balance(features, np.tile(treated, 10), config, None, ids)
    assert rows.imbalanced and not customers.imbalanced
    assert customers.smd == pytest.approx(0.2, abs=1e-3) == rows.smd
    assert 0.03 < customers.p_value < 0.06 and rows.p_value < 1e-9


def test_balance_flags_few_random_90_10_splits_of_zero_inflated_spend():
    """Review D1: a 10% control with no large value has a low mean and a tiny variance, and
    Welch's t called 2-10% of random 90/10 splits imbalanced at a stated 0.1%."""
    rng = np.random.default_rng(11)
    n = 1_000
    zero = rng.random((n, 5)) < 0.9  # 90% of customers without a refund, a spend, ...
    values = np.where(zero, 0.0, rng.lognormal(3.0, 1.5, (n, 5)))
    features = pd.DataFrame(values, columns=[f"spend_{i}" for i in range(5)])
    config = ExperimentsConfig().balance
    flagged = sum(
        balance.feature_balance(features, rng.random(n) < 0.9, config).imbalanced
        for _ in range(300)
    )
    assert flagged <= 2  # about 0.3 expected at the family-wise 0.1%


def test_balance_tests_groups_wholly_apart_on_a_feature_by_the_exact_rank_test():
    """Groups each constant on a feature and apart read p = 0 with no test: three treated
    and three controls fall wholly apart on a 0/1 feature one time in ten, and 5% of random
    campaigns of six customers were called imbalanced."""
    config = ExperimentsConfig().balance
    treated = np.arange(6) < 3
    small = balance.feature_balance(pd.DataFrame({"has_category": treated * 1.0}), treated, config)
    assert small.smd == math.inf and small.p_value == pytest.approx(2 / math.comb(6, 3))
    assert not small.imbalanced
    treated = np.arange(40) < 20
    large = balance.feature_balance(pd.DataFrame({"has_category": treated * 1.0}), treated, config)
    assert large.imbalanced and large.p_value == pytest.approx(2 / math.comb(40, 20))
    ids = np.tile(np.arange(6).astype(str), 10)  # six customers contacted at ten sends
    half = np.tile(np.arange(6) < 3, 10)
    repeated = balance.feature_balance(pd.DataFrame({"x": half * 1.0}), half, config, None, ids)
    assert repeated.p_value == pytest.approx(0.1) and not repeated.imbalanced
    rng = np.random.default_rng(3)
    flagged = 0
    for _ in range(500):
        features = pd.DataFrame({"has_category": (rng.random(6) < 0.5) * 1.0,
                                 "monetary": rng.lognormal(4.0, 1.0, 6)})  # fmt: skip
        flagged += balance.feature_balance(features, rng.permutation(6) < 3, config).imbalanced
    assert flagged == 0


def _stratum(n_t: int, x_t: int, n_c: int, x_c: int, share: float, start: int) -> pd.DataFrame:
    """One send's rows drawn at `share`: n_t treated with x_t conversions, n_c controls with
    x_c; customers numbered from `start`, one contact each."""
    converted = np.r_[np.arange(n_t) < x_t, np.arange(n_c) < x_c]
    return pd.DataFrame(
        {"customer_id": [f"c{start + i}" for i in range(n_t + n_c)], "action": "win_back",
         "group": ["treatment"] * n_t + ["control"] * n_c, "converted": converted,
         "revenue": 40.0 * converted, "sent_at": pd.Timestamp("2025-07-01"), SHARE: share}
    )  # fmt: skip


def test_rows_drawn_at_different_shares_are_compared_within_each_share():
    """Tester B's Simpson file: a send split 90/10 at a 30% base rate and one split 10/90 at
    5%. Pooled, the treatment is mostly the first send's: +20 points from a campaign that did
    nothing here but +2 points in the first send. Compared within each share (weights: each
    share's contacts), the lift is that of the sends."""
    rows = pd.concat([_stratum(900, 288, 100, 30, 0.9, 0), _stratum(100, 5, 900, 45, 0.1, 1000)])
    pooled = ab_table(campaign_outcomes(rows.drop(columns=SHARE)), CONFIG).iloc[0]
    assert pooled["lift_abs"] == pytest.approx(0.293 - 0.075) and pooled["test"] == "z"
    row = ab_table(campaign_outcomes(rows), CONFIG).iloc[0]
    assert row["test"] == "z, by share"
    assert row["lift_abs"] == pytest.approx(0.5 * 0.02 + 0.5 * 0.0)
    assert row["rate_control"] == pytest.approx(0.5 * 0.30 + 0.5 * 0.05)
    variance = 0.25 * (0.32 * 0.68 / 900 + 0.3 * 0.7 / 100) + 0.25 * (
        0.05 * 0.95 / 100 + 0.05 * 0.95 / 900
    )
    se = math.sqrt(variance)
    assert row["lift_abs_low"] == pytest.approx(0.01 - Z * se)
    assert row["lift_abs_high"] == pytest.approx(0.01 + Z * se)
    assert row["p_value"] == pytest.approx(2 * stats.norm.sf(0.01 / se)) and row["p_value"] > 0.05
    assert not row["significant"]
    # revenue alike: 40 per conversion
    assert row["revenue_diff"] == pytest.approx(40 * 0.01)


def test_rows_drawn_at_one_share_keep_the_pooled_figures():
    rows = pd.concat([_stratum(900, 288, 100, 30, 0.5, 0), _stratum(100, 5, 900, 45, 0.5, 1000)])
    with_share = ab_table(campaign_outcomes(rows), CONFIG)
    without = ab_table(campaign_outcomes(rows.drop(columns=SHARE)), CONFIG)
    figures = ["lift_abs", "lift_abs_low", "lift_abs_high", "lift_rel_low", "p_value", "test"]
    assert with_share[figures].equals(without[figures]) and with_share.at[0, "test"] == "z"
    assert with_share.at[0, "customers"] == 2_000


def test_a_customer_contacted_at_every_send_is_one_cluster_not_ten_rows():
    """Tester B: 400 customers sent win_back ten times read as 4,000 independent rows, an
    interval 3x too narrow and a "significant" loss. By customer (cluster-robust), the
    variance is that of statsmodels' clustered OLS (CR0) times G / (G - 1)."""
    import statsmodels.api as sm

    rng = np.random.default_rng(6)
    treated = np.arange(60) < 28
    taste = rng.random(60) < 0.3  # who buys, whatever the send: outcomes repeat per customer
    sends, first = [], pd.Timestamp("2025-07-01")
    for k in range(10):
        bought = taste & (rng.random(60) < 0.8) | (rng.random(60) < 0.02)
        sends.append(pd.DataFrame(
            {"customer_id": [f"c{i}" for i in range(60)], "action": "win_back",
             "group": np.where(treated, "treatment", "control"), "converted": bought,
             "revenue": 10.0 * bought, "sent_at": first + pd.Timedelta(weeks=k)}
        ))  # fmt: skip
    rows = pd.concat(sends, ignore_index=True)
    row = ab_table(campaign_outcomes(rows), CONFIG).iloc[0]
    assert row["test"] == "z, by customer" and row["customers"] == 60
    y = rows["converted"].astype(float).to_numpy()
    x = sm.add_constant(rows["group"].eq("treatment").astype(float).to_numpy())
    fit = sm.OLS(y, x).fit(
        cov_type="cluster", cov_kwds={"groups": rows["customer_id"].str[1:].astype(int),
                                      "use_correction": False}
    )  # fmt: skip
    se = float(fit.bse[1]) * math.sqrt(60 / 59)
    assert row["lift_abs"] == pytest.approx(float(fit.params[1]))
    assert row["lift_abs_high"] - row["lift_abs"] == pytest.approx(Z * se)
    assert row["p_value"] == pytest.approx(2 * stats.norm.sf(abs(row["lift_abs"]) / se))
    rowwise = compare_groups(y[x[:, 1] == 1] > 0, y[x[:, 1] == 0] > 0, y[x[:, 1] == 1],
                             y[x[:, 1] == 0], CONFIG)  # fmt: skip
    width = rowwise["lift_abs_high"] - rowwise["lift_abs_low"]
    assert row["lift_abs_high"] - row["lift_abs_low"] > 1.5 * width
    # the smallest lift the design detects: the rows' times the design effect, which does
    # not grow with the lift found (the design's own se did: review of 2026-12-07)
    p_t, p_c = y[x[:, 1] == 1].mean(), y[x[:, 1] == 0].mean()
    rows_se = math.sqrt(
        p_t * (1 - p_t) / (x[:, 1] == 1).sum() + p_c * (1 - p_c) / (x[:, 1] == 0).sum()
    )
    assert row["mde_abs"] == pytest.approx(rowwise["mde_abs"] * se / rows_se)
    assert row["mde_abs"] > 1.5 * rowwise["mde_abs"]


def _tiny(converted_t: list[bool], converted_c: list[bool], repeat: bool) -> pd.DataFrame:
    """One send of win_back, a customer per contact; `repeat`: the first treated customer is
    contacted again a week later, with the same outcome."""
    rows = pd.DataFrame(
        {"customer_id": [f"c{i}" for i in range(len(converted_t) + len(converted_c))],
         "action": "win_back",
         "group": ["treatment"] * len(converted_t) + ["control"] * len(converted_c),
         "converted": converted_t + converted_c, "sent_at": pd.Timestamp("2025-07-01")}
    )  # fmt: skip
    if repeat:
        again = rows.iloc[[0]].assign(sent_at=pd.Timestamp("2025-07-08"))
        rows = pd.concat([rows, again], ignore_index=True)
    return rows


def test_one_repeated_contact_keeps_a_small_campaign_on_fishers_test():
    """Review D3: a customer contacted twice switched a 10/10 campaign from Fisher (p 0.47)
    to a by-customer z-test (p 0.12, an interval far narrower than Newcombe's)."""
    once = ab_table(campaign_outcomes(_tiny([False] * 10, [True] * 2 + [False] * 8, False)),
                    CONFIG).iloc[0]  # fmt: skip
    again = ab_table(campaign_outcomes(_tiny([False] * 10, [True] * 2 + [False] * 8, True)),
                     CONFIG).iloc[0]  # fmt: skip
    assert once["test"] == again["test"] == "fisher"
    assert again["customers"] == 20 and again["n_treatment"] == 11
    assert again["lift_abs_low"] == pytest.approx(once["lift_abs_low"], abs=0.02)
    assert again["p_value"] > 0.2
    lines = design_lines(pd.DataFrame([again]))
    assert lines == [
        "win_back: 21 contacts of 20 customers, read as independent rows all the same: too few "
        "conversions for the by-customer z-test (Fisher's test and Newcombe's interval, by "
        "Cochran's rule), or no variance to read by customer; the repeats are not accounted for"
    ]


def test_no_conversion_with_a_repeated_contact_gives_no_zero_width_interval():
    """Review D3: every outcome 0 and one repeat gave +0.00 [+0.00, +0.00] and no p."""
    row = ab_table(campaign_outcomes(_tiny([False] * 500, [False] * 500, True)), CONFIG).iloc[0]
    assert row["lift_abs"] == 0 and row["lift_abs_low"] < -0.005 < 0.005 < row["lift_abs_high"]
    assert row["p_value"] == 1.0 and row["test"] == "fisher"
    design = Design(np.full(501, 0.5), np.full(500, 0.5), np.r_[np.arange(500), 0].astype(str),
                    np.arange(500, 1000).astype(str))  # fmt: skip
    assert design_figures(np.zeros(501, bool), np.zeros(500, bool), np.zeros(501),
                          np.zeros(500), design, 0.05, 0.8) == {}  # fmt: skip


def test_rows_with_shares_of_their_own_are_weighted_by_their_chance_of_treatment():
    """Review D4: per-row shares (0.9 or 0.1, each jittered) put one row in most strata; the
    strata with both groups held 2 rows each, and the rest were dropped without a word. Now
    every row counts, weighted 1/p or 1/(1-p) (Hajek): the weighted least squares difference,
    with its robust (HC0) variance."""
    import statsmodels.api as sm

    rows = pd.concat([_stratum(900, 288, 100, 30, 0.9, 0), _stratum(100, 5, 900, 45, 0.1, 1000)])
    rows[SHARE] += np.random.default_rng(3).uniform(-0.01, 0.01, len(rows))
    row = ab_table(campaign_outcomes(rows), CONFIG).iloc[0]
    assert row["test"] == "z, weighted by share" and row["left_out"] == 0
    treated = rows["group"].eq("treatment").to_numpy()
    p = rows[SHARE].to_numpy()
    fit = sm.WLS(rows["converted"].astype(float).to_numpy(), sm.add_constant(treated * 1.0),
                 weights=np.where(treated, 1 / p, 1 / (1 - p))).fit(cov_type="HC0")  # fmt: skip
    se = float(fit.bse[1])
    assert row["lift_abs"] == pytest.approx(float(fit.params[1]))
    assert row["rate_control"] == pytest.approx(float(fit.params[0]))
    assert row["lift_abs_high"] - row["lift_abs"] == pytest.approx(Z * se)
    assert abs(row["lift_abs"] - 0.01) < 0.03 and row["p_value"] > 0.05  # not Simpson's +21.8
    said = design_lines(pd.DataFrame([row]))
    assert said[0].startswith("win_back: its rows were drawn at several treatment shares")
    assert "weighted by each row's chance, 1 / share (treatment)" in said[0]


def test_rows_drawn_at_a_share_of_1_are_left_out_and_counted():
    """Review D4: a stratum of treated rows only (share 1.0, no holdout) was dropped without
    a word while the group sizes still counted it."""
    rows = pd.concat([_stratum(500, 100, 500, 50, 0.5, 0), _stratum(300, 290, 0, 0, 1.0, 1000)])
    row = ab_table(campaign_outcomes(rows), CONFIG).iloc[0]
    assert row["test"] == "z, by share" and row["left_out"] == 300 and row["n_treatment"] == 800
    assert row["lift_abs"] == pytest.approx(0.1)
    said = design_lines(pd.DataFrame([row]))
    assert ("win_back: 300 of 1,300 contacts drawn at a treatment share of 0 or 1 left out of "
            "its figures: no row of the other group to compare them with") in said  # fmt: skip


def test_rows_all_drawn_at_shares_of_0_and_1_get_no_lift():
    """Re-review: a targeted campaign written as shares (treatment 1, control 0) printed its
    pooled difference, the selection, as a plain z-test: +23.40 points, p < 0.0001."""
    rows = pd.concat([_stratum(2000, 622, 0, 0, 1.0, 0), _stratum(0, 0, 2000, 154, 0.0, 2000)])
    row = ab_table(campaign_outcomes(rows), CONFIG).iloc[0]
    assert row["test"] == NOT_DRAWN and row["left_out"] == 4000
    assert row["rate_treatment"] == pytest.approx(0.311) and pd.isna(row["lift_abs"])
    assert pd.isna(row["p_value"]) and pd.isna(row["significant"])
    assert design_lines(pd.DataFrame([row])) == [
        "win_back: all 4,000 contacts drawn at a treatment share of 0 or 1 "
        "(expected_treatment_share): no group drawn by chance, so no lift is measured (their "
        "difference is the selection)"
    ]


def test_the_option_replaces_the_srm_share_only_not_the_strata():
    """Review S1: --expected-treatment-share dropped the rows' shares, and Simpson's +21.8
    points came back."""
    rows = pd.concat([_stratum(900, 288, 100, 30, 0.9, 0), _stratum(100, 5, 900, 45, 0.1, 1000)])
    option = AbConfig(expected_treatment_share=0.3)
    row = ab_table(campaign_outcomes(rows), option, None, share_option=True).iloc[0]
    own = ab_table(campaign_outcomes(rows), CONFIG).iloc[0]
    assert row["test"] == "z, by share" and row["lift_abs"] == pytest.approx(0.01)
    assert row["lift_abs_low"] == own["lift_abs_low"]
    assert row["expected_treatment_share"] == 0.3
    assert own["expected_treatment_share"] == pytest.approx(0.5)


def _clustered_ols(y: np.ndarray, treated: np.ndarray, ids: np.ndarray) -> tuple:
    """statsmodels' OLS of y on treatment, CR0 by customer times G / (G - 1): the
    parameters (control mean, difference) and their covariance."""
    import statsmodels.api as sm

    g = len(set(ids.tolist()))
    fit = sm.OLS(y, sm.add_constant(treated * 1.0)).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(ids)[0], "use_correction": False}
    )
    return np.asarray(fit.params), np.asarray(fit.cov_params()) * g / (g - 1)


def test_customers_in_both_arms_are_one_cluster_across_the_arms():
    """Review S4: customers drawn anew at each send are in both arms; their influence on the
    control mean counts against their influence on the treatment's. Difference, relative
    lift (delta method on the log ratio) and revenue against statsmodels' clustered OLS."""
    rng = np.random.default_rng(8)
    n, sends = 80, 8
    taste = rng.random(n) < 0.3
    frames = []
    for k in range(sends):
        treated = rng.random(n) < 0.5
        bought = (
            taste & (rng.random(n) < 0.7)
            | (rng.random(n) < 0.05)
            | treated & (rng.random(n) < 0.05)
        )
        frames.append(pd.DataFrame(
            {"customer_id": [f"c{i}" for i in range(n)], "action": "win_back",
             "group": np.where(treated, "treatment", "control"), "converted": bought,
             "revenue": bought * rng.gamma(2.0, 20.0, n),
             "sent_at": pd.Timestamp("2025-07-01") + pd.Timedelta(weeks=k)}
        ))  # fmt: skip
    rows = pd.concat(frames, ignore_index=True)
    row = ab_table(campaign_outcomes(rows), CONFIG).iloc[0]
    assert row["test"] == "z, by customer" and row["customers"] == n
    treated, ids = rows["group"].eq("treatment").to_numpy(), rows["customer_id"].to_numpy()
    params, cov = _clustered_ols(rows["converted"].astype(float).to_numpy(), treated, ids)
    se = math.sqrt(cov[1, 1])
    assert row["lift_abs"] == pytest.approx(params[1])
    assert row["lift_abs_high"] - row["lift_abs"] == pytest.approx(Z * se)
    assert row["p_value"] == pytest.approx(2 * stats.norm.sf(abs(params[1]) / se))
    mean_t, mean_c = params[0] + params[1], params[0]
    gradient = np.array([1 / mean_t - 1 / mean_c, 1 / mean_t])  # of log(mean_t / mean_c)
    spread = Z * math.sqrt(gradient @ cov @ gradient)
    assert row["lift_rel_low"] == pytest.approx(mean_t / mean_c * math.exp(-spread) - 1)
    assert row["lift_rel_high"] == pytest.approx(mean_t / mean_c * math.exp(spread) - 1)
    params, cov = _clustered_ols(rows["revenue"].to_numpy(), treated, ids)
    se = math.sqrt(cov[1, 1])
    assert row["revenue_diff"] == pytest.approx(params[1])
    assert row["revenue_diff_low"] == pytest.approx(params[1] - Z * se)
    assert row["revenue_diff_high"] == pytest.approx(params[1] + Z * se)
    assert row["revenue_p_value"] == pytest.approx(2 * stats.norm.sf(abs(params[1]) / se))


def test_strata_of_unequal_sizes_weigh_by_their_contacts():
    """Review S4: with strata of 1,000 and 1,000 contacts, equal weights passed for weights by
    contacts. Here 1,500 and 500: weights 0.75 and 0.25."""
    rows = pd.concat([_stratum(1350, 405, 150, 30, 0.9, 0), _stratum(50, 5, 450, 18, 0.1, 2000)])
    row = ab_table(campaign_outcomes(rows), CONFIG).iloc[0]
    assert row["test"] == "z, by share"
    assert row["rate_treatment"] == pytest.approx(0.75 * 0.30 + 0.25 * 0.10)
    assert row["rate_control"] == pytest.approx(0.75 * 0.20 + 0.25 * 0.04)
    variance = 0.75**2 * (0.3 * 0.7 / 1350 + 0.2 * 0.8 / 150) + 0.25**2 * (
        0.1 * 0.9 / 50 + 0.04 * 0.96 / 450
    )
    assert row["lift_abs_high"] - row["lift_abs"] == pytest.approx(Z * math.sqrt(variance))
    assert row["revenue_diff"] == pytest.approx(40 * (0.75 * 0.10 + 0.25 * 0.06))


def test_balance_compares_who_had_a_purchase_before_the_send():
    """Review S2: 500 new customers (every feature missing) against 500 established ones
    left every feature with one group: '-', no warning, counted as a win."""
    features = _customers(1_000)
    features.loc[:499] = np.nan  # the treated: no purchase by the send
    frame = pd.DataFrame({"customer_id": np.arange(1_000).astype(str), "action": "welcome_offer",
                          "treated": np.arange(1_000) < 500})  # fmt: skip
    config = ExperimentsConfig().balance
    new = balance.action_balance(frame, features, config)["welcome_offer"]
    assert new.imbalanced and new.feature == balance.HISTORY and new.smd == -math.inf
    features.loc[:249] = _customers(1_000, seed=9).loc[:249]  # half of them established
    half = balance.action_balance(frame, features, config)["welcome_offer"]
    assert half.imbalanced and half.feature == balance.HISTORY and half.smd < -1
    table = pd.DataFrame({"action": ["a", "b"], "n_treatment": [5, 5], "n_control": [5, 5],
                          "balance_feature": [None, "x"]})  # fmt: skip
    assert featureless_actions(table) == ["a"]


def test_balance_compares_the_levels_of_a_categorical_feature():
    """A campaign sent to one channel's customers against random others differed on no
    numeric feature and passed as randomised: each level is a 0/1 feature of its own."""
    features = _customers(2_000)
    rng = np.random.default_rng(6)
    channel = rng.choice(["affiliate", "email", "search", "social"], 2_000)
    features["acquisition_channel"] = pd.Categorical(channel)
    features.loc[:99] = np.nan  # no purchase by the send: no channel either, as no feature
    treated = (channel == "affiliate") | (rng.random(2_000) < 0.1)
    frame = pd.DataFrame(
        {"customer_id": np.arange(2_000).astype(str), "action": "win_back", "treated": treated}
    )
    config = ExperimentsConfig().balance
    targeted = balance.action_balance(frame, features, config)["win_back"]
    assert targeted.imbalanced and targeted.feature == "acquisition_channel=affiliate"
    assert targeted.smd > 1 and targeted.features == 2 + 4 + 1  # two numbers, four levels
    frame["treated"] = rng.random(2_000) < 0.5
    randomised = balance.action_balance(frame, features, config)["win_back"]
    assert not randomised.imbalanced and randomised.features == 7
    levels = balance._levels(features, features.notna().any(axis=1))
    assert levels.loc[:99].isna().all().all()  # missing where the customer had no purchase
    assert levels.filter(like="=").sum(axis=1).loc[100:].eq(1).all()


def test_a_rare_level_is_tested_exactly_not_by_a_t_test():
    """Review: one treated customer alone on a category among 20 treated and 380 controls
    read p = 1e-5 by the t-test (IMBALANCED); 1 in 20 random splits puts them there."""
    config = ExperimentsConfig().balance
    treated = np.arange(400) < 20
    level = (np.arange(400) == 0) * 1.0  # the one customer of the category, treated
    alone = balance.feature_balance(pd.DataFrame({"favourite_category=rare": level}), treated,
                                    config)  # fmt: skip
    assert alone.p_value == pytest.approx(stats.fisher_exact([[1, 19], [0, 380]]).pvalue)
    assert alone.p_value == pytest.approx(0.05) and not alone.imbalanced
    rng = np.random.default_rng(8)
    weights = 1 / np.arange(1, 51)
    flagged = 0
    for _ in range(200):  # 50 unevenly used categories, random 95/5 splits of 400 customers
        features = pd.DataFrame(
            {
                "favourite_category": pd.Categorical(
                    rng.choice([f"c{i}" for i in range(50)], 400, p=weights / weights.sum())
                )
            }
        )
        frame = pd.DataFrame({"customer_id": np.arange(400).astype(str), "action": "a",
                              "treated": rng.random(400) < 0.95})  # fmt: skip
        flagged += balance.action_balance(frame, features, config)["a"].imbalanced
    assert flagged <= 2  # a t-test flagged 28%


def test_the_sample_ratio_check_counts_customers_who_stay_in_their_group():
    """Review S5: 192 and 208 customers sent ten times read as 1,920 and 2,080 draws, SRM p
    0.011; the customers were drawn, p 0.42."""
    frames = [
        pd.DataFrame({"customer_id": [f"c{i}" for i in range(400)], "action": "win_back",
                      "group": np.where(np.arange(400) < 192, "treatment", "control"),
                      "converted": np.arange(400) % 7 == 0,
                      "sent_at": pd.Timestamp("2025-07-01") + pd.Timedelta(weeks=k)})
        for k in range(10)
    ]  # fmt: skip
    row = ab_table(campaign_outcomes(pd.concat(frames, ignore_index=True)), CONFIG).iloc[0]
    assert row["n_treatment"] == 1_920
    assert row["srm_p_value"] == pytest.approx(stats.chisquare([192, 208]).pvalue)
    assert row["srm_p_value"] > 0.4
    both = pd.concat(frames, ignore_index=True)
    both.loc[0, "group"] = "control"  # c0 in both groups: contacts are counted
    row = ab_table(campaign_outcomes(both), CONFIG).iloc[0]
    assert row["srm_p_value"] == pytest.approx(stats.chisquare([1_919, 2_081]).pvalue)


def test_metrics_that_are_not_finite_are_not_logged(tmp_path, monkeypatch):
    """Re-review: an SMD of groups wholly apart (+-inf) was stored as -1.797e308."""
    import mlflow

    from crm_ltv.experiments.tracking import log_metrics

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("t", artifact_location=tmp_path.as_uri())
    try:
        with mlflow.start_run(experiment_id=experiment) as run:
            log_metrics({"smd": float("-inf"), "p": float("nan"), "lift": 0.25, "up": np.inf})
        logged = mlflow.get_run(run.info.run_id).data.metrics
    finally:
        mlflow.set_tracking_uri(None)
    assert logged == {"lift": 0.25}
