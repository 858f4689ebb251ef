"""`crm-ltv policy-eval` end to end: a logged history (the service's decision log joined with
later transactions, or one simulated on the sample), every rival policy's action
probabilities (given by the caller: serving.policies, the service's own decide), the IPW and
DR estimates (experiments.policy_eval), the sample's true values, and the MLflow run.

The policies come in as a callable because experiments do not import serving (the arrows run
features -> training -> serving / experiments); the CLI joins the two.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import mlflow
import numpy as np
import pandas as pd

from crm_ltv.experiments import policy_eval
from crm_ltv.experiments.config import PolicyEvalConfig, SimulationConfig
from crm_ltv.experiments.outcomes import joined_outcomes, kept_decisions, without_transactions
from crm_ltv.experiments.tracking import (
    experiment_run,
    log_children,
    log_datasets,
    log_figure,
    log_metrics,
    log_table,
)
from crm_ltv.features.config import SampleConfig
from crm_ltv.features.contract import DataError
from crm_ltv.features.paths import Paths
from crm_ltv.features.sample import CUSTOMER_TYPES, customer_types_at
from crm_ltv.features.wording import plural

NOTE = (
    "Off-policy evaluation (`crm-ltv policy-eval`): what each policy would earn per decision (one"
    " customer's response window), as incremental revenue over doing nothing net of contact "
    "costs, estimated from a logged decision history with its propensities: inverse propensity "
    "weighting (IPW) and doubly robust (DR: a cross-fitted ridge outcome model plus weighted "
    "residuals), 95% percentile bootstrap intervals over customers (all of a customer's decisions"
    " together). Policies: next-best-action with the uplift champion's effects (when one exists),"
    " with the priors of configs/nba.yaml, one best action for everyone, contacting the highest "
    "churn risk, random, nothing. On a history simulated on the sample, true_value is each "
    "policy's value under that simulation, with the generator's effects."
)
NO_BEST = "(none)"  # tag best_policy_dr when no policy has the support and agreement to rank
LIFECYCLE = ("new", "developing", "loyal", "at-risk", "lapsed")


class Policies(Protocol):
    arms: tuple[str, ...]
    probabilities: dict[str, np.ndarray]
    notes: dict[str, str]


# contexts (and uplift effects) -> every policy's action probabilities
RivalsFn = Callable[[pd.DataFrame, Mapping[str, np.ndarray] | None], Policies]
# contexts -> the logging policy's probabilities (n x arms), for a simulated history
LoggingFn = Callable[[pd.DataFrame], np.ndarray]


@dataclass(frozen=True)
class History:
    """A logged history and what it came from."""

    logged: policy_eval.LoggedHistory
    contexts: pd.DataFrame  # CONTEXT columns and customer_id, one row per decision
    candidates: np.ndarray  # n x arms: arms the logging policy could send
    source: str  # one line: where the decisions came from
    true_arm_values: np.ndarray | None = None  # n x arms, on a simulated history only
    left_out: Mapping[str, int] | None = None  # decisions read but not evaluated, by reason
    # evaluated decisions whose customer has no transaction: (scored, cold starts), revenue 0
    without_transactions: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class PolicyEvalResult:
    table: pd.DataFrame
    notes: dict[str, str]
    run_id: str
    best_note: str  # best_policy_note, or why none is named (too_few_customers)
    too_few: str | None = None  # too_few_customers: said as a warning


def outcome_features(contexts: pd.DataFrame) -> np.ndarray:
    """What the DR outcome model reads: the scores, and the lifecycle stage as indicators."""
    churn = contexts["churn_probability"].astype(float).fillna(1.0).to_numpy()
    value = contexts["predicted_value"].astype(float).fillna(0.0).to_numpy()
    stage = contexts["lifecycle_stage"].astype(object).to_numpy()
    stages = np.column_stack([stage == s for s in LIFECYCLE]).astype(float)
    return np.column_stack([churn, value, value * (1 - churn), stages])


def sample_true_effects(types: pd.Series, arms: Sequence[str], sample: SampleConfig) -> np.ndarray:
    """n x arms: the generator's added purchase probability of each arm for each customer's
    type (sample.yaml campaigns.effects; 0 for an arm it has no effect of, and no_action)."""
    effects = sample.campaigns.effects
    codes = pd.Categorical(types, categories=CUSTOMER_TYPES).codes
    if (codes < 0).any():
        raise DataError("customer types: a customer has no type at the cutoff")
    table = np.array(
        [[effects[a][t] if a in effects else 0.0 for t in CUSTOMER_TYPES] for a in arms]
    )
    return table[:, codes].T


def simulated_history(
    contexts: pd.DataFrame,
    transactions: pd.DataFrame,
    truth_customers: pd.DataFrame,
    sample: SampleConfig,
    arms: tuple[str, ...],
    costs: np.ndarray,
    logging: np.ndarray,
    window_days: int,
    seed: int,
) -> History:
    """Decisions drawn from `logging` for the customers of `contexts` at their as_of (one
    cutoff), responses simulated with the generator's effects (policy_eval.simulate_rewards) on
    top of each customer's own revenue over the window in the sample."""
    ids = contexts["customer_id"].astype(str)
    cutoff = pd.Timestamp(contexts["as_of"].iloc[0])
    types = customer_types_at(transactions, cutoff + pd.Timedelta(seconds=1)).reindex(ids)
    true_effect = sample_true_effects(types, arms, sample)
    truth = truth_customers.assign(customer_id=truth_customers["customer_id"].astype(str))
    order_value = truth.set_index("customer_id")["mean_order_value"].reindex(ids).to_numpy()
    if np.isnan(order_value).any():
        raise DataError("truth_customers: a simulated customer has no mean_order_value")
    _, baseline, open_, before = joined_outcomes(ids, contexts["as_of"], transactions, window_days)
    if open_.any() or before.any():
        where = "runs past" if open_.any() else "starts before"
        raise DataError(f"{cutoff}: the {window_days}-day window {where} the transactions")
    rng = np.random.default_rng(seed)
    action = policy_eval.draw_actions(logging, rng)
    revenue = policy_eval.simulate_rewards(
        action, baseline, true_effect, order_value, sample.order_value_shape, rng
    )
    logged = policy_eval.LoggedHistory(
        arms,
        action,
        logging[np.arange(len(action)), action],
        revenue,
        outcome_features(contexts),
        costs,
    )
    values = policy_eval.true_arm_values(true_effect, order_value, costs)
    return History(
        logged,
        contexts,
        logging > 0,
        f"{len(ids):,} sample customers at {cutoff:%Y-%m-%d %H:%M}, decisions simulated",
        values,
    )


def logged_history(
    decisions: pd.DataFrame,
    transactions: pd.DataFrame,
    arms: tuple[str, ...],
    costs: np.ndarray,
    window_days: int,
    source: Path | str,
) -> History:
    """The service's decision log (experiments.outcomes.read_decisions) with each decision's
    revenue over its window: a customer's decisions whose windows do not overlap
    (outcomes.kept_decisions), windows that are over."""
    kept = kept_decisions(decisions, window_days)
    frame = kept.frame
    for column in ("action", "policy_action"):
        bad = ~frame[column].astype(str).isin(arms)
        if bad.any():
            first = frame.loc[bad].iloc[0]
            raise DataError(
                f"{first.get('log', source)}: line {first.get('line', '?')}: {column} "
                f"{first[column]!r} is not an "
                f"arm of nba.yaml {list(arms)} ({int(bad.sum()):,} such decisions)"
            )
    _, revenue, open_, before = joined_outcomes(
        frame["customer_id"], frame["as_of"], transactions, window_days
    )
    covered = ~open_ & ~before
    frame, revenue = frame.loc[covered], revenue[covered]
    if frame.empty:
        raise DataError(
            f"{source}: no decision whose {window_days}-day window is wholly in the transactions "
            f"({int(open_.sum()):,} not over, {int(before.sum()):,} starting before the first "
            "transaction)"
        )
    # what the policies read (serving.policies.policy_customers); logs of before 2026-12-05
    # have no frequency, recency_days or favourite_category
    read = ("churn_probability", "predicted_value", "rfm_segment", "lifecycle_stage",
            "frequency", "recency_days", "favourite_category")  # fmt: skip
    unknown = [c for c in read[4:] if c not in frame]
    for column in read:
        if column not in frame:
            frame = frame.assign(**{column: np.nan})
    contexts = frame[["customer_id", "as_of", *read]].reset_index(drop=True)
    index = {a: i for i, a in enumerate(arms)}
    action = frame["action"].astype(str).map(index).to_numpy()
    logged = policy_eval.LoggedHistory(
        arms,
        action,
        frame["propensity"].astype(float).to_numpy(),
        revenue,
        outcome_features(contexts),
        costs,
        contexts["customer_id"].astype(str).to_numpy(),
    )
    left_out = {
        "repeated": kept.repeated,
        "overlapping": kept.overlapping,
        "window_not_over": int(open_.sum()),
        "window_before_the_transactions": int(before.sum()),
    }
    said = ", ".join(f"{n:,} {k.replace('_', ' ')}" for k, n in left_out.items() if n)
    old = (
        f"; the log has no {', '.join(unknown)} (written before 2026-12-05): the rules that read "
        "them fail, so the priors and uplift policies send none of the actions that need them"
        if unknown
        else ""
    )
    return History(
        logged,
        contexts,
        _candidates(frame, arms),
        f"{plural(len(frame), 'decision')} of "
        f"{plural(contexts['customer_id'].nunique(), 'customer')} in {source}"
        + (f" (left out: {said})" if said else "")
        + old,
        None,
        left_out,
        without_transactions(frame, transactions),
    )


def _candidates(frame: pd.DataFrame, arms: tuple[str, ...]) -> np.ndarray:
    """What the service could have sent each customer: its policy's action; no_action where
    the line's holdout share or exploration is on (a line of a service without either had no
    control to compare with); and where exploration is on, every eligible action too
    (serving.holdout.candidates)."""
    exploring = frame["exploration"].astype(float).to_numpy() > 0
    out = np.zeros((len(frame), len(arms)), dtype=bool)
    out[:, -1] = exploring | (frame["holdout_share"].astype(float).to_numpy() > 0)
    index = {a: i for i, a in enumerate(arms)}
    eligible = frame.get("eligible_actions")
    for i, (policy, sent) in enumerate(zip(frame["policy_action"], frame["action"], strict=True)):
        for name in (policy, sent):
            out[i, index[str(name)]] = True
        if exploring[i] and eligible is not None and isinstance(eligible.iloc[i], list):
            for name in eligible.iloc[i]:
                if name in index:
                    out[i, index[name]] = True
    return out


def run_policy_eval(
    history: History,
    policies: Policies,
    paths: Paths,
    config: PolicyEvalConfig,
    datasets: Sequence[Any] = (),
    params: Mapping[str, object] | None = None,
    data_files: Sequence[Path] = (),
) -> PolicyEvalResult:
    """Estimate every policy, add the true values where known, log the run."""
    table = policy_eval.estimate_policies(
        history.logged,
        policies.probabilities,
        config.bootstrap,
        config.alpha,
        config.seed,
        history.candidates,
        config.folds,
    )
    if history.true_arm_values is not None:
        truth = policy_eval.true_policy_values(policies.probabilities, history.true_arm_values)
        table["true_value"] = table["policy"].map(truth)
        for estimator in policy_eval.ESTIMATORS:
            table[f"covered_{estimator}"] = (
                table[f"ci_low_{estimator}"] <= table["true_value"]
            ) & (table["true_value"] <= table[f"ci_high_{estimator}"])
    table = table.sort_values("estimated_value_dr", ascending=False, ignore_index=True)
    few = too_few_customers(history, config.min_customers)
    best_note = best_policy_note(table, config.min_support, few)
    note = _run_note(table, history, best_note)
    with experiment_run(
        paths, config.experiment, NOTE, "policy-eval", note, "policy-eval", data_files
    ) as rid:
        mlflow.log_params(
            {
                "decisions": len(history.logged.action),
                "source": history.source,
                "bootstrap": config.bootstrap,
                "alpha": config.alpha,
                "seed": config.seed,
                "folds": config.folds,
                "churn_share": config.churn_share,
                "churn_action": config.churn_action,
                "min_support": config.min_support,
                "min_customers": config.min_customers,
                **(params or {}),
                **{f"left_out_{k}": v for k, v in (history.left_out or {}).items()},
                "without_transactions_scored": history.without_transactions[0],
                "without_transactions_cold_starts": history.without_transactions[1],
            }
        )
        log_datasets(datasets, "policy-eval")
        best = None if few else best_policy(table, config.min_support)
        mlflow.set_tag("best_policy_dr", NO_BEST if best is None else str(best["policy"]))
        metrics = {"decisions": float(len(history.logged.action))}
        if best is not None:
            metrics["best_estimated_value_dr"] = float(best["estimated_value_dr"])
        log_metrics(metrics)
        log_children(
            "policy",
            {row["policy"]: _metrics(row) for _, row in table.iterrows()},
            {row["policy"]: _child_note(row, policies.notes) for _, row in table.iterrows()},
            None,
            datasets,
        )
        log_table(table, "policy_values")
        from crm_ltv.experiments.plots import policy_value_plot

        window = (params or {}).get("response_window_days")  # the x axis's horizon (W)
        log_figure(policy_value_plot(table, window), "policy_values")
    return PolicyEvalResult(table, dict(policies.notes), rid, best_note, few)


METRICS = (
    "estimated_value_ipw",
    "ci_low_ipw",
    "ci_high_ipw",
    "estimated_value_dr",
    "ci_low_dr",
    "ci_high_dr",
    "se_ipw",
    "se_dr",
    "true_value",
    "contacted_share",
    "cost_per_customer",
    "support",
)


def _metrics(row: pd.Series) -> dict[str, float]:
    return {m: float(row[m]) for m in METRICS if m in row and pd.notna(row[m])}


def _child_note(row: pd.Series, notes: Mapping[str, str]) -> str:
    text = (
        f"{row['policy']}: {notes.get(row['policy'], '')}. Per customer: DR "
        f"{row['estimated_value_dr']:.2f} [{row['ci_low_dr']:.2f}, {row['ci_high_dr']:.2f}], "
        f"IPW {row['estimated_value_ipw']:.2f} [{row['ci_low_ipw']:.2f}, "
        f"{row['ci_high_ipw']:.2f}]"
    )
    if "true_value" in row:
        text += f", true {row['true_value']:.2f}"
    return text + f"; contacts {row['contacted_share']:.0%}, support {row['support']:.0%}."


def estimators_apart(table: pd.DataFrame) -> pd.Series:
    """Per policy: its DR and IPW intervals do not overlap. Both estimate the same value, so
    one of them is wrong there (DR's outcome model extrapolating, or the propensities)."""
    return (table["ci_low_dr"] > table["ci_high_ipw"]) | (table["ci_low_ipw"] > table["ci_high_dr"])


def rankable(table: pd.DataFrame, min_support: float) -> pd.Series:
    """Per policy: its estimate can be trusted enough to rank it: support of at least
    `min_support` (below, the log shows little of what it would do) and DR and IPW agreeing."""
    return (table["support"] >= min_support) & ~estimators_apart(table)


def best_policy(table: pd.DataFrame, min_support: float) -> pd.Series | None:
    """The rankable policy with the highest DR estimate, or None when no policy is rankable:
    a high DR estimate without support is the outcome model's guess, not the log's."""
    ranked = table.loc[rankable(table, min_support)]
    if ranked.empty:
        return None
    return ranked.loc[ranked["estimated_value_dr"].idxmax()]


def too_few_customers(history: History, min_customers: int) -> str | None:
    """Why a history of fewer than `min_customers` customers names no best policy, or None:
    the intervals resample customers, so over a handful they come out narrow (over one, zero
    width) however unsure the values are. A warning, not an error: `make experiments` reads
    the service's log, a few decisions after a first `make serve`."""
    customers = history.logged.customers
    count = len(history.logged.action) if customers is None else len(np.unique(customers))
    if count >= min_customers:
        return None
    return (
        f"{count:,} customer{'' if count == 1 else 's'} in the evaluated decisions, under "
        f"policy_eval.min_customers ({min_customers}): bootstrap intervals over so few "
        "understate the uncertainty (over one customer they have zero width)"
    )


def best_policy_note(table: pd.DataFrame, min_support: float, too_few: str | None = None) -> str:
    """The best policy (best_policy), and whether its interval sets it apart from every other
    rankable policy's: overlapping intervals are no ranking. Policies left out are named.
    `too_few` (too_few_customers): none is named, saying why."""
    if too_few is not None:
        return f"No policy is named best: {too_few}."
    ok = rankable(table, min_support)
    rule = f"support >= {min_support:.0%}, DR and IPW intervals overlapping"
    left_out = _left_out(table, ok, min_support)
    best = best_policy(table, min_support)
    if best is None:
        return f"No policy is named best: none has {rule} ({left_out})."
    text = f"Best policy ({rule}), by DR: {best['policy']} ({best['estimated_value_dr']:.2f})"
    others = table.loc[ok & table["policy"].ne(best["policy"])]
    if others.empty:
        text += "."
    elif pd.isna(best["ci_low_dr"]) or others["ci_high_dr"].isna().any():
        text += "; no interval to rank it by."
    else:
        overlapping = others.loc[others["ci_high_dr"] >= best["ci_low_dr"], "policy"].tolist()
        if not overlapping:
            text += ", its interval above every other ranked policy's."
        else:
            text += (
                f"; its interval overlaps that of {', '.join(overlapping)}: the data do not "
                "rank them."
            )
    return text + (f" Not ranked: {left_out}." if left_out else "")


def _left_out(table: pd.DataFrame, ok: pd.Series, min_support: float) -> str:
    """The policies `rankable` leaves out, each with why."""
    apart = estimators_apart(table)
    reasons = []
    for i, row in table.loc[~ok].iterrows():
        why = [f"support {row['support']:.1%}"] if row["support"] < min_support else []
        if apart[i]:
            why.append(
                f"DR {row['estimated_value_dr']:.2f} and IPW {row['estimated_value_ipw']:.2f} "
                "intervals apart"
            )
        reasons.append(f"{row['policy']} ({', '.join(why)})")
    return "; ".join(reasons)


def _run_note(table: pd.DataFrame, history: History, best_note: str) -> str:
    lines = [
        f"Policy values per decision (incremental revenue net of contact costs) from "
        f"{history.source}. {best_note}",
        "",
        format_policy_table(table),
    ]
    caveat = support_note(table)
    if caveat:
        lines.append("\n" + caveat)
    return "\n".join(lines)


def support_note(table: pd.DataFrame) -> str | None:
    """The caveat of policies acting where the logging policy never could."""
    low_support = table.loc[table["support"] < 0.999, "policy"].tolist()
    if not low_support:
        return None
    return (
        f"Part of what {', '.join(low_support)} would send was never possible under the "
        "logging policy (support < 100%): IPW cannot see it and DR extrapolates its outcome "
        "model there; trust these only as far as their support goes."
    )


def format_policy_table(table: pd.DataFrame) -> str:
    """The comparison as a markdown table: per-customer values with 95% intervals."""
    truth = "true_value" in table
    head = "| policy | DR [95% interval] | IPW [95% interval] |" + (" true |" if truth else "")
    head += " contacted | support |"
    rule = "|---|---|---|" + ("---|" if truth else "") + "---|---|"
    rows = [head, rule]
    for _, r in table.iterrows():
        cells = [
            str(r["policy"]),
            f"{r['estimated_value_dr']:.2f} [{r['ci_low_dr']:.2f}, {r['ci_high_dr']:.2f}]",
            f"{r['estimated_value_ipw']:.2f} [{r['ci_low_ipw']:.2f}, {r['ci_high_ipw']:.2f}]",
        ]
        if truth:
            cells.append(f"{r['true_value']:.2f}")
        cells += [f"{r['contacted_share']:.0%}", f"{r['support']:.0%}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def simulation_params(config: SimulationConfig) -> dict[str, object]:
    return {f"simulation_{k}": v for k, v in config.model_dump().items()}
