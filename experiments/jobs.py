"""The experiment commands end to end: analyse, log to each command's MLflow experiment, and
return what the CLI prints. The analyses themselves are pure functions in ab.py and cohorts.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from crm_ltv.experiments import ab, balance, cohorts, plots
from crm_ltv.experiments.config import AbConfig, BalanceConfig, CohortConfig
from crm_ltv.experiments.text import (
    OUTSIDE_CATALOGUE,
    UNDRAWN,
    p_said,
    plan_note,
    plan_rates,
    plan_sizes,
)
from crm_ltv.experiments.tracking import (
    experiment_run,
    file_datasets,
    log_children,
    log_datasets,
    log_figure,
    log_metrics,
    log_table,
    logged_path,
    metric_key,
)
from crm_ltv.features.config import FeatureConfig
from crm_ltv.features.contract import DataError
from crm_ltv.features.paths import Paths
from crm_ltv.features.wording import plural

AB_NOTE = (
    "A/B tests of CRM campaigns (`crm-ltv ab`): per action, and per segment at send time when "
    "asked, treatment against control: conversion rates, absolute and relative lift with 95% "
    "intervals, p-value (Fisher's exact test for small cells, else the two-proportion z-test), "
    "revenue per customer difference (Welch interval), sample-ratio-mismatch check against the "
    "split the rows were drawn with (their own, the option's or the config's; params) and the "
    "minimum detectable lift at the observed sizes. Rates and lifts are "
    "shares (0.02 = 2 points); revenue is per contacted customer over the response window."
)
PLAN_NOTE = (
    "A/B test plans (`crm-ltv plan-ab`): customers needed per group to detect a relative lift "
    "over a baseline conversion rate with a two-sided test (arcsine effect size, normal power)."
)
COHORT_NOTE = (
    "Cohorts and customer value (`crm-ltv cohorts`): retention of monthly acquisition cohorts "
    "(share buying k months after the first purchase), lifecycle stage transitions between two "
    "cutoffs, and LTV:CAC with payback months per acquisition channel and cohort, channels "
    "under the target ratio flagged. Historic LTV is the classic formula of configs/features.yaml."
)


@dataclass(frozen=True)
class AbResult:
    by_action: pd.DataFrame
    by_segment: pd.DataFrame | None
    outcomes: ab.Outcomes
    run_id: str
    split: ab.Split  # the treatment share the sample-ratio check expected, and from where


def _check_comparable(outcomes: ab.Outcomes, source: Path) -> None:
    """Contacts without outcomes yet, or of one group only, have nothing to compare: say so
    rather than print a table of NaN."""
    frame = outcomes.frame
    if frame.empty:
        raise DataError(
            f"campaigns {source}: none of the {outcomes.without_outcome:,} contacts has an "
            "outcome yet (converted and revenue blank): nothing to compare until their response "
            "windows are over"
        )
    groups = set(frame["group"].astype(str))
    if len(groups) < 2:
        raise DataError(
            f"campaigns {source}: every contact with an outcome is in the {groups.pop()!r} "
            f"group; an A/B comparison needs both {ab.TREATMENT!r} and {ab.CONTROL!r}"
        )


def run_ab(
    campaigns: pd.DataFrame,
    source: Path,
    paths: Paths,
    config: AbConfig,
    by: str | None = None,
    segments: pd.Series | None = None,
    segment_files: Sequence[Path] = (),
    segment_datasets: Sequence[Any] = (),
    share_option: bool = False,
    features: pd.DataFrame | None = None,
    balance_config: BalanceConfig | None = None,
    balance_unchecked: str | None = None,
) -> AbResult:
    """Per action (and per action and `by` segment, given as `segments` aligned with the rows,
    read from `segment_files`: their hash joins the campaigns file's on the run, their
    `segment_datasets` its datasets). `share_option`: config.expected_treatment_share is the
    command line's, checked in place of the rows' own (ab.expected_split). `features`: each
    row's features at send time (segments.features_at_send), for the balance check
    (experiments.balance): an action whose groups differ before the send has no causal lift;
    without them, `balance_unchecked` says why."""
    frame = campaigns if by is None else campaigns.assign(**{by: segments})
    split = ab.expected_split(frame, config, share_option)
    outcomes = ab.campaign_outcomes(frame, f"campaigns {source}")
    _check_comparable(outcomes, source)
    by_action = ab.ab_table(outcomes, config, None, share_option)
    by_segment = ab.ab_table(outcomes, config, by, share_option) if by is not None else None
    balance_config = balance_config if balance_config is not None else BalanceConfig()
    if features is not None:
        by_action = with_balance(by_action, outcomes, features, balance_config, config)
    sent = outcomes.frame["sent_at"]
    run_note = (  # the file as the `campaigns_file` param names it (tester J: as typed)
        f"{len(outcomes.frame):,} contacts with an outcome from {logged_path(source)} "
        f"({sent.min():%Y-%m-%d} to {sent.max():%Y-%m-%d}; {outcomes.without_outcome:,} "
        f"without one left out"
        + (
            f", {outcomes.without_revenue:,} converted without a revenue left out of revenue means"
            if outcomes.without_revenue
            else ""
        )
        + f"), {plural(len(by_action), 'action')}"
        + (f" ({ab.FROM_REVENUE})" if outcomes.converted_from_revenue else "")
        + (f", also by {by} at send time" if by else "")
        + ". "
        + _ab_headline(by_action)
        + f" Sample-ratio check against an expected treatment share of {split.text}."
        + (f" Balance not checked: {balance_unchecked}." if balance_unchecked else "")
    )
    # the file's name too: runs on the sample and on a shop's campaigns read alike (tester J)
    name = "ab by action" + (f" and {by}" if by else "") + f" on {Path(source).name}"
    with experiment_run(
        paths, config.experiment, AB_NOTE, name, run_note, "ab", (source, *segment_files)
    ) as run_id:
        mlflow.log_params(
            {
                "campaigns_file": logged_path(source),
                "contacts": len(outcomes.frame),
                "customers": int(outcomes.frame["customer_id"].astype(str).nunique()),
                "contacts_without_outcome": outcomes.without_outcome,
                "contacts_without_revenue": outcomes.without_revenue,
                "by": by or "action",
                "alpha": config.alpha,
                "power": config.power,
                "exact_test_below": config.exact_test_below,
                "expected_treatment_share": round(split.share, 4),
                "expected_treatment_share_source": split.source,
                "balance_checked": features is not None,
                "balance_smd_threshold": balance_config.smd_threshold,
                "balance_alpha": balance_config.alpha,
            }
        )
        datasets = [*file_datasets([("campaigns", campaigns, source)]), *segment_datasets]
        log_datasets(datasets, "ab")
        log_metrics(_ab_headline_metrics(by_action))
        table = by_segment if by_segment is not None else by_action
        keys = ["action"] if by is None else ["action", str(by)]
        units = {" / ".join(str(row[k]) for k in keys): row for _, row in table.iterrows()}
        differ = imbalanced_actions(by_action)
        balances = _balance_tags(by_action)
        log_children(
            "action" if by is None else "segment",  # tester J: segments read as actions
            {name: _ab_metrics(row) for name, row in units.items()},
            {name: _ab_child_note(row, keys, differ) for name, row in units.items()},
            {name: _ab_tags(row, keys, balances) for name, row in units.items()},
            datasets,
        )
        log_table(_srm_as_shown(by_action), "ab_by_action")
        log_figure(plots.lift_plot(by_action, ["action"]), "lift_by_action")
        if by_segment is not None:
            log_table(_srm_as_shown(by_segment), f"ab_by_action_and_{by}")
            segments_plot = plots.lift_plot(by_segment, ["action", str(by)], differ)
            log_figure(segments_plot, f"lift_by_{by}")
    return AbResult(by_action, by_segment, outcomes, run_id, split)


def with_balance(
    table: pd.DataFrame,
    outcomes: ab.Outcomes,
    features: pd.DataFrame,
    balance_config: BalanceConfig,
    config: AbConfig,
) -> pd.DataFrame:
    """The by-action table with each action's balance columns (balance.COLUMNS; NaN for an
    action without treated contacts): its treatment and control compared on `features` (each
    campaign row's at send time, rows as in the campaigns file)."""
    checked = balance.action_balance(
        outcomes.frame.assign(treated=outcomes.frame["group"].astype(str).eq(ab.TREATMENT)),
        features.iloc[outcomes.rows].reset_index(drop=True),
        balance_config,
        default_share=config.expected_treatment_share,
    )
    found = pd.DataFrame(
        [{"action": a, **balance.balance_columns(b)} for a, b in checked.items()],
        columns=["action", *balance.COLUMNS],
    )
    return table.merge(found, on="action", how="left")


def imbalanced_actions(table: pd.DataFrame) -> dict[str, str]:
    """Action -> its worst feature said ('recency_days SMD +1.23, p < 0.0001') where its
    treatment and control differ before the send."""
    if "balance_imbalanced" not in table:
        return {}
    rows = table.loc[table["balance_imbalanced"].eq(True)]
    return {
        str(r.action): balance.said(r.balance_feature, r.balance_smd, r.balance_p_value)
        for r in rows.itertuples()
    }


def featureless_actions(table: pd.DataFrame) -> list[str]:
    """Actions with both groups whose balance was checked yet had no feature at send time to
    compare: their '-' would read as a pass."""
    if "balance_feature" not in table:
        return []
    both = table["n_treatment"].gt(0) & table["n_control"].gt(0)
    return table.loc[both & table["balance_feature"].isna(), "action"].astype(str).tolist()


# What `ab` says of an imbalanced action in place of a lift.
NOT_CAUSAL = f"{balance.DIFFER}: the difference is not a causal lift"


def _ab_headline(table: pd.DataFrame) -> str:
    differ = imbalanced_actions(table)
    wins, losses = _significant(table, 1), _significant(table, -1)
    compared = len(table) - len(differ)
    # a win whose group sizes refute the expected split is counted, but named apart and never
    # the largest: its own note says its lift cannot be trusted (review s18A #5)
    mismatched = wins["srm_mismatch"].fillna(False).astype(bool)
    trusted = wins.loc[~mismatched]
    about = ([f"largest: {trusted.loc[trusted['lift_abs'].idxmax(), 'action']}"]
             if len(trusted) else []) + (
        [f"{', '.join(wins.loc[mismatched, 'action'])} with a sample-ratio mismatch: untrusted"]
        if mismatched.any() else []
    )  # fmt: skip
    parts = []
    if compared:
        parts.append(
            f"{len(wins)} of {plural(compared, 'action')}"
            + (" whose groups were alike" if differ else "")
            + " raise conversion significantly"
            + (f" ({'; '.join(about)})" if about else "")
        )
    if len(losses):
        parts.append(f"{len(losses)} lower it significantly ({', '.join(losses['action'])})")
    if differ:
        parts.append(f"{', '.join(f'{a} ({said})' for a, said in differ.items())}: {NOT_CAUSAL}")
    srm = table.loc[table["srm_mismatch"].fillna(False).astype(bool), "action"].astype(str)
    # plain words: it printed a Python list, "in ['recommendation']" (tester J)
    parts.append(
        f"sample-ratio mismatch in {', '.join(srm)}" if len(srm) else "no sample-ratio mismatch"
    )
    return "; ".join(parts) + "."


def _significant(table: pd.DataFrame, sign: int) -> pd.DataFrame:
    """Rows whose lift is significant in the direction of `sign` (+1 a win, -1 a loss), of
    actions whose groups were alike before the send (another's difference is no lift)."""
    significant = table["significant"].fillna(False).astype(bool)
    if "balance_imbalanced" in table:
        significant &= ~table["balance_imbalanced"].eq(True)
    return table.loc[significant & (np.sign(table["lift_abs"]) == sign)]


def _ab_headline_metrics(table: pd.DataFrame) -> dict[str, float]:
    checked = (
        {"actions_imbalanced": float(table["balance_imbalanced"].eq(True).sum())}
        if "balance_imbalanced" in table
        else {}
    )
    return {
        "actions": float(len(table)),
        "actions_significant_win": float(len(_significant(table, 1))),
        "actions_significant_loss": float(len(_significant(table, -1))),
        "actions_sample_ratio_mismatch": float(table["srm_mismatch"].fillna(False).sum()),
    } | checked


AB_METRICS = {  # column of ab_table -> the metric name every action's child run carries
    "n_treatment": "contacts_treatment",  # customers_treatment before 2026-12-07
    "n_control": "contacts_control",  # customers_control before 2026-12-07
    "customers": "customers_distinct",
    "rate_treatment": "conversion_rate_treatment",
    "rate_control": "conversion_rate_control",
    "lift_abs": "conversion_lift_abs",
    "lift_abs_low": "conversion_lift_abs_ci_low",
    "lift_abs_high": "conversion_lift_abs_ci_high",
    "lift_rel": "conversion_lift_rel",
    "lift_rel_low": "conversion_lift_rel_ci_low",
    "lift_rel_high": "conversion_lift_rel_ci_high",
    "p_value": "conversion_p_value",
    "p_value_holm": "conversion_p_value_holm",
    "revenue_diff": "revenue_per_customer_diff",
    "revenue_diff_low": "revenue_per_customer_diff_ci_low",
    "revenue_diff_high": "revenue_per_customer_diff_ci_high",
    "revenue_p_value": "revenue_p_value",
    "balance_smd": "balance_worst_smd",
    "balance_p_value": "balance_worst_p_value",
    "srm_p_value": "srm_p_value",
    "expected_treatment_share": "srm_expected_treatment_share",
    "mde_abs": "min_detectable_lift_abs",
}


def _ab_metrics(row: pd.Series) -> dict[str, float]:
    """The metrics of a unit; no SRM p-value where the CLI shows none (ab.srm_tested)."""
    untested = set() if ab.srm_tested(row["n_treatment"], row["n_control"]) else {"srm_p_value"}
    return {
        name: row[column]
        for column, name in AB_METRICS.items()
        if column in row and column not in untested
    }


def _srm_as_shown(table: pd.DataFrame) -> pd.DataFrame:
    """The table as logged: the SRM p-value blank where the CLI shows '-' (ab.srm_tested: a
    group alone has no split to test, yet its p of 0.0455 read as significant in the UI)."""
    tested = ab.srm_tested(table["n_treatment"], table["n_control"])
    return table.assign(srm_p_value=table["srm_p_value"].where(tested))


def _balance_tags(table: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Per action with a feature compared (the CLI's balance column shows one, not '-'), its
    balance as tags a search filters on (`tags.balance_imbalanced = 'true'`): the verdict and
    the worst feature's name, which the metrics cannot carry."""
    if "balance_feature" not in table:
        return {}
    return {
        str(r.action): {
            "balance_imbalanced": _flag(r.balance_imbalanced),
            "balance_worst_feature": r.balance_feature,
        }
        for r in table.itertuples()
        if isinstance(r.balance_feature, str)
    }


def _flag(value: object) -> str:
    return str(bool(value)).lower()


def _ab_tags(
    row: pd.Series, keys: list[str], balances: dict[str, dict[str, str]] | None = None
) -> dict[str, str]:
    """The unit's keys, the test its p-value comes from (z or Fisher), as the table says, and
    what the CLI's line flags, as tags a search filters on (tester J): `srm_mismatch`,
    `in_catalogue` and the action's balance (`balances`, _balance_tags: a segment's is its
    action's, as its note says)."""
    test = row.get("test")
    return (
        {k: str(row[k]) for k in keys}
        | ({"test": test} if isinstance(test, str) else {})
        | {"srm_mismatch": _flag(row["srm_mismatch"]), "in_catalogue": _flag(row["in_catalogue"])}
        | (balances or {}).get(str(row["action"]), {})
    )


def _ab_child_note(row: pd.Series, keys: list[str], differ: dict[str, str] | None = None) -> str:
    """The unit's sizes and lift as the CLI's line gives them, then what it flags (SRM, the
    catalogue). `differ`: the actions whose groups differ before the send (imbalanced_actions),
    said after the lift."""
    unit = ", ".join(f"{k} {row[k]}" for k in keys)
    sizes = f"{unit}: {int(row['n_treatment']):,} treated, {int(row['n_control']):,} controls"
    flags = _srm_said(row) + (
        "" if row["in_catalogue"] else f" Not in the action catalogue: {OUTSIDE_CATALOGUE}."
    )
    if row.get("test") == ab.NOT_DRAWN:  # both groups there, neither drawn by chance
        return f"{sizes}: every contact {UNDRAWN}.{flags}"
    if pd.isna(row.get("lift_abs")):
        return f"{sizes}: one group is empty, nothing to compare.{flags}"
    said = (differ or {}).get(str(row["action"]))
    warning = f" {NOT_CAUSAL[0].upper()}{NOT_CAUSAL[1:]} ({said})." if said else ""
    return (
        f"{sizes}; conversion {row['rate_treatment']:.2%} vs {row['rate_control']:.2%}, lift "
        f"{row['lift_abs'] * 100:+.2f} points (95% CI {row['lift_abs_low'] * 100:+.2f} to "
        f"{row['lift_abs_high'] * 100:+.2f}), p {p_said(row['p_value'])}"
        + (
            f", Holm-adjusted p {p_said(row['p_value_holm'])}"
            if pd.notna(row.get("p_value_holm"))
            else ""
        )
        + "."
        + warning
        + flags
    )


def _srm_said(row: pd.Series) -> str:
    """What the CLI's SRM column flags (MISMATCH), in words, with the p-value where it shows
    one (ab.srm_tested)."""
    if not row["srm_mismatch"]:
        return ""
    p = (
        f" (p {p_said(row['srm_p_value'])})"
        if ab.srm_tested(row["n_treatment"], row["n_control"])
        else ""
    )
    return (
        f" Sample-ratio MISMATCH{p}: the group sizes refute the expected treatment share of "
        f"{row['expected_treatment_share']:g}; the assignment or its logging is broken, and the "
        "lift cannot be trusted."
    )


def run_plan(plan: ab.Plan, paths: Paths, config: AbConfig) -> str:
    run_note = (
        f"{plan_sizes(plan)} to detect {plan_rates(plan)} with power {plan.power:g} at alpha "
        f"{plan.alpha:g}, two-sided." + plan_note(plan, config.exact_test_below)
    )
    name = f"plan {plan.baseline_rate:g} {plan.lift_rel:+g}"
    with experiment_run(paths, config.plan_experiment, PLAN_NOTE, name, run_note, "plan") as run_id:
        mlflow.log_params(
            {
                "baseline_rate": plan.baseline_rate,
                "lift_rel": plan.lift_rel,
                "power": plan.power,
                "alpha": plan.alpha,
                "treatment_share": round(plan.treatment_share, 4),
            }
        )
        log_metrics(
            {
                "customers_treatment": plan.treatment,
                "customers_control": plan.control,
                "customers_total": plan.total,
                "target_rate": plan.target_rate,
                "lift_abs": plan.lift_abs,
            }
        )
    return run_id


@dataclass(frozen=True)
class CohortResult:
    retention: pd.DataFrame
    headline: dict[int, float]
    start: pd.Timestamp
    end: pd.Timestamp
    transitions: pd.DataFrame
    ltv_cac: pd.DataFrame | None
    run_id: str


def run_cohorts(
    transactions: pd.DataFrame,
    customers: pd.DataFrame | None,
    paths: Paths,
    features: FeatureConfig,
    config: CohortConfig,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    datasets: Sequence[Any] = (),
    data_files: Sequence[Path] = (),
) -> CohortResult:
    """Retention, transitions from `start` to `end` (default: the last transaction and
    config.transition_months before it) and, with acquisition costs, LTV:CAC at `end`."""
    last = transactions["timestamp"].max()
    if end is not None and end > last:  # every customer would read as lapsed there
        raise DataError(
            f"--to {end:%Y-%m-%d %H:%M} is after the data's last line ({last:%Y-%m-%d %H:%M}): "
            "stages and LTV:CAC there would count every customer as gone; give a --to up to it"
        )
    end = end if end is not None else last
    start = start if start is not None else end - pd.DateOffset(months=config.transition_months)
    upto = transactions.loc[transactions["timestamp"] <= end]
    if not (upto["amount"] > 0).any():
        raise DataError(
            f"transactions: no purchase up to {end:%Y-%m-%d} (the data's first line is dated "
            f"{transactions['timestamp'].min():%Y-%m-%d}): no cohort yet; give a later --to"
        )
    retention = cohorts.cohort_retention(upto, config.max_months)
    headline = cohorts.retention_headline(retention, config.headline_months)
    transitions = cohorts.lifecycle_transitions(transactions, start, end, features, customers)
    ltv_cac = None
    if customers is not None and {"acquisition_channel", "acquisition_cost"} <= set(customers):
        ltv_cac = cohorts.ltv_cac_table(transactions, customers, end, features, config)
    span = f"{start:%Y-%m-%d} -> {end:%Y-%m-%d}"
    run_note = (
        f"{int(retention['customers'].sum()):,} customers in {len(retention)} monthly cohorts up "
        f"to {end:%Y-%m-%d}; retention "
        + ", ".join(f"month {k}: {v:.1%}" for k, v in headline.items())
        + f". Lifecycle transitions {span}."
        + (
            # both: the formula annualises a young cohort's first burst (tester I: 51.8 for a
            # channel whose customers have brought 16.5 times their cost so far)
            " Historic LTV:CAC (the classic formula) by channel, with margin to date:CAC: "
            + ", ".join(
                f"{r.channel} {r.historic_ltv_to_cac:.1f} (to date {r.value_to_date_to_cac:.1f})"
                for r in ltv_cac.loc[ltv_cac["cohort"] == cohorts.ALL_COHORTS].itertuples()
                if pd.notna(r.historic_ltv_to_cac)
            )
            + f" (historic under {config.ltv_cac_target:g}:1 flagged)."
            if ltv_cac is not None
            else " No acquisition costs: no LTV:CAC."
        )
    )
    with experiment_run(
        paths, config.experiment, COHORT_NOTE, "cohorts", run_note, "cohorts", data_files
    ) as run_id:
        mlflow.log_params(
            {
                "transitions_from": f"{start}",
                "transitions_to": f"{end}",
                "max_months": config.max_months,
                "value_cohort": config.value_cohort,
                "ltv_cac_target": config.ltv_cac_target,
                "gross_margin": config.gross_margin,
            }
        )
        log_datasets(datasets, "cohorts")
        shares = cohorts.transition_shares(transitions)
        metrics = {f"retention_month_{k}": v for k, v in headline.items()}
        metrics |= {
            metric_key("lifecycle", a, "to", b, "share"): shares.at[a, b]
            for a in shares.index
            for b in shares.columns
        }
        if ltv_cac is not None:
            overall = ltv_cac.loc[ltv_cac["cohort"] == cohorts.ALL_COHORTS]
            metrics["channels_under_ltv_cac_target"] = float(overall["under_target"].sum())
            log_children(
                "channel",
                {r.channel: _channel_metrics(r) for r in overall.itertuples()},
                {r.channel: _channel_note(r, config) for r in overall.itertuples()},
                datasets=datasets,
            )
            log_table(ltv_cac, "ltv_cac_by_channel_and_cohort", decimals=2)
        log_metrics(metrics)
        log_table(retention, "cohort_retention")
        log_table(transitions, "lifecycle_transitions_counts")
        log_table(shares, "lifecycle_transitions_shares")
        log_figure(plots.retention_heatmap(retention), "cohort_retention")
        log_figure(
            plots.transition_heatmap(transitions, f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}"),
            "lifecycle_transitions",
        )
    return CohortResult(retention, headline, start, end, transitions, ltv_cac, run_id)


def _channel_metrics(row: Any) -> dict[str, float]:
    """The same names in every channel's child run."""
    return {
        "customers": row.customers,
        "mean_cac": row.mean_cac,
        "mean_margin_to_date": row.mean_margin_to_date,
        "mean_historic_ltv": row.mean_historic_ltv,
        "historic_ltv_to_cac": row.historic_ltv_to_cac,
        "value_to_date_to_cac": row.value_to_date_to_cac,
        "payback_months": row.payback_months,
    }


def _channel_note(row: Any, config: CohortConfig) -> str:
    ratio = row.historic_ltv_to_cac
    verdict = (
        "no acquisition cost recorded"
        if pd.isna(ratio)
        else f"historic LTV:CAC {ratio:.1f}:1"
        + (
            f", UNDER the {config.ltv_cac_target:g}:1 target"
            if ratio < config.ltv_cac_target
            else ""
        )
    )
    if pd.isna(row.mean_cac):
        payback = "CAC unknown"
    elif row.mean_cac <= 0:
        payback = "nothing to pay back"
    elif pd.isna(row.payback_months):
        payback = "not paid back yet"
    else:
        months = int(row.payback_months)  # after the first purchase's month, as the table says
        payback = (
            "paid back within the month of the first purchase"
            if months == 0
            else f"paid back {plural(months, 'month')} after the month of the first purchase"
        )
    return (
        f"Channel {row.channel}: {int(row.customers):,} customers acquired, mean CAC "
        f"{row.mean_cac:.2f}; {verdict} (margin = revenue x {config.gross_margin:g}); {payback}."
    )
