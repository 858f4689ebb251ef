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

import glob
import gzip
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crm_ltv.features.actions import DECISIONS, NO_ACTION, misspelt_action
from crm_ltv.features.contract import DataError
from crm_ltv.features.loading import is_pattern
from crm_ltv.features.wording import plural

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
    "rfm_segment",
    "lifecycle_stage",
    "expected_treatment_share",
    "response_window_days",
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
    before_file: int  # rows without outcome: the window starts before the first transaction
    first_transaction: pd.Timestamp | None  # of the file (None: no transaction)
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
    drawn: int  # counted decisions the policy chose an action for: each drawn for the holdout
    expected_controls: float  # the sum of their logged holdout shares


def read_decisions(path: Path, progress: Callable[[str], None] = lambda _: None) -> pd.DataFrame:
    """The decision log as a frame, one row per line; a bad line fails naming it and its field.
    A line cut short (an object without its end: the service stopped mid-write, or writes it
    now, as the log is read while it runs) is left out, counted in a warning: the service
    writes whole lines, so it is not a bad decision. The service ends such a line before it
    writes again (serving.decisions.DecisionLog), so the next lines stay whole."""
    if not path.exists():
        raise DataError(
            f"{path}: no decision log (the service writes it: serving.yaml decision_log)"
        )
    if not path.is_file():
        raise DataError(f"{path}: not a file (a decision log is one JSON line per decision)")
    try:
        rows, cut, unscored = _read_lines(path)
    except (gzip.BadGzipFile, EOFError) as exc:  # a rotated log compressed, or cut short
        raise DataError(f"{path}: not a whole gzip file ({exc})") from None
    if unscored:
        progress(
            f"warning: {path}: {unscored:,} score(s) NaN or infinite (a service before "
            "2026-12-05 wrote them so): read as unknown, as a cold start's"
        )
    if cut:
        shown = ", ".join(map(str, cut[:5])) + (", ..." if len(cut) > 5 else "")
        progress(
            f"warning: {path}: {len(cut):,} line(s) cut short (line {shown}: a decision without "
            "its end, written as the service stopped or being written now): left out"
        )
    if not rows:
        raise DataError(f"{path}: no decisions")
    frame = pd.DataFrame(rows)
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    frame["decided_at"] = pd.to_datetime(frame["decided_at"])
    return frame


def _read_lines(path: Path) -> tuple[list[dict], list[int], int]:
    """The log's decisions, the numbers of its lines cut short, and its unscored values."""
    rows, cut, unscored = [], [], 0
    # bytes: a cut inside a character fails its line only; .gz: logrotate's `compress`
    with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            text = raw.removeprefix(b"\xef\xbb\xbf").rstrip() if number == 1 else raw.rstrip()
            if not text:
                continue
            try:
                row = json.loads(text.decode("utf-8"))
            except UnicodeDecodeError as exc:
                if exc.end == len(text) and _cut_short(text[: exc.start].decode("utf-8"), True):
                    cut.append(number)  # in the middle of a character of its last string
                    continue
                raise DataError(
                    f"{path}: line {number}: not UTF-8 ({exc.reason} at byte {exc.start + 1})"
                ) from None
            except json.JSONDecodeError as exc:
                if _cut_short(exc.doc):
                    cut.append(number)
                    continue
                raise DataError(
                    f"{path}: line {number}: not JSON ({exc.msg} at character {exc.pos + 1})"
                ) from None
            unscored += _unscored(row)
            rows.append(_checked_line(path, number, row))
    return rows, cut, unscored


def decision_logs(given: Sequence[Path]) -> list[Path]:
    """The files of `--decisions` given once or more, each a file or a glob pattern (the log
    and its rotated files: `logs/decisions.jsonl*`), each file once."""
    found: dict[Path, None] = {}
    for path in given:
        if is_pattern(path):
            matched = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
            if not matched:
                raise DataError(f"{path}: no decision log matches")
        else:
            matched = [path]
        found.update(dict.fromkeys(m.resolve() for m in matched))
    return list(found)


def rotated_beside(log: Path) -> list[Path]:
    """Files beside the log named as a rotation names them (`decisions.jsonl.1`,
    `decisions.jsonl-20261207.gz`): not read unless given, and said (tester T: outcomes left
    every rotated decision out without a word)."""
    if not log.parent.is_dir():
        return []
    return sorted(
        p for p in log.parent.iterdir()
        if p.is_file() and p.name[len(log.name) : len(log.name) + 1] in (".", "-")
        and p.name.startswith(log.name)
    )  # fmt: skip


def read_decision_logs(
    paths: Sequence[Path], progress: Callable[[str], None] = lambda _: None
) -> pd.DataFrame:
    """Several logs (a log and its rotated files) as one: each read as `read_decisions` reads
    it, in the order of their first decision whatever their names (logrotate's `.1` is newer
    than its `.2`); `order` counts the lines on across them (the log order that repeats are
    told by), while each row keeps its own file (`log`) and `line` there, which errors name.
    An empty file among them is the current log just after a rotation: said, not an error."""
    if len(paths) == 1:
        return read_decisions(paths[0], progress)
    empty = [path for path in paths if path.stat().st_size == 0]
    for path in empty:
        progress(f"warning: {path}: empty (a log just rotated?): no decisions there")
    read = [path for path in paths if path not in empty]
    if not read:
        raise DataError(f"{', '.join(map(str, paths))}: no decisions")
    frames = [read_decisions(path, progress).assign(log=str(path)) for path in read]
    frames.sort(key=lambda f: f["decided_at"].fillna(f["as_of"]).min())  # older logs: none
    offset = 0
    for frame in frames:
        frame["order"] = frame["line"] + offset
        offset = int(frame["order"].max())
    return pd.concat(frames, ignore_index=True)


def _log_order(frame: pd.DataFrame) -> pd.DataFrame:
    """The decisions in the order they were logged: across several logs by `order`."""
    key = "order" if "order" in frame else "line" if "line" in frame else None
    return frame if key is None else frame.sort_values(key, kind="stable")


def logs_named(paths: Sequence[Path]) -> str:
    """The logs read, for a message: one path, or the count and the first few."""
    if len(paths) == 1:
        return str(paths[0])
    shown = ", ".join(str(p) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
    return f"{len(paths)} decision logs ({shown})"


LITERAL_START = re.compile(r"t(r(u)?)?|f(a(l(s)?)?)?|n(u(l)?)?|-")  # of true, false, null, a number
NUMBER_END = re.compile(r"\.|[eE][-+]?")  # a number cut before its fraction or exponent digits
ESCAPE_START = re.compile(r"u[0-9a-fA-F]{0,4}")  # a \uXXXX escape cut short


def _cut_short(text: str, in_string: bool = False) -> bool:
    """Whether `text`, not JSON, is the start of a JSON object (`in_string`: that ends inside a
    string): the parser found nothing wrong before the text ran out, mid-token (a string, a
    number, a literal, an escape) or between two (after the '}' of a nested object: the
    service's lines end in model_versions' '}}'). A line the parser faults anywhere else is a
    bad line, not a cut one."""
    if not text.lstrip().startswith("{"):
        return False
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        rest = text[exc.pos :].rstrip()
        if exc.msg.startswith("Unterminated string"):  # a string running to the end
            return True
        if in_string:
            return False
        if not rest:
            return True
        if exc.msg == "Expecting value":
            return LITERAL_START.fullmatch(rest) is not None
        if exc.msg.startswith("Invalid \\uXXXX escape"):
            return ESCAPE_START.fullmatch(rest) is not None
        return NUMBER_END.fullmatch(rest) is not None and text[exc.pos - 1].isdigit()
    return False  # whole JSON (extra data after an object fails as JSON, not as cut)


# What the two commands read of a line beyond REQUIRED, as the service writes it. A null, or no
# key (logs of older services), takes its default of DEFAULTS where it has one, else stays
# unknown: cold starts have null scores, logs before 2026-12-05 no frequency, recency_days.
TEXT = ("action", "policy_action", "request_id", "period", "rfm_segment", "lifecycle_stage",
        "favourite_category")  # fmt: skip
FLAGS = ("holdout", "explored", "cold_start")
TIMES = ("as_of", "decided_at")
# number -> (low, high, low excluded): the interval it must be in; None: any finite number
NUMBERS: dict[str, tuple[float, float, bool] | None] = {
    "propensity": (0.0, 1.0, True),
    "holdout_share": (0.0, 1.0, False),
    "exploration": (0.0, 1.0, False),
    "churn_probability": (0.0, 1.0, False),
    "predicted_value": None,
}
COUNTS = ("frequency", "recency_days")  # whole numbers >= 0


def _checked_line(path: Path, number: int, row: Any) -> dict:
    """A line's fields in the types the service writes them, or an error naming the field:
    a value of another type is not read as something it may not mean ("false" as true, a
    number as a time since 1970, "09/01/2025" as September)."""
    where = f"{path}: line {number}"
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object")
    missing = [k for k in REQUIRED if row.get(k) in (None, "")]
    if missing:
        raise DataError(f"{where}: no {missing[0]!r}")
    if not isinstance(row["customer_id"], str):
        raise DataError(f"{where}: customer_id: {row['customer_id']!r} is not text")
    if row.get("policy_action") is None:  # missing or null: the action sent was the policy's
        row["policy_action"] = row["action"]
    for key, default in DEFAULTS.items():
        if key not in NUMBERS and row.get(key) is None:
            row[key] = default
    for key in TEXT:
        if row.get(key) is not None and not isinstance(row[key], str):
            raise DataError(f"{where}: {key}: {row[key]!r} is not text")
    for key in ("action", "policy_action"):  # refused as the service refuses such a contact
        meant = misspelt_action(row[key], DECISIONS)  # 'No_Action' was a treatment row
        if meant is not None:  # else a campaign row of an action with no control group
            raise DataError(
                f"{where}: {key}: {row[key]!r} is not in the action catalogue; did you mean "
                f"{meant!r}?"
            )
    for key in FLAGS:
        if not isinstance(row[key], bool):
            raise DataError(f"{where}: {key}: {row[key]!r} is not true or false (a JSON boolean)")
    if (row["holdout"] or row["explored"]) and row.get("propensity") is None:
        # taken as 1, IPW and DR would weigh it as a sure send: estimates far too narrow
        raise DataError(
            f"{where}: {'held out' if row['holdout'] else 'explored'} but no propensity "
            "(the probability of its action, which the service logs with every decision)"
        )
    for key in TIMES:
        row[key] = None if row.get(key) is None else _time(where, key, row[key])
    for key, interval in NUMBERS.items():
        if row.get(key) is not None:
            row[key] = _number(where, key, row[key], interval)
        elif key in DEFAULTS:
            row[key] = DEFAULTS[key]
    for key in COUNTS:  # no key stays no key: policy-eval tells an older log by it
        if row.get(key) is not None:
            row[key] = _count(where, key, row[key])
    actions = row.get("eligible_actions")
    if actions is not None and not (
        isinstance(actions, list) and all(isinstance(a, str) for a in actions)
    ):
        raise DataError(f"{where}: eligible_actions: {actions!r} is not a list of action names")
    if row["holdout"] and row["action"] != NO_ACTION:
        raise DataError(f"{where}: held out but action {row['action']!r}, not {NO_ACTION!r}")
    if not row["holdout"] and not row["explored"] and row["action"] != row["policy_action"]:
        raise DataError(
            f"{where}: action {row['action']!r} is not the policy_action "
            f"{row['policy_action']!r}, yet neither held out nor explored"
        )
    row["line"] = number
    return row


def _unscored(row: object) -> int:
    """Sets a NaN or infinite score of a line to null, which older services wrote for a score
    they could not make; how many it set."""
    if not isinstance(row, dict):
        return 0
    bad = [
        key
        for key in ("churn_probability", "predicted_value")
        if isinstance(row.get(key), float) and not math.isfinite(row[key])
    ]
    for key in bad:
        row[key] = None
    return len(bad)


def _time(where: str, key: str, value: object) -> pd.Timestamp:
    """An ISO 8601 time as naive UTC (the transactions' convention, like schemas.naive_utc)."""
    try:
        if not isinstance(value, str):
            raise TypeError
        moment = pd.Timestamp(datetime.fromisoformat(value))
    except (TypeError, ValueError):  # OutOfBoundsDatetime too
        raise DataError(
            f"{where}: {key}: {value!r} is not an ISO 8601 time as the service writes it "
            "(2025-09-01T12:00:00+00:00, or 2025-09-01)"
        ) from None
    return moment.tz_convert("UTC").tz_localize(None) if moment.tzinfo else moment


def _number(
    where: str, key: str, value: object, interval: tuple[float, float, bool] | None
) -> float:
    """A finite JSON number (not a boolean, not text) within `interval`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{where}: {key}: {value!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise DataError(f"{where}: {key}: {value!r} is not a finite number")
    if interval is not None:
        low, high, open_ = interval
        if not (low < number if open_ else low <= number) or number > high:
            bounds = f"{'(' if open_ else '['}{low:g}, {high:g}]"
            raise DataError(f"{where}: {key}: {value!r} is not in {bounds}")
    return number


def _count(where: str, key: str, value: object) -> int:
    """A whole JSON number >= 0 (a purchase-day count, days since the last purchase)."""
    number = _number(where, key, value, None)
    if number < 0 or not number.is_integer():
        raise DataError(f"{where}: {key}: {value!r} is not a whole number >= 0")
    return int(number)


def first_decisions(decisions: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The first decision of each customer and as_of (a customer scored twice at the same
    moment got one send), in log order, and how many repeats were left out."""
    frame = _log_order(decisions)
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
    kept = _log_order(kept)
    return Kept(kept, repeated, int((~keep).sum()), len(contacted))


def joined_outcomes(
    customer_ids: pd.Series, sent_at: pd.Series, transactions: pd.DataFrame, window_days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Converted and revenue of each (customer, sent_at), and two reasons it has no outcome:
    the window is still open (it ends after the last transaction), or it starts before the
    file (sent_at before the first transaction: the purchases of its start are not in the
    file, a rolling export's, so it would read as not converted). A window is covered when
    first transaction <= sent_at and sent_at + window <= last transaction; one both open and
    before the file is counted before the file (a later file does not complete it)."""
    if window_days < 1:
        raise DataError(f"response window {window_days} days: expected at least 1")
    converted, revenue = window_outcomes(customer_ids, sent_at, transactions, window_days)
    return converted, revenue, *uncovered_windows(sent_at, transactions, window_days)


def uncovered_windows(
    sent_at: pd.Series, transactions: pd.DataFrame, window_days: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per send: its window ends after the last transaction (open), or it starts before the
    first (before; one both is before): joined_outcomes' reasons, which `ab` and `uplift`
    warn of in a campaigns file of one's own."""
    times = transactions["timestamp"]
    first = times.min() if len(transactions) else pd.Timestamp.max
    last = times.max() if len(transactions) else pd.Timestamp.min
    start = pd.to_datetime(sent_at)
    before = (start < first).to_numpy()
    open_ = (start + pd.Timedelta(days=window_days) > last).to_numpy() & ~before
    return open_, before


def window_warning(
    campaigns: pd.DataFrame, transactions: pd.DataFrame, window_days: int
) -> str | None:
    """A `warning:` counting the campaign rows whose response window the transactions do not
    hold whole (tester B: a send in 2027 read as a confident null, one in 2020 as customers
    without history), or None when every window is covered."""
    open_, before = uncovered_windows(campaigns["sent_at"], transactions, window_days)
    if not open_.any() and not before.any():
        return None
    times = transactions["timestamp"]
    parts = []
    if open_.any():
        parts.append(
            f"{int(open_.sum()):,} whose {window_days}-day window ends after the last "
            f"transaction ({times.max():%Y-%m-%d %H:%M}): their purchases are not all there yet"
        )
    if before.any():
        parts.append(
            f"{int(before.sum()):,} sent before the first transaction "
            f"({times.min():%Y-%m-%d %H:%M}): their customers' history is not there"
        )
    return (
        f"warning: of {len(campaigns):,} campaign rows, {'; '.join(parts)} (`crm-ltv outcomes` "
        "leaves such decisions out)"
    )


def require_window(campaigns: pd.DataFrame, days: int, where: str) -> None:
    """Refuse campaigns whose outcomes were counted over another window than `days`, the one
    the models' effects claim (the bundle's response_window_days, which the service and the
    champion comparison read): `crm-ltv outcomes --window-days 60` wrote 60-day outcomes that
    were learnt as 30-day effects without a word. The file says its window in the
    response_window_days column `crm-ltv outcomes` writes; a file without it is taken as is."""
    if "response_window_days" not in campaigns:
        return
    windows = sorted(set(campaigns["response_window_days"].dropna().astype(float)))
    if not windows or windows == [days]:
        return
    counted = " and ".join(f"{w:g}" for w in windows)
    # a file of several windows (or of a fraction of a day, which no setting takes) fits no
    # setting: only counting it again mends it
    settings = (
        f", or set uplift.response_window_days and outcomes.response_window_days to "
        f"{windows[0]:g} in configs/experiments.yaml"
        if len(windows) == 1 and windows[0].is_integer()
        else ""
    )
    raise DataError(
        f"{where}: its outcomes were counted over {counted} days after each send (its "
        f"response_window_days column, as `crm-ltv outcomes --window-days` writes it), and "
        f"uplift.response_window_days is {days}: the models would claim {days}-day effects "
        f"learnt from other windows. Run `crm-ltv outcomes --window-days {days}`{settings}"
    )


def _treated_chance(share: pd.Series, exploration: pd.Series) -> pd.Series:
    """A decision's chance of being sent as the treatment, with its logged holdout share h and
    exploration e: (1 - h)(1 - e); a control's is h."""
    return (1 - share) * (1 - exploration)


def expected_treatment_share(share: pd.Series, exploration: pd.Series) -> float | None:
    """Treatment's expected share of treatment + control over these decisions (each drawn with
    its logged h and e): sum (1 - h)(1 - e) / sum ((1 - h)(1 - e) + h). None without any."""
    treated = _treated_chance(share, exploration)
    total = float((treated + share).sum())
    return float(treated.sum()) / total if total > 0 else None


def row_treatment_shares(share: pd.Series, exploration: pd.Series) -> np.ndarray:
    """Each treatment or control row's chance of being the treatment, from its own logged h
    and e: (1 - h)(1 - e) / ((1 - h)(1 - e) + h), written to the campaigns file so that
    `crm-ltv ab` checks the split the rows were drawn with (the settings may change in a log).
    A treatment or control row has (1 - h)(1 - e) + h > 0."""
    treated = _treated_chance(share, exploration).to_numpy(float)
    return np.round(treated / (treated + share.to_numpy(float)), 6)


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
    shares = frame.loc[wanted, "holdout_share"].astype(float)
    share = expected_treatment_share(shares, frame.loc[wanted, "exploration"].astype(float))
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
            # as the service answered (its champions' RFM cut points): `ab --by` reads them
            **{name: _logged(frame, name) for name in ("rfm_segment", "lifecycle_stage")},
            "expected_treatment_share": row_treatment_shares(
                frame["holdout_share"].astype(float), frame["exploration"].astype(float)
            ),
            "response_window_days": window_days,  # `uplift` checks it is its own window
        }
    )
    converted, revenue, open_, before = joined_outcomes(
        rows["customer_id"], rows["sent_at"], transactions, window_days
    )
    rows["converted"] = converted.astype("int64")
    rows["revenue"] = revenue
    rows = rows[list(COLUMNS)]
    pending = rows.loc[open_].assign(converted=pd.NA, revenue=np.nan)
    counted = ~open_ & ~before
    no_transactions = without_transactions(frame.loc[counted], transactions)
    decided = frame["decided_at"]
    replayed = (decided.notna() & (decided - frame["as_of"] > REPLAY)).to_numpy()
    periods = {_period_kind(p) for p in kept.frame["period"].dropna().astype(str)}
    return Outcomes(
        rows.loc[counted].reset_index(drop=True),
        pending.reset_index(drop=True),
        int(before.sum()),
        transactions["timestamp"].min() if len(transactions) else None,
        len(decisions),
        kept.repeated,
        kept.overlapping,
        int((~wanted).sum()),
        int((wanted & ~holdout & explored).sum()),
        kept.controls_contacted,
        *no_transactions,
        int(replayed.sum()),
        share,
        tuple(sorted(periods)),
        len(shares),
        float(shares.sum()),
    )


def _logged(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A column of the log, all unknown where its lines do not carry it (older services)."""
    return frame[name].to_numpy() if name in frame else np.full(len(frame), None, dtype=object)


def require_campaign_rows(
    outcomes: Outcomes, target: Path, pending: Path, window_days: int, last: pd.Timestamp
) -> None:
    """Refuse a campaigns file without rows while contacts wait for their outcome or have
    windows that start before the transactions: written, it replaced the last one with a
    header that `crm-ltv ab` and `uplift` refuse ("no data rows"). Nothing is written then,
    neither `target` nor `pending`."""
    if len(outcomes.campaigns) or not (len(outcomes.pending) or outcomes.before_file):
        return
    kept = f"{target} left as it was" if target.exists() else f"no {target} made"
    stale = f"; the {pending.name} there is an earlier run's" if pending.exists() else ""
    nothing = f"nothing written ({kept}, no {pending.name} written either{stale})"
    if not len(outcomes.pending):
        raise DataError(
            f"no decision's {window_days}-day response window is wholly in the transactions: "
            f"{_before_file(outcomes)}: {nothing}"
        )
    first = outcomes.pending["sent_at"].min() + pd.Timedelta(days=window_days)
    before = f"; {_before_file(outcomes)}" if outcomes.before_file else ""
    raise DataError(
        f"no decision's {window_days}-day response window is over in the transactions (the "
        f"last transaction is at {last:%Y-%m-%d %H:%M}, the first window ends at "
        f"{first:%Y-%m-%d %H:%M}): {len(outcomes.pending):,} treatment and control rows wait "
        f"for their outcome{before}: {nothing}"
    )


def _before_file(outcomes: Outcomes) -> str:
    """The rows whose window starts before the transactions, said alike in both places."""
    first = outcomes.first_transaction
    at = f" at {first:%Y-%m-%d %H:%M}" if first is not None else ""
    return (
        f"{outcomes.before_file:,} treatment and control rows whose window starts before the "
        f"first transaction{at} (the file does not hold their whole window)"
    )


def without_transactions(decisions: pd.DataFrame, transactions: pd.DataFrame) -> tuple[int, int]:
    """Decisions whose customer has no line in the transactions: (scored, cold starts). Their
    outcome reads not converted, revenue 0."""
    known = pd.Index(transactions["customer_id"].astype(str).unique())
    unknown = ~decisions["customer_id"].astype(str).isin(known).to_numpy()
    cold = decisions["cold_start"].astype(bool).to_numpy()
    return int((unknown & ~cold).sum()), int((unknown & cold).sum())


def without_transactions_line(scored: int, cold: int, what: str) -> str | None:
    """`outcomes`' and `policy-eval --decisions`' line on them ("8 rows, and 7 of cold starts"
    read as 7 of the 8)."""
    if not (scored or cold):
        return None
    return (
        f"{what} of customers with no transaction in the file: {scored:,} scored, "
        f"{plural(cold, 'cold start')}; counted as not converted, revenue 0"
        + (" (the scored ones had bought before: is the file the shop's full history?)"
           if scored else "")
    )  # fmt: skip


def require_known_customers(
    decisions: pd.DataFrame, transactions: pd.DataFrame, log: Path | str, source: Path
) -> None:
    """Refuse a log none of whose customers is in the transactions: ids written otherwise in
    one file ('12346' in the log, '12346,0' in a CSV read without `decimal: ','`) matched
    nothing, and every decision counted as not converted. A few ids of each side show how.
    Cold starts (no purchase yet when scored) are not asked for: a log of new customers only
    is a log, not a mismatch."""
    scored = decisions.loc[~decisions["cold_start"].astype(bool), "customer_id"]
    ids = pd.Index(scored.astype(str).unique())
    known = pd.Index(transactions["customer_id"].astype(str).unique())
    if ids.empty or ids.isin(known).any():
        return
    raise DataError(
        f"none of the {len(ids):,} scored customers of the decision log {log} is in the "
        f"transactions {source} (e.g. {_examples(ids)} in the log, {_examples(known)} in the "
        "transactions): do both write ids alike (a decimal mark, leading zeros, a prefix; the "
        "table's decimal in configs/data.yaml)? (or is this another shop's file, or a log of "
        "test calls only, such as the README's example for 'c1'? then set the log aside)"
    )


def _examples(ids: pd.Index, count: int = 3) -> str:
    """A few ids, quoted, for an error message."""
    shown = ", ".join(repr(i) for i in ids[:count])
    return shown + (", ..." if len(ids) > count else "") if len(ids) else "no ids"


def no_contacts(outcomes: Outcomes) -> str | None:
    """Why a log has no treatment or control row at all (every decision no_action, explored,
    repeated or overlapping), or None: a log `policy-eval --decisions` still reads."""
    if len(outcomes.campaigns) or len(outcomes.pending) or outcomes.before_file:
        return None
    return (
        f"none of the {outcomes.decisions:,} decisions is a treatment or control "
        f"({outcomes.not_contacted:,} where the policy chose no_action, "
        f"{outcomes.explored:,} explored, {outcomes.repeated:,} repeated, "
        f"{outcomes.overlapping:,} inside an earlier decision's window)"
    )


def no_controls(outcomes: Outcomes) -> str:
    """Why a log gave no control row: no holdout logged (holdout_share 0 or absent), or one
    too few decisions to have drawn any yet; asking for holdout.share was wrong there."""
    if outcomes.expected_controls <= 0:
        return (
            "no control contacts in this log (no holdout): `crm-ltv ab` and `crm-ltv uplift` "
            "compare with controls; set holdout.share in configs/serving.yaml"
        )
    share = outcomes.expected_controls / outcomes.drawn
    return (
        f"no control came up yet among the {outcomes.drawn:,} decision"
        f"{'' if outcomes.drawn == 1 else 's'} drawn at holdout share {share:.3g} (about "
        f"{outcomes.expected_controls:.1f} expected): `crm-ltv ab` and "
        "`crm-ltv uplift` compare with controls; run outcomes again once the service has "
        "logged more decisions"
    )


def _period_kind(period: str) -> str:
    """'week' for an ISO week ('2025-W27'), else 'month' ('2025-06')."""
    return "week" if "-W" in period else "month"


def window_outcomes(
    customer_ids: pd.Series, sent_at: pd.Series, transactions: pd.DataFrame, window_days: int
) -> tuple[np.ndarray, np.ndarray]:
    """Any purchase and net spend of each (customer, sent_at) over (sent_at, sent_at + window],
    in whole seconds as the feature builders read time: a purchase within the second of
    `sent_at` is in the features at the send (segments.features_at_send), so never a response."""
    keys = pd.DataFrame(
        {"customer_id": customer_ids.astype(str).to_numpy(), "sent_at": sent_at.to_numpy()}
    ).reset_index(names="row")
    tx = transactions[["customer_id", "timestamp", "amount"]].assign(
        customer_id=transactions["customer_id"].astype(str)
    )
    joined = keys.merge(tx, on="customer_id", how="inner")
    at = joined["timestamp"].dt.floor("s")
    start = joined["sent_at"].dt.floor("s")
    inside = joined.loc[(at > start) & (at <= start + pd.Timedelta(days=window_days))]
    n = len(keys)
    revenue = np.bincount(inside["row"], weights=inside["amount"], minlength=n)
    buys = np.bincount(inside["row"], weights=(inside["amount"] > 0), minlength=n)
    return buys > 0, np.round(revenue, 2)


def summary(outcomes: Outcomes, target: Path, pending: Path | None, window_days: int) -> str:
    """What `crm-ltv outcomes` prints: every decision accounted for, and what to expect."""
    table = outcomes.campaigns
    groups = table["group"].value_counts()
    lines = [
        f"{plural(outcomes.decisions, 'decision')} -> {plural(len(table), 'campaign row')} "
        "with an outcome "
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
            f"{plural(len(outcomes.pending), 'row')} whose response window is not over in the "
            f"transactions: no outcome yet, not in the table"
            + (f" -> {pending}" if pending else "")
        )
    if outcomes.before_file:
        lines.append(
            f"{_before_file(outcomes)}: no outcome, not in the table (not counted as not "
            "converted; a file from before their as_of gives them one)"
        )
    unmatched = without_transactions_line(
        outcomes.no_transactions, outcomes.cold_starts_without_transactions, "rows"
    )
    if unmatched:
        lines.append(unmatched)
    if outcomes.replayed:
        lines.append(
            f"{plural(outcomes.replayed, 'row')} decided more than a day after their as_of (a "
            "replay): their window starts at as_of, as if sent then"
        )
    if outcomes.controls_contacted:
        lines.append(
            f"{plural(outcomes.controls_contacted, 'control row')} whose customer was sent an "
            f"action by a later decision inside their {window_days}-day window: their outcome "
            "is not fully uncontacted"
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
            "and exploration e): each row's own is in the file, which `crm-ltv ab` reads"
        )
    return "\n".join(lines)
