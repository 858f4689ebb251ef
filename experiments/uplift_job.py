"""`crm-ltv uplift` end to end: features at each send time, one X-learner per catalogue action
on the training customers, Qini/AUUC on the held-out ones (and the sample's true effects), the
MLflow run (one child run per action), and the registered model `uplift` with its gate.
Registry writes go through training.registry; the analysis is experiments.uplift."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import mlflow
import numpy as np
import pandas as pd

from crm_ltv.experiments import uplift
from crm_ltv.experiments.ab import FROM_REVENUE
from crm_ltv.experiments.balance import Balance, action_balance, imbalance_said
from crm_ltv.experiments.config import BalanceConfig, UpliftConfig
from crm_ltv.experiments.outcomes import require_window
from crm_ltv.experiments.segments import features_at_send, learnt_features
from crm_ltv.experiments.tracking import (
    experiment_run,
    file_datasets,
    log_children,
    log_datasets,
    log_figure,
    log_metrics,
    log_table,
    logged_path,
)
from crm_ltv.features.actions import ACTION_NAMES, ACTIONS
from crm_ltv.features.config import FeatureConfig, config_digest
from crm_ltv.features.contract import DataError
from crm_ltv.features.paths import Paths
from crm_ltv.training.config import GateConfig
from crm_ltv.training.errors import BundleError
from crm_ltv.training.job import model_input_example
from crm_ltv.training.registry import (
    RegistryError,
    decide_promotion,
    describe_model,
    gate_tags,
    load_uplift_champion,
    log_bundle,
    register_version,
    set_champion,
)
from crm_ltv.training.tracking import file_sha256
from crm_ltv.training.uplift import MODEL_CODE, OUTCOMES, UpliftBundle, fit_uplift

# A column only the service's outcomes carry (experiments.outcomes): the action was the policy's
# choice, not a random draw, so only that action's own held-out customers are its controls.
POLICY_COLUMN = "policy_action"
NOTE = (
    "Uplift models (`crm-ltv uplift`): per CRM action, how much sending it changes a customer's "
    "purchase probability and value over the campaign's response window, learnt from the "
    "randomized campaigns (treatment vs control) with features built from the transactions "
    "strictly before each send. One X-learner per action on LightGBM. Evaluated on held-out "
    "customers (a stable hash of the id; never trained on): one child run per action with the "
    "same metrics. qini_coefficient = area between the Qini curve and a random ranking per "
    "contact (0 = random); auuc = area under the uplift curve, auuc_margin = over random; "
    "value_* the same for revenue. On the sample, truth_spearman is the rank correlation with "
    "the generator's true effects (0 = random) and truth_top20_over_mean the true effect of the "
    "20% ranked first over everyone's (1 = random). The registered model `uplift` is what the "
    "service's next-best-action reads (priors of configs/nba.yaml for actions without one)."
)
MODEL_NOTE = (
    "Uplift models of every CRM action in one bundle (`crm-ltv uplift`): the predicted change "
    "in purchase probability and in value over the response window when the action is sent. "
    "The service's next-best-action takes each action's effect from the champion version "
    "(`crm-ltv serve` / `make bento` copy it into the BentoML store)."
)
# Each action's child run: purchase metrics by these names, value ones prefixed `value_`.
PURCHASE_METRICS = ("contacts", "treated", "mean_predicted_effect", "qini_coefficient", "auuc",
                    "auuc_random", "auuc_margin", "truth_spearman",
                    "truth_top20_over_mean")  # fmt: skip
# The gate's metric is read at the precision it is reported with (0.0001 of a Qini
# coefficient): what shows as 0.0000 is a random ranking's, whatever its float noise.
GATE_DECIMALS = 4
VALUE_METRICS = ("mean_predicted_effect", "qini_coefficient", "auuc", "auuc_random", "auuc_margin")


@dataclass(frozen=True)
class Comparison:
    """The champion against the new model on this run's held-out contacts, over the actions
    both model (neither wins by an action the other has no model of); `left_alone` says why
    they cannot be compared (then nothing is promoted, as training.job does)."""

    label: str | None = None  # None: no champion
    new: float | None = None
    champion: float | None = None
    left_alone: str | None = None
    note: str | None = None
    # the actions both model where fewer than the new model's (None: all of them): the figures
    # are then means over these, not the run's `mean_<compare>`
    shared: tuple[str, ...] | None = None


@dataclass(frozen=True)
class UpliftResult:
    table: pd.DataFrame  # per action and outcome, held out
    curves: pd.DataFrame  # purchase
    metric: float
    champion_metric: float | None  # over the actions both model
    version: str
    promoted: bool
    reason: str
    run_id: str
    contacts: uplift.Contacts
    bundle: UpliftBundle


def run_uplift(
    campaigns: pd.DataFrame,
    source: Path,
    transactions: pd.DataFrame,
    customers: pd.DataFrame | None,
    paths: Paths,
    features: FeatureConfig,
    config: UpliftConfig,
    truth: pd.DataFrame | None = None,
    progress: Callable[[str], None] = lambda _: None,
    datasets: Sequence[Any] = (),
    data_files: Sequence[Path] = (),
    balance: BalanceConfig | None = None,
) -> UpliftResult:
    """`datasets`, `data_files`: the transactions (and customers) files as MLflow datasets and
    as paths (hashed with the campaigns file for the run); the campaigns file's dataset is added
    here. `truth`: the sample's truth_campaigns table, when it is the sample. `balance`: an
    action whose treated contacts differ before the send from the controls it is compared
    with learns the selection, not an effect: it gets no model (experiments.balance; None:
    the config's defaults)."""
    balance = balance if balance is not None else BalanceConfig()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    require_window(campaigns, config.response_window_days, f"campaigns {source}")
    progress(f"features at {campaigns['sent_at'].nunique()} send times (history before each)")
    table = features_at_send(campaigns, transactions, features, customers)
    table = learnt_features(table, config.exclude_features)
    contacts = uplift.uplift_contacts(
        campaigns, table, config.holdout_share, config.seed, f"campaigns {source}"
    )
    if contacts.converted_from_revenue:
        progress(FROM_REVENUE)
    frame = contacts.frame
    treated = frame["treated"].to_numpy(bool)
    catalogue = frame["action"].isin(ACTIONS).to_numpy()
    outside = sorted(set(frame.loc[treated & ~catalogue, "action"]))
    train = ~contacts.held_out & (catalogue | ~treated)
    counts = frame.loc[train & treated].groupby("action").size()
    small = sorted(set(frame.loc[catalogue & treated, "action"]) - set(counts.index))
    small = sorted({*small, *counts.index[counts < config.min_contacts]})
    pooled = config.pool_controls and POLICY_COLUMN not in campaigns
    if config.pool_controls and not pooled:
        progress(
            f"controls not pooled (uplift.pool_controls / --pool-controls): these sends were "
            f"chosen by the policy ('{POLICY_COLUMN}' column), so each action keeps its own"
        )
    controls = frame.loc[train & ~treated].groupby("action").size()
    # Each action's own controls, unless pooled: an action without any has nothing to compare.
    uncontrolled = [] if pooled else sorted(set(counts.index) - set(small) - set(controls.index))
    # No purchase among an action's training contacts (treated, nor its controls): an effect of 0
    # learnt from nothing, which would count in the gate as a model.
    silent = _without_purchases(frame, train, pooled, set(counts.index) - {*small, *uncontrolled})
    # Every contact of the action (training and held out: both read the same assignment) against
    # the controls the model uses.
    checked = action_balance(
        frame.loc[catalogue | ~treated],
        contacts.features.loc[catalogue | ~treated],
        balance,
        pooled,
    )
    imbalanced = {
        a: b
        for a, b in checked.items()
        if b.imbalanced and a not in {*small, *uncontrolled, *silent}
    }
    for action, found in imbalanced.items():
        progress(f"warning: {action}: {imbalance_said(found)}; no model (the policy's prior)")
    without_model = sorted({*small, *uncontrolled, *silent, *imbalanced})
    fit_rows = train & ~(treated & frame["action"].isin(without_model).to_numpy())
    if not (fit_rows & treated).any() or not (fit_rows & ~treated).any():
        why = {a: f"{counts.get(a, 0):,} treated contacts, under uplift.min_contacts "
                  f"({config.min_contacts})" for a in small}  # fmt: skip
        why |= {a: "no control contacts of its own" for a in uncontrolled}
        why |= {
            a: f"no purchase among its {counts[a]:,} treated and "
            f"{int(controls.sum()) if pooled else int(controls.get(a, 0)):,} control contacts"
            for a in silent
        }
        why |= {a: imbalance_said(b) for a, b in imbalanced.items()}
        reasons = "; ".join(f"{a}: {why[a]}" for a in sorted(why))
        if not (fit_rows & ~treated).any():  # the cause whatever the actions' own reasons
            reasons = "; ".join(filter(None, ["no control among the training customers", reasons]))
        elif not why:  # every catalogue action had its contacts and controls: no treated one
            reasons = "no treated contact of a catalogue action among the training customers"
        if len(frame) and not (frame["converted"] > 0).any():
            reasons = f"not one of the {len(frame):,} contacts converted; {reasons}"
        if contacts.without_history:
            reasons += f"; {contacts.without_history:,} without a purchase up to the send left out"
        own = controls[controls.index.isin(ACTIONS)]  # counted as the treated ones are
        raise DataError(
            f"campaigns {source}: no catalogue action can be modelled, nothing to learn from "
            f"({reasons}; treated contacts per action: {counts.to_dict() or 'none'}; control "
            f"contacts per action: {own.to_dict() or 'none'}"
            + _outside_note(frame.loc[~catalogue, "action"])
            + ")"
        )
    if without_model:
        progress(f"no model (the policy's prior) for {', '.join(without_model)}: see the run note")
    # What each count holds, so that they add up (tester R: 1,088 + 528 of 1,786, the treated
    # contacts of actions without a model left out of the first, their controls in it).
    modelled = frame["action"].isin(set(counts.index) - set(without_model)).to_numpy()
    learnt = int((train & (modelled | (~treated & pooled))).sum())
    foreign = int((~contacts.held_out & ~train).sum())
    progress(
        f"{len(frame):,} contacts with a purchase up to the send: {int(train.sum()):,} of "
        f"training customers, {int(contacts.held_out.sum()):,} of held-out ones"
        + (f", {foreign:,} sends of actions outside the catalogue" if foreign else "")
        + (
            f"; the models learn from {learnt:,} of the training customers' (the others: "
            "actions without a model)"
            if learnt < int(train.sum())
            else ""
        )
        + "; controls "
        + ("pooled over actions" if pooled else "of each action's own")
    )
    fitted = OUTCOMES if contacts.has_revenue else OUTCOMES[:1]  # no revenue: no value effect
    bundle = fit_uplift(
        contacts.features.loc[fit_rows], frame["action"][fit_rows], frame["treated"][fit_rows],
        frame["converted"][fit_rows], frame["revenue"][fit_rows], config.response_window_days,
        config.params, config.n_estimators, pooled, config.seed, config.n_jobs,
        {
            "features_config": config_digest(features),
            "campaigns_sha256": file_sha256(source),
            "holdout": {"share": config.holdout_share, "seed": config.seed},
            "pool_controls": pooled,
        },
        progress, fitted,
    )  # fmt: skip
    progress("evaluating on the held-out customers")
    true = uplift.true_effects(frame, truth) if truth is not None else None
    evaluation = uplift.evaluate_uplift(bundle, contacts, true)
    curves = {
        outcome: uplift.action_curves(bundle, contacts, outcome, config.curve_points)
        for outcome in fitted
    }
    metric = uplift.gate_metric(evaluation, config.compare)
    interval = uplift.qini_interval(bundle, contacts, config.seed)
    notes = {
        "small": small,
        "uncontrolled": uncontrolled,
        "silent": silent,
        "imbalanced": imbalanced,
        "outside": outside,
        "pooled": pooled,
        "policy_chosen": POLICY_COLUMN in campaigns,
    }
    run_note = _run_note(evaluation, contacts, source, notes, interval)

    with experiment_run(
        paths, config.experiment, NOTE, "uplift", run_note, "uplift", (source, *data_files)
    ) as run_id:
        comparison = _compare_champion(config, evaluation, contacts, bundle)
        flat = uplift.uniform_actions(bundle, contacts)
        promote, reason = _decide(config, metric, comparison, flat, bundle.actions)
        champion = comparison.champion
        mlflow.log_params(
            {
                "campaigns_file": logged_path(source),
                "learner": "x-learner (lightgbm)",
                "holdout_share": config.holdout_share,
                "holdout_seed": config.seed,
                "pool_controls": pooled,
                "n_estimators": config.n_estimators,
                **{f"lgb_{k}": v for k, v in config.params.items()},
                "features": len(bundle.feature_names),
                "response_window_days": config.response_window_days,
                "actions_without_model": ",".join(without_model) or "none",
                "actions_imbalanced": "; ".join(
                    f"{a}: {imbalance_said(b)}" for a, b in imbalanced.items()
                )
                or "none",
                "balance_smd_threshold": balance.smd_threshold,
                "balance_alpha": balance.alpha,
                "actions_outside_catalogue": ",".join(outside) or "none",
            }
        )
        every = [*file_datasets([("campaigns", campaigns, source)]), *datasets]
        log_datasets(every, "uplift")
        log_metrics(
            _parent_metrics(evaluation, contacts, metric, config.compare, comparison, interval)
            | {"actions_imbalanced": float(len(imbalanced))}
        )
        by_action = _by_action(evaluation)
        names = _child_names(by_action)
        log_children(
            "action",
            {a: {m: row.get(m, np.nan) for m in names} for a, row in by_action.items()},
            {a: _child_note(a, row) for a, row in by_action.items()},
            datasets=every,
        )
        log_table(evaluation, "uplift_by_action")
        labels = {"purchase": "incremental purchases", "value": "incremental revenue"}
        for outcome in fitted:
            label = labels[outcome]
            log_table(curves[outcome], f"qini_curves_{outcome}")
            log_figure(
                _curve_plot(curves[outcome], evaluation, outcome, "qini", label), f"qini_{outcome}"
            )
            per_contact = f"cumulative {label} per held-out contact"  # tester W: "uplift"
            gains = _curve_plot(curves[outcome], evaluation, outcome, "uplift_gain", per_contact)
            log_figure(gains, f"uplift_curve_{outcome}")
        with tempfile.TemporaryDirectory(prefix="crm-ltv-uplift-") as tmp:
            folder = bundle.save(Path(tmp) / "uplift")
            example = model_input_example(
                contacts.features.loc[contacts.held_out], list(bundle.feature_names)
            )
            model_uri = log_bundle(folder, example, bundle.predict(example), MODEL_CODE)
        version = register_version(
            model_uri,
            config.model_name,
            # the mean over actions, named as the run's metric (it read as one action's)
            {"run_id": run_id, f"mean_{config.compare}": f"{metric:.6f}"}
            | gate_tags(promote, reason),
        )
        describe_model(
            config.model_name,
            MODEL_NOTE,
            version,
            f"Uplift per action ({', '.join(bundle.actions)}) from run {run_id} on {source}: "
            f"held-out {config.compare} {_shown(metric):.4f} (mean over "
            "actions; a random ranking scores "
            f"0), on customers it never trained on. "
            + ("Promoted: " if promote else "Not promoted: ")
            + reason,
        )
        if promote:
            set_champion(config.model_name, version, config.alias, reason)
        mlflow.set_tags({"registered_version": version, "promotion": reason})
    return UpliftResult(
        evaluation, curves["purchase"], metric, champion, version, promote, reason, run_id,
        contacts, bundle,
    )  # fmt: skip


def _outside_note(actions: pd.Series) -> str:
    """The file's actions outside the catalogue, named with the catalogue: a file of a shop's
    own names read as "treated: none; control: {'my_promo': 9540}", which said neither."""
    names = sorted(set(actions.astype(str)))
    if not names:
        return ""
    verb = "is not an action" if len(names) == 1 else "are not actions"
    return (
        f"; {', '.join(map(repr, names))} {verb} of the catalogue (crm_ltv.features.actions, "
        f"which configs/nba.yaml prices: {', '.join(ACTION_NAMES)})"
    )


def _compare_champion(
    config: UpliftConfig, evaluation: pd.DataFrame, contacts: uplift.Contacts, new: UpliftBundle
) -> Comparison:
    """The registered champion, loaded, against the new model (compare_champion)."""
    try:
        found = load_uplift_champion(config.model_name, config.alias)
    except RegistryError as exc:
        return Comparison(
            f"{config.model_name} {config.alias}", left_alone=f"it cannot be loaded ({exc})"
        )
    if found is None:
        return Comparison()
    version, champion = found
    return compare_champion(
        config, evaluation, contacts, new, f"{config.model_name} v{version.version}", champion
    )


def compare_champion(
    config: UpliftConfig,
    evaluation: pd.DataFrame,
    contacts: uplift.Contacts,
    new: UpliftBundle,
    label: str,
    champion: UpliftBundle,
) -> Comparison:
    """Both models' gate metric over the actions both model, on the same held-out contacts;
    left alone when they cannot be compared (another response window, no common action, the
    champion cannot score these contacts)."""
    if champion.response_window_days != new.response_window_days:
        return Comparison(
            label,
            left_alone=f"it predicts effects over {champion.response_window_days} days, this "
            f"run over {new.response_window_days}: not comparable",
        )
    common = set(new.actions) & set(champion.actions)
    if not common:
        return Comparison(label, left_alone=f"it models none of {sorted(new.actions)}")
    dropped = sorted(set(champion.actions) - set(new.actions))
    if dropped:  # promoting would send those actions back to their priors
        return Comparison(
            label, left_alone=f"it models {', '.join(dropped)}, which this run does not"
        )
    try:
        table = uplift.evaluate_uplift(champion, contacts)
    except (BundleError, ValueError, KeyError) as exc:
        return Comparison(label, left_alone=f"it cannot score this run's contacts ({exc})")
    split = champion.metadata.get("holdout")
    note = None
    if split != {"share": config.holdout_share, "seed": config.seed}:
        note = f"{label} held out {split or 'another split'}: it may have trained on them"
    return Comparison(
        label,
        uplift.gate_metric(evaluation, config.compare, common),
        uplift.gate_metric(table, config.compare, common),
        note=note,
        shared=None if common == set(new.actions) else tuple(sorted(common)),
    )


def _shown(metric: float) -> float:
    """The gate's metric at the precision it is reported and judged with (+ 0.0: -0.0 shows
    as 0.0000)."""
    return round(metric, GATE_DECIMALS) + 0.0


def _decide(
    config: UpliftConfig,
    metric: float,
    comparison: Comparison,
    flat: Sequence[str] = (),
    actions: Sequence[str] = (),
) -> tuple[bool, str]:
    """Promote only when the held-out metric over all the new model's actions beats a random
    ranking (0) and, over the actions both model, strictly beats the champion's on the same
    contacts (training.registry.decide_promotion); a champion that cannot be compared is left
    alone, as training.job leaves one. Every margin given. The metric beats 0 only at the
    precision it is shown (GATE_DECIMALS): a model of one effect for each of its `actions`
    (every one `flat`) scored +7e-19 or -0.0000 by float noise, and promotion hung on the sign
    of it. Flat actions are named when the others rank (their effects would go live)."""
    uniform = bool(actions) and set(flat) >= set(actions)
    shown = _shown(metric)
    beats_random = not uniform and shown > 0
    # the mean over actions (the parent's metric `mean_<compare>`), not one action's figure:
    # each child run has its own `qini_coefficient` (tester J)
    gate = f"mean {config.compare}"
    if uniform:
        first = (
            f"{gate} {shown:.4f} does not beat a random ranking's 0: every action's "
            "model predicts one effect for all its customers, so it ranks none above another "
            "(too few contacts for a tree to split? uplift.params min_child_samples)"
        )
    elif shown == 0:
        first = (
            f"{gate} {shown:.4f} does not beat a random ranking's 0: it ranks "
            f"customers no better than at random (to the {GATE_DECIMALS} decimals shown)"
        )
    else:
        verdict = "beats" if beats_random else "does not beat"
        first = f"{gate} {shown:.4f} {verdict} a random ranking's 0 ({shown:+.4f})"
    notes = [first]
    if flat and not uniform:
        notes.append(
            f"the model of {', '.join(flat)} predicts one effect for all its customers: it "
            "ranks none above another, and its effect applies to everyone alike"
        )
    if comparison.left_alone is not None:
        notes.append(
            f"{comparison.label} not compared: {comparison.left_alone}; champion left alone "
            f"(promote by hand with `crm-ltv promote --model {config.model_name}`)"
        )
        return False, "; ".join(notes)
    if comparison.note is not None:
        notes.append(comparison.note)
    if comparison.champion is None or comparison.new is None:
        # the random ranking is this gate's only bar without a champion: "every threshold
        # passes" beside a model that does not beat it read as a contradiction (tester R)
        notes.append("no champion yet")
        return beats_random, "; ".join(notes)
    # over the actions both model: the run's mean where they are all the new model's, else
    # named, so two "mean qini_coefficient" figures in one reason are not two different means
    shared = comparison.shared
    if shared is None:
        label = gate
    elif len(shared) == 1:
        label = f"{gate} over {shared[0]}, the one action both model,"
    else:
        label = f"{gate} over the {len(shared)} actions both model ({', '.join(shared)})"
    decision = decide_promotion(
        {config.compare: comparison.new},
        {config.compare: comparison.champion},
        GateConfig(compare=config.compare, baseline=None),
        str(comparison.label),
        metric_label=label,
    )
    notes.append(decision.reason)  # "mean <compare> 0.0123 beats uplift v1's ...", margins
    return beats_random and decision.promote, "; ".join(notes)


def _by_action(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Each action's metrics under one set of names: purchase ones bare, value ones `value_`."""
    out: dict[str, dict[str, float]] = {}
    for row in table.to_dict("records"):
        if row["outcome"] == "purchase":
            names = {m: m for m in PURCHASE_METRICS if m in row}
        else:
            names = {f"value_{m}": m for m in VALUE_METRICS}
        out.setdefault(row["action"], {}).update({k: row[m] for k, m in names.items()})
    return out


def _child_names(by_action: dict[str, dict[str, float]]) -> list[str]:
    """Every metric name of any action: each child run carries all of them."""
    return sorted({name for metrics in by_action.values() for name in metrics})


def _child_note(action: str, row: dict[str, float]) -> str:
    truth = (
        f" Rank correlation with the true effects {row['truth_spearman']:+.3f} (random 0); the "
        f"20% ranked first have {row['truth_top20_over_mean']:.2f}x the mean true effect."
        if pd.notna(row.get("truth_spearman"))
        else ""
    )
    value = "value_mean_predicted_effect" in row
    return (
        f"{action}: {int(row['contacts']):,} held-out contacts ({int(row['treated']):,} treated). "
        f"Mean predicted effect {row['mean_predicted_effect']:+.4f} on the purchase probability"
        + (f", {row['value_mean_predicted_effect']:+.2f} on revenue" if value else "")
        + f". Qini coefficient {row['qini_coefficient']:+.4f}, AUUC {row['auuc']:.4f} vs "
        f"{row['auuc_random']:.4f} random (purchase)"
        + (f"; value Qini {row['value_qini_coefficient']:+.4f}." if value else ".")
        + truth
    )


def _parent_metrics(
    table: pd.DataFrame,
    contacts: uplift.Contacts,
    metric: float,
    compare: str,
    comparison: Comparison,
    interval: tuple[float, float],
) -> dict[str, float]:
    purchase = table.loc[table["outcome"] == "purchase"]
    out = {
        f"mean_{compare}": metric,
        "mean_auuc_margin": float(purchase["auuc_margin"].mean()),
        "actions_modelled": float(len(purchase)),
        "contacts": float(len(contacts.frame)),
        "contacts_held_out": float(contacts.held_out.sum()),
        # those of the modelled actions only, as the child runs count them: an action without
        # enough contacts is held out too but not evaluated (tester R: 528 vs 451 in the table)
        "contacts_held_out_evaluated": float(purchase["contacts"].sum()),
    }
    for name in ("truth_spearman", "truth_top20_over_mean"):
        if name in purchase:
            out[f"mean_{name}"] = float(purchase[name].mean())
    out[f"mean_{compare}_low"], out[f"mean_{compare}_high"] = interval
    if comparison.champion is not None and comparison.new is not None:
        out[f"champion_{compare}"] = comparison.champion
        out[f"common_{compare}"] = comparison.new
    return out


def _without_purchases(
    frame: pd.DataFrame, train: np.ndarray, pooled: bool, actions: set[str]
) -> list[str]:
    """Actions none of whose training contacts bought, treated or (pooled or not) control."""
    bought = frame["converted"].to_numpy() > 0
    treated = frame["treated"].to_numpy(bool)
    action = frame["action"].to_numpy()
    any_control = bool((train & ~treated & bought).any())
    silent = []
    for name in sorted(actions):
        mine = train & (action == name)
        control = any_control if pooled else bool((mine & ~treated & bought).any())
        if not (mine & treated & bought).any() and not control:
            silent.append(name)
    return silent


def _run_note(
    table: pd.DataFrame,
    contacts: uplift.Contacts,
    source: Path,
    notes: dict[str, Any],
    interval: tuple[float, float],
) -> str:
    purchase = table.loc[table["outcome"] == "purchase"]
    parts = [
        f"{len(contacts.frame):,} contacts from {source} ({int(contacts.held_out.sum()):,} of "
        f"held-out customers); {contacts.without_history:,} without a purchase up to the send "
        f"and {contacts.without_outcome:,} without an outcome left out.",
        "Held-out Qini coefficient (purchase): "
        + ", ".join(f"{r.action} {r.qini_coefficient:+.4f}" for r in purchase.itertuples())
        + f"; mean {purchase['qini_coefficient'].mean():+.4f}, 95% bootstrap interval "
        f"[{interval[0]:+.4f}, {interval[1]:+.4f}] (held-out contacts resampled; an interval "
        "over 0 beats a random ranking beyond chance).",
    ]
    if "truth_spearman" in purchase:
        parts.append(
            "Rank correlation with the true effects (random 0): "
            + ", ".join(f"{r.action} {r.truth_spearman:+.3f}" for r in purchase.itertuples())
            + "."
        )
    if notes["small"]:
        parts.append(f"Too few contacts for a model: {', '.join(notes['small'])} (the prior).")
    if notes["uncontrolled"]:
        parts.append(
            f"No control contacts of their own: {', '.join(notes['uncontrolled'])} (the prior)."
        )
    if notes["silent"]:
        parts.append(
            f"No purchase among their training contacts: {', '.join(notes['silent'])} (the prior)."
        )
    imbalanced: dict[str, Balance] = notes["imbalanced"]
    for action, found in imbalanced.items():
        parts.append(f"No model (the prior) for {action}: {imbalance_said(found)}.")
    if notes["outside"]:
        parts.append(f"Not in the action catalogue, left out: {', '.join(notes['outside'])}.")
    if not notes["pooled"]:
        why = "policy-chosen sends" if notes["policy_chosen"] else "uplift.pool_controls: false"
        parts.append(f"Each action compared with its own controls only ({why}).")
    if contacts.converted_from_revenue:
        parts.append(f"Outcomes: {FROM_REVENUE}.")
    if not contacts.has_revenue:
        parts.append("No revenue column: no value effects.")
    elif contacts.without_revenue:
        parts.append(
            f"{contacts.without_revenue:,} converted contacts without revenue: out of value models."
        )
    return " ".join(parts)


def _curve_plot(
    curves: pd.DataFrame, table: pd.DataFrame, outcome: str, column: str, ylabel: str
) -> object:
    """One panel per action: the model's curve against a random ranking, figures in legends."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    actions = sorted(curves["action"].unique()) if len(curves) else []
    width = max(len(actions), 1)
    figure, axes = plt.subplots(1, width, figsize=(4 * width, 3.6), squeeze=False)
    rows = table.loc[table["outcome"] == outcome].set_index("action")
    for ax, action in zip(axes.flat, actions, strict=False):
        part, row = curves.loc[curves["action"] == action], rows.loc[action]
        share = [0.0, *part["share_contacted"]]
        if column == "qini":
            model = f"uplift model: Qini coef. {row['qini_coefficient']:+.4f}"
            random = "random: 0"
        else:
            model = f"uplift model: AUUC {row['auuc']:.4f}"
            random = f"random: AUUC {row['auuc_random']:.4f}"
        ax.plot(share, [0.0, *part[column]], label=model)
        ax.plot(share, [0.0, *part[f"{column}_random"]], "--", color="grey", label=random)
        ax.set_title(f"{action} ({int(row['contacts']):,} held-out contacts)", fontsize=9)
        ax.set_xlabel("share contacted (by predicted effect)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    figure.suptitle(f"held-out {column.replace('_', ' ')} curves, {outcome}")
    figure.tight_layout()
    return figure
