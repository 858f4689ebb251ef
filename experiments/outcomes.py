"""Outcomes of the service's decisions: the decision log joined with later transactions.

The result is a campaigns table (features.contract.CAMPAIGNS: customer_id, sent_at, action,
group, converted, revenue), so `crm-ltv ab --campaigns` and uplift training read what the
service decided: the loop closes. For each action X the policy chose, treatment is the customers
sent X by the policy itself (neither held out nor explored), control is those held out: both are
drawn by hash independently of the customer, with probabilities (1 - h)(1 - e) and h (serving
.holdout), so they compare fairly and the treatment share expected of the A/B check is
(1 - h)(1 - e) / ((1 - h)(1 - e) + h). Explored decisions (whatever the draw gave, even X) have
no such control and are left to policy evaluation; no_action decisions teach nothing about X.

A customer's response windows never overlap: a decision counts only when the window of the
customer's last counted decision is over, so no purchase is counted twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crm_ltv.features.actions import NO_ACTION
from crm_ltv.features.contract import DataError

REQUIRED = ("customer_id", "as_of", "action")
# Logged by the service since holdouts; a line without them had its action sent for sure.
DEFAULTS = {
    "holdout": False,
    "explored": False,
    "propensity": 1.0,
    "request_id": None,
    "cold_start": False,
    "decided_at": None,
    "holdout_share": 0.0,
    "exploration": 0.0,
    "period": None,
}
COLUMNS = (
    "customer_id",
    "sent_at",
    "action",
    "group",
    "converted",
    "revenue",
    "policy_action",
    "holdout",
    "explored",
    "propensity",
    "request_id",
)
REPLAY = pd.Timedelta(days=1)  # decided this long after as_of: a replay of a past moment


@dataclass(frozen=True)
class Kept:
    """The decisions whose outcome can be counted, and how many of the others were left out."""

    frame: pd.DataFrame
    repeated: int  # a later decision for a customer and as_of already decided
    overlapping: int  # inside the response window of the customer's previous counted decision
    controls_contacted: int  # counted held-out decisions followed by a send inside their window


@dataclass(frozen=True)
class Outcomes:
    campaigns: pd.DataFrame  # COLUMNS, rows whose response window is over
    pending: pd.DataFrame  # COLUMNS without outcome: the window ends after the last transaction
    decisions: int  # lines read
    repeated: int  # later decisions for a customer and as_of already decided: left out
    overlapping: int  # inside the window of the customer's previous counted decision: left out
    not_contacted: int  # the policy chose no_action: left out
    explored: int  # exploration drew the action (even the policy's own): left out
    controls_contacted: int  # control rows whose customer was sent an action inside the window
    no_transactions: int  # rows whose customer has no transaction in the file (cold starts aside)
    cold_starts_without_transactions: int
    replayed: int  # rows decided more than a day after their as_of (window starts at as_of)
    expected_treatment_share: float | None  # of treatment + control, from the logged h and e
    periods: tuple[str, ...]  # holdout period kinds of the log ("week", "month")


def _naive_utc(value: object) -> pd.Timestamp:
    """A time of the log as naive UTC (the transactions' convention, like schemas.naive_utc)."""
    moment = pd.Timestamp(value)
    if moment is pd.NaT:
        raise ValueError("empty time")
    return moment.tz_convert("UTC").tz_localize(None) if moment.tzinfo else moment


def read_decisions(path: Path, progress: Callable[[str], None] = lambda _: None) -> pd.DataFrame:
    """The decision log as a frame, one row per line; a bad line fails naming it and its field.
    A line cut short (an object without its end: the service stopped mid-write, or writes it
    now, as the log is read while it runs) is left out, counted in a warning: the service
    writes whole lines, so it is not a bad decision. The service ends such a line when it starts
    again (serving.decisions.DecisionLog), so the next lines stay whole."""
    if not path.exists():
        raise DataError(
            f"{path}: no decision log (the service writes it: serving.yaml decision_log)"
        )
    if not path.is_file():
        raise DataError(f"{path}: not a file (a decision log is one JSON line per decision)")
    rows, cut = [], []
    with path.open("rb") as lines:  # bytes: a cut inside a character fails its line only
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError as exc:  # UnicodeDecodeError too
                if raw.lstrip().startswith(b"{") and not raw.rstrip().endswith(b"}"):
                    cut.append(number)
                    continue
                problem = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else "not JSON"
                raise DataError(f"{path}: line {number}: {problem} ({exc})") from None
            rows.append(_checked_line(path, number, row))
    if cut:
        shown = ", ".join(map(str, cut[:5])) + (", ..." if len(cut) > 5 else "")
        progress(
            f"warning: {path}: {len(cut):,} line(s) cut short (line {shown}: a decision without "
            "its end, written as the service stopped or being written now): left out"
        )
    if not rows:
        raise DataError(f"{path}: no decisions")
    frame = pd.DataFrame(rows)
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    frame["decided_at"] = pd.to_datetime(frame["decided_at"])
    return frame


def _checked_line(path: Path, number: int, row: Any) -> dict:
    where = f"{path}: line {number}"
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object")
    missing = [k for k in REQUIRED if row.get(k) in (None, "")]
    if missing:
        raise DataError(f"{where}: no {missing[0]!r}")
    row.setdefault("policy_action", row["action"])
    if (row.get("holdout") or row.get("explored")) and row.get("propensity") is None:
        # taken as 1, IPW and DR would weigh it as a sure send: estimates far too narrow
        raise DataError(
            f"{where}: {'held out' if row.get('holdout') else 'explored'} but no propensity "
            "(the probability of its action, which the service logs with every decision)"
        )
    for key, default in DEFAULTS.items():
        if row.get(key) is None:
            row[key] = default
    for key in ("as_of", "decided_at"):
        if row[key] is not None:
            try:
                row[key] = _naive_utc(row[key])
            except (ValueError, TypeError) as exc:
                raise DataError(f"{where}: {key} {row[key]!r}: {exc}") from None
    for key in ("propensity", "holdout_share", "exploration"):
        try:
            row[key] = float(row[key])
        except (ValueError, TypeError) as exc:
            raise DataError(f"{where}: {key} {row[key]!r}: {exc}") from None
    if not 0 < row["propensity"] <= 1:
        raise DataError(f"{where}: propensity {row['propensity']} is not in (0, 1]")
    if row["holdout"] and row["action"] != NO_ACTION:
        raise DataError(f"{where}: held out but action {row['action']!r}, not {NO_ACTION!r}")
    if not row["holdout"] and not row["explored"] and row["action"] != row["policy_action"]:
        raise DataError(
            f"{where}: action {row['action']!r} is not the policy_action "
            f"{row['policy_action']!r}, yet neither held out nor explored"
        )
    row["line"] = number
    return row


def first_decisions(decisions: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The first decision of each customer and as_of (a customer scored twice at the same
    moment got one send), in log order, and how many repeats were left out."""
    frame = decisions.sort_values("line", kind="stable") if "line" in decisions else decisions
    first = ~frame.duplicated(["customer_id", "as_of"], keep="first")
    return frame.loc[first], int((~first).sum())


def kept_decisions(decisions: pd.DataFrame, window_days: int) -> Kept:
    """Per customer in as_of order, a decision counts only when the window of their last
    counted one is over (as_of >= its as_of + window): no purchase is counted twice. Counted
    held-out decisions followed by a send inside their window are counted (their control is
    contaminated: a holdout period shorter than the window does that)."""
    if window_days < 1:
        raise DataError(f"response window {window_days} days: expected at least 1")
    frame, repeated = first_decisions(decisions)
    ordered = frame.sort_values(["customer_id", "as_of"], kind="stable")
    ids = ordered["customer_id"].to_numpy()
    at = ordered["as_of"].to_numpy()
    held = ordered["holdout"].astype(bool).to_numpy()
    sent = ordered["action"].astype(str).to_numpy() != NO_ACTION
    window = np.timedelta64(window_days, "D")
    keep = np.zeros(len(ordered), dtype=bool)
    contacted: set[int] = set()
    last_id, open_until, control = None, None, -1
    for i in range(len(ordered)):
        if ids[i] != last_id or at[i] >= open_until:
            keep[i] = True
            last_id, open_until, control = ids[i], at[i] + window, i if held[i] else -1
        elif control >= 0 and sent[i]:
            contacted.add(control)
    kept = ordered.loc[keep]
    kept = kept.sort_values("line", kind="stable") if "line" in kept else kept
    return Kept(kept, repeated, int((~keep).sum()), len(contacted))


def joined_outcomes(
    customer_ids: pd.Series, sent_at: pd.Series, transactions: pd.DataFrame, window_days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Converted, revenue and whether the window is still open (it ends after the last
    transaction: no outcome yet) of each (customer, sent_at)."""
    if window_days < 1:
        raise DataError(f"response window {window_days} days: expected at least 1")
    converted, revenue = window_outcomes(customer_ids, sent_at, transactions, window_days)
    last = transactions["timestamp"].max() if len(transactions) else pd.Timestamp.min
    open_ = (pd.to_datetime(sent_at) + pd.Timedelta(days=window_days) > last).to_numpy()
    return converted, revenue, open_


def expected_treatment_share(share: pd.Series, exploration: pd.Series) -> float | None:
    """Treatment's expected share of treatment + control over these decisions (each drawn with
    its logged h and e): sum (1 - h)(1 - e) / sum ((1 - h)(1 - e) + h). None without any."""
    treated = (1 - share) * (1 - exploration)
    total = float((treated + share).sum())
    return float(treated.sum()) / total if total > 0 else None


def decision_outcomes(
    decisions: pd.DataFrame, transactions: pd.DataFrame, window_days: int
) -> Outcomes:
    """Each counted decision's campaign row with its outcome over (as_of, as_of + window_days]:
    converted = any purchase, revenue = net spend (refunds count). Treatment of action X: sent
    X by the policy (not held out, not explored); control of X: held out while the policy chose
    X (the module docstring says why they compare fairly)."""
    kept = kept_decisions(decisions, window_days)
    frame = kept.frame
    holdout = frame["holdout"].astype(bool)
    explored = frame["explored"].astype(bool)
    policy = frame["policy_action"].astype(str)
    wanted = policy.ne(NO_ACTION)
    treatment = wanted & ~holdout & ~explored & frame["action"].astype(str).eq(policy)
    control = wanted & holdout
    chosen = treatment | control
    share = expected_treatment_share(
        frame.loc[wanted, "holdout_share"].astype(float),
        frame.loc[wanted, "exploration"].astype(float),
    )
    frame = frame.loc[chosen]
    rows = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].astype(str).to_numpy(),
            "sent_at": frame["as_of"].to_numpy(),
            "action": frame["policy_action"].astype(str).to_numpy(),
            "group": np.where(holdout[chosen], "control", "treatment"),
            "policy_action": frame["policy_action"].astype(str).to_numpy(),
            "holdout": holdout[chosen].to_numpy(),
            "explored": explored[chosen].to_numpy(),
            "propensity": frame["propensity"].astype(float).to_numpy(),
            "request_id": frame["request_id"].to_numpy(),
        }
    )
    converted, revenue, open_ = joined_outcomes(
        rows["customer_id"], rows["sent_at"], transactions, window_days
    )
    rows["converted"] = converted.astype("int64")
    rows["revenue"] = revenue
    rows = rows[list(COLUMNS)]
    pending = rows.loc[open_].assign(converted=pd.NA, revenue=np.nan)
    known = set(transactions["customer_id"].astype(str))
    unknown = ~frame["customer_id"].astype(str).isin(known).to_numpy() & ~open_
    cold = frame["cold_start"].astype(bool).to_numpy()
    decided = frame["decided_at"]
    replayed = (decided.notna() & (decided - frame["as_of"] > REPLAY)).to_numpy()
    periods = {_period_kind(p) for p in kept.frame["period"].dropna().astype(str)}
    return Outcomes(
        rows.loc[~open_].reset_index(drop=True),
        pending.reset_index(drop=True),
        len(decisions),
        kept.repeated,
        kept.overlapping,
        int((~wanted).sum()),
        int((wanted & ~holdout & explored).sum()),
        kept.controls_contacted,
        int((unknown & ~cold).sum()),
        int((unknown & cold).sum()),
        int(replayed.sum()),
        share,
        tuple(sorted(periods)),
    )


def _period_kind(period: str) -> str:
    """'week' for an ISO week ('2025-W27'), else 'month' ('2025-06')."""
    return "week" if "-W" in period else "month"


def window_outcomes(
    customer_ids: pd.Series, sent_at: pd.Series, transactions: pd.DataFrame, window_days: int
) -> tuple[np.ndarray, np.ndarray]:
    """Any purchase and net spend of each (customer, sent_at) over (sent_at, sent_at + window]."""
    keys = pd.DataFrame(
        {"customer_id": customer_ids.astype(str).to_numpy(), "sent_at": sent_at.to_numpy()}
    ).reset_index(names="row")
    tx = transactions[["customer_id", "timestamp", "amount"]].assign(
        customer_id=transactions["customer_id"].astype(str)
    )
    joined = keys.merge(tx, on="customer_id", how="inner")
    end = joined["sent_at"] + pd.Timedelta(days=window_days)
    inside = joined.loc[(joined["timestamp"] > joined["sent_at"]) & (joined["timestamp"] <= end)]
    n = len(keys)
    revenue = np.bincount(inside["row"], weights=inside["amount"], minlength=n)
    buys = np.bincount(inside["row"], weights=(inside["amount"] > 0), minlength=n)
    return buys > 0, np.round(revenue, 2)


def summary(outcomes: Outcomes, target: Path, pending: Path | None, window_days: int) -> str:
    """What `crm-ltv outcomes` prints: every decision accounted for, and what to expect."""
    table = outcomes.campaigns
    groups = table["group"].value_counts()
    lines = [
        f"{outcomes.decisions:,} decisions -> {len(table):,} campaign rows with an outcome "
        f"({groups.get('treatment', 0):,} treatment = sent by the policy, "
        f"{groups.get('control', 0):,} control = held out) -> {target}",
        f"left out: {outcomes.repeated:,} repeated (same customer and as_of), "
        f"{outcomes.overlapping:,} inside the {window_days}-day window of the customer's "
        f"previous counted decision, {outcomes.not_contacted:,} where the policy chose "
        f"no_action, {outcomes.explored:,} explored (a random draw: no control group; "
        "`crm-ltv policy-eval --decisions` uses them)",
    ]
    if len(outcomes.pending):
        lines.append(
            f"{len(outcomes.pending):,} rows whose response window is not over in the "
            f"transactions: no outcome yet, not in the table"
            + (f" -> {pending}" if pending else "")
        )
    if outcomes.no_transactions or outcomes.cold_starts_without_transactions:
        lines.append(
            f"customers with no transaction in the file: {outcomes.no_transactions:,} rows, and "
            f"{outcomes.cold_starts_without_transactions:,} of cold starts; counted as not "
            "converted, revenue 0 (for scored customers: is the file the shop's full history?)"
        )
    if outcomes.replayed:
        lines.append(
            f"{outcomes.replayed:,} rows decided more than a day after their as_of (a replay): "
            "their window starts at as_of, as if sent then"
        )
    if outcomes.controls_contacted:
        lines.append(
            f"{outcomes.controls_contacted:,} control rows whose customer was sent an action by "
            f"a later decision inside their {window_days}-day window: their outcome is not "
            "fully uncontacted"
            + (" (holdout.period week is shorter than the window: use month)"
               if "week" in outcomes.periods and window_days > 7 else "")
        )  # fmt: skip
    elif "week" in outcomes.periods and window_days > 7:
        lines.append(
            f"holdout.period week is shorter than the {window_days}-day window: a held-out "
            "customer may be contacted by a later week's decision inside it (use month)"
        )
    if len(table):
        rates = table.groupby("group")["converted"].mean()
        lines.append(
            "conversion: " + ", ".join(f"{group} {rate:.1%}" for group, rate in rates.items())
        )
    if outcomes.expected_treatment_share is not None:
        lines.append(
            f"expected treatment share {outcomes.expected_treatment_share:.4f} of treatment + "
            "control ((1 - h)(1 - e) / ((1 - h)(1 - e) + h) with the logged holdout share h "
            "and exploration e): give it to `crm-ltv ab --expected-treatment-share`"
        )
    return "\n".join(lines)
