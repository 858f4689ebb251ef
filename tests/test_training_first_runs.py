"""First runs of a fresh home, each in its own folder: a history too short, a first training
that misses the gate, tuning that resumes its study, and a registry from before model bundles.
(Apart from tests/test_training_cli.py, whose tests share one trained home, so that the two
files run side by side under `make test`'s workers.)"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from crm_ltv.features.config import ConfigError
from crm_ltv.training.tracking import file_sha256, git_commit
from tests.conftest import (
    CLI,
    ROOT,
    free_port,
    mlflow_client,
    new_home,
    run,
    started_run,
    without_baseline_gate,
)


def test_too_short_a_history_fails_with_what_is_missing(tmp_path):
    home = new_home(tmp_path)
    own = home / "short.csv"
    rows = [f"c{i % 40},2024-0{1 + i % 4}-{1 + i % 28:02d},{10 + i}" for i in range(400)]
    own.write_text("customer_id,timestamp,amount\n" + "\n".join(rows) + "\n")
    result = run(home, "train", "--transactions", str(own), "--horizon-days", "90")
    assert result.returncode == 2
    assert "needs at least 180 days" in result.stderr and "--horizon-days" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_first_run_that_misses_the_gate_says_what_to_do_and_scoring_still_works(tmp_path):
    home = new_home(tmp_path)
    assert run(home, "data", "--n-customers", "600").returncode == 0
    nothing = run(home, "score", "--as-of", "2025-01-01", "--out", str(home / "s.csv"))
    assert nothing.returncode == 2 and "nothing was trained in this home" in nothing.stderr
    assert "make train" in nothing.stderr and "Traceback" not in nothing.stderr
    config = yaml.safe_load((home / "configs/train.yaml").read_text())
    config["promotion"]["churn"]["thresholds"]["roc_auc"] = {"min": 0.99}  # out of reach
    for kind in ("churn", "ltv"):  # 600 customers: the gates' thresholds alone
        config["promotion"][kind]["baseline"] = None
    (home / "configs/train.yaml").write_text(yaml.safe_dump(config))
    trained = run(home, "train")
    assert trained.returncode == 0, trained.stderr
    assert "churn: churn v1 not promoted: fails thresholds: roc_auc" in trained.stdout
    assert "`crm-ltv promote --model churn --version 1` makes it champion" in trained.stdout
    assert "no champion yet. No champion yet" not in trained.stdout  # said once
    scored = run(home, "score", "--as-of", "2025-01-01", "--out", str(home / "s.csv"))
    assert scored.returncode == 0, scored.stderr
    assert "warning: churn has no 'champion' version; using the newest, v1" in scored.stderr
    # what `crm-ltv serve` and `bento` copy into the store, twice: the second time it is there
    # already, and churn v1 is not called the champion (tester M: it was, after the warning)
    copy = "from crm_ltv.cli import Progress, _sync_store; _sync_store(Progress())"
    env = {**os.environ, "CRM_LTV_HOME": str(home), "BENTOML_HOME": str(home / "bentoml")}
    env.pop("MLFLOW_TRACKING_URI", None)
    for _ in range(2):
        synced = subprocess.run([sys.executable, "-c", copy], capture_output=True, text=True,
                                env=env, timeout=300)  # fmt: skip
        assert synced.returncode == 0, synced.stderr
    lines = re.findall(r"^\[ *[0-9.]+s\] (.+)$", synced.stderr, re.MULTILINE)
    said = {line.split(" (")[0]: line for line in lines}
    assert said["churn: churn v1"].endswith(") is the version to serve, already in the store")
    assert said["ltv: ltv v1"].endswith(") is the champion, already in the store")
    # Another horizon, the gate in reach: churn v2 would be the lone champion of 60 days beside
    # ltv v1's 90 (which scoring refused); it is not promoted, and says how to move the pair.
    config["promotion"]["churn"]["thresholds"]["roc_auc"] = {"min": 0.5}
    (home / "configs/train.yaml").write_text(yaml.safe_dump(config))
    other = run(home, "train", "--horizon-days", "60")
    assert other.returncode == 0, other.stderr
    assert "churn: churn v2 not promoted: " in other.stdout
    assert "but ltv champion v1 predicts a 90-day horizon, this run 60 days" in other.stdout
    assert "`crm-ltv promote --model churn --version 2 --pair`" in other.stdout
    assert "ltv: ltv v2 not promoted: champion v1 predicts a 90-day horizon" in other.stdout
    scored = run(home, "score", "--as-of", "2025-01-01", "--out", str(home / "s.csv"))
    assert scored.returncode == 0, scored.stderr
    assert "using the newest of the other champion's 90-day horizon, v1" in scored.stderr
    assert (pd.read_csv(home / "s.csv")["horizon_days"] == 90).all()
    # promoted by hand, v1's description no longer says "No champion yet ... promote" beside
    # the champion alias; the gate's reason stays
    client = mlflow_client(home)
    held = client.get_model_version("churn", "1").description
    assert "fails thresholds: roc_auc" in held and ". No champion yet: " in held
    assert run(home, "promote", "--model", "churn", "--version", "1").returncode == 0
    now = client.get_model_version("churn", "1").description
    assert re.fullmatch(r"Promoted by hand on \S+ \S+ UTC \(`crm-ltv promote`\)\. .+", now), now
    assert now.endswith(held.split(". No champion yet: ")[0] + "."), now


def test_a_refit_champion_is_compared_by_its_own_figures_only_on_the_same_data(tmp_path):
    """A refit champion has seen the labels of a later run's test window; on the same test
    cutoff of the same file, its own evaluation figures stand in. A file of other customers
    with the same dates has the same cutoff, but those figures were measured on other people."""
    home = new_home(tmp_path)
    assert run(home, "data", "--n-customers", "600").returncode == 0
    config = yaml.safe_load((home / "configs/train.yaml").read_text())
    for kind in ("churn", "ltv"):  # 600 customers: the gates' thresholds alone
        config["promotion"][kind]["baseline"] = None
    (home / "configs/train.yaml").write_text(yaml.safe_dump(config))
    assert run(home, "train").returncode == 0
    again = run(home, "train")
    assert again.returncode == 0, again.stderr
    assert "champion v1's" in again.stdout  # compared, by v1's evaluation figures
    tx = pd.read_csv(home / "data/sample/transactions.csv")
    ends = set(tx.loc[[tx["timestamp"].idxmin(), tx["timestamp"].idxmax()], "customer_id"])
    ids = tx["customer_id"].unique()
    kept = set(ids[: len(ids) * 2 // 3]) | ends  # the same first and last line: same cutoffs
    tx[tx["customer_id"].isin(kept)].to_csv(home / "fewer.csv", index=False)
    other = run(home, "train", "--transactions", str(home / "fewer.csv"))
    assert other.returncode == 0, other.stderr
    assert "past this run's test cutoff and was evaluated on other data: not compared on " \
        "this snapshot" in other.stdout  # fmt: skip
    assert "champion v1's" not in other.stdout


def test_a_run_on_an_older_history_leaves_the_champion_and_says_its_verdicts(tmp_path):
    """The sample cut six months short, after a run on all of it: its champion has seen newer
    data, so the cut run does not replace it (it did, on its thresholds alone), and the reason
    still gives the thresholds' verdicts (they were dropped whenever a champion was left
    alone); promoting it by hand says what its gate held against it."""
    home = new_home(tmp_path)
    without_baseline_gate(home)
    assert run(home, "data", "--n-customers", "600").returncode == 0
    assert run(home, "train").returncode == 0
    tx = pd.read_csv(home / "data/sample/transactions.csv", dtype={"customer_id": str})
    end = pd.Timestamp(tx["timestamp"].max()) - pd.Timedelta(days=182)
    tx[pd.to_datetime(tx["timestamp"]) <= end].to_csv(home / "older.csv", index=False)
    config = yaml.safe_load((home / "configs/train.yaml").read_text())
    config["promotion"]["churn"]["thresholds"] = {"roc_auc": {"min": 0.99}}
    config["level"]["seasonal"] = False  # no level set: scored far from its data, still said
    (home / "configs/train.yaml").write_text(yaml.safe_dump(config))
    older = run(home, "train", "--transactions", str(home / "older.csv"))
    assert older.returncode == 0, older.stderr
    for kind in ("churn", "ltv"):
        [line] = [x for x in older.stdout.splitlines() if x.startswith(f"{kind}: {kind} v2 ")]
        assert f"{kind} v2 not promoted: champion v1 has seen data up to " in line, line
        assert "a run on an older history does not replace it; left alone" in line, line
    assert "fails thresholds: roc_auc 0." in older.stdout and "< min 0.99" in older.stdout
    moved = run(home, "promote", "--model", "churn", "--version", "2", "--pair")
    assert moved.returncode == 0, moved.stderr
    said = {line.split(" was held back")[0]: line for line in moved.stderr.splitlines()}
    assert "fails thresholds: roc_auc" in said["warning: churn v2"]
    # its thresholds passed, but its gate left the champion of newer data in place
    assert "a run on an older history does not replace it" in said["warning: ltv v2"]
    last = f"{pd.to_datetime(tx['timestamp']).max():%Y-%m-%d}"
    scored = run(home, "score", "--as-of", last, "--out", str(home / "s.csv"))
    assert scored.returncode == 0, scored.stderr
    assert f"churn v2's of its training windows (labels up to {end:%Y-%m}-" in scored.stderr


def test_a_model_that_does_not_beat_bgnbd_is_not_champion(tmp_path):
    """The gate's main rule, end to end: every other test home turns it off (a few hundred
    sample customers do not always beat BG/NBD). One-split boosters without BG/NBD's inputs
    pass every threshold here and lose to BG/NBD on the same test snapshot."""
    home = new_home(tmp_path)
    assert run(home, "data", "--n-customers", "1500").returncode == 0
    config = yaml.safe_load((home / "configs/train.yaml").read_text())
    config["baselines"] |= {"bgnbd_as_features": False, "bgnbd_as_offset": False}
    for kind in ("churn", "ltv"):
        config[kind] |= {"n_estimators": 1, "params": {**config[kind]["params"], "num_leaves": 2}}
        config["promotion"][kind]["baseline"] = "bgnbd"
    config["promotion"]["churn"]["thresholds"] = {"roc_auc": {"min": 0.5}}
    config["promotion"]["ltv"]["thresholds"] = {"normalized_gini": {"min": 0.0}}
    (home / "configs/train.yaml").write_text(yaml.safe_dump(config))
    trained = run(home, "train")
    assert trained.returncode == 0, trained.stderr
    for kind, metric in (("churn", "roc_auc"), ("ltv", "normalized_gini")):
        line = next(x for x in trained.stdout.splitlines() if x.startswith(f"{kind}: "))
        assert f"{kind} v1 not promoted: {metric} " in line, line
        assert "does not beat bgnbd's" in line and "every threshold passes, but bgnbd is" in line
    summary = json.loads((home / "reports/metrics.json").read_text())
    assert summary["churn"]["lightgbm"]["roc_auc"] < summary["churn"]["bgnbd"]["roc_auc"]
    client = mlflow_client(home)
    for name in ("churn", "ltv"):
        with pytest.raises(mlflow.exceptions.MlflowException):
            client.get_model_version_by_alias(name, "champion")


def _tune_home(
    folder: Path, learning_rate: dict[str, object], customers: int = 400, **tune: object
) -> Path:
    """A home of `customers` sample customers whose tunes draw the learning rate from
    `learning_rate` (how long a trial runs), with other tune.yaml settings."""
    home = new_home(folder)
    settings = yaml.safe_load((home / "configs/tune.yaml").read_text()) | tune
    settings["search_space"]["learning_rate"] = learning_rate
    (home / "configs/tune.yaml").write_text(yaml.safe_dump(settings))
    assert run(home, "data", "--n-customers", str(customers)).returncode == 0
    return home


def test_tune_resumes_its_study_and_saves_params_for_train(tmp_path):
    home = _tune_home(tmp_path, {"low": 0.2, "high": 0.3})  # few rounds: fast trials
    first = run(home, "tune", "--trials", "2")
    assert first.returncode == 0, first.stderr
    assert "warning: the test snapshot has" in first.stderr  # 400 customers: said to be noisy
    # churn's early stopping watches AUC (train.yaml): the study maximises it, LTV's minimises
    # the tweedie loss
    [study] = re.findall(
        r"study (crm-ltv-churn-h90-[0-9a-f]{8}) \(maximize validation auc\): 0 trials done, 2 to "
        "go",
        first.stderr,
    )
    assert re.search(r"study crm-ltv-ltv-h90-\w+ \(minimize validation tweedie\)", first.stderr)
    again = run(home, "tune", "--trials", "3")
    assert again.returncode == 0, again.stderr
    assert f"study {study} (maximize validation auc): 2 trials done, 1 to go" in again.stderr
    saved = json.loads((home / "reports/best_params_h90.json").read_text())
    assert saved["horizon_days"] == 90 and {"learning_rate", "num_leaves"} <= set(saved["churn"])
    # the best churn trial is the one of the highest validation AUC; the resumed trial drew
    # new parameters (a sampler seeded as before would repeat the first trial's)
    import optuna

    trials = optuna.load_study(study_name=study, storage=f"sqlite:///{home / 'optuna.db'}").trials
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(done, key=lambda t: t.value)
    assert saved["churn"] == best.params and saved["validation"]["churn"] == {"auc": best.value}
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == len(trials) == 3
    # each study draws its own parameters (one seed for both drew the same, trial for trial)
    [ltv_study] = re.findall(r"study (crm-ltv-ltv-h90-[0-9a-f]{8})", first.stderr)
    storage = f"sqlite:///{home / 'optuna.db'}"
    ltv_trials = optuna.load_study(study_name=ltv_study, storage=storage).trials
    assert len(ltv_trials) == 3
    assert all(a.params != b.params for a, b in zip(trials, ltv_trials, strict=True))
    client = mlflow_client(home)
    experiment = client.get_experiment_by_name("crm-ltv")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "tuning"]
    assert len(parents) == 2
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == 2  # one nested run per new trial: one churn, one ltv
    # the study minimises tweedie, the gate judges Gini: the parent restates the best trial's
    # validation metrics the gate reads (its trial may be of the earlier tune), and says so
    for kind, name, gate in (("churn", study, "roc_auc"), ("ltv", ltv_study, "normalized_gini")):
        best_trial = optuna.load_study(study_name=name, storage=storage).best_trial
        trial_run = client.get_run(best_trial.user_attrs["mlflow_run_id"]).data.metrics
        # named on the parent (tester C: its trial may be under the earlier tune's run)
        assert parents[0].data.params[f"best_{kind}_trial"] == str(best_trial.number)
        best_run_id = parents[0].data.tags[f"best_{kind}_trial_run_id"]
        assert best_run_id == best_trial.user_attrs["mlflow_run_id"]
        for metric in {"churn": ("roc_auc", "expected_calibration_error"),
                       "ltv": ("normalized_gini", "spearman")}[kind]:  # fmt: skip
            restated = parents[0].data.metrics[f"best_{kind}_validation_{metric}"]
            assert restated == trial_run[f"{kind}_{metric}"]
        shown = f"{parents[0].data.metrics[f'best_{kind}_validation_{gate}']:.4f}"
        assert f"{kind}: the best trial's validation {gate} {shown} (the study" in again.stderr
    assert "(the study minimises tweedie; the gate judges normalized_gini on the test" in (
        again.stderr
    )
    # provenance, as a training run has it, on the parent and on each trial
    data = file_sha256(home / "data/sample/transactions.csv", home / "data/sample/customers.csv")
    tags = parents[0].data.tags
    assert tags["data_sha256"] == data and tags["git_commit"] == git_commit(ROOT)
    # the files and the evaluation as tags, as a training run has them (tester C)
    assert tags["transactions"] == str(home / "data/sample/transactions.csv")
    assert tags["customers"] == str(home / "data/sample/customers.csv")
    assert tags["evaluation"] == "out-of-time" and saved["evaluation"] == "out-of-time"
    assert parents[0].data.params["seed"] == "42"
    assert {i.dataset.name for i in parents[0].inputs.dataset_inputs} == {
        "transactions",
        "customers",
    }
    logged = {a.path for a in client.list_artifacts(parents[0].info.run_id, "config")}
    assert {"config/tune.yaml", "config/train.yaml", "config/train.json"} <= logged
    assert {"config/tune.json", "config/features.json", "config/data.json"} <= logged
    trained = run(home, "train")  # with the best params, and says which
    assert trained.returncode == 0, trained.stderr
    [training] = client.search_runs([experiment.experiment_id], "tags.kind = 'training'")
    used = mlflow.artifacts.load_dict(f"{training.info.artifact_uri}/config/tuned_params.json")
    assert used == {"churn": saved["churn"], "ltv": saved["ltv"]}
    # and the best-params file as train read it: copied to a home's reports/, it rebuilds the
    # run (tester Y: tuned_params.json alone is not a best-params file)
    uri = f"{training.info.artifact_uri}/config/best_params_h90.json"
    assert mlflow.artifacts.load_dict(uri) == saved
    # the settings in effect beside the files read (a home's file may set only a few keys)
    features = mlflow.artifacts.load_dict(f"{training.info.artifact_uri}/config/features.json")
    assert features["windows_days"] == [30, 90, 180, 365]
    lr = saved["churn"]["learning_rate"]
    assert float(training.data.params["churn_learning_rate"]) == pytest.approx(lr)
    for child in children:
        assert child.data.tags["kind"] == "trial" and child.data.tags["data_sha256"] == data
        if child.data.tags["trial_state"] == "complete":  # the training children's names
            model = child.data.params["model"]
            gate = {"churn": "churn_roc_auc", "ltv": "ltv_normalized_gini"}[model]
            assert (
                gate in child.data.metrics
                and round(child.data.metrics[gate], 4) == (child.data.metrics[gate])
            )
    from crm_ltv.cli import _tuned_params
    from crm_ltv.features.paths import Paths

    params = _tuned_params(Paths(home), 90, lambda _: None)
    assert params == {"churn": saved["churn"], "ltv": saved["ltv"]}
    assert _tuned_params(Paths(home), 60, lambda _: None) is None  # another horizon: its own file
    # at the target already: nothing runs, and the run says so
    third = run(home, "tune", "--trials", "3")
    assert third.returncode == 0, third.stderr
    assert "every study had its 3 trials: none run (raise --trials)" in third.stderr
    newest = client.search_runs(
        [experiment.experiment_id], "tags.kind = 'tuning'", order_by=["attributes.start_time DESC"]
    )[0]
    assert newest.data.tags["mlflow.note.content"].startswith("No trial run: every study had")
    assert newest.data.tags["churn_study"] == study and newest.data.metrics["churn_trials_run"] == 0
    # params tuned on this data are used quietly; on other data, with a warning
    from crm_ltv.features.config import DataConfig, load_config
    from crm_ltv.features.inputs import load_inputs

    inputs = load_inputs(load_config(DataConfig, Paths(home).config_file("data")), Paths(home))
    said: list[str] = []
    assert _tuned_params(Paths(home), 90, said.append, inputs) == params
    assert not [s for s in said if s.startswith("warning")]
    # ... and with other settings than the tune's (here another LTV objective), with a warning
    from crm_ltv.features.config import FeatureConfig, config_digests, override
    from crm_ltv.training.config import TrainConfig

    areas = ((TrainConfig, "train"), (FeatureConfig, "features"), (DataConfig, "data"))
    train, *rest = [load_config(model, Paths(home).config_file(a)) for model, a in areas]
    assert _tuned_params(Paths(home), 90, said.append, inputs, config_digests(train, *rest))
    assert not [s for s in said if s.startswith("warning")]
    assert "tuned with other settings" not in trained.stderr
    hurdle = override(train, "test", ltv=override(train.ltv, "test", objective="hurdle"))
    assert _tuned_params(Paths(home), 90, said.append, inputs, config_digests(hurdle, *rest))
    assert said[-1].startswith(
        "warning: best_params_h90.json was tuned with other settings of train.yaml (or of the "
        "command line); run `crm-ltv tune` with these, or delete the file"
    )
    other = home / "reports/best_params_h90.json"
    other.write_text(json.dumps({**saved, "data_sha256": "0" * 64}))
    assert _tuned_params(Paths(home), 90, said.append, inputs) == params
    assert (
        "warning: best_params_h90.json was tuned on other data (data_sha256 000000000000"
        in said[-1]
    )
    moved = home / "reports/best_params_h60.json"  # a file that does not hold its horizon
    moved.write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="tuned for a 90-day horizon, not 60; delete it"):
        _tuned_params(Paths(home), 60, lambda _: None)


def test_a_pruned_trials_run_has_how_far_it_got(tmp_path):
    """Pruned trials' runs had their params and no metric, while Optuna kept their value and
    the console said it: they carry it as complete ones do, and the round it was pruned at."""
    import optuna

    # pruned from the first report on: a slow learning rate is behind the median at once
    home = _tune_home(tmp_path, {"low": 0.005, "high": 0.3, "log": True},
                      pruning_warmup_rounds=0, report_every_rounds=5)  # fmt: skip
    tuned = run(home, "tune", "--trials", "6")
    assert tuned.returncode == 0, tuned.stderr
    said = re.findall(
        r"(churn|ltv) trial \d+/6 \(study trial (\d+)\): pruned at round (\d+)", tuned.stderr
    )
    assert {kind for kind, _, _ in said} == {"churn", "ltv"}, tuned.stderr
    client = mlflow_client(home)
    experiment = client.get_experiment_by_name("crm-ltv")
    runs = client.search_runs([experiment.experiment_id], "tags.kind = 'trial'")
    pruned = {
        (r.data.params["model"], r.data.params["trial"]): r
        for r in runs
        if r.data.tags["trial_state"] == "pruned"
    }
    assert set(pruned) == {(kind, number) for kind, number, _ in said}
    storage = f"sqlite:///{home / 'optuna.db'}"
    for kind, number, at in said:
        metrics = pruned[kind, number].data.metrics
        [study] = re.findall(rf"study (crm-ltv-{kind}-h90-[0-9a-f]{{8}})", tuned.stderr)
        trial = optuna.load_study(study_name=study, storage=storage).trials[int(number)]
        assert trial.state == optuna.trial.TrialState.PRUNED
        metric = {"churn": "auc", "ltv": "tweedie"}[kind]
        best = trial.intermediate_values[int(at)]  # the best so far, as reported
        assert metrics[f"validation_{metric}"] == pytest.approx(best, abs=1e-6)
        assert metrics["pruned_at_round"] == int(at) and 1 <= metrics["rounds"] <= int(at)


def test_a_moved_or_copied_home_is_said_for_what_it_is(tmp_path, monkeypatch, capsys):
    """MLflow records the artifact folder as an absolute path: a moved home's versions read as
    'registered before bundles existed', and a copied home wrote into the original's files
    without a word."""
    import shutil

    from sklearn.linear_model import LogisticRegression

    from crm_ltv.features.paths import Paths
    from crm_ltv.training.registry import RegistryError, load_bundle
    from crm_ltv.training.tracking import setup_tracking, ui_links

    home = new_home(tmp_path / "first")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # an earlier test's store
    experiment = setup_tracking(Paths(home), "crm-ltv")
    with mlflow.start_run(experiment_id=experiment):
        fitted = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
        info = mlflow.sklearn.log_model(fitted, name="model", serialization_format="pickle")
    mlflow.register_model(info.model_uri, "churn")
    copy = tmp_path / "copy"
    shutil.copytree(home, copy)
    # MLflow set it to the first home's store, which the copy would then use
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    capsys.readouterr()
    setup_tracking(Paths(copy), "crm-ltv")  # works, on the original's files: said
    kept = f"experiment 'crm-ltv' keeps its files in {home / 'mlartifacts'}"
    assert f"warning: {copy / 'mlflow.db'}: {kept}, outside this home: was it copied from " \
        "there?" in capsys.readouterr().err  # fmt: skip
    home.rename(tmp_path / "moved")  # the copy's files are gone now, as a moved home's
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError, match=r"keeps its files in .*/first/mlartifacts, which is "
                       r"not there: was the home moved\?"):  # fmt: skip
        setup_tracking(Paths(copy), "crm-ltv")
    # nor is a new experiment made there (tester U: cohorts, ab and uplift made theirs at the
    # new place, uplift registered a champion: one store over two folders)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError, match="was the home moved"):
        setup_tracking(Paths(copy), "crm-ltv-cohorts")
    assert mlflow.MlflowClient(f"sqlite:///{copy / 'mlflow.db'}").get_experiment_by_name(
        "crm-ltv-cohorts"
    ) is None  # fmt: skip
    # train and tune refuse before the data is read (they built every snapshot first)
    for command in (["train"], ["tune", "--trials", "1"], ["uplift"], ["policy-eval"]):
        refused = run(copy, *command)
        assert refused.returncode == 2 and "was the home moved" in refused.stderr, refused.stderr
        assert "loading" not in refused.stderr, refused.stderr
    # the UI shows the runs and metrics, and says their files do not show
    capsys.readouterr()
    links = ui_links(Paths(copy), "http://127.0.0.1:5000")
    assert any(link.startswith("crm-ltv: http://127.0.0.1:5000/#/experiments/") for link in links)
    assert "which is not there: was the home moved? Its runs and metrics show, their files" in (
        capsys.readouterr().err
    )
    mlflow.set_tracking_uri(f"sqlite:///{copy / 'mlflow.db'}")
    with pytest.raises(
        RegistryError,
        match=r"churn v1: its files were written under .*/first/"
        r"mlartifacts, which is not there: was the home moved or copied\?",
    ):
        load_bundle("churn", "1")  # fmt: skip
    promoted = run(copy, "promote", "--model", "churn", "--version", "1")
    assert promoted.returncode == 2 and "which is not there: was the home moved" in (
        promoted.stderr
    )


def test_a_version_from_before_bundles_gets_one_message_to_retrain(tmp_path):
    """A champion registered the old way (an MLflow scikit-learn model, no bundle) cannot score:
    `crm-ltv score` says to retrain, and the next training replaces it."""
    from sklearn.linear_model import LogisticRegression

    from crm_ltv.features.paths import Paths
    from crm_ltv.training.tracking import setup_tracking

    home = new_home(tmp_path)
    without_baseline_gate(home)
    assert run(home, "data", "--n-customers", "600").returncode == 0
    client = mlflow_client(home)
    experiment = setup_tracking(Paths(home), "crm-ltv")  # artifacts in the home, as training's
    old = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(old, name="model", serialization_format="pickle")
    for name in ("churn", "ltv"):
        version = mlflow.register_model(info.model_uri, name).version
        client.set_registered_model_alias(name, "champion", version)
    scored = run(home, "score", "--as-of", "2025-06-30", "--out", str(home / "s.csv"))
    assert scored.returncode == 2 and "Traceback" not in scored.stderr
    assert "churn v1 holds no model bundle" in scored.stderr and "retrain" in scored.stderr
    trained = run(home, "train")
    assert trained.returncode == 0, trained.stderr
    assert "churn: churn v2 now champion: champion v1 predates model bundles" in trained.stdout
    # a bundle of a newer crm-ltv: refused before its copy, not copied again on every `serve`
    # (each copy labelled with a format no search here looks for) and refused by each worker
    for manifest in (home / "mlartifacts").rglob("bundle.json"):
        newer = json.loads(manifest.read_text()) | {"format": "crm-ltv-bundle/3"}
        manifest.write_text(json.dumps(newer))
    store = tmp_path / "store"
    served = subprocess.run(
        [CLI, "serve", "--port", str(free_port())], capture_output=True, text=True, timeout=300,
        env={**os.environ, "CRM_LTV_HOME": str(home), "BENTOML_HOME": str(store)},
    )  # fmt: skip
    assert served.returncode == 2 and "Traceback" not in served.stderr, served.stderr
    assert (
        "error: churn v2: model bundle of format 'crm-ltv-bundle/3', this crm-ltv reads "
        "'crm-ltv-bundle/1' and 'crm-ltv-bundle/2': a bundle of a newer crm-ltv (upgrade this "
        "one)"
    ) in served.stderr
    assert not list((store / "models").glob("crm-ltv-*/*/bundle.json"))
    for manifest in (home / "mlartifacts").rglob("bundle.json"):  # v2's, now unreadable
        manifest.write_text("{not json")
    again = run(home, "train")
    assert again.returncode == 0, again.stderr
    assert "churn: churn v3 not promoted: champion v2 cannot be loaded" in again.stdout
    assert "left alone" in again.stdout


def test_a_study_resumes_only_on_the_same_data_and_settings(
    train_config, feature_config, data_config
):
    from crm_ltv.features.config import load_config
    from crm_ltv.training.config import TuneConfig
    from crm_ltv.training.tuning import study_digest
    from tests.conftest import CONFIGS

    tune = load_config(TuneConfig, CONFIGS / "tune.yaml")
    configs = [train_config, feature_config, data_config]

    def digest(data="a" * 64, tune=tune, kind="churn", **change):
        return study_digest(kind, data, tune, [c.model_copy(update=change.get(
            type(c).__name__, {})) for c in configs])  # fmt: skip

    same = digest()
    assert same == digest(tune=tune.model_copy(update={"trials": 99}))  # more trials: resume
    assert same != digest(data="b" * 64)
    assert same != digest(TrainConfig={"seed": 7})
    # what no trial's score reads: the gate, the registry's names, the refit
    gate = train_config.promotion.model_copy(update={"churn": train_config.promotion.ltv})
    assert same == digest(TrainConfig={"promotion": gate, "refit": not train_config.refit})
    assert same != digest(FeatureConfig={"trend_window_days": 30})
    assert same != digest(DataConfig={"validation": data_config.validation.model_copy(
        update={"max_reject_share": 0.5})})  # fmt: skip
    space = dict(tune.search_space)
    space["learning_rate"] = space["learning_rate"].model_copy(update={"high": 0.3})
    assert same != digest(tune=tune.model_copy(update={"search_space": space}))
    # each model's study reads its own section, not the other's: a new churn half-life (or
    # calibration) made a new LTV study that repeated the old one's trials exactly
    churn, ltv = train_config.churn, train_config.ltv
    for kind, own, other in (("churn", "churn", "ltv"), ("ltv", "ltv", "churn")):
        before = digest(kind=kind)
        section = {"churn": churn, "ltv": ltv}
        assert before == digest(kind=kind, TrainConfig={other: section[other].model_copy(
            update={"cutoff_half_life_days": 30.0, "n_estimators": 7})})  # fmt: skip
        assert before != digest(kind=kind, TrainConfig={own: section[own].model_copy(
            update={"cutoff_half_life_days": 30.0})})  # fmt: skip
        assert before != digest(kind=kind, TrainConfig={"seed": 7})  # read by both
        # level.per_window: only whether it names this model
        level = train_config.level
        moved = tuple(k for k in ("churn", "ltv") if (k in level.per_window) != (k == other))
        assert before == digest(kind=kind, TrainConfig={"level": level.model_copy(
            update={"per_window": moved})})  # fmt: skip
        mine = tuple(k for k in ("churn", "ltv") if (k in level.per_window) != (k == own))
        assert before != digest(kind=kind, TrainConfig={"level": level.model_copy(
            update={"per_window": mine})})  # fmt: skip
        # the level's seasonal and growth are set after a fit, which no trial does
        assert before == digest(kind=kind, TrainConfig={"level": level.model_copy(
            update={"seasonal": not level.seasonal, "growth": 0.9})})  # fmt: skip
    isotonic = {"churn": churn.model_copy(update={"calibration": "isotonic"})}
    assert same != digest(TrainConfig=isotonic)  # calibration is churn's
    assert digest(kind="ltv") == digest(kind="ltv", TrainConfig=isotonic)


def test_a_setting_of_one_model_starts_a_new_study_of_that_model_only_and_says_so(tmp_path):
    """A new churn half-life made a new LTV study too, whose trials repeated the old one's
    exactly; and a new study started from 0 trials without a word on why (also beside a
    study named as before 2026-12-05, with no digest: tester K)."""
    import optuna

    home = _tune_home(tmp_path, {"low": 0.2, "high": 0.3})  # few rounds: fast trials
    oldest = optuna.create_study(
        study_name="crm-ltv-ltv-h90", storage=f"sqlite:///{home / 'optuna.db'}"
    )
    oldest.add_trial(optuna.trial.create_trial(value=1.0))
    first = run(home, "tune", "--trials", "1")
    assert first.returncode == 0, first.stderr
    [churn, ltv] = re.findall(r"study (crm-ltv-(?:churn|ltv)-h90-[0-9a-f]{8}) \(", first.stderr)
    assert f"new study {churn}" not in first.stderr  # none before it
    assert (
        f"new study {ltv}: the data or settings differ from those of the 1 earlier study of "
        "this model at this horizon, or crm-ltv named them otherwise (before 2026-12-07) "
        "(latest: crm-ltv-ltv-h90, 1 trial)"
    ) in first.stderr
    train = yaml.safe_load((home / "configs/train.yaml").read_text())
    train["churn"]["cutoff_half_life_days"] = 60
    (home / "configs/train.yaml").write_text(yaml.safe_dump(train))
    again = run(home, "tune", "--trials", "1")
    assert again.returncode == 0, again.stderr
    resumed = rf"study {ltv} \(minimize validation tweedie\): 1 trials? done, 0 to go"
    assert re.search(resumed, again.stderr)
    [new] = re.findall(r"study (crm-ltv-churn-h90-[0-9a-f]{8}) \(", again.stderr)
    assert new != churn
    assert (
        f"new study {new}: the data or settings differ from those of the 1 earlier study of "
        f"this model at this horizon, or crm-ltv named them otherwise (before 2026-12-07) "
        f"(latest: {churn}, 1 trial)"
    ) in again.stderr


def test_stopped_and_killed_commands_leave_runs_and_trials_that_say_so(tmp_path):
    """SIGTERM (a scheduler's stop) ends tune and train with 143, one line, and MLflow runs
    that read KILLED; a tune killed outright (SIGKILL) leaves a RUNNING trial whose heartbeat
    goes stale, and the next tune fails and reports it instead of leaving it RUNNING."""
    import optuna

    from crm_ltv.training.tuning import STALE_AFTER_SECONDS

    home = _tune_home(tmp_path, {"low": 0.001, "high": 0.002}, customers=600)  # slow trials
    # and every LTV trial runs all its rounds (seconds): one that early stopping ended within
    # a second ended before the signal on a fast machine, exit 0 (CI, 2026-12-07)
    train = yaml.safe_load((home / "configs/train.yaml").read_text())
    train["ltv"]["early_stopping_rounds"] = train["ltv"]["n_estimators"]
    (home / "configs/train.yaml").write_text(yaml.safe_dump(train))
    env = {**os.environ, "CRM_LTV_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    client = mlflow_client(home)
    storage = f"sqlite:///{home / 'optuna.db'}"

    def started(args: list[str], run_name: str) -> tuple[subprocess.Popen[str], object, Path]:
        log = tmp_path / f"{run_name}.err"
        with log.open("w") as err:
            proc = subprocess.Popen([CLI, *args], env=env, stdout=subprocess.DEVNULL, stderr=err)
        return proc, started_run(home, run_name, proc), log

    proc, trial_run, log = started(["tune", "--trials", "1"], "ltv-trial-0")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    said = log.read_text()
    assert "interrupted: the finished trials are kept in" in said and "Traceback" not in said
    trial_run = client.get_run(trial_run.info.run_id)
    parent = client.get_run(trial_run.data.tags["mlflow.parentRunId"])
    assert (trial_run.info.status, parent.info.status) == ("KILLED", "KILLED")
    [study] = [s for s in optuna.get_all_study_names(storage) if "-ltv-h" in s]
    states = [t.state for t in optuna.load_study(study_name=study, storage=storage).trials]
    assert states == [optuna.trial.TrialState.FAIL]
    # the interrupted study is named on its parent run, with the trials it ran that count:
    # churn's one; not the LTV trial the signal stopped, which the next tune runs again
    assert parent.data.tags["ltv_study"] == study and parent.data.metrics["ltv_trials_run"] == 0
    assert parent.data.metrics["churn_trials_run"] == 1

    proc, killed_run, _ = started(["tune", "--trials", "1"], "ltv-trial-1")
    deadline = time.monotonic() + 60  # its heartbeat thread starts beside the trial
    while time.monotonic() < deadline:
        with sqlite3.connect(home / "optuna.db") as db:
            beats = db.execute(
                "SELECT COUNT(*) FROM trial_heartbeats JOIN trials USING (trial_id) "
                "WHERE trials.state = 'RUNNING'"
            ).fetchone()[0]
        if beats:
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the tune ended ({proc.returncode}) before it was killed"
    proc.kill()
    assert proc.wait(timeout=60) == -signal.SIGKILL
    trials = optuna.load_study(study_name=study, storage=storage).trials
    [killed] = trials[1:]
    assert killed.state == optuna.trial.TrialState.RUNNING
    # as if the grace period had passed: its last heartbeat an hour ago
    with sqlite3.connect(home / "optuna.db") as db:
        moved = db.execute(
            "UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-3600 seconds') "
            "WHERE trial_id = ?",
            (killed._trial_id,),
        ).rowcount
    assert moved == 1 and STALE_AFTER_SECONDS < 3600
    again = run(home, "tune", "--trials", "1")
    assert again.returncode == 0, again.stderr
    assert f"study {study} (minimize validation tweedie): 0 trials done, 1 to go (2 failed" in (
        again.stderr
    )
    states = [t.state for t in optuna.load_study(study_name=study, storage=storage).trials]
    assert states[:2] == [optuna.trial.TrialState.FAIL] * 2
    assert states[2] == optuna.trial.TrialState.COMPLETE
    # and the killed tune's MLflow runs, left RUNNING by the kill, read KILLED
    killed_run = client.get_run(killed_run.info.run_id)
    killed_parent = client.get_run(killed_run.data.tags["mlflow.parentRunId"])
    assert (killed_run.info.status, killed_parent.info.status) == ("KILLED", "KILLED")

    proc, train_run, log = started(["train"], "train-h90")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    said = log.read_text()
    assert (
        "interrupted: its MLflow run, if it had started, reads KILLED" in said
        and "Traceback" not in said
    )
    assert client.get_run(train_run.info.run_id).info.status == "KILLED"
    children = client.search_runs(
        [train_run.info.experiment_id], f"tags.mlflow.parentRunId = '{train_run.info.run_id}'"
    )
    assert all(c.info.status in ("KILLED", "FINISHED") for c in children)


@pytest.mark.filterwarnings("ignore")  # in process: MLflow's and pandas' own warnings
def test_a_champion_moved_while_a_run_was_judged_is_not_replaced_unseen(tmp_path, monkeypatch):
    """Two runs at once both beat the champion they read: the last to finish took the alias,
    even the weaker. The alias is read again before it moves; a run judged against a champion
    that is no longer it is registered, not promoted, and says how to promote it."""
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from crm_ltv.cli import app
    from crm_ltv.training import job

    home = new_home(tmp_path)
    assert run(home, "data", "--n-customers", "600").returncode == 0
    without_baseline_gate(home)
    reads = {"n": 0}
    real = job.champion_version

    def moved_meanwhile(name: str, alias: str):
        reads["n"] += 1  # two reads before registering (no champion yet), then the re-reads
        return real(name, alias) if reads["n"] <= 2 else SimpleNamespace(version="7")

    monkeypatch.setattr(job, "champion_version", moved_meanwhile)
    # in process: not the store an earlier test's MLflow calls left in MLFLOW_TRACKING_URI
    # (it trained into another test's store when one ran before it in this worker)
    env = {"CRM_LTV_HOME": str(home), "MLFLOW_TRACKING_URI": None}
    result = CliRunner().invoke(app, ["train"], env=env)
    assert result.exit_code == 0, result.output
    assert "churn: churn v1 not promoted: " in result.output
    assert "but champion moved to v7 meanwhile (another run or a promote)" in result.output
    assert "`crm-ltv promote --model ltv --version 1` if this one should serve" in result.output
    assert reads["n"] == 4


@pytest.mark.filterwarnings("ignore")  # in process: MLflow's and pandas' own warnings
def test_a_runs_metrics_are_logged_before_its_version_can_become_champion(tmp_path, monkeypatch):
    """Tester T: the alias moved before the run logged metrics.json, where the next run's gate
    reads the champion's evaluation; a run killed in between left a champion without it."""
    import mlflow
    from typer.testing import CliRunner

    from crm_ltv.cli import app
    from crm_ltv.training import job

    home = new_home(tmp_path)
    assert run(home, "data", "--n-customers", "600").returncode == 0
    without_baseline_gate(home)
    seen: list[dict] = []
    real = job._register_bundle

    def register(*args, **kwargs):
        run_id = mlflow.active_run().data.tags.get("mlflow.parentRunId")  # in the child run
        seen.append(mlflow.artifacts.load_dict(f"runs:/{run_id}/metrics.json"))
        return real(*args, **kwargs)

    monkeypatch.setattr(job, "_register_bundle", register)
    env = {"CRM_LTV_HOME": str(home), "MLFLOW_TRACKING_URI": None}
    result = CliRunner().invoke(app, ["train"], env=env)
    assert result.exit_code == 0, result.output
    (before,) = seen
    assert set(before["churn"]["lightgbm"]) >= {"roc_auc", "expected_calibration_error"}
    assert before["registry"] == {}  # the verdicts follow, in the final metrics.json
    final = json.loads((home / "reports/metrics.json").read_text())
    assert final["churn"]["lightgbm"]["roc_auc"] == before["churn"]["lightgbm"]["roc_auc"]


@pytest.mark.filterwarnings("ignore")  # in process: MLflow's and pandas' own warnings
def test_a_first_run_beaten_to_the_alias_tags_and_says_what_happened(tmp_path, monkeypatch):
    """Two first trainings at once in one home: the other run registered and promoted its own
    version while this one was judged. This run's version is held back, and its tags say so
    (they said `gate: passed` and "no champion yet", so a promotion by hand gave no warning);
    the run says which version is champion now, not that the newest version scores."""
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from crm_ltv.cli import app
    from crm_ltv.training import job

    home = new_home(tmp_path)
    assert run(home, "data", "--n-customers", "600").returncode == 0
    without_baseline_gate(home)
    config = yaml.safe_load((home / "configs/train.yaml").read_text())
    config["promotion"]["churn"]["thresholds"]["roc_auc"] = {"min": 0.99}  # churn: held anyway
    (home / "configs/train.yaml").write_text(yaml.safe_dump(config))
    real = job.register_version

    def other_run_promoted_meanwhile(model_uri: str, name: str, tags: dict[str, str]) -> str:
        version = real(model_uri, name, tags)
        theirs = mlflow.register_model(model_uri, name).version  # the other run's, promoted
        MlflowClient().set_registered_model_alias(name, "champion", str(theirs))
        return version

    monkeypatch.setattr(job, "register_version", other_run_promoted_meanwhile)
    # in process: not the store an earlier test's MLflow calls left in MLFLOW_TRACKING_URI
    env = {"CRM_LTV_HOME": str(home), "MLFLOW_TRACKING_URI": None}
    result = CliRunner().invoke(app, ["train"], env=env)
    assert result.exit_code == 0, result.output
    [churn] = [line for line in result.output.splitlines() if line.startswith("churn: churn v1 ")]
    [ltv] = [line for line in result.output.splitlines() if line.startswith("ltv: ltv v1 ")]
    assert "not promoted: fails thresholds: roc_auc" in churn, churn
    assert "champion moved to v2 meanwhile (another run or a promote)" in churn, churn
    assert "ltv v1 not promoted: " in ltv and "but champion moved to v2 meanwhile" in ltv, ltv
    for line in (churn, ltv):  # v2 is champion: scoring does not use the newest with a warning
        assert "No champion yet" not in line, line
    client = mlflow_client(home)
    for name in ("churn", "ltv"):
        tags = client.get_model_version(name, "1").tags
        assert tags["gate"] == "held", tags
        assert "champion moved to v2 meanwhile" in tags["promotion"], tags
        assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    moved = run(home, "promote", "--model", "ltv", "--version", "1")
    assert moved.returncode == 0, moved.stderr
    assert "warning: ltv v1 was held back by its run's gate: " in moved.stderr, moved.stderr
    assert "but champion moved to v2 meanwhile" in moved.stderr


def test_a_booster_cut_to_one_round_trains_and_says_so(tmp_path):
    """Tuned params under which no tree splits (Online Retail II's first year): early stopping
    keeps one round with no gain. The run failed on its importance figure, and said "1 rounds"."""
    home = new_home(tmp_path)
    without_baseline_gate(home)
    assert run(home, "data", "--n-customers", "400").returncode == 0
    tuned = {"horizon_days": 90, "churn": {"min_data_in_leaf": 10**6}, "ltv": {},
             "studies": {"churn": "by hand", "ltv": "by hand"}}  # fmt: skip
    (home / "reports").mkdir()
    (home / "reports/best_params_h90.json").write_text(json.dumps(tuned))
    trained = run(home, "train")
    assert trained.returncode == 0, trained.stderr
    assert "churn model: 1 round (early stopping found no correction" in trained.stderr
    assert "Traceback" not in trained.stderr


def test_tune_stopped_while_it_reads_says_so_as_train_does(tmp_path):
    """Ctrl-C or SIGTERM while tune reads its inputs and splits them (seconds on a large file)
    ended it with no `interrupted:` line (SIGTERM: no exit status of its own either), and a
    SIGINT was lost where the shell started tune with it ignored (a background job)."""
    home = new_home(tmp_path)
    assert run(home, "data", "--n-customers", "20000").returncode == 0  # a read of seconds
    env = {**os.environ, "CRM_LTV_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    cases = [(signal.SIGINT, None, 130), (signal.SIGINT, ignore_sigint, 130),
             (signal.SIGTERM, None, 143)]  # fmt: skip
    for signum, before, status in cases:
        log = tmp_path / "tune.err"
        with log.open("w") as err:
            proc = subprocess.Popen(
                [CLI, "tune", "--trials", "1"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                preexec_fn=before,
            )
        deadline = time.monotonic() + 60
        while "loading transactions" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.02)
        proc.send_signal(signum)
        proc.wait(timeout=60)
        said = log.read_text()
        assert proc.returncode == status, (signum, before, said)
        assert "interrupted: the finished trials are kept in" in said, said
        assert "study crm-ltv" not in said and "Traceback" not in said  # stopped in the read
