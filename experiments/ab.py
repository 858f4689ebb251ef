"""A/B analysis of campaigns: did treatment beat control, by how much, and could we tell?

Per action (and per segment when asked): group sizes, conversion rates, absolute and relative
lift with intervals, a p-value (Fisher's exact test when a cell of the 2x2 table is small, the
two-proportion z-test otherwise), revenue per customer difference with a Welch interval, a
sample-ratio-mismatch check against the configured split, and the smallest lift the test could
have detected at its sizes. A planner turns a baseline rate and a lift into customers per group.
The statistics are statsmodels' and scipy's; this module only arranges them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    proportions_ztest,
)

from crm_ltv.experiments.config import AbConfig
from crm_ltv.features.actions import ACTIONS
from crm_ltv.features.contract import DataError

TREATMENT, CONTROL = "treatment", "control"
# Columns of `ab_table` in order, after the grouping columns; rates and lifts are shares (0.012
# is 1.2 points), revenue is per contacted customer over the campaign's response window.
COLUMNS = (
    "in_catalogue",  # the policy and uplift models know this action (features.actions)
    "n_treatment",
    "n_control",
    "customers",  # distinct customers among the contacts (fewer: some were contacted again)
    # contacts drawn at a share of 0 or 1, left out of figures read by share: no other group
    "left_out",
    "treatment_share",
    "expected_treatment_share",  # the split the SRM check expects (the rows' own, or the config's)
    "srm_p_value",
    "srm_mismatch",
    "rate_treatment",
    "rate_control",
    "lift_abs",
    "lift_abs_low",
    "lift_abs_high",
    "lift_rel",
    "lift_rel_low",
    "lift_rel_high",
    "test",
    "p_value",
    "significant",
    "revenue_treatment",
    "revenue_control",
    "revenue_diff",
    "revenue_diff_low",
    "revenue_diff_high",
    "revenue_p_value",
    "mde_abs",
    # With segments: Holm's adjustment of p_value over the segments of each action (several
    # looks at one campaign find a "significant" segment by chance), and its verdict.
    "p_value_holm",
    "significant_holm",
)


@dataclass(frozen=True)
class Outcomes:
    """Campaign rows with a known outcome, and how many had none (left out, not hidden)."""

    frame: pd.DataFrame  # action, group, converted (bool), revenue (float or NaN), extra columns
    rows: np.ndarray  # the position in the campaigns table of each of frame's rows
    without_outcome: int
    has_revenue: bool
    # Contacts with a conversion but no revenue: in the rates, left out of the revenue means.
    without_revenue: int = 0
    converted_from_revenue: bool = False  # no 'converted' column: revenue > 0 is a conversion


# A campaigns column (features.contract): each row's chance, as a treatment or a control, of
# being the treatment; `crm-ltv outcomes` writes it from the decision's logged holdout share
# and exploration, so the sample-ratio check expects the split the rows were drawn with.
SHARE = "expected_treatment_share"


@dataclass(frozen=True)
class Split:
    """Where the sample-ratio check's expected treatment share comes from, said by `ab` and
    recorded by its run: the command line's, else the file's own rows', else the config's."""

    share: float  # the rows' mean when they carry their own
    source: Literal["option", "campaigns file", "config"]
    text: str


def mean_share(shares: pd.Series, config: AbConfig) -> float:
    """The expected treatment share of these rows: the mean of their own, the config's for a
    row without one."""
    return float(shares.astype("float64").fillna(config.expected_treatment_share).mean())


def expected_split(campaigns: pd.DataFrame, config: AbConfig, option: bool) -> Split:
    """`option`: config.expected_treatment_share is the command line's, which wins over the
    file's column in the SRM check (ab_table's `share_option`). The config's is the
    fallback of a file without the column: `crm-ltv init` copies it into every home, so it is
    no choice made for this file, and the service's rows were drawn at 0.73 where it says 0.5."""
    configured = config.expected_treatment_share
    if option:
        return Split(configured, "option", f"{configured:g} (--expected-treatment-share)")
    shares = campaigns[SHARE].astype("float64") if SHARE in campaigns else None
    if shares is None or shares.isna().all():
        none = f"no {SHARE} column" if shares is None else f"an {SHARE} column with no value"
        return Split(
            configured,
            "config",
            f"{configured:g} (ab.expected_treatment_share of configs/experiments.yaml; the "
            f"file has {none})",
        )
    low, high = float(shares.min()), float(shares.max())
    spread = f"{low:.4f}" if low == high else f"{low:.4f} to {high:.4f}, each action's own mean"
    missing = int(shares.isna().sum())
    rows = "row" if missing == 1 else "rows"
    blank = f"; {missing:,} {rows} without one take the config's {configured:g}" if missing else ""
    return Split(
        mean_share(shares, config),
        "campaigns file",
        f"{spread} (the file's {SHARE} column, the split its rows were drawn with, as "
        f"`crm-ltv outcomes` writes it{blank})",
    )


# What the commands print when a file's conversions are read from its revenue.
FROM_REVENUE = "no 'converted' column: a contact converted when its revenue is above 0"


def campaign_outcomes(campaigns: pd.DataFrame, where: str = "campaigns") -> Outcomes:
    """Each contact's outcome: `converted`, else revenue > 0 (the contract allows either). A
    contact that did not convert and has no revenue spent nothing: many exports leave the
    non-buyers' revenue blank, and left out, revenue per customer became revenue per converter
    (a +9 per customer effect read as -10). Only a conversion without revenue stays unknown.
    `where`: the table and its file, as errors name them."""
    # a revenue column with no value at all is none: its non-buyers' zeros alone read as a
    # measured revenue difference of +0.00
    has_converted = "converted" in campaigns
    has_revenue = "revenue" in campaigns and bool(campaigns["revenue"].notna().any())
    if not has_converted and not has_revenue:
        blank = " (every 'revenue' blank)" if "revenue" in campaigns else ""
        raise DataError(
            f"{where}: neither a 'converted' nor a 'revenue' column{blank}, so no outcome to "
            f"compare; columns present: {', '.join(map(str, campaigns.columns))}"
        )
    revenue = campaigns["revenue"].astype("float64") if has_revenue else None
    converted = campaigns["converted"].astype("boolean") if has_converted else None
    if converted is None:
        assert revenue is not None
        converted = (revenue > 0).astype("boolean").mask(revenue.isna())
    elif revenue is not None:  # a missing flag with a known revenue still has an outcome
        converted = converted.fillna((revenue > 0).astype("boolean").mask(revenue.isna()))
    known = converted.notna().to_numpy()
    frame = campaigns.loc[known].assign(converted=converted[known].astype(bool))
    frame["revenue"] = revenue[known] if revenue is not None else np.nan
    if revenue is not None:
        frame.loc[~frame["converted"] & frame["revenue"].isna(), "revenue"] = 0.0
    without_revenue = int(frame["revenue"].isna().sum()) if has_revenue else 0
    return Outcomes(
        frame.reset_index(drop=True),
        np.flatnonzero(known),
        int((~known).sum()),
        has_revenue,
        without_revenue,
        converted_from_revenue=not has_converted,
    )


def ab_table(
    outcomes: Outcomes, config: AbConfig, by: str | None = None, share_option: bool = False
) -> pd.DataFrame:
    """One row per action (per action and `by` value when given), COLUMNS after them. Rows
    with an expected_treatment_share column are checked against their own mean share, unless
    `share_option` (config.expected_treatment_share is the command line's): that replaces
    the SRM check's expected share only; the rows' own still give the strata and weights."""
    keys = ["action"] if by is None else ["action", by]
    frame = outcomes.frame
    missing = [k for k in keys if k not in frame]
    if missing:
        raise DataError(f"campaigns: no column {missing[0]!r} to group by")
    rows = []
    for key, group in frame.groupby(keys, observed=True, sort=True):
        values = key if isinstance(key, tuple) else (key,)
        treated = group["group"].astype(str).eq(TREATMENT).to_numpy()
        # the config's, unless the rows carry their own (expected_split)
        share = mean_share(group[SHARE], config) if SHARE in group and not share_option else None
        strata = (
            group[SHARE].astype("float64").fillna(config.expected_treatment_share).to_numpy()
            if SHARE in group
            else np.full(len(group), config.expected_treatment_share)
        )
        # the contract's; a frame without it (unit tests) has one customer per row
        customers = (
            group["customer_id"].astype(str).to_numpy()
            if "customer_id" in group
            else np.arange(len(group)).astype(str)
        )
        rows.append(
            {
                **dict(zip(keys, values, strict=True)),
                "in_catalogue": str(values[0]) in ACTIONS,
                **compare_groups(
                    group["converted"].to_numpy(bool)[treated],
                    group["converted"].to_numpy(bool)[~treated],
                    group["revenue"].to_numpy("float64")[treated],
                    group["revenue"].to_numpy("float64")[~treated],
                    config,
                    share,
                    Design(strata[treated], strata[~treated], customers[treated],
                           customers[~treated]),
                ),
            }
        )  # fmt: skip
    table = pd.DataFrame(rows, columns=[*keys, *COLUMNS])
    if by is not None:
        p = table["p_value"].astype("float64")
        adjusted = pd.Series(np.nan, index=table.index)
        for _, rows_of_action in table.groupby("action", observed=True).groups.items():
            tested = p.loc[rows_of_action].dropna()
            if len(tested):
                adjusted[tested.index] = multipletests(tested, config.alpha, method="holm")[1]
        table["p_value_holm"] = adjusted
        table["significant_holm"] = (adjusted < config.alpha).astype(object).where(adjusted.notna())
    return table


@dataclass(frozen=True)
class Design:
    """How the contacts of one comparison were drawn, per row of each group: the chance of
    treatment it was drawn with (ab.SHARE; one value for a file without it) and its customer."""

    share_t: np.ndarray
    share_c: np.ndarray
    customer_t: np.ndarray
    customer_c: np.ndarray

    @property
    def shares(self) -> list[float]:
        return sorted(set(self.share_t.tolist()) | set(self.share_c.tolist()))

    @property
    def customers(self) -> int:
        return len(set(self.customer_t.tolist()) | set(self.customer_c.tolist()))

    @property
    def stratified(self) -> bool:
        """Rows drawn at different shares: pooled, a send with more treatment and a higher
        base rate reads as a lift (Simpson's paradox), so each share is compared apart."""
        return len(self.shares) > 1

    @property
    def left_out(self) -> int:
        """Rows drawn at a share of 0 or 1 when read by share: a group of its own, with no
        row of the other to compare (and no finite weight)."""
        if not self.stratified:
            return 0
        return int((~_drawn(self.share_t)).sum() + (~_drawn(self.share_c)).sum())

    @property
    def weighted(self) -> bool:
        """Some share (of the rows drawn at one between 0 and 1) holds one group only, as
        per-row shares do: strata would leave its rows out, so every row is weighted by its
        own chance instead (design_difference)."""
        t, c = self.share_t[_drawn(self.share_t)], self.share_c[_drawn(self.share_c)]
        return self.stratified and set(t.tolist()) != set(c.tolist())

    @property
    def srm_units(self) -> tuple[int, int] | None:
        """Each group's distinct customers when customers were contacted again but each stays
        in one group: the units drawn, which the sample-ratio check counts (ten sends to 400
        customers read as 4,000 draws and a false mismatch). None otherwise."""
        t, c = set(self.customer_t.tolist()), set(self.customer_c.tolist())
        if not self.clustered or t & c:
            return None
        return len(t), len(c)

    @property
    def clustered(self) -> bool:
        """A customer with more than one contact: their outcomes are not independent rows."""
        return self.customers < len(self.customer_t) + len(self.customer_c)

    @property
    def test(self) -> str:
        """The table's `test` of a difference read this way."""
        if self.weighted:
            return "z, weighted by share" + (" and by customer" if self.clustered else "")
        by = " and ".join(
            w for w, on in (("share", self.stratified), ("customer", self.clustered)) if on
        )
        return f"z, by {by}"


def _drawn(share: np.ndarray) -> np.ndarray:
    """Rows drawn at a share strictly between 0 and 1: each could have been in either group."""
    return (share > 0.0) & (share < 1.0)


@dataclass(frozen=True)
class Difference:
    """Treatment and control means standardised over the share strata, and the variances
    (cluster-robust by customer where one has several contacts) of their difference and of
    the log of their ratio."""

    mean_t: float
    mean_c: float
    var_diff: float
    var_log_ratio: float


def design_difference(
    y_t: np.ndarray, y_c: np.ndarray, design: Design, rows_t: np.ndarray, rows_c: np.ndarray
) -> Difference | None:
    """Each group's mean as sum a_i y_i (row weights a summing to 1 per group) and the
    variance of their difference from each row's influence a_i (y_i - centre_i), a control
    row's negated; summed per customer and squared (times G / (G - 1), G customers) when
    clustered, else squared per row. By share (Design.weighted false): a_i = w_s / n_gs,
    w_s the stratum's share of the contacts, centre_i its group's stratum mean (the Wald
    variance sum w_s^2 (var_ts / n_ts + var_cs / n_cs)). Weighted by share: Hajek's
    inverse-probability means, a_i proportional to 1 / p (treated) or 1 / (1 - p) (control),
    as the balance check weights, centre_i the group's mean. Rows drawn at a share of 0 or 1
    are left out (Design.left_out). `rows_t`, `rows_c`: the rows of the design's arrays that
    `y_t`, `y_c` are (revenue drops unknowns). None when a group has no row left."""
    share_t, share_c = design.share_t[rows_t], design.share_c[rows_c]
    drawn_t, drawn_c = _drawn(share_t), _drawn(share_c)
    if not design.stratified:  # one share: every row, equally
        drawn_t, drawn_c = np.ones(len(y_t), bool), np.ones(len(y_c), bool)
    if not drawn_t.any() or not drawn_c.any():
        return None
    a_t, a_c = np.zeros(len(y_t)), np.zeros(len(y_c))
    centre_t, centre_c = np.zeros(len(y_t)), np.zeros(len(y_c))
    if design.weighted:
        a_t[drawn_t] = 1.0 / share_t[drawn_t]
        a_c[drawn_c] = 1.0 / (1.0 - share_c[drawn_c])
        a_t, a_c = a_t / a_t.sum(), a_c / a_c.sum()
        centre_t[:], centre_c[:] = a_t @ y_t, a_c @ y_c
    else:
        kept = sorted(set(share_t[drawn_t].tolist()) & set(share_c[drawn_c].tolist()))
        sizes = np.array([(share_t == s).sum() + (share_c == s).sum() for s in kept], float)
        for w, s in zip(sizes / sizes.sum(), kept, strict=True):
            t, c = share_t == s, share_c == s
            a_t[t], a_c[c] = w / t.sum(), w / c.sum()
            centre_t[t], centre_c[c] = y_t[t].mean(), y_c[c].mean()
    mean_t, mean_c = float(a_t @ y_t), float(a_c @ y_c)
    infl_t, infl_c = a_t * (y_t - centre_t), a_c * (y_c - centre_c)
    ids = np.r_[design.customer_t[rows_t], design.customer_c[rows_c]]

    def variance(influence: np.ndarray) -> float:
        if not design.clustered:
            return float((influence**2).sum())
        sums = pd.Series(influence).groupby(ids).sum().to_numpy()
        g = len(sums)
        return float((sums**2).sum() * g / (g - 1)) if g > 1 else math.nan

    diff = np.r_[infl_t, -infl_c]
    log_ratio = np.r_[infl_t / mean_t, -infl_c / mean_c] if mean_t > 0 and mean_c > 0 else None
    return Difference(
        mean_t,
        mean_c,
        variance(diff),
        variance(log_ratio) if log_ratio is not None else math.nan,
    )


def design_figures(
    converted_t: np.ndarray,
    converted_c: np.ndarray,
    revenue_t: np.ndarray,
    revenue_c: np.ndarray,
    design: Design,
    alpha: float,
    power: float,
) -> dict[str, float | str | bool]:
    """The figures compare_groups gives, read by share stratum and/or by customer (Design):
    rates standardised over the strata, Wald intervals of the difference and of the log
    ratio, z-test p-values, and the minimum detectable lift of the rows' (at the control
    rate) times the design effect, the design's standard error over the rows' at the same
    rates: ten sends to 400 customers who buy by their own taste "detected" 4.0 points as
    independent rows, where the design needs 10.8. Revenue alike. Nothing
    where the rates have no variance to read (every outcome alike within each group: a
    [0, 0] interval and no p): the rows' stand."""
    z = float(stats.norm.ppf(1.0 - alpha / 2.0))
    every_t, every_c = np.ones(len(converted_t), bool), np.ones(len(converted_c), bool)
    rates = design_difference(
        converted_t.astype(float), converted_c.astype(float), design, every_t, every_c
    )
    if rates is None or not rates.var_diff > 0:
        return {}
    out: dict[str, float | str | bool] = {"test": design.test}
    lift, se = rates.mean_t - rates.mean_c, math.sqrt(rates.var_diff)
    p_value = float(2.0 * stats.norm.sf(abs(lift) / se))
    ratio = rates.mean_t / rates.mean_c if rates.mean_c > 0 else math.nan
    spread = z * math.sqrt(rates.var_log_ratio) if rates.var_log_ratio >= 0 else math.nan
    out |= {
        "rate_treatment": rates.mean_t,
        "rate_control": rates.mean_c,
        "lift_abs": lift,
        "lift_abs_low": lift - z * se,
        "lift_abs_high": lift + z * se,
        "lift_rel": ratio - 1.0,
        "lift_rel_low": ratio * math.exp(-spread) - 1.0,
        "lift_rel_high": ratio * math.exp(spread) - 1.0,
        "p_value": p_value,
        "significant": bool(p_value < alpha),
        "mde_abs": _design_effect(converted_t, converted_c, se)
        * minimum_detectable_lift(float(converted_c.mean()), len(converted_t),
                                  len(converted_c), power, alpha),
    }  # fmt: skip
    known_t, known_c = ~np.isnan(revenue_t), ~np.isnan(revenue_c)
    revenue = design_difference(revenue_t[known_t], revenue_c[known_c], design, known_t, known_c)
    if revenue is not None:
        diff, se = revenue.mean_t - revenue.mean_c, math.sqrt(revenue.var_diff)
        out |= {
            "revenue_treatment": revenue.mean_t,
            "revenue_control": revenue.mean_c,
            "revenue_diff": diff,
            "revenue_diff_low": diff - z * se if se > 0 else math.nan,
            "revenue_diff_high": diff + z * se if se > 0 else math.nan,
            "revenue_p_value": float(2.0 * stats.norm.sf(abs(diff) / se)) if se > 0 else math.nan,
        }
    return out


# The test of an action none of whose rows could have been in either group (compare_groups).
NOT_DRAWN = "none: every contact drawn at a share of 0 or 1"


def compare_groups(
    converted_t: np.ndarray,
    converted_c: np.ndarray,
    revenue_t: np.ndarray,
    revenue_c: np.ndarray,
    config: AbConfig,
    share: float | None = None,
    design: Design | None = None,
) -> dict[str, float | str | bool]:
    """Every figure of one treatment/control comparison (NaN where a group is too small);
    `share`: the split the SRM check expects, when not the config's; `design`: the rows'
    shares and customers, when known: rows drawn at several shares, or customers with several
    contacts, are read by share stratum and by customer (design_figures), not as one pooled
    sample of independent rows."""
    n_t, n_c = len(converted_t), len(converted_c)
    x_t, x_c = int(converted_t.sum()), int(converted_c.sum())
    units = design.srm_units if design is not None else None
    out: dict[str, float | str | bool] = {
        "n_treatment": n_t,
        "n_control": n_c,
        "customers": design.customers if design is not None else math.nan,
        "left_out": design.left_out if design is not None else math.nan,
        "treatment_share": n_t / (n_t + n_c),
        **srm_check(*(units or (n_t, n_c)), config, share),
    }
    # Rows drawn at shares 0 and 1 only (a targeted campaign written as shares): no group was
    # drawn by chance, and their pooled difference is the selection (re-review: +23.40 points,
    # p < 0.0001, for a campaign that did nothing)
    undrawn = (
        design is not None
        and design.stratified
        and not (_drawn(design.share_t).any() and _drawn(design.share_c).any())
    )
    if n_t == 0 or n_c == 0 or undrawn:  # nothing to compare; each group still has its rate
        rates = {
            f"rate_{group}": x / n
            for group, x, n in (("treatment", x_t, n_t), ("control", x_c, n_c))
            if n
        }
        # and its revenue per contact, as the rate: 4 contacts without a purchase read
        # rate_treatment 0.0 beside a blank revenue_treatment (tester J)
        revenue = {
            f"revenue_{group}": float(np.nanmean(values))
            for group, values in (("treatment", revenue_t), ("control", revenue_c))
            if (~np.isnan(values)).any()
        }
        return out | rates | revenue | ({"test": NOT_DRAWN} if undrawn else {})
    p_t, p_c = x_t / n_t, x_c / n_c
    alpha = config.alpha
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="newcombe", alpha=alpha)
    rel_low = rel_high = math.nan
    if x_t > 0 and x_c > 0:  # the log interval of the ratio needs conversions on both sides
        ratio_low, ratio_high = confint_proportions_2indep(
            x_t, n_t, x_c, n_c, method="log", compare="ratio", alpha=alpha
        )
        rel_low, rel_high = float(ratio_low) - 1.0, float(ratio_high) - 1.0
    test, p_value = proportion_test(x_t, n_t, x_c, n_c, config.exact_test_below)
    out |= {
        "rate_treatment": p_t,
        "rate_control": p_c,
        "lift_abs": p_t - p_c,
        "lift_abs_low": float(low),
        "lift_abs_high": float(high),
        "lift_rel": p_t / p_c - 1.0 if x_c > 0 else math.nan,
        "lift_rel_low": rel_low,
        "lift_rel_high": rel_high,
        "test": test,
        "p_value": p_value,
        "significant": bool(p_value < alpha),
        **revenue_difference(revenue_t, revenue_c, alpha),
        "mde_abs": minimum_detectable_lift(p_c, n_t, n_c, config.power, alpha),
    }
    # a small campaign keeps Fisher and Newcombe (Cochran's rule) for one repeated contact:
    # the by-customer z-test needs the normal approximation they stand in for
    exact = test == "fisher" and not (design is not None and design.stratified)
    if design is not None and (design.stratified or design.clustered) and not exact:
        out |= design_figures(
            converted_t, converted_c, revenue_t, revenue_c, design, alpha, config.power
        )
    return out


def proportion_test(x_t: int, n_t: int, x_c: int, n_c: int, exact_below: int) -> tuple[str, float]:
    """Two-sided p-value: Fisher's exact test when a cell's EXPECTED count under no effect is
    under `exact_below` (Cochran's rule: where the normal approximation is poor), else the
    pooled two-proportion z-test."""
    if smallest_expected_cell(n_t, n_c, (x_t + x_c) / (n_t + n_c)) < exact_below:
        table = [[x_t, n_t - x_t], [x_c, n_c - x_c]]
        return "fisher", float(stats.fisher_exact(table, alternative="two-sided").pvalue)
    _, p_value = proportions_ztest([x_t, x_c], [n_t, n_c], alternative="two-sided")
    return "z", float(p_value)


def smallest_expected_cell(n_t: float, n_c: float, pooled: float) -> float:
    """The smallest count a 2x2 table of these group sizes expects under no effect (the
    pooled rate in both groups): what Cochran's rule reads."""
    return min(n_t, n_c) * min(pooled, 1.0 - pooled)


def revenue_difference(
    revenue_t: np.ndarray, revenue_c: np.ndarray, alpha: float
) -> dict[str, float]:
    """Mean revenue per customer, treatment minus control, with Welch's interval (unequal
    variances: spend is far more spread where an offer works)."""
    keys = ("revenue_treatment", "revenue_control", "revenue_diff", "revenue_diff_low")
    out = dict.fromkeys((*keys, "revenue_diff_high", "revenue_p_value"), math.nan)
    t, c = revenue_t[~np.isnan(revenue_t)], revenue_c[~np.isnan(revenue_c)]
    if len(t) == 0 or len(c) == 0:
        return out
    out |= {
        "revenue_treatment": float(t.mean()),
        "revenue_control": float(c.mean()),
        "revenue_diff": float(t.mean() - c.mean()),
    }
    if len(t) < 2 or len(c) < 2 or (t.var() == 0 and c.var() == 0):
        return out
    result = stats.ttest_ind(t, c, equal_var=False)
    interval = result.confidence_interval(confidence_level=1.0 - alpha)
    out |= {
        "revenue_diff_low": float(interval.low),
        "revenue_diff_high": float(interval.high),
        "revenue_p_value": float(result.pvalue),
    }
    return out


def srm_tested(n_treatment: int | pd.Series, n_control: int | pd.Series) -> bool | pd.Series:
    """Whether a comparison's sample-ratio p-value is shown (the CLI) and logged (MLflow): only
    where both groups have contacts. A group alone has no split to test: its p-value (1/0:
    0.46; 4/0: 0.0455) would read as one. Scalars or Series alike."""
    return (n_treatment > 0) & (n_control > 0)


def srm_check(
    n_t: int, n_c: int, config: AbConfig, share: float | None = None
) -> dict[str, float | bool]:
    """Sample-ratio mismatch: a chi-square test of the group sizes against the expected split
    (`share`, else the configured one). A mismatch means the assignment or the logging is
    broken, and the lift cannot be trusted. A split of 1 or 0 (a service without holdout)
    expects one group only: any row of the other refutes it."""
    share = config.expected_treatment_share if share is None else share
    out: dict[str, float | bool] = {"expected_treatment_share": share}
    if share in (0.0, 1.0):
        unexpected = n_c if share == 1.0 else n_t
        p_value = 1.0 if unexpected == 0 else 0.0
    else:
        total = n_t + n_c
        expected = [total * share, total * (1.0 - share)]
        p_value = float(stats.chisquare([n_t, n_c], f_exp=expected).pvalue)
    return out | {"srm_p_value": p_value, "srm_mismatch": bool(p_value < config.srm_alpha)}


def _design_effect(converted_t: np.ndarray, converted_c: np.ndarray, se: float) -> float:
    """The design's standard error of the lift over that of independent rows at the same
    rates: the MDE scales by it. (z_alpha/2 + z_power) x se itself grew with the lift found
    (1.93, 2.19, 2.50 points at treatment rates of 8.6%, 16%, 30% with no clustering: review
    of 2026-12-07)."""
    p_t, p_c = float(converted_t.mean()), float(converted_c.mean())
    rows = math.sqrt(p_t * (1 - p_t) / len(converted_t) + p_c * (1 - p_c) / len(converted_c))
    return se / rows if rows > 0 else math.nan


def minimum_detectable_lift(
    baseline: float, n_t: int, n_c: int, power: float, alpha: float
) -> float:
    """The smallest absolute lift over `baseline` a two-sided test of these sizes detects with
    `power` (Cohen's h from statsmodels' normal power, back to a rate). NaN when even a rate
    of 100% would not be detected."""
    h = NormalIndPower().solve_power(
        effect_size=None, nobs1=n_t, ratio=n_c / n_t, alpha=alpha, power=power
    )
    angle = 2.0 * math.asin(math.sqrt(baseline)) + float(h)
    if angle > math.pi:
        return math.nan
    return math.sin(angle / 2.0) ** 2 - baseline


@dataclass(frozen=True)
class Plan:
    baseline_rate: float
    target_rate: float
    lift_rel: float
    power: float
    alpha: float
    treatment: int  # customers to contact
    control: int  # customers held out

    @property
    def lift_abs(self) -> float:
        return self.target_rate - self.baseline_rate

    @property
    def total(self) -> int:
        return self.treatment + self.control

    @property
    def treatment_share(self) -> float:
        return self.treatment / self.total

    def exact_test(self, exact_below: int) -> bool:
        """Whether `ab` would judge a test of these sizes with Fisher's exact test (Cochran's
        rule, at the planned rates), which the normal approximation sizing it does not know."""
        pooled = (self.treatment * self.target_rate + self.control * self.baseline_rate) / (
            self.total
        )
        return smallest_expected_cell(self.treatment, self.control, pooled) < exact_below


def plan_sample_size(
    baseline_rate: float,
    lift_rel: float,
    power: float,
    alpha: float,
    treatment_share: float = 0.5,
) -> Plan:
    """Customers per group for a two-sided test to detect a relative lift of `lift_rel` over
    `baseline_rate` with `power` at significance `alpha`, when `treatment_share` of them are
    contacted: an unequal split (as the service's holdout and exploration give) needs more
    customers in all than an equal one."""
    target = baseline_rate * (1.0 + lift_rel)
    if not (0 < power < 1 and 0 < alpha < 1):
        raise ValueError(f"power {power:g} and alpha {alpha:g}: each must be between 0 and 1")
    if power <= alpha:  # no root to solve for: the message blamed the lift
        raise ValueError(
            f"power {power:g} is not above alpha {alpha:g} (--power, --alpha): with no effect "
            "at all a two-sided test rejects with probability alpha, so a test of any size has "
            "that power; ask a power above the alpha (usually 0.8 and 0.05)"
        )
    if not 0 < baseline_rate < 1:
        raise ValueError(f"baseline rate {baseline_rate:g}: expected a share between 0 and 1")
    if lift_rel == 0 or not 0 < target < 1:
        raise ValueError(
            f"lift {lift_rel:g}: expected a non-zero relative lift that keeps the rate between "
            f"0 and 1 (baseline {baseline_rate:g} -> {target:g})"
        )
    if not 0 < treatment_share < 1:
        raise ValueError(f"treatment share {treatment_share:g}: expected a share between 0 and 1")
    h = abs(float(proportion_effectsize(target, baseline_rate)))
    ratio = treatment_share / (1.0 - treatment_share)  # treatment per control customer
    with warnings.catch_warnings():  # a lift too small to detect: no root, said below
        warnings.simplefilter("ignore")
        control = float(
            NormalIndPower().solve_power(
                effect_size=h, nobs1=None, ratio=ratio, alpha=alpha, power=power
            )
        )
    if not math.isfinite(control) or control <= 0:
        raise ValueError(
            f"lift {lift_rel:g}: too small to plan a test for (baseline {baseline_rate:g} -> "
            f"{target:g}): no finite number of customers detects it"
        )
    return Plan(
        baseline_rate,
        target,
        lift_rel,
        power,
        alpha,
        treatment=math.ceil(control * ratio),
        control=math.ceil(control),
    )
