"""`crm-ltv ab`, `plan-ab` and `cohorts` for real on a small sample home: printed tables, and
each command's MLflow experiment with its descriptions, metrics, tables and plots."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crm_ltv.experiments.cohorts import NOT_YET
from crm_ltv.experiments.jobs import AB_METRICS
from crm_ltv.training.tracking import file_sha256
from tests.conftest import mlflow_client, new_home, run


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = new_home(tmp_path_factory.mktemp("experiments"))
    made = run(home, "data", "--n-customers", "400")
    assert made.returncode == 0, made.stderr
    return home


def _client(home: Path):
    return mlflow_client(home)


def _artifacts(client, run_id: str, folder: str) -> set[str]:
    return {Path(a.path).name for a in client.list_artifacts(run_id, folder)}


def test_ab_reads_an_own_transactions_file_as_features_does(tmp_path):
    """--column, --sep and --timestamp-format, as `features` and `train` take them: a shop's
    own export gives the same segments, so the same table, as the sample's file. (A home of its
    own: the module's counts its runs.)"""
    home = new_home(tmp_path)
    assert run(home, "data", "--n-customers", "400").returncode == 0
    sample = (home / "data/sample/transactions.csv").read_text().splitlines()
    header, *lines = sample
    renamed = header.replace("customer_id", "Client").replace("timestamp", "When")
    own = home / "own.csv"
    own.write_text("\n".join(line.replace(",", ";") for line in [renamed, *lines]) + "\n")
    shipped = run(home, "ab", "--by", "lifecycle_stage")
    mapped = run(  # a file of one's own reads the sample's campaigns only when they are named
        home, "ab", "--by", "lifecycle_stage", "--transactions", str(own), "--sep", ";",
        "--campaigns", str(home / "data/sample/campaigns.csv"),
        "--column", "customer_id=Client", "--column", "timestamp=When",
        "--timestamp-format", "ISO8601",
    )  # fmt: skip
    assert shipped.returncode == 0 and mapped.returncode == 0, mapped.stderr
    table = shipped.stdout.split("\nMLflow run ", 1)[0]
    assert "by action and lifecycle_stage at send time" in table
    assert mapped.stdout.split("\nMLflow run ", 1)[0] == table
    alone = run(home, "ab", "--no-balance", "--sep", ";")  # no --by, no balance: nothing reads it
    assert alone.returncode == 2
    assert "are read for the balance check and the segments of --by only" in alone.stderr
    # without --by the balance check reads them: the same features, the same table
    balanced = run(home, "ab", "--transactions", str(own), "--sep", ";",
                   "--campaigns", str(home / "data/sample/campaigns.csv"),
                   "--column", "customer_id=Client", "--column", "timestamp=When",
                   "--timestamp-format", "ISO8601")  # fmt: skip
    assert balanced.returncode == 0, balanced.stderr
    assert (
        balanced.stdout.split("\nMLflow run ")[0]
        == run(home, "ab").stdout.split("\nMLflow run ")[0]
    )
    assert "balance: worst SMD" in balanced.stdout


def test_ab_prints_a_row_per_action_and_logs_its_experiment(home):
    result = run(home, "ab", "--by", "rfm_segment")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "lift pts [95%]" in lines[0] and "SRM p" in lines[0]
    # the sample's campaigns are randomised: checked, and alike before the send
    table = result.stdout.split("\nSRM p: ")[0]
    assert "balance: worst SMD" in lines[0] and "IMBALANCED" not in table
    for action in ("welcome_offer", "recommendation", "vip_invitation", "win_back"):
        assert any(line.strip().startswith(action) for line in lines[1:5])
    assert "by action and rfm_segment at send time" in result.stdout
    client = _client(home)
    experiment = client.get_experiment_by_name("crm-ltv-ab-tests")
    assert "treatment against control" in experiment.tags["mlflow.note.content"]
    (found,) = client.search_runs([experiment.experiment_id], "tags.kind = 'ab'")
    assert "contacts with an outcome" in found.data.tags["mlflow.note.content"]
    assert found.data.metrics["actions"] == 4
    # every file read (the segments come from the transactions and customers), as the hash
    assert [d.dataset.name for d in found.inputs.dataset_inputs] == [
        "campaigns",
        "transactions",
        "customers",
    ]
    # the hash of every file read: the segments come from the transactions and customers
    sample = home / "data" / "sample"
    read = [sample / f"{t}.csv" for t in ("campaigns", "transactions", "customers")]
    assert found.data.tags["data_sha256"] == file_sha256(*read)
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{found.info.run_id}'"
    )  # one per action and segment with the same metric names (a figure a tiny segment lacks,
    # e.g. an interval, is left out rather than logged as NaN)
    assert {c.data.tags["data_sha256"] for c in children} == {file_sha256(*read)}
    # segments, not actions (tester J: `tags.kind = 'action'` mixed them with plain runs')
    assert {c.data.tags["kind"] for c in children} == {"segment"}
    # the action's balance as a tag of each of its segments, as their notes give it
    assert {c.data.tags["balance_imbalanced"] for c in children} == {"false"}
    assert {c.data.tags["srm_mismatch"] for c in children} == {"false"}
    # the balance is an action's, logged in its child run without --by (and in the tables)
    names = set(AB_METRICS.values()) - {"balance_worst_smd", "balance_worst_p_value"}
    assert all({"contacts_treatment"} <= set(c.data.metrics) <= names for c in children)
    # an SRM p-value where both groups have contacts, as the CLI shows one (tester J)
    for c in children:
        both = c.data.metrics["contacts_treatment"] > 0 and c.data.metrics["contacts_control"] > 0
        assert ("srm_p_value" in c.data.metrics) == both
    assert set().union(*(c.data.metrics for c in children)) == names  # each logged somewhere
    win_back = [c for c in children if c.data.tags["action"] == "win_back"]
    assert {c.data.tags["rfm_segment"] for c in win_back} >= {"Champions"}
    for child in win_back:
        assert "treated" in child.data.tags["mlflow.note.content"]
        # by customer: the sample contacts some customers at several sends
        assert child.data.tags.get("test") in {"z", "fisher", "z, by customer", None}
        if "conversion_p_value_holm" in child.data.metrics:  # per segment: the adjusted p too
            assert "Holm-adjusted" in child.data.tags["mlflow.note.content"]
    assert any(c.data.tags.get("test") in {"z", "fisher", "z, by customer"} for c in win_back)
    rates = [c.data.metrics.get("conversion_rate_treatment") for c in win_back]
    assert all(0 <= r <= 1 for r in rates if r is not None) and any(r is not None for r in rates)
    assert _artifacts(client, found.info.run_id, "tables") == {
        "ab_by_action.json",
        "ab_by_action_and_rfm_segment.json",
    }
    assert _artifacts(client, found.info.run_id, "plots") == {
        "lift_by_action.png",
        "lift_by_rfm_segment.png",
    }


def _one_send(home: Path, treated: np.ndarray, control: np.ndarray) -> pd.DataFrame:
    """A win_back send on 2025-07-01 to `treated` and `control`, nothing sent in truth: the
    outcome is any purchase in the 30 days after it."""
    tx = pd.read_csv(home / "data/sample/transactions.csv", dtype={"customer_id": str},
                     parse_dates=["timestamp"])  # fmt: skip
    sent = pd.Timestamp("2025-07-01 09:00")
    window = tx.loc[(tx["timestamp"] > sent) & (tx["timestamp"] <= sent + pd.Timedelta(days=30))]
    revenue = window.loc[window["amount"] > 0].groupby("customer_id")["amount"].sum()
    ids = np.r_[treated, control]
    spent = revenue.reindex(ids).fillna(0.0).to_numpy()
    return pd.DataFrame(
        {"customer_id": ids, "sent_at": sent, "action": "win_back",
         "group": ["treatment"] * len(treated) + ["control"] * len(control),
         "converted": (spent > 0).astype(int), "revenue": spent.round(2)}
    )  # fmt: skip


def test_ab_warns_that_a_targeted_campaign_is_no_causal_lift(home, tmp_path):
    """The top spenders against random other buyers passed every check (the split was 50/50)
    and read as a significant causal lift (tester B). Its groups differ before the send:
    flagged, warned, and not counted as a win; a random split of as many buyers is not."""
    tx = pd.read_csv(home / "data/sample/transactions.csv", dtype={"customer_id": str},
                     parse_dates=["timestamp"])  # fmt: skip
    before = tx.loc[tx["timestamp"] <= pd.Timestamp("2025-07-01 09:00")]
    spend = before.groupby("customer_id")["amount"].sum().sort_values(ascending=False)
    rng = np.random.default_rng(8)
    others = rng.choice(spend.index[60:], 60, replace=False)
    targeted, randomised = tmp_path / "targeted.csv", tmp_path / "randomised.csv"
    _one_send(home, spend.index[:60].to_numpy(), others).to_csv(targeted, index=False)
    drawn = rng.permutation(spend.index.to_numpy())[:120]
    _one_send(home, drawn[:60], drawn[60:]).to_csv(randomised, index=False)

    flagged = run(home, "ab", "--campaigns", str(targeted))
    assert flagged.returncode == 0, flagged.stderr
    line = flagged.stdout.splitlines()[1]
    found = re.search(r"(\w+) \+(\d+\.\d\d) IMBALANCED$", line)
    assert found and float(found[2]) >= 0.5, flagged.stdout
    assert (
        "warning: win_back: treatment and control differ before the send: the difference is "
        f"not a causal lift ({found[1]} SMD +{found[2]}, p < 0.0001)"
    ) in flagged.stdout
    run_id = flagged.stdout.split("MLflow run ", 1)[1].split()[0]
    done = _client(home).get_run(run_id)
    note = done.data.tags["mlflow.note.content"]
    assert ", 1 action. " in note and "the difference is not a causal lift" in note
    assert "raise conversion" not in note
    assert done.data.metrics["actions_imbalanced"] == 1
    # its child run says so as tags a search filters on, with the feature (tester J)
    (child,) = _client(home).search_runs(
        [done.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'"
    )
    assert child.data.tags["kind"] == "action"
    assert child.data.tags["balance_imbalanced"] == "true"
    assert child.data.tags["balance_worst_feature"] == found[1]
    assert (
        f"not a causal lift ({found[1]} SMD +{found[2]}" in child.data.tags["mlflow.note.content"]
    )
    assert done.data.metrics["actions_significant_win"] == 0
    assert done.data.params["balance_checked"] == "True"

    alike = run(home, "ab", "--campaigns", str(randomised))
    assert alike.returncode == 0, alike.stderr
    assert "IMBALANCED" not in alike.stdout.split("\nSRM p: ")[0]
    assert "warning:" not in alike.stdout
    assert "balance: worst SMD" in alike.stdout.splitlines()[0]
    run_id = alike.stdout.split("MLflow run ", 1)[1].split()[0]
    assert _client(home).get_run(run_id).data.metrics["actions_imbalanced"] == 0
    skipped = run(home, "ab", "--campaigns", str(targeted), "--no-balance")
    assert skipped.returncode == 0 and "IMBALANCED" not in skipped.stdout, skipped.stdout
    assert "balance not checked: --no-balance" in skipped.stdout


def test_ab_names_a_file_without_outcomes_and_says_revenue_stands_for_conversion(home, tmp_path):
    """Without 'converted' a contact converted when its revenue is above 0: said, not silent.
    Without either column the error named no file."""
    lines = [r.split(",") for r in (home / "data/sample/campaigns.csv").read_text().splitlines()]
    keep = [i for i, name in enumerate(lines[0]) if name != "converted"]
    revenue_only, no_outcome = tmp_path / "revenue_only.csv", tmp_path / "no_outcome.csv"
    revenue_only.write_text("\n".join(",".join(r[i] for i in keep) for r in lines) + "\n")
    no_outcome.write_text("\n".join(",".join(r[:4]) for r in lines) + "\n")
    failed = run(home, "ab", "--campaigns", str(no_outcome))
    assert failed.returncode == 2 and f"error: campaigns {no_outcome}: neither" in failed.stderr
    # uplift named its own internal column `_row` among the file's
    failed = run(home, "uplift", "--campaigns", str(no_outcome))
    assert failed.returncode == 2 and f"error: campaigns {no_outcome}: neither" in failed.stderr
    assert failed.stderr.endswith("columns present: customer_id, sent_at, action, group\n")
    result = run(home, "ab", "--campaigns", str(revenue_only))
    assert result.returncode == 0, result.stderr
    assert "no 'converted' column: a contact converted when its revenue is above 0" in (
        result.stdout
    )


def test_ab_analyses_actions_outside_the_catalogue_and_marks_them(home, tmp_path):
    lines = (home / "data/sample/campaigns.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    action, group = header.split(",").index("action"), header.split(",").index("group")
    renamed = [r.split(",") for r in rows]
    for r in renamed:
        if r[action] == "win_back":
            r[action] = "winback_discount"  # a shop's own name for an action
    # and one action sent to no control: its treatment rate is shown, nothing compared
    renamed = [r for r in renamed if not (r[action] == "vip_invitation" and r[group] == "control")]
    path = tmp_path / "campaigns.csv"
    path.write_text("\n".join([header, *(",".join(r) for r in renamed)]) + "\n")
    result = run(home, "ab", "--campaigns", str(path))
    assert result.returncode == 0, result.stderr
    marked = [line for line in result.stdout.splitlines() if "winback_discount *" in line]
    assert len(marked) == 1
    assert "* not in the action catalogue" in result.stdout
    (uncontrolled,) = [line for line in result.stdout.splitlines() if "vip_invitation" in line]
    sizes, rate_t, rate_c, lift = uncontrolled.split()[1:5]
    assert sizes.endswith("/0") and rate_t.endswith("%") and (rate_c, lift) == ("-", "-")
    assert "MISMATCH" in uncontrolled and "nan" not in uncontrolled
    # MLflow says what the CLI's lines say (tester J): tags to filter on, the notes, plain text
    run_id = result.stdout.split("MLflow run ", 1)[1].split()[0]
    client = _client(home)
    parent = client.get_run(run_id)
    assert "sample-ratio mismatch in vip_invitation." in parent.data.tags["mlflow.note.content"]
    children = {
        c.data.tags["action"]: c
        for c in client.search_runs(
            [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'"
        )
    }
    outside = children["winback_discount"]
    assert outside.data.tags["in_catalogue"] == "false"
    assert (
        "Not in the action catalogue: no uplift model or policy uses it."
        in (outside.data.tags["mlflow.note.content"])
    )
    assert children["welcome_offer"].data.tags["in_catalogue"] == "true"
    lone = children["vip_invitation"]
    assert lone.data.tags["srm_mismatch"] == "true" and "balance_imbalanced" not in lone.data.tags
    assert (
        "Sample-ratio MISMATCH: the group sizes refute the expected treatment share of 0.5"
        in (lone.data.tags["mlflow.note.content"])
    )
    # no control group: no SRM p-value, as the CLI shows '-' (it read as a test in the UI)
    assert "srm_p_value" not in lone.data.metrics and "- MISMATCH (no control" in uncontrolled
    assert "srm_p_value" in children["welcome_offer"].data.metrics
    logged = client.download_artifacts(run_id, "tables/ab_by_action.json")
    table = pd.read_json(logged, orient="split").set_index("action")
    assert pd.isna(table.at["vip_invitation", "srm_p_value"])
    # its treatment's revenue per contact, as its rate (it was blank beside the rate)
    assert table.at["vip_invitation", "revenue_treatment"] >= 0
    unknown = run(home, "ab", "--by", "favourite_colour")
    assert unknown.returncode == 2 and "--by 'favourite_colour'" in unknown.stderr


def test_uplift_on_actions_outside_the_catalogue_says_so(home, tmp_path):
    """Every action a shop's own name: the error counted treated contacts of the catalogue's
    actions only ("none") but controls of every action ({'my_promo': ...}), and said neither
    that my_promo is not a catalogue action nor which are."""
    lines = (home / "data/sample/campaigns.csv").read_text().splitlines()
    action = lines[0].split(",").index("action")
    rows = [r.split(",") for r in lines[1:]]
    for r in rows:
        r[action] = "my_promo"
    path = tmp_path / "campaigns.csv"
    path.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    failed = run(home, "uplift", "--campaigns", str(path))
    assert failed.returncode == 2, failed.stderr
    assert "treated contacts per action: none; control contacts per action: none; " in (
        failed.stderr
    )
    assert (
        "'my_promo' is not an action of the catalogue (crm_ltv.features.actions, which "
        "configs/nba.yaml prices: welcome_offer, recommendation, thank_you, vip_invitation, "
        "win_back))\n"
    ) in failed.stderr


def test_ab_and_uplift_say_how_many_contacts_the_transactions_know(home, tmp_path):
    """Campaigns whose ids lost their leading zeros matched no customer: every contact read
    '(no purchase yet)', exit 0; uplift blamed too few treated contacts."""
    sample = home / "data" / "sample"
    header, *rows = (sample / "campaigns.csv").read_text().splitlines()
    stripped, partly = tmp_path / "stripped.csv", tmp_path / "partly.csv"
    stripped.write_text("\n".join([header, *(r.lstrip("0") for r in rows)]) + "\n")
    partly.write_text("\n".join([header, *(r.lstrip("0") for r in rows[:7]), *rows[7:]]) + "\n")
    for command in (["ab", "--by", "lifecycle_stage"], ["uplift"]):
        failed = run(home, *command, "--campaigns", str(stripped))
        assert failed.returncode == 2, failed.stderr
        error = failed.stderr.splitlines()[-1]
        assert error.startswith(f"error: campaigns {stripped}: none of its {len(rows):,} contacts")
        assert str(sample / "transactions.csv") in error
        first = rows[0].split(",")[0]
        bought = (sample / "transactions.csv").read_text().splitlines()[1].split(",")[0]
        assert f"'{first.lstrip('0')}' in the campaigns, '{bought}' in the transactions" in error
    # the segments of --by acquisition_channel come from the customers table, the others' from
    # the transactions: a contact who never bought is found there all the same
    for by, table in (("acquisition_channel", "customers"), ("lifecycle_stage", "transactions")):
        result = run(home, "ab", "--by", by, "--campaigns", str(partly))
        assert result.returncode == 0, result.stderr
        said = f"{len(rows) - 7:,} of {len(rows):,} contacts' customers found in {table}"
        assert said in result.stderr
        warned = f"warning: 7 of {len(rows):,} contacts of partly.csv have a customer id not in"
        assert f"{warned} {table} ({table}.csv)" in result.stderr
        other = {"customers": "transactions", "transactions": "customers"}[table]
        assert f"found in {other}" not in result.stderr


def test_ab_checks_the_split_a_campaigns_file_of_outcomes_carries(home, tmp_path):
    """`crm-ltv outcomes` writes each row's expected_treatment_share (0.73 in a shop's home):
    `ab` checked the config's 0.5 and read MISMATCH on every action, the column "ignored"."""
    table = pd.read_csv(home / "data/sample/campaigns.csv", dtype=str)
    drawn = np.arange(len(table)) % 100 < 73  # treatment for 73 of each 100 rows
    table = table.assign(group=np.where(drawn, "treatment", "control"))
    path = tmp_path / "campaigns.csv"
    table.assign(expected_treatment_share=0.73).to_csv(path, index=False)
    result = run(home, "ab", "--campaigns", str(path))
    assert result.returncode == 0, result.stderr
    assert "MISMATCH" not in result.stdout and "expected_treatment_share" not in result.stderr
    assert "SRM p: against an expected treatment share of 0.7300 (the file's " in result.stdout
    run_id = result.stdout.split("MLflow run ", 1)[1].split()[0].strip(":")
    params = _client(home).get_run(run_id).data.params
    assert params["expected_treatment_share"] == "0.73"
    assert params["expected_treatment_share_source"] == "campaigns file"
    # the command line's share still wins (here a wrong one)
    given = run(home, "ab", "--campaigns", str(path), "--expected-treatment-share", "0.5")
    assert given.returncode == 0 and "MISMATCH" in given.stdout
    assert "share of 0.5 (--expected-treatment-share)" in given.stdout


def test_uplift_refuses_campaigns_counted_over_another_window(home, tmp_path):
    """`crm-ltv outcomes --window-days 60` then `uplift --campaigns`: 60-day outcomes were
    learnt as the 30-day effects the bundle claims, without a word."""
    table = pd.read_csv(home / "data/sample/campaigns.csv", dtype=str)
    path = tmp_path / "campaigns.csv"
    table.assign(response_window_days=60).to_csv(path, index=False)
    result = run(home, "uplift", "--campaigns", str(path))
    assert result.returncode == 2
    assert (
        f"error: campaigns {path}: its outcomes were counted over 60 days after each send"
        in result.stderr
    )
    assert "uplift.response_window_days is 30" in result.stderr
    assert "`crm-ltv outcomes --window-days 30`" in result.stderr
    assert "or set uplift.response_window_days and outcomes.response_window_days to 60" in (
        result.stderr
    )
    assert "loading transactions" not in result.stderr  # said before they load
    # two windows in one file: no one setting fits it, only counting it again
    windows = [45 if i % 2 else 60 for i in range(len(table))]
    table.assign(response_window_days=windows).to_csv(path, index=False)
    mixed = run(home, "uplift", "--campaigns", str(path))
    assert mixed.returncode == 2 and "counted over 45 and 60 days" in mixed.stderr
    assert "`crm-ltv outcomes --window-days 30`" in mixed.stderr
    assert "or set uplift.response_window_days" not in mixed.stderr
    table.assign(response_window_days=30.5).to_csv(path, index=False)  # no setting takes it
    fraction = run(home, "uplift", "--campaigns", str(path))
    assert fraction.returncode == 2 and "counted over 30.5 days" in fraction.stderr
    assert "or set uplift.response_window_days" not in fraction.stderr


def test_ab_by_acquisition_channel_without_customers_says_so_before_loading(home, tmp_path):
    """A shop's transactions (Online Retail II) loaded for 9 s before this was said."""
    own = tmp_path / "own.csv"
    own.write_text((home / "data/sample/transactions.csv").read_text())
    result = run(
        home, "ab", "--by", "acquisition_channel", "--transactions", str(own),
        "--campaigns", str(home / "data/sample/campaigns.csv"),
    )  # fmt: skip
    assert result.returncode != 0 and "needs a customers table" in result.stderr
    assert "--customers, or customers.path in configs/data.yaml" in result.stderr
    assert "loading" not in result.stderr  # neither the campaigns nor the transactions


def test_ab_logs_the_files_it_read_by_absolute_path(home):
    """Relative paths were logged as given: a run read from another folder named no file."""
    sample = home / "data" / "sample"
    relative = [f"{home.name}/data/sample/{t}.csv" for t in ("campaigns", "transactions")]
    result = run(
        home, "ab", "--campaigns", relative[0], "--by", "acquisition_channel",
        "--transactions", relative[1], "--customers", str(sample / "customers.csv"),
        cwd=home.parent,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split("MLflow run ", 1)[1].split()[0]
    found = _client(home).get_run(run_id)
    assert found.data.params["campaigns_file"] == str(sample / "campaigns.csv")
    # runs on other files have other names (tester J: four runs named 'ab by action')
    assert found.info.run_name == "ab by action and acquisition_channel on campaigns.csv"
    # and the note as the param (tester J: it said the path as typed)
    assert f"from {sample / 'campaigns.csv'} (" in found.data.tags["mlflow.note.content"]
    sources = {d.dataset.name: d.dataset.source for d in found.inputs.dataset_inputs}
    for table in ("campaigns", "transactions", "customers"):
        assert str(sample / f"{table}.csv") in sources[table]


def test_cohorts_count_customers_missing_from_the_customers_table_as_unknown(tmp_path):
    """They crashed it (a categorical channel refused the "(unknown)" it was filled with). A
    home of its own: the module's has one cohorts run, which another test reads."""
    home = new_home(tmp_path / "home")
    assert run(home, "data", "--n-customers", "400").returncode == 0
    lines = (home / "data/sample/customers.csv").read_text().splitlines()
    partial = tmp_path / "customers.csv"
    partial.write_text("\n".join(lines[:-10]) + "\n")  # ten customers left out
    result = run(home, "cohorts", "--customers", str(partial))
    assert result.returncode == 0, result.stderr
    assert "10 of 400 customers" in result.stderr
    unknown = [row.split() for row in result.stdout.splitlines() if " (unknown) " in row]
    assert unknown and sum(int(r[2]) for r in unknown if r[0] != "all") == 10


def test_plan_ab_prints_customers_per_group(home):
    result = run(home, "plan-ab", "--baseline-rate", "0.1", "--lift", "0.2")
    assert result.returncode == 0, result.stderr
    assert "3,835 customers per group" in result.stdout  # tests/test_experiments_ab.py
    # where to look it up (the line named no store)
    assert "in experiment 'crm-ltv-ab-plans' at " in result.stdout
    assert result.stdout.rstrip().endswith(f"sqlite:///{home / 'mlflow.db'}")
    bad = run(home, "plan-ab", "--baseline-rate", "0.6", "--lift", "1.0")
    assert bad.returncode == 2 and "error: plan-ab: lift 1: expected" in bad.stderr
    split = run(
        home, "plan-ab", "--baseline-rate", "0.1", "--lift", "0.2", "--treatment-share", "0.8"
    )
    assert split.returncode == 0, split.stderr
    assert "treatment and" in split.stdout and "treatment share 0.800" in split.stdout


def test_plan_ab_names_power_and_alpha_when_power_is_not_above_alpha(home):
    result = run(home, "plan-ab", "--baseline-rate", "0.09", "--lift", "0.2", "--power", "0.3",
                 "--alpha", "0.5")  # fmt: skip
    assert result.returncode == 2 and result.stderr.startswith("error: plan-ab: power 0.3 is")
    assert "--power" in result.stderr and "--alpha" in result.stderr
    assert "too small" not in result.stderr


def test_cohorts_prints_retention_transitions_and_ltv_cac_and_logs_them(home):
    result = run(home, "cohorts")
    assert result.returncode == 0, result.stderr
    assert (
        "cohort retention" in result.stdout and "weighted by cohort size: month 1" in result.stdout
    )
    assert "lifecycle stage" in result.stdout and NOT_YET in result.stdout
    assert "LTV:CAC by acquisition channel" in result.stdout and "paid_search" in result.stdout
    client = _client(home)
    experiment = client.get_experiment_by_name("crm-ltv-cohorts")
    assert "LTV:CAC" in experiment.tags["mlflow.note.content"]
    (found,) = client.search_runs([experiment.experiment_id], "tags.kind = 'cohorts'")
    assert "retention month 1" in found.data.tags["mlflow.note.content"]
    # which ratio, and the measured one beside the formula's (tester I)
    note = found.data.tags["mlflow.note.content"]
    assert "Historic LTV:CAC (the classic formula) by channel, with margin to date:CAC" in note
    uri = f"sqlite:///{home / 'mlflow.db'}"
    assert (
        f"MLflow run {found.info.run_id} in experiment 'crm-ltv-cohorts' at {uri}" in result.stdout
    )
    assert 0 < found.data.metrics["retention_month_1"] < 1
    names = {d.dataset.name for d in found.inputs.dataset_inputs}
    assert names == {"transactions", "customers"}
    sample = home / "data" / "sample"
    read = file_sha256(sample / "transactions.csv", sample / "customers.csv")
    assert found.data.tags["data_sha256"] == read and found.data.tags["git_commit"]
    children = {
        c.data.tags["channel"]: c
        for c in client.search_runs(
            [experiment.experiment_id], f"tags.mlflow.parentRunId = '{found.info.run_id}'"
        )
    }
    assert "paid_search" in children
    full = set(children["paid_search"].data.metrics)  # a channel without CAC has no ratio
    assert all({"customers", "mean_cac"} <= set(c.data.metrics) <= full for c in children.values())
    assert children["paid_search"].data.metrics["historic_ltv_to_cac"] > 0
    paid = children["paid_search"].data.metrics
    ratios = paid["historic_ltv_to_cac"], paid["value_to_date_to_cac"]
    assert "paid_search {:.1f} (to date {:.1f})".format(*ratios) in note
    assert "LTV:CAC" in children["paid_search"].data.tags["mlflow.note.content"]
    free = [c for c in children.values() if c.data.metrics["mean_cac"] == 0]  # organic
    for child in free:
        note = child.data.tags["mlflow.note.content"]
        assert "no acquisition cost recorded" in note and "nothing to pay back" in note
    assert _artifacts(client, found.info.run_id, "plots") == {
        "cohort_retention.png",
        "lifecycle_transitions.png",
    }
    assert "ltv_cac_by_channel_and_cohort.json" in _artifacts(client, found.info.run_id, "tables")


def test_ab_warns_of_sends_whose_window_the_transactions_do_not_hold(home, tmp_path):
    """A send in 2027 read as a confident null, one in 2020 as customers without history, with
    no word (tester B); `crm-ltv outcomes` leaves such decisions out."""
    table = pd.read_csv(home / "data/sample/campaigns.csv", dtype=str)
    for years, said in ((3, "window ends after the last transaction"),
                        (-5, "sent before the first transaction")):  # fmt: skip
        path = tmp_path / "dated.csv"
        sent = pd.to_datetime(table["sent_at"]) + pd.DateOffset(years=years)
        table.assign(sent_at=sent.dt.strftime("%Y-%m-%d %H:%M:%S")).to_csv(path, index=False)
        result = run(home, "ab", "--campaigns", str(path))
        assert result.returncode == 0, result.stderr
        assert f"warning: of {len(table):,} campaign rows, {len(table):,} " in result.stderr
        assert said in result.stderr
    assert "campaign rows" not in run(home, "ab").stderr  # the sample's windows are covered


def test_ab_on_customers_not_in_the_homes_default_transactions_skips_the_balance(home, tmp_path):
    """A shop's own campaigns in a home made with the sample: the balance check ran only
    because the sample's transactions exist, and failed for want of its customers."""
    own = tmp_path / "own.csv"
    rows = [
        f"Z{i:04d},2025-07-01,win_back,{'treatment' if i % 2 else 'control'},{i % 3 == 0}"
        for i in range(200)
    ]
    own.write_text("\n".join(["customer_id,sent_at,action,group,converted", *rows]) + "\n")
    result = run(home, "ab", "--campaigns", str(own))
    assert result.returncode == 0, result.stderr
    transactions = home / "data" / "sample" / "transactions.csv"
    said = f"balance not checked: none of the contacts' customers is in {transactions} (give "
    assert f"{said}--transactions)" in result.stdout
    given = run(home, "ab", "--campaigns", str(own), "--transactions", str(transactions))
    assert given.returncode == 2
    assert "none of its 200 contacts' customer ids is in the transactions" in given.stderr
