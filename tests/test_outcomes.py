"""`crm-ltv outcomes`: the decision log joined with later transactions (tiny inline logs)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crm_ltv.experiments.outcomes import (
    COLUMNS,
    decision_logs,
    decision_outcomes,
    kept_decisions,
    read_decision_logs,
    read_decisions,
    rotated_beside,
    summary,
    window_outcomes,
)
from crm_ltv.features.config import SourceConfig, ValidationConfig
from crm_ltv.features.contract import CAMPAIGNS, DataError
from crm_ltv.features.loading import load_campaigns
from crm_ltv.serving.config import HoldoutConfig
from crm_ltv.serving.holdout import assign
from tests.conftest import frame, new_home, run


def _held(cid: str, as_of: str, **kw) -> dict:
    """A customer the holdout kept from the win_back the policy chose: a control."""
    return _line(cid, as_of, "no_action", policy_action="win_back", holdout=True, propensity=0.1,
                 **kw)  # fmt: skip


def _line(cid: str, as_of: str, action: str, **kw) -> dict:
    return {"request_id": "r1", "customer_id": cid, "as_of": as_of, "action": action,
            "policy_action": kw.pop("policy_action", action), "holdout": False,
            "explored": False, "propensity": 0.85, "holdout_share": 0.1, "exploration": 0.05,
            "period": "2025-06", **kw}  # fmt: skip


def _write(path: Path, lines: list[dict | str]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


TX = frame(
    [
        ("a", "2025-06-10", 30.0),  # before the decision: not an outcome
        ("a", "2025-06-20", 50.0),
        ("a", "2025-06-25", -10.0),  # a refund counts in revenue, not as a purchase
        ("b", "2025-07-30", 20.0),  # after b's 30-day window
        ("c", "2025-06-05", 15.0),
        ("e", "2025-06-15T00:00:00", 7.0),  # exactly at as_of: before the send, left out
        ("e", "2025-07-15T00:00:00", 9.0),  # exactly at the window's end: inside
        ("d", "2025-08-30", 5.0),  # the last transaction: later windows are not over
    ]
)


def test_treatment_control_and_every_left_out_decision_counted(tmp_path):
    log = _write(
        tmp_path / "d.jsonl",
        [
            _line("a", "2025-06-15", "win_back"),
            _line("a", "2025-06-15", "win_back"),  # repeated: the first decision counts
            _line("a", "2025-06-25", "win_back"),  # inside a's window: overlapping
            _held("b", "2025-06-15"),
            # sent inside held-out b's window: overlapping, and b's control was contacted
            _line("b", "2025-06-29", "recommendation"),
            _line("c", "2025-06-01", "no_action"),  # the policy chose nothing
            _line(
                "c",
                "2025-07-02",
                "thank_you",
                policy_action="win_back",
                explored=True,
                propensity=0.01,
            ),
            # explored, and the draw gave the policy's own action: still no treatment
            _line("f", "2025-07-02", "win_back", explored=True, propensity=0.87),
            _line("d", "2025-08-20", "recommendation"),  # window ends after the data
            # an as_of with a zone: 2025-06-15 00:00 UTC; decided weeks later (a replay)
            _line(
                "e", "2025-06-15T02:00:00+02:00", "win_back", decided_at="2025-08-01T00:00:00+00:00"
            ),
            _line("g", "2025-06-15", "win_back"),  # no transaction at all in the file
            _line("h", "2025-06-15", "welcome_offer", cold_start=True),
        ],
    )
    out = decision_outcomes(read_decisions(log), TX, 30)
    assert out.decisions == 12 and out.repeated == 1 and out.overlapping == 2
    assert out.not_contacted == 1 and out.explored == 2 and out.controls_contacted == 1
    assert out.no_transactions == 1 and out.cold_starts_without_transactions == 1
    assert out.replayed == 1
    table = out.campaigns.set_index("customer_id")
    assert list(out.campaigns.columns) == list(COLUMNS)
    assert sorted(table.index) == ["a", "b", "e", "g", "h"]
    assert table.loc["a", "group"] == "treatment" and table.loc["a", "action"] == "win_back"
    assert table.loc["a", "converted"] == 1 and table.loc["a", "revenue"] == 40.0
    # the held-out customer is the control of the action the policy wanted for them
    assert table.loc["b", "group"] == "control" and table.loc["b", "action"] == "win_back"
    assert table.loc["b", "converted"] == 0 and table.loc["b", "revenue"] == 0.0
    assert table.loc["e", "sent_at"] == pd.Timestamp("2025-06-15")
    assert table.loc["e", "converted"] == 1 and table.loc["e", "revenue"] == 9.0
    assert list(out.pending["customer_id"]) == ["d"]
    assert out.pending["converted"].isna().all()
    # (1 - h)(1 - e) / ((1 - h)(1 - e) + h) with h = 0.1, e = 0.05
    assert out.expected_treatment_share == pytest.approx(0.855 / 0.955)
    # ... and each row's own, for `crm-ltv ab`'s sample-ratio check
    assert np.allclose(out.campaigns["expected_treatment_share"], 0.855 / 0.955, atol=1e-6)
    # ... and the window its outcomes were counted over, which `crm-ltv uplift` checks
    assert (out.campaigns["response_window_days"] == 30).all()
    assert (
        decision_outcomes(read_decisions(log), TX, 45).campaigns["response_window_days"] == 45
    ).all()
    text = summary(out, tmp_path / "c.csv", None, 30)
    for words in ("2 inside the 30-day window", "2 explored", "1 control row whose",
                  "1 row whose response window", "1 row decided more than a day",
                  "rows of customers with no transaction in the file: 1 scored, 1 cold start;",
                  "a replay", "0.8953"):  # fmt: skip
        assert words in text, words
    assert "use month" not in text
    weekly = decision_outcomes(read_decisions(log).assign(period="2025-W24"), TX, 30)
    assert "week is shorter than the window: use month" in summary(weekly, tmp_path, None, 30)


def test_treatment_share_is_the_same_whatever_the_number_of_candidates(tmp_path):
    """The service's own draws (serving.holdout.assign) for 20,000 customers, half with one
    eligible action and half with three: treatment's share of treatment + control is the
    expected one in both halves (a treatment that took in explored draws of the policy's own
    action would be larger where the candidates are fewer)."""
    config = HoldoutConfig(share=0.1, period="month", exploration=0.5, salt="share")
    lines = []
    for i in range(20_000):
        eligible = ("win_back",) if i % 2 else ("win_back", "recommendation", "thank_you")
        a = assign(f"c{i}", "2025-06", "win_back", eligible, config)
        lines.append(_line(f"c{i}", "2025-06-15", a.action, policy_action="win_back",
                           holdout=a.holdout, explored=a.explored, propensity=a.propensity,
                           holdout_share=a.share, exploration=a.exploration,
                           eligible=len(eligible)))  # fmt: skip
    decisions = read_decisions(_write(tmp_path / "d.jsonl", lines))
    expected = 0.9 * 0.5 / (0.9 * 0.5 + 0.1)
    over = frame([("z", "2025-01-01", 1.0), ("z", "2025-12-31", 1.0)])  # every window in it
    for few in (True, False):
        part = decisions[decisions["eligible"].eq(1) == few]
        out = decision_outcomes(part, over, 30)
        assert out.expected_treatment_share == pytest.approx(expected)
        share = out.campaigns["group"].eq("treatment").mean()
        n = len(out.campaigns)
        assert abs(share - expected) < 4 * (expected * (1 - expected) / n) ** 0.5, (few, share)


def test_a_refund_alone_in_the_window_is_no_conversion():
    """A refund counts in revenue, not as a purchase: a customer whose only line in the window
    is one did not convert."""
    tx = frame([("a", "2025-07-01", -20.0), ("b", "2025-07-01", 15.0)])
    sent_at = pd.Series(pd.to_datetime(["2025-06-30"] * 2))
    converted, revenue = window_outcomes(pd.Series(["a", "b"]), sent_at, tx, 30)
    assert converted.tolist() == [False, True] and revenue.tolist() == [-20.0, 15.0]


def test_a_window_that_ends_at_the_last_transaction_is_over(tmp_path):
    """TX ends at 2025-08-30 00:00: a decision 30 days before has its whole window in the data;
    one a second later does not, and waits."""
    log = _write(
        tmp_path / "d.jsonl",
        [
            _line("x", "2025-07-31T00:00:00", "win_back"),
            _line("y", "2025-07-31T00:00:01", "win_back"),
        ],
    )
    out = decision_outcomes(read_decisions(log), TX, 30)
    assert out.campaigns["customer_id"].tolist() == ["x"]
    assert out.pending["customer_id"].tolist() == ["y"]


def test_a_window_that_starts_before_the_transactions_is_set_apart(tmp_path):
    """TX starts at 2025-06-05 00:00 (a rolling export): a decision before has purchases of its
    window that the file does not hold, so it was scored not converted; it is set apart and
    counted. One exactly at the first transaction has its whole window (as_of, end] inside."""
    log = _write(
        tmp_path / "d.jsonl",
        [
            _line("c", "2025-05-01", "win_back"),  # window ends 05-31: c's 06-05 line is after
            _held("b", "2025-06-04T23:59:59"),
            _line("a", "2025-06-05T00:00:00", "win_back"),
        ],
    )
    out = decision_outcomes(read_decisions(log), TX, 30)
    assert out.campaigns["customer_id"].tolist() == ["a"]
    assert out.before_file == 2 and out.pending.empty and out.no_transactions == 0
    text = summary(out, tmp_path / "c.csv", None, 30)
    assert (
        "2 treatment and control rows whose window starts before the first transaction at "
        "2025-06-05 00:00 (the file does not hold their whole window): no outcome, not in the "
        "table (not counted as not converted; a file from before their as_of gives them one)"
    ) in text
    assert "conversion: treatment 100.0%" in text


def test_outcomes_writes_nothing_when_every_window_starts_before_the_transactions(tmp_path):
    """Decisions of 2009-06-01 against a file that starts 2009-12-01: written as 'converted
    0' before; now nothing is written and the command says why."""
    home = new_home(tmp_path)
    tx = tmp_path / "tx.csv"
    TX.to_csv(tx, index=False)
    log = _write(tmp_path / "d.jsonl", [_line("a", "2025-05-01", "win_back")])
    target = tmp_path / "c.csv"
    done = run(home, "outcomes", "--decisions", str(log), "--transactions", str(tx),
               "--out", str(target), "--window-days", "30")  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(
        "error: no decision's 30-day response window is wholly in the transactions: 1 "
        "treatment and control rows whose window starts before the first transaction at "
        "2025-06-05 00:00 (the file does not hold their whole window): nothing written (no "
        f"{target} made, no c_pending.csv written either)\n"
    )
    assert not target.exists()


def test_campaigns_carry_the_segments_the_service_answered(tmp_path):
    """`ab --by` reads them from the campaigns file (segments.segments_at_send); a log line of
    an older service without them leaves them unknown."""
    lines = [_line("a", "2025-06-15", "win_back", rfm_segment="Can't Lose Them",
                   lifecycle_stage="at-risk"), _held("b", "2025-06-15")]  # fmt: skip
    out = decision_outcomes(read_decisions(_write(tmp_path / "d.jsonl", lines)), TX, 30)
    rows = out.campaigns.set_index("customer_id")
    assert rows.loc["a", ["rfm_segment", "lifecycle_stage"]].tolist() == [
        "Can't Lose Them",
        "at-risk",
    ]
    assert rows.loc["b", ["rfm_segment", "lifecycle_stage"]].isna().all()


def test_outcomes_stops_when_no_decisions_customer_is_in_the_transactions(tmp_path):
    """Ids written otherwise in the two files ('12346' in the log, '12346,0' in a CSV read
    without its decimal mark) matched nothing: every contact counted as not converted, exit 0
    and a campaigns file written. Now both commands that read a log stop, showing ids of each."""
    home = new_home(tmp_path)
    tx = tmp_path / "tx.csv"
    frame([("12346,0", "2025-06-10", 5.0), ("12347,0", "2025-08-30", 5.0)]).to_csv(tx, index=False)
    held = _held("12347", "2025-06-15")
    log = _write(tmp_path / "d.jsonl", [_line("12346", "2025-06-15", "win_back"), held])
    target = tmp_path / "c.csv"
    said = (
        f"error: none of the 2 scored customers of the decision log {log} is in the "
        f"transactions {tx} (e.g. '12346', '12347' in the log, '12346,0', '12347,0' in the "
        "transactions): do both write ids alike (a decimal mark, leading zeros, a prefix; the "
        "table's decimal in configs/data.yaml)? (or is this another shop's file, or a log of "
        "test calls only, such as the README's example for 'c1'? then set the log aside)\n"
    )
    done = run(home, "outcomes", "--decisions", str(log), "--transactions", str(tx),
               "--out", str(target), "--window-days", "30")  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(said)
    assert not target.exists()
    done = run(home, "policy-eval", "--decisions", str(log), "--transactions", str(tx),
               "--window-days", "30")  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(said)
    # new customers only (cold starts: no purchase when scored) are a log, not a mismatch
    new = _write(tmp_path / "new.jsonl", [_line("n1", "2025-06-15", "welcome_offer",
                                                  cold_start=True)])  # fmt: skip
    done = run(home, "outcomes", "--decisions", str(new), "--transactions", str(tx),
               "--out", str(target), "--window-days", "30")  # fmt: skip
    assert "none of the" not in done.stderr, done.stderr


def test_a_control_is_contaminated_only_by_a_send_inside_its_window(tmp_path):
    """A held-out customer decided again inside their window: no_action again leaves the
    control clean, a send contaminates it."""
    held = _held("a", "2025-06-01")
    for later, contacted in (("no_action", 0), ("win_back", 1)):
        log = _write(tmp_path / "d.jsonl", [held, _line("a", "2025-06-10", later)])
        out = kept_decisions(read_decisions(log), 30)
        assert (out.overlapping, out.controls_contacted) == (1, contacted), later


def test_the_campaigns_loader_reads_what_outcomes_writes(tmp_path):
    log = _write(tmp_path / "d.jsonl", [_line("a", "2025-06-15", "win_back")])
    out = decision_outcomes(read_decisions(log), TX, 30)
    path = tmp_path / "campaigns.csv"
    out.campaigns.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    loaded = load_campaigns(path, SourceConfig(), ValidationConfig(), tmp_path / "rejects")
    assert len(loaded.frame) == 1
    assert loaded.frame.loc[0, "group"] == "treatment"
    assert loaded.frame.loc[0, "sent_at"] == pd.Timestamp("2025-06-15")
    # its own columns are not "not in the contract, ignored" (tester I); a stranger's is
    assert loaded.report.ignored_columns == ()
    out.campaigns.assign(note="x").to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    loaded = load_campaigns(path, SourceConfig(), ValidationConfig(), tmp_path / "rejects")
    assert loaded.report.ignored_columns == ("note",)
    assert set(COLUMNS) == {*CAMPAIGNS.names, *CAMPAIGNS.written_for_reference}


def test_a_shops_variant_of_an_action_name_is_its_own_action_not_a_typo(tmp_path):
    """Tester K: 'win_back_2' was refused as a misspelling of win_back, the whole log with it."""
    lines = [_line(c, "2025-06-15", name) for c, name in (("a", "win_back_2"), ("b", "thank_you2"))]
    assert read_decisions(_write(tmp_path / "d.jsonl", lines))["action"].tolist() == [
        "win_back_2",
        "thank_you2",
    ]


def test_a_null_policy_action_is_the_action_sent_as_a_missing_one(tmp_path):
    """Review: null failed in the misspelling check with a traceback (AttributeError)."""
    lines = [_line("a", "2025-06-15", "win_back", policy_action=None), _line("b", "2025-06-15",
             "no_action", policy_action=None, holdout=True, propensity=0.1)]  # fmt: skip
    read = read_decisions(_write(tmp_path / "d.jsonl", lines))
    assert read["policy_action"].tolist() == ["win_back", "no_action"]


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("{not json}", ["line 2", "not JSON"]),  # "{not json": a line cut short
        ('{"customer_id": "a", "as_of": "2025-06-15"}', ["line 2", "'action'"]),
        (json.dumps(_line("a", "2025-06-15", "win_back", propensity=0)), ["line 2", "propensity"]),
        (json.dumps(_line("a", "someday", "win_back")), ["line 2", "as_of"]),
        (json.dumps(_line("a", "2025-06-15", "win_back", holdout=True)), ["line 2", "held out"]),
        # was taken as a sure send (propensity 1): IPW and DR intervals far too narrow
        (
            json.dumps(
                _line(
                    "a",
                    "2025-06-15",
                    "none",
                    policy_action="win_back",
                    holdout=True,
                    propensity=None,
                )
            ),
            ["line 2", "held out but no propensity"],
        ),
        (
            json.dumps(
                _line(
                    "a",
                    "2025-06-15",
                    "thank_you",
                    policy_action="win_back",
                    explored=True,
                    propensity=None,
                )
            ),
            ["line 2", "explored but no propensity"],
        ),
        (
            json.dumps(_line("a", "2025-06-15", "thank_you", policy_action="win_back")),
            ["line 2", "policy_action", "neither held out nor explored"],
        ),
        # tester K: a sent 'No_Action' was a treatment row of an action of that name
        (
            json.dumps(_line("a", "2025-06-15", "No_Action")),
            ["line 2", "action: 'No_Action' is not in the action catalogue", "'no_action'?"],
        ),
        # tester I: a misspelt action became campaign rows of an action without controls (ab
        # showed it apart), where policy-eval refused the log
        (
            json.dumps(_line("a", "2025-06-15", "winback")),
            ["line 2", "action: 'winback' is not in the action catalogue", "'win_back'?"],
        ),
        (
            json.dumps(
                _line(
                    "a",
                    "2025-06-15",
                    "Thank-You",
                    policy_action="thank_you",
                    explored=True,
                    propensity=0.1,
                )
            ),
            ["line 2", "action: 'Thank-You'", "did you mean 'thank_you'?"],
        ),
    ],
)
def test_a_bad_line_fails_naming_its_number_and_field(tmp_path, line, words):
    log = _write(tmp_path / "d.jsonl", [_line("a", "2025-06-15", "win_back"), line])
    with pytest.raises(DataError) as error:
        read_decisions(log)
    assert all(w in str(error.value) for w in words), str(error.value)


def test_a_line_cut_short_is_left_out_with_a_warning_any_other_bad_line_fails(tmp_path):
    """The log read while the service appends, or after a stop mid-write, held half a line:
    outcomes failed on it until the log was edited by hand."""
    whole = json.dumps(_line("a", "2025-06-15", "win_back"))
    other = whole.replace('"a"', '"b"')
    log = tmp_path / "d.jsonl"
    log.write_text(whole + "\n" + other + "\n" + whole[:40])
    said: list[str] = []
    decisions = read_decisions(log, said.append)
    assert decisions["customer_id"].tolist() == ["a", "b"]
    assert len(said) == 1 and "1 line(s) cut short (line 3: a decision without its end" in said[0]
    # cut inside a character, then the service started again and ended the line
    cut = (whole[:30] + "é").encode()[:-1]
    log.write_bytes(cut + b"\n" + whole.encode() + b"\n")
    assert read_decisions(log).shape[0] == 1
    for bad, problem in (("not json at all", "not JSON"), ("{" + whole[1:-1] + ",}", "not JSON")):
        log.write_text(whole + "\n" + bad + "\n")
        with pytest.raises(DataError, match=f"line 2: {problem}"):
            read_decisions(log)
    log.write_text(whole + "\n" + whole)  # complete JSON without its newline: read
    assert len(read_decisions(log)) == 2


def test_the_service_ends_a_cut_line_before_it_writes_again(tmp_path):
    """After a stop mid-write the next request's lines were glued to the cut one: both lost.
    (Ended when a worker started, the line cut by a write that failed stayed cut.)"""
    from datetime import datetime

    from crm_ltv.serving.decisions import DecisionLog

    whole = json.dumps(_line("a", "2025-06-15", "win_back"))
    log = tmp_path / "logs/d.jsonl"
    decisions = DecisionLog(log)  # no log yet: nothing made (its folder on the first write)
    assert not log.parent.exists()
    log.parent.mkdir()
    log.write_text(whole + "\n" + whole[:40])
    decisions.append([_answer("b", "win_back")], "r2", datetime(2025, 6, 16))
    said: list[str] = []
    assert read_decisions(log, said.append)["customer_id"].tolist() == ["a", "b"]
    assert "1 line(s) cut short (line 2:" in said[0]
    decisions.append([_answer("c", "win_back")], "r3", datetime(2025, 6, 16))
    assert read_decisions(log)["customer_id"].tolist() == ["a", "b", "c"]
    assert log.read_text().count("\n") == 4  # a whole log gets no blank line


# Appends the answers of the JSON file argv[2] to the decision log argv[1] under a file-size
# limit of argv[3] bytes (RLIMIT_FSIZE): the write fails midway, as on a full disk (EFBIG, not
# ENOSPC; the process ignores SIGXFSZ, which would end it). Prints what became of the call,
# then whether the log says it is writable (readiness), under the limit and once it is lifted.
FULL_DISK = """
import json, resource, signal, sys
from datetime import datetime
from pathlib import Path
from crm_ltv.serving.decisions import DecisionLog
from crm_ltv.serving.schemas import CustomerScore

answers = [CustomerScore.model_validate(a) for a in json.loads(Path(sys.argv[2]).read_text())]
log = DecisionLog(Path(sys.argv[1]))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), resource.RLIM_INFINITY))
try:
    log.append(answers, "refused", datetime(2025, 6, 16))
    print("written")
except OSError as exc:
    print(f"refused: {exc.strerror}")
print(f"writable: {log.writable()}")
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print(f"writable once lifted: {log.writable()}")
"""


def _append_under_limit(log: Path, answers: list, limit: int) -> list[str]:
    import subprocess
    import sys

    given = log.with_name("answers.json")
    given.write_text(json.dumps([a.model_dump(mode="json") for a in answers]))
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(log), str(given), str(limit)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_a_write_that_fails_midway_leaves_no_decision_and_the_next_line_starts_anew(tmp_path):
    """The tester's full disk: a call refused with 503 left 4 lines and a cut 5th on record,
    and once space was freed the next call's line was glued to the cut one (`crm-ltv
    outcomes`: 'line 95: not JSON'). The newline meant to end the cut line was written while
    the disk was still full, so it failed too, without a word."""
    from datetime import datetime

    from crm_ltv.serving.decisions import DecisionLog

    log = tmp_path / "logs/decisions.jsonl"
    decisions = DecisionLog(log)
    decisions.append([_answer("first", "win_back", 0.5, 10.0)], "r1", datetime(2025, 6, 15))
    before = log.read_bytes()
    batch = [_answer(f"c{i:04}", "win_back", 0.5, 10.0) for i in range(10)]
    line = len(before)  # each line of the batch about as long (ids of the same length)
    said = _append_under_limit(log, batch, len(before) + 4 * line + line // 2)
    assert said[0] == "refused: File too large"
    assert log.read_bytes() == before  # no decision of the refused call stays on record
    decisions.append([_answer("after", "win_back", 0.5, 10.0)], "r3", datetime(2025, 6, 17))
    warned: list[str] = []
    read = read_decisions(log, warned.append)
    assert read["customer_id"].tolist() == ["first", "after"] and not warned
    # a limit the batch fits under: written whole
    assert _append_under_limit(log, batch, 2**20)[0] == "written"
    assert len(read_decisions(log)) == 12


def test_a_log_whose_last_write_failed_is_not_writable_until_a_batch_as_large_would_be(tmp_path):
    """Readiness stayed 200 while every call was refused for the log. A worker reported not
    ready gets no call to find out that space was freed, so the log tries a write of the
    failed batch's size (taken back at once) each time it is asked."""
    from datetime import datetime

    from crm_ltv.serving.decisions import DecisionLog

    log = tmp_path / "logs/decisions.jsonl"
    DecisionLog(log).append([_answer("first", "win_back", 0.5, 10.0)], "r1", datetime(2025, 6, 15))
    before = log.read_bytes()
    batch = [_answer(f"c{i:04}", "win_back", 0.5, 10.0) for i in range(10)]
    said = _append_under_limit(log, batch, 3 * len(before))
    assert said == ["refused: File too large", "writable: False", "writable once lifted: True"]
    assert log.read_bytes() == before  # the probe left nothing either


def test_outcomes_command_without_a_log_says_where_it_looked(tmp_path):
    home = new_home(tmp_path)
    done = run(home, "outcomes")
    assert done.returncode == 2
    assert "logs/decisions.jsonl" in done.stderr and "no decision log" in done.stderr


@pytest.mark.parametrize(
    ("second", "kept"),
    [("2025-07-15T00:00:00", 2), ("2025-07-14T23:59:59", 1)],
    ids=["when the window is over", "a second before"],
)
def test_a_decision_counts_again_once_the_last_window_is_over(tmp_path, second, kept):
    """Windows are half-open: a decision exactly one window after the last counted one starts
    a new window (its purchases are not the first one's), one a second earlier overlaps."""
    log = _write(
        tmp_path / "d.jsonl",
        [_line("a", "2025-06-15T00:00:00", "win_back"), _line("a", second, "win_back")],
    )
    out = kept_decisions(read_decisions(log), 30)
    assert len(out.frame) == kept and out.overlapping == 2 - kept


@pytest.mark.parametrize(
    ("control_at", "share", "said"),
    [
        ("2025-08-15", 0.1,
         "every control contact of this log (1) is in a response window not over"),
        (None, 0.0, "no control contacts in this log (no holdout)"),
        (None, 0.1, "no control came up yet among the 1 decision drawn at holdout share 0.1 "
         "(about 0.1 expected)"),
        # more decisions will not help a control whose window starts before the transactions
        ("2025-05-01", 0.1, "no control contact has its response window in the transactions, "
         "and 1 treatment or control rows start before their first line (2025-06-05)"),
    ],
    ids=["controls waiting", "no holdout", "too few decisions", "control before the file"],
)  # fmt: skip
def test_outcomes_says_whether_controls_wait_or_were_never_held_out(
    tmp_path, control_at, share, said
):
    """A holdout whose controls are all still in their window is not a missing holdout: the
    command says when to come back, and asks for holdout.share only where none was held out
    (a log at share 0.1 whose few decisions drew no control was told to set it)."""
    home = new_home(tmp_path)
    tx = tmp_path / "tx.csv"
    TX.to_csv(tx, index=False)
    lines = [_line("a", "2025-06-15", "win_back", holdout_share=share)]
    if control_at is not None:
        held = _held("y", control_at)
        lines.append(held)
    log = _write(tmp_path / "d.jsonl", lines)
    done = run(
        home, "outcomes", "--decisions", str(log), "--transactions", str(tx),
        "--out", str(tmp_path / "c.csv"), "--window-days", "30",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert said in done.stdout
    assert ("set holdout.share" in done.stdout) == (share == 0)
    if control_at == "2025-08-15":
        assert "transactions up to 2025-09-14" in done.stdout


def _answer(cid: str, action: str, churn: float | None = None, value: float | None = None):
    """An answer of the service (its decision-log line is about 600 bytes)."""
    from datetime import UTC, datetime

    from crm_ltv.serving.schemas import CustomerScore, NextBestAction

    scored = churn is not None
    return CustomerScore(
        customer_id=cid, as_of=datetime(2025, 6, 15, tzinfo=UTC), cold_start=not scored,
        churn_probability=churn, predicted_value=value, horizon_days=90,
        rfm_segment="Can't Lose Them" if scored else None,
        lifecycle_stage="at-risk" if scored else None, reasons=[],
        next_best_action=NextBestAction(action=action, expected_value=-1e-05, reason="p"),
        model_versions={"churn": "3", "ltv": "2"} if scored else {},
    )  # fmt: skip


def _service_lines(tmp_path: Path) -> list[bytes]:
    """Two lines as the service writes them (serving.decisions.DecisionLog): a held-out
    customer with non-ASCII and escaped text, a negative and a tiny number; an explored cold
    start with null scores. Each ends in the '}' of its model_versions, then its own '}'."""
    from datetime import UTC, datetime

    from crm_ltv.serving.decisions import DecisionLog
    from crm_ltv.serving.holdout import Assignment
    from crm_ltv.serving.nba import Customer

    held, cold = _answer("Zoë-1", "no_action", 0.8125, 1234.5), _answer("new-2", "welcome_offer")
    views = [
        Customer(held.as_of, 0.8125, 1234.5, held.rfm_segment, held.lifecycle_stage,
                 "Café\tThé\x01", frequency=3, recency_days=20),
        Customer(cold.as_of),
    ]  # fmt: skip
    assigned = [
        Assignment("no_action", "win_back", True, False, 0.1, "2025-06", 0.1, 0.05,
                   ("win_back", "thank_you"), {"win_back": -3.25e-06, "thank_you": 12.0}),
        Assignment("welcome_offer", "welcome_offer", False, True, 0.0125, "2025-06", 0.1, 0.05,
                   ("welcome_offer",)),
    ]  # fmt: skip
    log = DecisionLog(tmp_path / "service.jsonl")
    log.append([held, cold], "req-1", datetime(2025, 6, 15, 9, tzinfo=UTC), assigned, views)
    return log.path.read_bytes().splitlines()


def test_every_cut_of_a_service_line_is_left_out_and_any_other_bad_line_fails(tmp_path):
    """A line cut just before its last '}' ends in model_versions' '}': it failed as 'not JSON
    (Expecting ',' delimiter: line 2 column 1 (char 623))', though a cut line is left out.
    Every cut of the service's own lines (at each byte: inside a string, a number, a literal, a
    character, an escape, between two fields) is one; the parser's line and column (of a
    one-line record) gave way to the character in the line."""
    lines = _service_lines(tmp_path)
    assert all(line.endswith(b"}}") for line in lines)
    cuts = [line[:end] for line in lines for end in range(1, len(line))]
    log = tmp_path / "d.jsonl"
    log.write_bytes(b"\n".join([lines[0], *cuts, lines[1]]) + b"\n")
    said: list[str] = []
    decisions = read_decisions(log, said.append)
    assert decisions["customer_id"].tolist() == ["Zoë-1", "new-2"]
    assert (
        len(said) == 1 and f"{len(cuts):,} line(s) cut short (line 2, 3, 4, 5, 6, ...:" in said[0]
    )
    log.write_bytes(lines[0][:-1] + b"\n" + lines[1] + b"\n")  # the line the tester cut
    said.clear()
    assert read_decisions(log, said.append)["customer_id"].tolist() == ["new-2"]
    assert "1 line(s) cut short (line 1:" in said[0]
    whole = lines[0].decode()
    bad = {
        whole.replace(',"period"', ' "period"'): "Expecting ',' delimiter at character "
        + str(whole.index(',"period"') + 2),  # at "period", 1 = the line's first character
        whole + "}": f"Extra data at character {len(whole) + 1}",
        '{"a": true false': "Expecting ',' delimiter at character 12",
        '{"a": 1 2': "Expecting ',' delimiter at character 9",
        '{"a": 00': "Expecting ',' delimiter at character 8",
        '{"a": 1.e': "Expecting ',' delimiter at character 8",
        '{"a": --': "Expecting value at character 7",
        '{"a": "x".': "Expecting ',' delimiter at character 10",
        '{"a": "\\x': "Invalid \\escape at character 8",
    }
    for line, problem in bad.items():
        log.write_text(whole + "\n" + line + "\n")
        with pytest.raises(DataError) as error:
            read_decisions(log)
        assert str(error.value) == f"{log}: line 2: not JSON ({problem})", line
    for line, problem in (
        (b'{"a": "\xffx"', "invalid start byte at byte 8"),
        (b'{"a": \xc3', "unexpected end of data at byte 7"),  # a character cut outside a string
    ):
        log.write_bytes(lines[0] + b"\n" + line + b"\n")
        with pytest.raises(DataError) as error:
            read_decisions(log)
        assert str(error.value) == f"{log}: line 2: not UTF-8 ({problem})", line


def test_the_service_lines_nulls_are_read_as_unknown(tmp_path):
    """A cold start's null scores, segment and counts, as the service writes them: unknown,
    not a failure; times with a zone as naive UTC."""
    log = tmp_path / "d.jsonl"
    log.write_bytes(b"\n".join(_service_lines(tmp_path)) + b"\n")
    held, cold = (row for _, row in read_decisions(log).iterrows())
    assert (held["churn_probability"], held["frequency"], held["recency_days"]) == (0.8125, 3, 20)
    assert held["as_of"] == pd.Timestamp("2025-06-15") and bool(held["holdout"])
    assert held["decided_at"] == pd.Timestamp("2025-06-15T09:00")
    assert held["favourite_category"] == "Café\tThé\x01"
    for key in ("churn_probability", "predicted_value", "frequency", "recency_days",
                "rfm_segment", "lifecycle_stage", "favourite_category"):  # fmt: skip
        assert pd.isna(cold[key]), key


ISO = "is not an ISO 8601 time as the service writes it (2025-09-01T12:00:00+00:00, or 2025-09-01)"


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("churn_probability", "high", "churn_probability: 'high' is not a number"),
        ("churn_probability", True, "churn_probability: True is not a number"),
        ("churn_probability", 1.5, "churn_probability: 1.5 is not in [0, 1]"),
        ("predicted_value", "lots", "predicted_value: 'lots' is not a number"),
        ("propensity", float("nan"), "propensity: nan is not a finite number"),  # scores: unknown
        ("frequency", "two", "frequency: 'two' is not a number"),
        ("frequency", -1, "frequency: -1 is not a whole number >= 0"),
        ("recency_days", 2.5, "recency_days: 2.5 is not a whole number >= 0"),
        ("propensity", "0.85", "propensity: '0.85' is not a number"),
        ("propensity", 0, "propensity: 0 is not in (0, 1]"),
        ("holdout_share", 1.5, "holdout_share: 1.5 is not in [0, 1]"),
        ("exploration", -0.05, "exploration: -0.05 is not in [0, 1]"),
        # was read as true: "held out but action 'win_back'"
        ("holdout", "false", "holdout: 'false' is not true or false (a JSON boolean)"),
        ("explored", 0, "explored: 0 is not true or false (a JSON boolean)"),
        ("cold_start", "no", "cold_start: 'no' is not true or false (a JSON boolean)"),
        ("as_of", 20250901, f"as_of: 20250901 {ISO}"),  # was 1970-01-01 00:00:00.020250901
        ("as_of", "09/01/2025", f"as_of: '09/01/2025' {ISO}"),  # was September 1st
        ("decided_at", 1756684800, f"decided_at: 1756684800 {ISO}"),
        ("customer_id", 7, "customer_id: 7 is not text"),
        ("rfm_segment", 3, "rfm_segment: 3 is not text"),
        (
            "eligible_actions",
            "win_back",
            "eligible_actions: 'win_back' is not a list of action names",
        ),
    ],
)
def test_a_field_of_another_type_fails_naming_its_line_and_field(tmp_path, key, value, said):
    """Every field outcomes and policy-eval read, in the type the service writes: policy-eval
    crashed on a text churn_probability (a traceback, exit 1) where outcomes read it."""
    line = _line("a", "2025-06-15", "win_back", churn_probability=0.2, predicted_value=40.0,
                 frequency=2, recency_days=10, eligible_actions=["win_back"], cold_start=False,
                 decided_at="2025-06-15T08:00:00+00:00", rfm_segment="Loyal")  # fmt: skip
    log = _write(tmp_path / "d.jsonl", [line, {**line, key: value}])
    assert len(read_decisions(_write(tmp_path / "ok.jsonl", [line]))) == 1
    with pytest.raises(DataError) as error:
        read_decisions(log)
    assert str(error.value) == f"{log}: line 2: {said}"


def test_both_commands_refuse_a_text_score_without_a_traceback(tmp_path):
    """outcomes accepted the file and policy-eval crashed on it in its outcome model."""
    home = new_home(tmp_path)
    tx = tmp_path / "tx.csv"
    TX.to_csv(tx, index=False)
    log = _write(
        tmp_path / "d.jsonl",
        [
            _line("a", "2025-06-15", "win_back", churn_probability=0.2),
            _line("b", "2025-06-15", "win_back", churn_probability="high"),
        ],
    )
    for command in ("outcomes", "policy-eval"):
        done = run(home, command, "--decisions", str(log), "--transactions", str(tx),
                   "--window-days", "30")  # fmt: skip
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.endswith(
            f"error: {log}: line 2: churn_probability: 'high' is not a number\n"
        ), command
        assert "Traceback" not in done.stderr


def test_outcomes_writes_nothing_when_no_response_window_is_over(tmp_path):
    """A window longer than the transactions wrote a header-only campaigns file over the last
    one (exit 0), and the next `crm-ltv ab` failed on it: 'has no data rows'."""
    home = new_home(tmp_path)
    tx = tmp_path / "tx.csv"
    TX.to_csv(tx, index=False)
    held = _held("b", "2025-06-20")
    log = _write(tmp_path / "d.jsonl", [_line("a", "2025-06-15", "win_back"), held])
    target = tmp_path / "c.csv"
    target.write_text("the last outcomes\n")
    done = run(home, "outcomes", "--decisions", str(log), "--transactions", str(tx),
               "--out", str(target), "--window-days", "400")  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(
        "error: no decision's 400-day response window is over in the transactions (the last "
        "transaction is at 2025-08-30 00:00, the first window ends at 2026-07-20 00:00): 2 "
        f"treatment and control rows wait for their outcome: nothing written ({target} left as "
        "it was, no c_pending.csv written either)\n"
    )
    assert target.read_text() == "the last outcomes\n"
    assert not (tmp_path / "c_pending.csv").exists()
    # no treatment or control at all (the policy chose no_action): no file either, but no
    # error: `make experiments` goes on to `policy-eval --decisions` on such a log
    nothing = _write(tmp_path / "n.jsonl", [_line("a", "2025-06-15", "no_action")])
    done = run(home, "outcomes", "--decisions", str(nothing), "--transactions", str(tx),
               "--out", str(target), "--window-days", "30")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (
        "none of the 1 decisions is a treatment or control (1 where the policy chose no_action, "
        f"0 explored, 0 repeated, 0 inside an earlier decision's window): no campaigns file "
        f"written ({target} left as it was, if any)"
    ) in done.stdout
    assert target.read_text() == "the last outcomes\n"


def test_outcomes_names_its_files_by_absolute_paths(tmp_path):
    """Paths given relative to the working folder were printed as given: the `next:` line's
    `crm-ltv ab --campaigns FILE` failed when run from another folder."""
    home = new_home(tmp_path)
    tx, log, target = tmp_path / "tx.csv", tmp_path / "d.jsonl", tmp_path / "c.csv"
    TX.to_csv(tx, index=False)
    held = _held("b", "2025-06-15")
    _write(log, [_line("a", "2025-06-15", "win_back"), held])
    given = [os.path.relpath(p) for p in (log, tx, target)]
    assert not any(Path(p).is_absolute() for p in given)
    done = run(home, "outcomes", "--decisions", given[0], "--transactions", given[1],
               "--out", given[2], "--window-days", "30")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"reading decisions from {log}\n" in done.stderr
    assert f"loading transactions from {tx}\n" in done.stderr
    assert f"-> {target}\n" in done.stdout and f"--campaigns {target}" in done.stdout
    assert f"crm-ltv uplift --campaigns {target}" in done.stdout
    # outcomes of another window than uplift's: uplift would refuse them, so it is not next
    other = run(home, "outcomes", "--decisions", str(log), "--transactions", str(tx),
                "--out", str(target), "--window-days", "20")  # fmt: skip
    assert other.returncode == 0, other.stderr
    assert (
        f"next: crm-ltv ab --campaigns {target} (uplift learns 30-day effects: "
        "uplift.response_window_days of configs/experiments.yaml, not these 20-day outcomes)"
    ) in other.stdout


def test_an_older_services_nan_scores_are_unknown_and_a_byte_order_mark_is_read(tmp_path):
    """Services before 2026-12-05 wrote NaN and Infinity for scores they could not make; the
    strict reading refused such a log whole. A byte-order mark (an editor's) was read too."""
    lines = [
        json.dumps(_line("a", "2025-06-15", "win_back", predicted_value=float("nan"))),
        json.dumps(_line("b", "2025-06-15", "win_back", churn_probability=float("inf"))),
        json.dumps(_line("c", "2025-06-15", "win_back", churn_probability=0.5)),
    ]
    log = tmp_path / "d.jsonl"
    log.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    said: list[str] = []
    frame = read_decisions(log, said.append)
    assert frame["customer_id"].tolist() == ["a", "b", "c"]
    assert frame["predicted_value"].isna().tolist() == [True, True, True]
    assert frame["churn_probability"].isna().tolist() == [True, True, False]
    assert said == [
        f"warning: {log}: 2 score(s) NaN or infinite (a service before 2026-12-05 wrote them "
        "so): read as unknown, as a cold start's"
    ]


def test_a_rotated_log_is_read_with_its_rotated_files_in_the_order_they_were_written(tmp_path):
    """Tester T: after logrotate (`mv log log.1`, `compress`) outcomes and policy-eval read the
    current file only, and a repeated --decisions kept the last, without a word."""
    logs = tmp_path / "logs"
    logs.mkdir()
    at, later = ({"decided_at": f"2025-06-{d}T00:00:00+00:00"} for d in (15, 16))
    # the oldest decisions in .2.gz, the newer in .1, the newest in the log itself
    with gzip.open(logs / "decisions.jsonl.2.gz", "wt") as old:
        old.write(json.dumps(_line("a", "2025-06-15", "win_back", **at)) + "\n")
    _write(logs / "decisions.jsonl.1", [_line("a", "2025-06-15", "recommendation", **later),
                                        _held("b", "2025-06-15", **later)])  # fmt: skip
    _write(logs / "decisions.jsonl", [_line("c", "2025-07-02", "win_back")])
    (logs / "other.jsonl").write_text("")
    rotated = [logs / "decisions.jsonl.1", logs / "decisions.jsonl.2.gz"]
    assert rotated_beside(logs / "decisions.jsonl") == rotated
    found = decision_logs([logs / "decisions.jsonl*", logs / "decisions.jsonl"])
    assert sorted(found) == sorted([logs / "decisions.jsonl", *rotated])  # each once
    frame = read_decision_logs(found)
    assert list(frame["order"]) == [1, 2, 3, 4] and frame["log"].iloc[0].endswith(".2.gz")
    assert list(frame["line"]) == [1, 1, 2, 1]  # each its own file's, as errors name them
    out = decision_outcomes(frame, TX, 30)
    # a's first decision is the .2.gz one (written first), the .1 one a repeat of it
    assert out.decisions == 4 and out.repeated == 1
    assert out.campaigns.set_index("customer_id").loc["a", "action"] == "win_back"
    with pytest.raises(DataError, match="no decision log matches"):
        decision_logs([logs / "nothing*"])
    (logs / "decisions.jsonl.3.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match=r"decisions.jsonl.3.gz: not a whole gzip file"):
        read_decisions(logs / "decisions.jsonl.3.gz")
    # the command: the default log with a warning for its rotated files; given, all of them
    home = new_home(tmp_path / "home")
    tx = tmp_path / "tx.csv"
    TX.to_csv(tx, index=False)
    (home / "logs").mkdir()
    for path in [logs / "decisions.jsonl", *rotated]:
        (home / "logs" / path.name).write_bytes(path.read_bytes())
    alone = run(home, "outcomes", "--transactions", str(tx), "--out", str(home / "c.csv"))
    assert alone.returncode == 0, alone.stderr
    assert "warning: 2 rotated file(s) beside" in alone.stderr and "1 decision ->" in alone.stdout
    both = run(home, "outcomes", "--transactions", str(tx), "--out", str(home / "c.csv"),
               "--decisions", str(home / "logs/decisions.jsonl"),
               "--decisions", str(home / "logs/decisions.jsonl.1"))  # fmt: skip
    assert both.returncode == 0, both.stderr
    assert (
        "reading decisions from 2 decision logs (" in both.stderr and "warning:" not in both.stderr
    )
    assert "3 decisions ->" in both.stdout
    every = run(home, "outcomes", "--transactions", str(tx), "--out", str(home / "c.csv"),
                "--decisions", str(home / "logs/decisions.jsonl*"))  # fmt: skip
    assert every.returncode == 0 and "4 decisions ->" in every.stdout, every.stderr
    assert list(pd.read_csv(home / "c.csv").columns) == list(COLUMNS)
    # just after a rotation (logrotate's `create`) the current log is empty: said, not an error
    (home / "logs/decisions.jsonl").write_text("")
    rotated_now = run(home, "outcomes", "--transactions", str(tx), "--out", str(home / "c.csv"),
                      "--decisions", str(home / "logs/decisions.jsonl*"))  # fmt: skip
    assert rotated_now.returncode == 0 and "3 decisions ->" in rotated_now.stdout
    assert "decisions.jsonl: empty (a log just rotated?)" in rotated_now.stderr
    for path in rotated:
        path.write_text("")
    (logs / "decisions.jsonl").write_text("")
    with pytest.raises(DataError, match="no decisions"):
        read_decision_logs([logs / "decisions.jsonl", *rotated])
