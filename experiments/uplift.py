"""Uplift evaluation: Qini and uplift (AUUC) curves on held-out customers, and, on the sample,
the ranking against the generator's true effects. Pure functions over arrays and DataFrames;
the models are training.uplift's, the MLflow run experiments.uplift_job's.

Definitions (per action, over the held-out contacts of its own randomized test, sorted by
predicted effect, best first; n_t(k), n_c(k) treated and control contacts among the first k,
y_t(k), y_c(k) their outcomes summed; N contacts):
- Qini curve Q(k) = y_t(k) - y_c(k) n_t(k) / n_c(k): the incremental outcomes gained by
  treating the first k; a random ranking gives the straight line from 0 to Q(N).
- Qini coefficient: mean over k of (Q(k) - the random line's value) / N, i.e. the area between
  the curve and the random line per contact. 0 is random, higher is better.
- Uplift curve U(k) = (y_t(k) / n_t(k) - y_c(k) / n_c(k)) k / N, AUUC its mean over k; a random
  ranking's AUUC is U(N) times the mean share, and `auuc_margin` = AUUC minus that.
A group with no contact yet among the first k counts as rate 0. Contacts with the same
predicted effect are one step: the curves run straight across it (as the random line does;
for Q(k), whose n_c(k) scaling is not linear in the order, close to but not exactly the
expectation over random orders of the tie), so a constant prediction scores exactly as random.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from crm_ltv.experiments.ab import SHARE, TREATMENT, campaign_outcomes
from crm_ltv.training.datasets import customer_unit
from crm_ltv.training.uplift import OUTCOMES, Outcome, UpliftBundle

TOP_SHARE = 0.2  # truth: mean true effect of the top 20% ranked, against everyone's
COLUMN: dict[str, str] = {"purchase": "converted", "value": "revenue"}  # outcome -> contacts'
# Predicted purchase effects closer than this (probability points) are one effect: float
# noise of summed tree leaves, far below any effect a campaign could be told by.
UNIFORM_EFFECT = 1e-12


@dataclass(frozen=True)
class Contacts:
    """Campaign contacts with an outcome and a purchase up to the send, their features at the
    send time (same rows), and which customers are held out."""

    # customer_id, sent_at, action, treated, converted, revenue (and expected_treatment_share
    # where the file has it: the balance check weights by it)
    frame: pd.DataFrame
    features: pd.DataFrame
    held_out: np.ndarray  # bool per row: the customer is in the held-out share
    without_outcome: int
    without_history: int
    has_revenue: bool
    without_revenue: int = 0  # of the kept contacts: out of the value models and metrics
    converted_from_revenue: bool = False  # no 'converted' column: revenue > 0 is a conversion


def held_out_customers(customer_ids: pd.Series, share: float, seed: int) -> np.ndarray:
    """True for a stable share of customers, by a hash of the id: the same customer is on the
    same side at every send and in every run (so a champion never trained on them either)."""
    return customer_unit(customer_ids, f"crm-ltv-uplift-{seed}") >= 1.0 - share


def uplift_contacts(
    campaigns: pd.DataFrame,
    features: pd.DataFrame,
    share: float,
    seed: int,
    where: str = "campaigns",
) -> Contacts:
    """`features` is aligned with `campaigns` (segments.features_at_send). Contacts without an
    outcome, or of a customer with no purchase up to the send (the service gives those the
    cold-start action, not a model's), are left out and counted. Revenue stays missing where
    the file has none for a contact that converted (none without a conversion is 0); a file
    without revenue gives zeros (value effects 0). `where`: the table and its file, for errors."""
    outcomes = campaign_outcomes(campaigns, where)  # the file's own columns, as errors name them
    frame = outcomes.frame
    table = features.iloc[outcomes.rows].reset_index(drop=True)
    history = table["recency_days"].notna().to_numpy()
    frame, table = frame.loc[history].reset_index(drop=True), table.loc[history]
    revenue = frame["revenue"].astype(float)
    out = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].astype(str),
            "sent_at": pd.to_datetime(frame["sent_at"]),
            "action": frame["action"].astype(str),
            "treated": frame["group"].astype(str).eq(TREATMENT).to_numpy(),
            "converted": frame["converted"].astype(float),
            "revenue": revenue if outcomes.has_revenue else revenue.fillna(0.0),
        }
    )
    if SHARE in frame:
        out[SHARE] = frame[SHARE].astype("float64").to_numpy()
    return Contacts(
        out,
        table.reset_index(drop=True),
        held_out_customers(out["customer_id"], share, seed),
        outcomes.without_outcome,
        int((~history).sum()),
        outcomes.has_revenue,
        int(out["revenue"].isna().sum()),
        outcomes.converted_from_revenue,
    )


def _curves(
    effect: np.ndarray, treated: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Qini Q(k) and uplift U(k) at every k = 1..N, and the shares k / N (module docstring)."""
    n = len(effect)
    order = np.argsort(-effect, kind="stable")
    ranked, t, yy = effect[order], treated[order].astype(float), y[order]
    n_t, n_c = np.cumsum(t), np.cumsum(1.0 - t)
    y_t, y_c = np.cumsum(yy * t), np.cumsum(yy * (1.0 - t))
    rate_t = np.divide(y_t, n_t, out=np.zeros(n), where=n_t > 0)
    rate_c = np.divide(y_c, n_c, out=np.zeros(n), where=n_c > 0)
    k = np.arange(1, n + 1, dtype=float)
    qini, gain = y_t - rate_c * n_t, (rate_t - rate_c) * k / n
    ends = np.append(np.flatnonzero(np.diff(ranked) != 0), n - 1)  # last row of each tie
    steps = np.append(0.0, ends + 1.0)
    qini = np.interp(k, steps, np.append(0.0, qini[ends]))
    gain = np.interp(k, steps, np.append(0.0, gain[ends]))
    return qini, gain, k / n


def _arrays(
    effect: np.ndarray, treated: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The rows with an outcome, as float/bool arrays; None without both groups among them."""
    effect, treated, y = np.asarray(effect, float), np.asarray(treated, bool), np.asarray(y, float)
    known = np.isfinite(y)
    effect, treated, y = effect[known], treated[known], y[known]
    if len(y) == 0 or treated.all() or not treated.any():
        return None
    return effect, treated, y


def uplift_curves(
    effect: np.ndarray, treated: np.ndarray, y: np.ndarray, points: int = 50
) -> pd.DataFrame:
    """Qini and uplift curves at `points` shares of the contacts, with the random lines
    (empty without both groups)."""
    arrays = _arrays(effect, treated, y)
    if arrays is None:
        return pd.DataFrame(columns=["share_contacted", "qini", "qini_random", "uplift_gain",
                                     "uplift_gain_random"])  # fmt: skip
    qini, gain, share = _curves(*arrays)
    n = len(share)
    take = np.unique(np.clip(np.round(np.linspace(0, 1, points + 1)[1:] * n).astype(int), 1, n))
    take -= 1
    return pd.DataFrame(
        {
            "share_contacted": share[take],
            "qini": qini[take],
            "qini_random": qini[-1] * share[take],
            "uplift_gain": gain[take],
            "uplift_gain_random": gain[-1] * share[take],
        }
    )


def uplift_metrics(effect: np.ndarray, treated: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Qini coefficient and AUUC (module docstring) of one ranking; NaN without both groups."""
    arrays = _arrays(effect, treated, y)
    if arrays is None:
        nan = float("nan")
        return {"qini_coefficient": nan, "auuc": nan, "auuc_random": nan, "auuc_margin": nan}
    qini, gain, share = _curves(*arrays)
    auuc, random = float(gain.mean()), float(gain[-1] * share.mean())
    return {
        "qini_coefficient": float((qini - qini[-1] * share).mean() / len(share)),
        "auuc": auuc,
        "auuc_random": random,
        "auuc_margin": auuc - random,
    }


def truth_metrics(effect: np.ndarray, true_effect: np.ndarray) -> dict[str, float]:
    """Against the generator's true effect of each contact: Spearman rank correlation (random:
    0) and the mean true effect of the top TOP_SHARE ranked over everyone's (random: 1)."""
    effect, true_effect = np.asarray(effect, float), np.asarray(true_effect, float)
    top = np.argsort(-effect, kind="stable")[: max(1, round(TOP_SHARE * len(effect)))]
    mean = float(true_effect.mean())
    varies = np.ptp(true_effect) > 0 and np.ptp(effect) > 0
    rho = spearmanr(effect, true_effect).statistic if varies else np.nan
    return {
        "truth_spearman": float(rho),
        "truth_mean_effect": mean,
        "truth_top20_mean_effect": float(true_effect[top].mean()),
        "truth_top20_over_mean": float(true_effect[top].mean() / mean) if mean > 0 else np.nan,
    }


def true_effects(contacts: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    """The generator's true effect of each contact (NaN where the truth has no such contact)."""
    keys = ["customer_id", "sent_at", "action"]
    known = truth.assign(
        customer_id=truth["customer_id"].astype(str),
        sent_at=pd.to_datetime(truth["sent_at"]),
        action=truth["action"].astype(str),
    ).drop_duplicates(keys)
    merged = contacts[keys].merge(known[[*keys, "true_effect"]], on=keys, how="left")
    return pd.Series(merged["true_effect"].to_numpy(), index=contacts.index)


def _held_out_effects(
    bundle: UpliftBundle, contacts: Contacts, outcome: Outcome
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    held = contacts.held_out
    frame = contacts.frame.loc[held]
    return frame, bundle.effects(bundle.encode(contacts.features.loc[held]), outcome)


def evaluate_uplift(
    bundle: UpliftBundle, contacts: Contacts, truth: pd.Series | None = None
) -> pd.DataFrame:
    """Per action and outcome, on the held-out contacts of that action's own test: contacts,
    Qini and AUUC; for purchase with `truth` (aligned with contacts.frame), the truth metrics."""
    rows = []
    for outcome in OUTCOMES:
        frame, effects = _held_out_effects(bundle, contacts, outcome)
        y = frame[COLUMN[outcome]].to_numpy(float)
        for action, effect in effects.items():
            own = frame["action"].eq(action).to_numpy()
            treated = frame["treated"].to_numpy(bool)[own]
            row = {
                "action": action,
                "outcome": outcome,
                "contacts": int(own.sum()),
                "treated": int(treated.sum()),
                "mean_predicted_effect": float(effect[own].mean()) if own.any() else np.nan,
                **uplift_metrics(effect[own], treated, y[own]),
            }
            if truth is not None and outcome == "purchase":
                true = truth.loc[contacts.held_out].to_numpy(float)[own]
                known = ~np.isnan(true)
                if known.any():
                    row |= truth_metrics(effect[own][known], true[known])
            rows.append(row)
    return pd.DataFrame(rows)


def action_curves(
    bundle: UpliftBundle, contacts: Contacts, outcome: Outcome = "purchase", points: int = 50
) -> pd.DataFrame:
    """Held-out Qini and uplift curves of every action, stacked with an `action` column."""
    frame, effects = _held_out_effects(bundle, contacts, outcome)
    y = frame[COLUMN[outcome]].to_numpy(float)
    parts = []
    for action, effect in effects.items():
        own = frame["action"].eq(action).to_numpy()
        curve = uplift_curves(effect[own], frame["treated"].to_numpy(bool)[own], y[own], points)
        if len(curve):
            parts.append(curve.assign(action=action))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def qini_interval(
    bundle: UpliftBundle,
    contacts: Contacts,
    seed: int,
    resamples: int = 200,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean held-out purchase Qini coefficient over
    actions (each action's contacts resampled): how far the gate's point estimate is from
    a random ranking's 0 beyond chance."""
    frame, effects = _held_out_effects(bundle, contacts, "purchase")
    y, treated = frame["converted"].to_numpy(float), frame["treated"].to_numpy(bool)
    rng = np.random.default_rng(seed)
    means = np.zeros(resamples)
    parts = [np.flatnonzero(frame["action"].eq(a).to_numpy()) for a in effects]
    for i in range(resamples):
        values = []
        for rows, effect in zip(parts, effects.values(), strict=True):
            take = rng.choice(rows, len(rows))
            values.append(uplift_metrics(effect[take], treated[take], y[take])["qini_coefficient"])
        means[i] = np.nanmean(values) if not np.isnan(values).all() else np.nan
    low, high = np.nanquantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def uniform_actions(bundle: UpliftBundle, contacts: Contacts) -> list[str]:
    """The actions whose model predicts one purchase effect for every held-out contact of its
    own (no tree could split: fewer contacts than min_child_samples): such a model ranks no
    customer above another, so its Qini is a random ranking's 0 up to rounding noise."""
    frame, effects = _held_out_effects(bundle, contacts, "purchase")
    uniform = []
    for action, effect in effects.items():
        own = effect[frame["action"].eq(action).to_numpy()]
        if len(own) == 0 or np.ptp(own) <= UNIFORM_EFFECT:
            uniform.append(action)
    return uniform


def gate_metric(table: pd.DataFrame, metric: str, actions: set[str] | None = None) -> float:
    """The gate's figure: the mean over actions (those in `actions` when given) of a held-out
    purchase metric."""
    rows = table.loc[table["outcome"] == "purchase"]
    if actions is not None:
        rows = rows.loc[rows["action"].isin(actions)]
    return float(rows[metric].mean())


def format_uplift(table: pd.DataFrame) -> str:
    """The held-out table as the CLI prints it: per action, purchase then value."""
    columns = ["action", "outcome", "contacts", "treated", "mean_predicted_effect",
               "qini_coefficient", "auuc", "auuc_random", "auuc_margin"]  # fmt: skip
    columns += [c for c in ("truth_spearman", "truth_top20_over_mean") if c in table]
    # "-": not measured for that outcome (the truth is of the purchase effect), as the other
    # tables print it, not NaN (tester W)
    shown = table[columns].astype(object).where(table[columns].notna(), "-")
    return shown.to_string(index=False, formatters=dict.fromkeys(columns, _figure))


def _figure(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
