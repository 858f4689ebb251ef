"""`crm-ltv train / score / promote / tune` and the MLflow UI, for real, on a small sample.

One project home is shared by the tests of this module, in order: they follow one registry
through a first training, a rerun, a worse model, promotion by hand and scoring.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from crm_ltv.training.tracking import file_sha256, readable
from tests.conftest import ROOT, free_port, mlflow_client, run


@pytest.fixture(scope="module")
def trained(trained_home) -> tuple[Path, subprocess.CompletedProcess[str]]:
    return trained_home


def _champion(home: Path, name: str) -> str:
    return str(mlflow_client(home).get_model_version_by_alias(name, "champion").version)


def test_train_evaluates_logs_registers_and_reports(trained):
    home, result = trained
    for step in ("snapshot", "time split", "training churn model", "registering the model bundle"):
        assert step in result.stderr
    assert "Downloading artifacts" not in result.stderr  # MLflow's bar: the progress is ours
    assert "lightgbm" in result.stdout and "bgnbd" in result.stdout and "rfm" in result.stdout
    assert "churn: churn v1 now champion" in result.stdout
    summary = json.loads((home / "reports/metrics.json").read_text())
    assert summary["horizon_days"] == 90
    assert json.loads((home / "reports/metrics_h90.json").read_text()) == summary  # its own
    assert set(summary["churn"]) == {"lightgbm", "bgnbd", "rfm"}
    for key in ("roc_auc", "pr_auc", "log_loss", "brier", "expected_calibration_error"):
        assert 0 <= summary["churn"]["lightgbm"][key] <= 1
    assert "sample_truth_dropout_auc" in summary["churn"]["lightgbm"]  # the sample's ground truth
    for name in ("lightgbm", "bgnbd", "rfm"):  # the gate's calibration bound, for every model
        assert 0 < summary["churn"][name]["calibration_error_by_chance"] < 0.05
    for key in ("normalized_gini", "spearman", "rmse", "mae", "top10_value_share"):
        assert key in summary["ltv"]["lightgbm"]
    run_ = mlflow_client(home).get_run(summary["run_id"])
    assert len(run_.data.tags["data_sha256"]) == 64 and run_.data.tags["git_commit"]
    # the packages it ran on, as `pip freeze` lists them, and their hash (tester Y)
    environment = home / "mlartifacts" / summary["run_id"] / "artifacts/environment"
    installed = (environment / "requirements.txt").read_text()
    assert "lightgbm==4.7.0\n" in installed and "mlflow==3.17.2\n" in installed
    digest = hashlib.sha256(installed.encode()).hexdigest()
    assert run_.data.tags["environment_sha256"] == digest
    # the built-in sample's settings, as `crm-ltv data --n-customers 3000` made it
    made = json.loads((home / "mlartifacts" / summary["run_id"] / "artifacts/config/sample.json")
                      .read_text())  # fmt: skip
    assert made["n_customers"] == 3000 and made["seed"] == 42
    assert run_.data.params["test_cutoff"] == summary["cutoffs"]["test"]
    artifacts = home / "mlartifacts" / summary["run_id"] / "artifacts"
    plots = {p.name for p in (artifacts / "plots").iterdir()}
    assert {"churn_roc.png", "churn_pr.png", "churn_calibration.png", "churn_gains.png",
            "ltv_deciles.png"} <= plots  # fmt: skip
    tables = {p.name for p in (artifacts / "tables").iterdir()}
    assert {"rfm_segments.json", "ltv_cac_by_channel_at_test_cutoff.json"} <= tables
    assert _champion(home, "churn") == "1" and _champion(home, "ltv") == "1"
    version = mlflow_client(home).get_model_version("churn", "1")
    assert version.tags["horizon_days"] == "90"


def test_the_mlflow_ui_compares_models_and_baselines_in_child_runs(trained):
    """What an analyst sees: one child run per model with the same metric names, margins over
    BG/NBD on the parent, descriptions everywhere, the data as a dataset, the logged model with
    its own metrics only."""
    home, _ = trained
    summary = json.loads((home / "reports/metrics.json").read_text())
    client = mlflow_client(home)
    parent = client.get_run(summary["run_id"])
    experiment = client.get_experiment(parent.info.experiment_id)
    assert "child runs `lightgbm`, `bgnbd` and `rfm`" in experiment.tags["mlflow.note.content"]
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    described = parent.data.tags["mlflow.note.content"]
    assert "no purchase in the next 90 days" in described and "| bgnbd |" in described
    assert "`churn` v1 (churn): champion" in described  # the gate's decision and why
    assert "(#/compare-runs?runs=%5B%22" in described  # the side-by-side page of the children
    children = {
        r.data.tags["model"]: r
        for r in client.search_runs(
            [experiment.experiment_id], f"tags.mlflow.parentRunId = '{summary['run_id']}'"
        )
    }
    assert set(children) == {"lightgbm", "bgnbd", "rfm"}
    # what tells trainings apart in a search across them (tester J: on the parent only)
    split = {"horizon_days": "90", "test_cutoff": summary["cutoffs"]["test"],
             "evaluation": summary["evaluation"]}  # fmt: skip
    assert all(split.items() <= r.data.tags.items() for r in children.values())
    assert {k: version_tag for k, version_tag in client.get_model_version("ltv", "1").tags.items()
            if k in split} == split  # fmt: skip
    # each file with its own digest, and the run's data_sha256 (of both) named as such: it
    # read as the transactions file's sha256 (tester J)
    sample = home / "data/sample"
    own = file_sha256(sample / "transactions.csv")[:12]
    assert f"Data `{sample / 'transactions.csv'}` (sha256 `{own}`) and `" in described
    both = parent.data.tags["data_sha256"][:12]
    assert f"data_sha256 `{both}` (the run's tag: the hash of them all)" in described
    assert f"sha256 `{both}`)" not in described
    # the switch beside bgnbd_as_features, and the money unit of the LTV boosters (tester L)
    params = parent.data.params
    assert params["bgnbd_as_offset"] in {"True", "False"} and "bgnbd_as_features" in params
    (bundle,) = [
        b
        for b in (json.loads(f.read_text()) for f in (home / "mlartifacts").rglob("bundle.json"))
        if b["metadata"]["run_id"] == summary["run_id"]
    ]
    assert float(params["ltv_refit_unit"]) == pytest.approx(bundle["ltv"]["unit"], rel=1e-5)
    assert float(params["ltv_unit"]) > 0
    names = {frozenset(r.data.metrics) for r in children.values()}
    assert len(names) == 1 and {"churn_roc_auc", "ltv_normalized_gini"} <= set(next(iter(names)))
    for name, run_ in children.items():
        assert run_.data.tags["mlflow.note.content"]
        got = run_.data.metrics["churn_roc_auc"]
        assert got == round(summary["churn"][name]["roc_auc"], 4)  # the figure, readable
        assert [d.dataset.name for d in run_.inputs.dataset_inputs] == ["transactions", "customers"]
    margin = parent.data.metrics["margin_over_bgnbd_churn_roc_auc"]
    exact = summary["churn"]["lightgbm"]["roc_auc"] - summary["churn"]["bgnbd"]["roc_auc"]
    assert margin == readable(exact)  # 4 decimals; a margin below them in 3 significant digits
    (dataset,) = [
        d.dataset for d in parent.inputs.dataset_inputs if d.dataset.name == "transactions"
    ]
    source = Path(json.loads(dataset.source)["uri"].removeprefix("file://"))
    assert source.name == "transactions.csv"
    assert dataset.digest == file_sha256(source)[:16]  # the file's own digest, not the run's
    assert dataset.digest != file_sha256(source, home / "data/sample/customers.csv")[:16]
    version = client.get_model_version("churn", "1")
    assert version.run_id == children["lightgbm"].info.run_id
    assert "Gate:" in version.description and "P(no purchase" in version.description
    assert "Refit on every labelled cutoff (labels through" in version.description
    assert version.tags["metrics_of"] == "evaluation_fit"
    assert version.tags["registered_fit"] == "refit"
    # the model holds versions of every horizon: its description names none, each version does
    described_model = client.get_registered_model("churn").description
    assert "no purchase in the next horizon (each version's `horizon_days` tag" in described_model
    assert version.tags["horizon_days"] == "90"
    model = mlflow.get_logged_model(children["lightgbm"].outputs.model_outputs[0].model_id)
    assert {m.key for m in model.metrics} == set(children["lightgbm"].data.metrics)
    artifacts = home / "mlartifacts" / children["lightgbm"].info.run_id / "artifacts" / "plots"
    assert {"churn_importance.png", "ltv_shap.png"} <= {p.name for p in artifacts.iterdir()}


def test_score_uses_the_champions_and_the_training_feature_code(trained):
    home, _ = trained
    out = home / "scores.csv"
    result = run(home, "score", "--as-of", "2025-06-30", "--out", str(out))
    assert result.returncode == 0, result.stderr
    scores = pd.read_csv(out, dtype={"customer_id": str})
    assert list(scores.columns) == [
        "customer_id", "churn_probability", "predicted_value", "horizon_days",
        "rfm_segment", "lifecycle_stage",
    ]  # fmt: skip
    assert (
        scores["churn_probability"].between(0, 1).all() and (scores["predicted_value"] >= 0).all()
    )
    assert (scores["horizon_days"] == 90).all()
    # the same customers the feature builder finds at that cutoff
    tx = pd.read_csv(home / "data/sample/transactions.csv", dtype={"customer_id": str})
    bought = tx[(pd.to_datetime(tx["timestamp"]) <= "2025-06-30") & (tx["amount"] > 0)]
    assert set(scores["customer_id"]) == set(bought["customer_id"])
    parquet = run(home, "score", "--as-of", "2025-06-30", "--out", str(home / "s.parquet"))
    assert parquet.returncode == 0, parquet.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(home / "s.parquet"), scores, check_dtype=False)
    # the champion's level is that of the horizon after the data's end, half a year later
    assert "warning: scoring as of 2025-06-30 00:00, but the level" in parquet.stderr
    assert "for the 90 days after 2025-12-" in parquet.stderr
    ends = pd.to_datetime(tx["timestamp"]).max()  # with its seconds (tester K: to the minute)
    assert ends.second and f"v1's for the 90 days after {ends}" in parquet.stderr
    # the first purchase's instant: one customer, and the seconds the other lines print
    first = pd.to_datetime(bought["timestamp"]).min()
    at_first = bought.loc[pd.to_datetime(bought["timestamp"]) == first, "customer_id"]
    assert first.second and at_first.nunique() == 1
    one = run(home, "score", "--as-of", f"{first:%Y-%m-%dT%H:%M:%S}", "--out", str(home / "1.csv"))
    assert one.returncode == 0, one.stderr  # it said "scoring 1 customers" (tester J)
    assert f"scoring 1 customer at {first}" in one.stderr and "scored 1 customer at" in one.stdout
    assert f"warning: scoring as of {first}, but the level" in one.stderr  # not to the minute
    end = f"{pd.to_datetime(tx['timestamp']).max():%Y-%m-%d}"
    at_end = run(home, "score", "--as-of", end, "--out", str(home / "end.csv"))
    assert at_end.returncode == 0 and "warning" not in at_end.stderr, at_end.stderr
    late = run(home, "score", "--as-of", "2027-06-30", "--out", str(home / "late.csv"))
    assert late.returncode == 0, late.stderr  # allowed, but said: everyone looks lapsed
    assert "warning: --as-of 2027-06-30 is" in late.stderr and "looks lapsed" in late.stderr
    tx.assign(amount=tx["amount"] * 100).to_csv(home / "cents.csv", index=False)  # tester F
    cents = run(home, "score", "--transactions", str(home / "cents.csv"), "--as-of", end,
                "--out", str(home / "cents_scores.csv"))  # fmt: skip
    assert cents.returncode == 0 and "in another unit or currency?" in cents.stderr, cents.stderr


def test_feature_rows_for_the_champions_score_as_crm_ltv_score_scores(trained):
    """A customer over the service's max_transactions_per_customer is sent as a feature row,
    which `crm-ltv features` built by the file's own quintiles and first line: on Online
    Retail II 12 of 20 customers then got another RFM segment than `crm-ltv score` gave them.
    With --champions, the rows are those the champions score."""
    from crm_ltv.features.config import load_config
    from crm_ltv.features.paths import Paths
    from crm_ltv.training.config import TrainConfig
    from crm_ltv.training.registry import load_champions
    from crm_ltv.training.scoring import score_customers

    home, _ = trained
    at = ("--as-of", "2025-06-30")
    built = run(home, "features", *at, "--champions", "--out", str(home / "rows.parquet"))
    assert built.returncode == 0, built.stderr
    assert "building the rows churn v1 and ltv v1 read" in built.stderr
    assert run(home, "features", *at, "--out", str(home / "own.parquet")).returncode == 0
    assert run(home, "score", *at, "--out", str(home / "scored.csv")).returncode == 0
    rows, own = pd.read_parquet(home / "rows.parquet"), pd.read_parquet(home / "own.parquet")
    expected = pd.read_csv(home / "scored.csv", dtype={"customer_id": str})
    mlflow_client(home)  # the home's registry, for the in-process read
    registry = load_config(TrainConfig, Paths(home).config_file("train")).registry
    got = score_customers(rows, load_champions(registry))
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected, check_dtype=False)
    # the file's own quintiles score some customers otherwise: the option is what differs
    assert (own["rfm_segment"].astype(str) != rows["rfm_segment"].astype(str)).any()


def test_a_date_before_the_data_is_one_error_without_the_champions_warnings(trained):
    """Nothing to score before the first purchase: the error alone, not after a page on the
    champion's level belonging to another season (true, but of scores there are none of)."""
    home, _ = trained
    early = run(home, "score", "--as-of", "2022-06-01", "--out", str(home / "early.csv"))
    assert early.returncode == 2, early.stderr
    assert early.stderr.rstrip().endswith(
        "error: no customer has a purchase up to 2022-06-01 00:00:00; nothing to score"
    ), early.stderr
    assert "warning" not in early.stderr, early.stderr
    assert not (home / "early.csv").exists()


def test_a_file_without_the_customers_table_scores_its_features_as_missing(trained):
    """The champions read acquisition_channel and days_since_signup; a user's own transactions
    without a customers table are scored with those missing, as the service scores them, and
    the run says so (it failed with `missing features`)."""
    home, _ = trained
    own = home / "own_transactions.csv"  # not the sample's path: no customers table goes with it
    own.write_bytes((home / "data/sample/transactions.csv").read_bytes())
    args = ("score", "--as-of", "2025-12-31", "--out")  # at the data's end: no level warning
    with_table = run(home, *args, str(home / "with_table.csv"))
    without = run(home, *args, str(home / "without.csv"), "--transactions", str(own))
    assert without.returncode == 0, without.stderr
    assert "read acquisition_channel, days_since_signup, which these data cannot make" in (
        without.stderr
    )
    assert "scored as missing values" in without.stderr and "warning" not in with_table.stderr
    a = pd.read_csv(home / "with_table.csv", dtype={"customer_id": str})
    b = pd.read_csv(home / "without.csv", dtype={"customer_id": str})
    assert list(a["customer_id"]) == list(b["customer_id"])
    assert b["churn_probability"].between(0, 1).all() and (b["predicted_value"] >= 0).all()
    assert (a["churn_probability"] - b["churn_probability"]).abs().max() > 1e-3


def test_rerun_gives_the_same_metrics_and_a_tie_keeps_the_champion(trained):
    home, _ = trained
    first = json.loads((home / "reports/metrics.json").read_text())
    again = run(home, "train")
    assert again.returncode == 0, again.stderr
    second = json.loads((home / "reports/metrics.json").read_text())
    assert second["churn"] == first["churn"] and second["ltv"] == first["ltv"]
    assert "churn: churn v2 not promoted: roc_auc" in again.stdout
    assert "does not beat champion v1" in again.stdout
    assert _champion(home, "churn") == "1"


def test_a_worse_model_does_not_become_champion(trained):
    """Held back, the run still exits 0 and metrics.json says `promoted: false`: the contract
    README Training documents under "Exit code" for scripts."""
    home, _ = trained
    path = home / "configs/train.yaml"
    original = path.read_text()
    worse = yaml.safe_load(original)
    for kind in ("churn", "ltv"):
        worse[kind]["n_estimators"] = 2  # two rounds of boosting: a weak model
        worse["promotion"][kind]["thresholds"] = {}  # so that only the comparison decides
    worse["baselines"]["bgnbd_as_features"] = False
    before = run(home, "score", "--as-of", "2025-06-30", "--out", str(home / "before.csv"))
    assert before.returncode == 0, before.stderr
    path.write_text(yaml.safe_dump(worse))
    try:
        result = run(home, "train")
    finally:
        path.write_text(original)
    assert result.returncode == 0, result.stderr
    # Scoring reads the champions (v1), not the newest versions (the weak v3).
    after = run(home, "score", "--as-of", "2025-06-30", "--out", str(home / "after.csv"))
    assert after.returncode == 0, after.stderr
    pd.testing.assert_frame_equal(
        pd.read_csv(home / "after.csv", dtype={"customer_id": str}),
        pd.read_csv(home / "before.csv", dtype={"customer_id": str}),
    )
    summary = json.loads((home / "reports/metrics.json").read_text())
    assert summary["registry"]["churn"]["promoted"] is False
    assert "does not beat champion v1" in summary["registry"]["churn"]["reason"]
    assert summary["registry"]["ltv"]["promoted"] is False
    assert _champion(home, "churn") == "1" and _champion(home, "ltv") == "1"


def test_promote_by_hand(trained):
    home, _ = trained
    moved = run(home, "promote", "--model", "churn", "--version", "2")
    assert moved.returncode == 0, moved.stderr
    assert "churn: champion v1 -> v2" in moved.stdout and _champion(home, "churn") == "2"
    assert "A running service keeps the versions it loaded: restart `crm-ltv serve`" in moved.stdout
    # the gate's verdict stays on the version (it was overwritten), the hand move beside it
    by_hand = mlflow_client(home).get_model_version("churn", "2").tags
    assert "does not beat" in by_hand["promotion"] and by_hand["promoted_by_hand"].endswith("UTC")
    unknown = run(home, "promote", "--model", "churn", "--version", "99")
    assert unknown.returncode == 2 and "has versions 1, 2, 3" in unknown.stderr
    client = mlflow_client(home)
    assert client.get_model_version("churn", "1").tags["superseded_by"] == "2"  # the one it left
    back = run(home, "promote", "--model", "churn", "--version", "1")
    assert back.returncode == 0 and "restart `crm-ltv serve`" in back.stdout
    again = run(home, "promote", "--model", "churn", "--version", " 1")  # nothing moved: no hint
    assert "nothing moved" in again.stdout and "restart" not in again.stdout
    assert "superseded_by" not in client.get_model_version("churn", "1").tags  # champion again
    assert client.get_model_version("churn", "2").tags["superseded_by"] == "1"
    # promoting the champion itself keeps the gate's reason on it
    reason = client.get_model_version("ltv", "1").tags["promotion"]
    assert "promoted by hand" not in reason
    same = run(home, "promote", "--model", "ltv", "--version", "1")
    assert same.returncode == 0 and "ltv: v1 is already champion; nothing moved" in same.stdout
    assert client.get_model_version("ltv", "1").tags["promotion"] == reason


def test_own_file_with_another_horizon_is_not_compared_with_the_champion(trained):
    """A user's file of just under a calibration year and a 182-day horizon: too short for
    three windows that do not overlap, so it trains on held-out customers and says so; and
    too short for the season of the horizon after it, which it says too."""
    home, _ = trained
    tx = pd.read_csv(home / "data/sample/transactions.csv", dtype=str)
    year = tx[pd.to_datetime(tx["timestamp"]) < pd.to_datetime(tx["timestamp"]).min()
              + pd.Timedelta(days=360)]  # fmt: skip
    own = home / "own.csv"
    year.rename(columns={"customer_id": "Client", "amount": "Total"}).to_csv(
        own, sep=";", index=False
    )
    result = run(
        home, "train", "--transactions", str(own), "--sep", ";", "--column", "customer_id=Client",
        "--column", "amount=Total", "--horizon-days", "182",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "loading customers" not in result.stderr  # the sample's customers are not paired
    assert "evaluation is out-of-customer, not out-of-time" in result.stderr
    assert "evaluation: out-of-customer, not out-of-time" in result.stdout
    assert "warning: the level of the 182 days after the data (total value, churn rate) cannot "\
        "follow the season" in result.stderr  # fmt: skip
    summary = json.loads((home / "reports/metrics.json").read_text())
    assert (
        summary["horizon_days"] == 182
        and "sample_truth_dropout_auc" not in summary["churn"]["lightgbm"]
    )
    assert summary["evaluation"] == "out-of-customer"
    for kind in ("churn", "ltv"):  # the promote that works, not a bare one refused (tester J)
        version, reason = summary["registry"][kind]["version"], summary["registry"][kind]["reason"]
        assert "90-day horizon, this run 182 days: not comparable, left alone;" in reason
        assert reason.endswith(
            f"`crm-ltv promote --model {kind} --version {version} --pair` makes this run's pair "
            "champions"
        )
    run_ = mlflow_client(home).get_run(summary["run_id"])
    assert run_.data.tags["evaluation"] == "out-of-customer"
    # a tune there says it on stdout and in its run as train does (tester C: stderr only)
    tuned = run(
        home, "tune", "--trials", "1", "--transactions", str(own), "--sep", ";", "--column",
        "customer_id=Client", "--column", "amount=Total", "--horizon-days", "182",
    )  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr
    assert "evaluation: out-of-customer, not out-of-time: the studies' scores are measured on " in (
        tuned.stdout
    )
    [tune_run] = mlflow_client(home).search_runs(
        [run_.info.experiment_id], "tags.kind = 'tuning' and tags.evaluation = 'out-of-customer'"
    )
    assert tune_run.data.tags["transactions"] == str(own)
    (home / "reports/best_params_h182.json").unlink()  # this module's later trains: untuned
    # the mapping it read with, the command line's over data.yaml (tester O: data.yaml alone)
    read = mlflow.artifacts.load_dict(f"{run_.info.artifact_uri}/config/data.json")
    assert read["transactions"]["sep"] == ";"
    assert read["transactions"]["columns"]["customer_id"] == "Client"
    for name in ("churn", "ltv"):  # what the registry shows of each version too
        assert mlflow_client(home).get_model_version(name, "4").tags["evaluation"] == (
            "out-of-customer"
        )
    # the experiment's description, rewritten by every run, names no horizon (it holds both)
    note = mlflow_client(home).get_experiment(run_.info.experiment_id).tags["mlflow.note.content"]
    assert "in the next horizon" in note and "182" not in note and "90 days" not in note
    # Its versions (4) predict 182 days: promoting one beside a 90-day champion would leave
    # scoring without a pair; --pair moves both of that run.
    mixed = run(home, "promote", "--model", "churn", "--version", "4")
    assert mixed.returncode == 2 and _champion(home, "churn") == "1"
    assert "churn v4 predicts 182 days, the ltv v1 scoring uses 90 days" in mixed.stderr
    assert "--version 4 --pair" in mixed.stderr
    both = run(home, "promote", "--model", "churn", "--version", "4", "--pair")
    assert both.returncode == 0, both.stderr
    assert "churn: champion v1 -> v4" in both.stdout and "ltv: champion v1 -> v4" in both.stdout
    uplift = run(home, "promote", "--model", "uplift", "--pair")
    assert uplift.returncode == 2 and "--pair: only churn and ltv" in uplift.stderr
    back = run(home, "promote", "--model", "ltv", "--version", "1", "--pair")
    assert back.returncode == 0 and (_champion(home, "churn"), _champion(home, "ltv")) == ("1", "1")
    # without an ltv champion, scoring pairs churn v1 with ltv's newest version of its 90
    # days (v3), not its newest (v4, 182 days): promote checks that same partner
    client = mlflow_client(home)
    client.delete_registered_model_alias("ltv", "champion")
    try:
        lone = run(home, "promote", "--model", "churn", "--version", "1")
        assert lone.returncode == 0, lone.stderr
        scored = run(home, "score", "--as-of", "2025-06-30", "--out", str(home / "lone.csv"))
        assert scored.returncode == 0, scored.stderr
        assert "using the newest of the other champion's 90-day horizon, v3" in scored.stderr
        assert "scoring with churn v1, ltv v3 (90-day horizon)" in scored.stderr  # not "champions"
        assert ", by churn v1 and ltv v3 -> " in scored.stdout  # the file does not say (tester C)
        assert (pd.read_csv(home / "lone.csv")["horizon_days"] == 90).all()
    finally:
        client.set_registered_model_alias("ltv", "champion", "1")


def _group_commands(group: int) -> list[str]:
    """The command lines of the processes in a process group (Linux /proc)."""
    commands = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) == group:
                commands.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError, IndexError):
            continue  # a process that ended meanwhile
    return commands


@pytest.mark.parametrize(("given", "runs_with"), [(None, "false"), ("true", "true")])
def test_mlflow_ui_turns_the_job_runner_off_unless_the_user_set_it(
    tmp_path, monkeypatch, given, runs_with
):
    """What `mlflow server` is started with (os.execv replaced: it would become the server)."""
    from typer.testing import CliRunner

    from crm_ltv.cli import app

    started = {}

    def execv(path: str, argv: list[str]) -> None:
        started["argv"] = argv
        started["jobs"] = os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION")

    monkeypatch.setattr(os, "execv", execv)
    # set first, so that monkeypatch restores this process's environment whatever the CLI sets
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", given or "unset")
    if given is None:
        monkeypatch.delenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION")
    monkeypatch.setenv("CRM_LTV_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # a home with nothing trained is refused before any store is made there (tester O)
    refused = CliRunner().invoke(app, ["mlflow-ui", "--port", str(free_port())])
    assert refused.exit_code == 2 and "nothing was trained in this home" in refused.output
    assert not (tmp_path / "mlflow.db").exists() and "argv" not in started
    (tmp_path / "mlflow.db").touch()  # an empty SQLite file: MLflow makes its tables there
    result = CliRunner().invoke(app, ["mlflow-ui", "--port", str(free_port())])
    assert result.exit_code == 0, result.output
    assert started["argv"][1:4] == ["-m", "mlflow", "server"] and started["jobs"] == runs_with


def test_mlflow_ui_serves_runs_plots_and_the_registry(trained):
    home, _ = trained
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MAKE") and k != "MLFLOW_TRACKING_URI"  # set by mlflow in-process
    }
    server = subprocess.Popen(
        ["make", "-s", "mlflow-ui", f"PORT_UI={port}", f"MLFLOW_HOME={home}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        assert "open the runs table" in server.stdout.readline()
        client = mlflow_client(home)
        experiment = client.get_experiment_by_name("crm-ltv").experiment_id
        link = f"crm-ltv: {base}/#/experiments/{experiment}?workflowType=machine_learning"
        shown = [e for e in client.search_experiments() if e.name != "Default"]
        # one line per experiment (the shared home may hold the experiment commands' too)
        assert link in [server.stdout.readline().strip() for _ in shown]
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(1)
        # MLflow 3's job runner is off: one server, not 8 more processes of ~250 MB each
        commands = _group_commands(server.pid)
        assert any("-m mlflow server" in c for c in commands), commands
        assert not [c for c in commands if "huey" in c or "job_runner" in c], commands
        summary = json.loads((home / "reports/metrics.json").read_text())
        run_id = summary["run_id"]
        got = json.load(urllib.request.urlopen(f"{base}/api/2.0/mlflow/runs/get?run_id={run_id}"))
        assert got["run"]["info"]["status"] == "FINISHED"
        png = urllib.request.urlopen(
            f"{base}/get-artifact?run_id={run_id}&path=plots/churn_roc.png"
        )
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"
        alias = f"{base}/api/2.0/mlflow/registered-models/alias?name=ltv&alias=champion"
        assert json.load(urllib.request.urlopen(alias))["model_version"]["version"] == "1"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_mlflow_ui_answers_the_allowed_host_names_and_still_localhost(trained):
    """MLflow refuses Host headers outside localhost and private addresses (DNS rebinding);
    --allowed-hosts adds the name other machines use, which the printed links then show (the
    UI page is checked: /health answers any host)."""
    home, _ = trained
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    command = [str(ROOT / ".venv/bin/crm-ltv"), "--home", str(home), "mlflow-ui", "--port",
               str(port), "--allowed-hosts", "crm.example"]  # fmt: skip
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def status(host: str | None) -> int:
        request = urllib.request.Request(f"{base}/", headers={"Host": host} if host else {})
        try:
            return urllib.request.urlopen(request, timeout=2).status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        assert "open the runs table" in server.stdout.readline()
        assert f"http://crm.example:{port}/#/experiments/" in server.stdout.readline()
        deadline = time.monotonic() + 120
        while True:
            try:
                status(None)
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(1)
        assert status(f"crm.example:{port}") == 200 and status(None) == 200
        assert status(f"192.168.1.4:{port}") == 200  # MLflow's default (private) stays
        assert status(f"elsewhere.example:{port}") == 403
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_a_champion_whose_run_died_before_its_metrics_is_left_alone_not_a_crash(trained):
    """Tester T: a train killed after its alias moved, before it logged metrics.json, left a
    champion whose evaluation could not be read; every later train on that data crashed on it
    (`KeyError: 'roc_auc'`, a traceback after its whole training)."""
    home, _ = trained
    client = mlflow_client(home)
    champion = client.get_model_version_by_alias("churn", "champion")
    run_id = champion.tags["run_id"]
    metrics = home / "mlartifacts" / run_id / "artifacts" / "metrics.json"
    aside = metrics.with_name("metrics.json.aside")
    metrics.rename(aside)
    try:
        result = run(home, "train")
    finally:
        aside.rename(metrics)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    said = f"champion v{champion.version}'s evaluation metrics cannot be read (its training run "
    assert said + f"{run_id} ended before it logged metrics.json, or the file is damaged)" in (
        result.stdout
    ), result.stdout
    assert _champion(home, "churn") == "1" and _champion(home, "ltv") == "1"
