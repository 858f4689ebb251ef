"""Plain-text tables of the experiment results, for the terminal (the CLI's stdout)."""

from __future__ import annotations

import math

import pandas as pd

from crm_ltv.experiments.ab import NOT_DRAWN, Plan, srm_tested
from crm_ltv.experiments.cohorts import ALL_COHORTS, transition_shares
from crm_ltv.features.actions import DECISIONS, misspelt_action

# What an action outside the catalogue misses (the CLI's footnote, a child run's note).
OUTSIDE_CATALOGUE = "no uplift model or policy uses it"

# An action whose every contact was drawn at a share of 0 or 1 (ab.NOT_DRAWN), in words.
NONE_DRAWN = "no group drawn by chance"
UNDRAWN = (
    f"drawn at a treatment share of 0 or 1 (expected_treatment_share): {NONE_DRAWN}, so no "
    "lift is measured"
)


def group_lacking(n_treatment: float, n_control: float) -> str | None:
    """The group a comparison has no contact in, as the SRM column and the lift plot say it."""
    if n_control == 0:
        return "no control group"
    if n_treatment == 0:
        return "no treatment group"
    return None


def _points(value: float, scale: float = 100.0, sign: str = "+") -> str:
    return "-" if math.isnan(value) else f"{value * scale:{sign}.2f}"


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 100:+.1f}"


def _rate(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2%}"


def _text(value: object) -> str:
    return value if isinstance(value, str) else "-"  # NaN in a table of rows without one


def _interval(low: float, high: float, scale: float = 100.0, digits: int = 2) -> str:
    if math.isnan(low) or math.isnan(high):
        return "-"
    return f"[{low * scale:+.{digits}f}, {high * scale:+.{digits}f}]"


def _p(value: float) -> str:
    return "-" if math.isnan(value) else ("<0.0001" if value < 1e-4 else f"{value:.4f}")


def p_said(value: float) -> str:
    """A p-value in a run's note as the console table shows it, to 4 decimals: with 3
    significant digits a note read "Holm-adjusted 0.9" beside the table's 0.8999 (tester W)."""
    return f"< {_p(value)[1:]}" if value < 1e-4 else f"= {_p(value)}"


def format_ab(table: pd.DataFrame, keys: list[str]) -> str:
    """One line per comparison: sizes, rates, lifts (points and %), p-value, revenue, MDE, SRM,
    and where checked the balance before the send."""
    rows = []
    for r in table.to_dict("records"):
        nan = float("nan")
        lacking = group_lacking(r["n_treatment"], r["n_control"])
        rows.append(
            {
                **{
                    k: str(r[k]) + ("" if r["in_catalogue"] or k != "action" else " *")
                    for k in keys
                },
                "treat/ctrl": f"{r['n_treatment']:,}/{r['n_control']:,}",
                "conv T": _rate(r.get("rate_treatment", nan)),
                "conv C": _rate(r.get("rate_control", nan)),
                "lift pts [95%]": f"{_points(r.get('lift_abs', nan))} "
                + _interval(r.get("lift_abs_low", nan), r.get("lift_abs_high", nan)),
                "lift % [95%]": f"{_percent(r.get('lift_rel', nan))} "
                + _interval(r.get("lift_rel_low", nan), r.get("lift_rel_high", nan), digits=1),
                "p (test)": f"{_p(r.get('p_value', nan))} ({_text(r.get('test'))})",
                **({"p Holm": _p(r.get("p_value_holm", nan))} if len(keys) > 1 else {}),
                "rev/cust diff [95%]": _points(r.get("revenue_diff", nan), 1.0)
                + " "
                + _interval(r.get("revenue_diff_low", nan), r.get("revenue_diff_high", nan), 1.0),
                "MDE pts": _points(r.get("mde_abs", nan), sign=""),
                "SRM p": (
                    _p(r["srm_p_value"]) if srm_tested(r["n_treatment"], r["n_control"]) else "-"
                )
                + (" MISMATCH" if r["srm_mismatch"] else "")
                + (f" ({lacking})" if lacking else ""),
                **({"balance: worst SMD": _balance(r)} if "balance_smd" in r else {}),
            }
        )
    shown = pd.DataFrame(rows).to_string(index=False)
    if not table["in_catalogue"].all():
        shown += f"\n* not in the action catalogue (features.actions): {OUTSIDE_CATALOGUE}"
        outside = table.loc[~table["in_catalogue"].astype(bool), "action"].astype(str).unique()
        hints = [(name, misspelt_action(name, DECISIONS)) for name in outside]
        shown += "".join(f"; {n!r} may misspell {m!r}" for n, m in hints if m is not None)
    return shown


def design_lines(table: pd.DataFrame) -> list[str]:
    """One line per action read by share stratum or by customer (ab.Design), saying so: the
    figures beside it are not the pooled rows' (the table's test says 'z, by ...'); and per
    action with repeated customers read as rows all the same, saying that."""
    lines = []
    for r in table.to_dict("records"):
        test = r.get("test")
        if not isinstance(test, str):
            continue
        contacts = r["n_treatment"] + r["n_control"]
        if test == NOT_DRAWN:
            lines.append(
                f"{r['action']}: all {contacts:,} contacts {UNDRAWN} "
                "(their difference is the selection)"
            )
            continue
        if not test.startswith("z, "):
            if r.get("customers", contacts) < contacts:  # NaN (no design known) is not
                lines.append(
                    f"{r['action']}: {contacts:,} contacts of {int(r['customers']):,} "
                    "customers, read as independent rows all the same: too few conversions for "
                    "the by-customer z-test (Fisher's test and Newcombe's interval, by Cochran's "
                    "rule), or no variance to read by customer; the repeats are not accounted for"
                )
            continue
        if "weighted by share" in test:
            lines.append(
                f"{r['action']}: its rows were drawn at several treatment shares "
                "(expected_treatment_share), some of them in one group only: rates and lifts "
                "weighted by each row's chance, 1 / share (treatment) and 1 / (1 - share) "
                "(control), not pooled"
            )
        elif "share" in test:
            lines.append(
                f"{r['action']}: its rows were drawn at several treatment shares "
                "(expected_treatment_share): rates and lifts standardised over the shares, each "
                "weighted by its contacts, not pooled (pooled, a send with more treatment and "
                "a higher base rate reads as a lift)"
            )
        if r.get("left_out", 0) > 0:
            lines.append(
                f"{r['action']}: {int(r['left_out']):,} of {contacts:,} contacts drawn at a "
                "treatment share of 0 or 1 left out of its figures: no row of the other group "
                "to compare them with"
            )
        if "customer" in test:
            lines.append(
                f"{r['action']}: {contacts:,} contacts of {int(r['customers']):,} customers: "
                "intervals and p-values by customer (cluster-robust), not as independent rows"
            )
    return lines


def _balance(row: dict) -> str:
    """'recency_days +1.23 IMBALANCED', as the SRM column says MISMATCH: the feature at send
    time on which treatment and control differ most (experiments.balance)."""
    if not isinstance(row.get("balance_feature"), str):
        return "-"
    imbalanced = row.get("balance_imbalanced")  # NaN: an action not checked
    flag = " IMBALANCED" if pd.notna(imbalanced) and bool(imbalanced) else ""
    return f"{row['balance_feature']} {row['balance_smd']:+.2f}{flag}"


def format_plan(plan: Plan, exact_below: int) -> str:
    """The plan's line, and a note where `ab` would use Fisher's test on it (`exact_below`:
    ab.exact_test_below of configs/experiments.yaml)."""
    return f"baseline {plan_rates(plan)}, power {plan.power:g}, alpha {plan.alpha:g} " + (
        f"two-sided: {plan_sizes(plan)}{plan_note(plan, exact_below)}"
    )


def plan_note(plan: Plan, exact_below: int) -> str:
    if not plan.exact_test(exact_below):
        return ""
    return (
        f"\nnote: at these sizes a cell of the 2x2 table expects under {exact_below} customers, "
        "where `ab` judges with Fisher's exact test: it needs more customers than this normal "
        "approximation says"
    )


def plan_rates(plan: Plan) -> str:
    """'9.00% -> 10.80% (+20.0% relative, +1.80 points)', with the decimals a small lift, or a
    rate near 0 or 1, needs (a lift of 0.0001 read '9.00% -> 9.00% (+0.0% relative, +0.00
    points)', a target of 0.99999 '100.00%')."""
    rates = (plan.baseline_rate, plan.target_rate)
    points = max(
        _decimals(plan.lift_abs * 100, 2), *(_decimals(min(r, 1 - r) * 100, 2) for r in rates)
    )
    relative = max(_decimals(plan.lift_rel * 100, 1), _decimals((1 + plan.lift_rel) * 100, 1))
    return (
        f"{plan.baseline_rate:.{points}%} -> {plan.target_rate:.{points}%} "
        f"({plan.lift_rel:+.{relative}%} relative, {plan.lift_abs * 100:+.{points}f} points)"
    )


def _decimals(value: float, least: int) -> int:
    """Decimals that show `value` with two significant digits, at least `least`."""
    return max(least, min(10, 1 - math.floor(math.log10(abs(value))))) if value else least


def plan_sizes(plan: Plan) -> str:
    if plan.treatment == plan.control:
        return f"{plan.control:,} customers per group ({plan.total:,} in all)"
    return (
        f"{plan.treatment:,} treatment and {plan.control:,} control customers ({plan.total:,} in "
        f"all, treatment share {plan.treatment_share:.3f})"
    )


def format_retention(retention: pd.DataFrame, headline: dict[int, float]) -> str:
    shown = retention.drop(columns="customers").map(
        lambda v: "" if pd.isna(v) else f"{v * 100:.0f}%"
    )
    shown.insert(0, "customers", retention["customers"].map("{:,}".format))
    summary = ", ".join(f"month {k} {v:.1%}" for k, v in headline.items())
    return (
        "cohort retention (% of each first-purchase month buying k months later; blank: not "
        f"observed yet)\n{shown.to_string()}\nweighted by cohort size: {summary}"
    )


def format_transitions(counts: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> str:
    shares = transition_shares(counts).map(lambda v: "" if pd.isna(v) else f"{v:.0%}")
    shares.insert(0, "customers", counts.sum(axis=1).map("{:,}".format))
    return f"lifecycle stage {start:%Y-%m-%d} (rows) -> {end:%Y-%m-%d} (columns)\n{shares}"


def format_ltv_cac(table: pd.DataFrame, target: float, gross_margin: float) -> str:
    shown = table.assign(
        mean_cac=table["mean_cac"].map("{:.2f}".format),
        mean_margin_to_date=table["mean_margin_to_date"].map("{:.2f}".format),
        mean_historic_ltv=table["mean_historic_ltv"].map("{:.2f}".format),
        value_to_date_to_cac=table["value_to_date_to_cac"].map(_ratio),
        historic_ltv_to_cac=table["historic_ltv_to_cac"].map(_ratio),
        payback_months=table["payback_months"].map(lambda v: "-" if pd.isna(v) else f"{v:.0f}"),
        under_target=table["under_target"].map({True: f"UNDER {target:g}:1"}).fillna(""),
    )
    overall = shown.loc[shown["cohort"] == ALL_COHORTS]
    by_cohort = shown.loc[shown["cohort"] != ALL_COHORTS]
    return (
        f"LTV:CAC by acquisition channel, on margin = revenue x {gross_margin:g} "
        "(cohorts.gross_margin; 1 = revenue): everyone acquired by then, a customer who never "
        "bought at 0 (historic LTV = the classic formula, which extrapolates a young cohort's "
        "first orders over its lifespan: compare young cohorts by margin to date; margin to "
        "date = net spend so far; "
        "payback = months after the first purchase's month until the mean cumulative margin "
        "covers the mean CAC; '-' = no CAC or not yet)\n"
        f"{overall.to_string(index=False)}\n\nby acquisition cohort\n"
        f"{by_cohort.to_string(index=False)}"
    )


def _ratio(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.1f}:1"
