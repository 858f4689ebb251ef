"""What every run records to be reproduced: the input files' hash (their bytes, whatever
caches it), the commit and any uncommitted change."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
from pathlib import Path

import mlflow

import crm_ltv
from crm_ltv.training import tracking
from crm_ltv.training.tracking import file_sha256


def test_the_data_hash_is_the_files_bytes_and_follows_a_rewrite(tmp_path):
    one, two = tmp_path / "a.csv", tmp_path / "b.csv"
    one.write_bytes(b"customer_id,timestamp,amount\nc1,2024-01-01,5\n")
    two.write_bytes(b"customer_id,timestamp,amount\nc2,2024-01-02,7\n")
    assert file_sha256(one) == hashlib.sha256(one.read_bytes()).hexdigest()
    digests = [hashlib.sha256(f.read_bytes()).hexdigest() for f in (one, two)]
    assert file_sha256(one, None, two) == hashlib.sha256("".join(digests).encode()).hexdigest()
    assert file_sha256(two, one) != file_sha256(one, two)  # in order
    before = file_sha256(one)
    stat = one.stat()
    one.write_bytes(b"customer_id,timestamp,amount\nc1,2024-01-01,6\n")  # same size
    os.utime(one, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert file_sha256(one) != before
    assert file_sha256(one) == hashlib.sha256(one.read_bytes()).hexdigest()


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_a_run_records_the_commit_the_data_and_any_uncommitted_change(tmp_path, monkeypatch):
    """Two runs of one '-dirty' commit can differ: the diff goes with the run, hashed."""
    repo = tmp_path / "code"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "model.py").write_text("ROUNDS = 1\n")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    commit = _git(repo, "rev-parse", "HEAD")
    monkeypatch.setattr(tracking, "CODE", repo)
    data = tmp_path / "tx.csv"
    data.write_text("customer_id,timestamp,amount\nc1,2024-01-01,5\n")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # artifacts under tmp_path: the Default experiment's would go to ./mlruns wherever pytest runs
    mlflow.set_experiment(
        experiment_id=mlflow.create_experiment("t", artifact_location=tmp_path.as_uri())
    )
    try:
        with mlflow.start_run() as clean:
            environment = hashlib.sha256(tracking.installed_packages().encode()).hexdigest()
            assert tracking.log_provenance(data, None) == {
                "git_commit": commit,
                "crm_ltv_version": crm_ltv.__version__,
                "data_sha256": file_sha256(data),
                "environment_sha256": environment,
            }
        (repo / "model.py").write_text("ROUNDS = 2\n")
        with mlflow.start_run() as dirty:
            tags = tracking.log_provenance()  # no input files: no data hash
            inherited = tracking.inherited_provenance()  # read in the parent, for its children
            with mlflow.start_run(nested=True) as child:
                mlflow.set_tags(inherited)
        client = mlflow.MlflowClient()
        diff = client.download_artifacts(dirty.info.run_id, "code/uncommitted.diff", tmp_path)
        text = Path(diff).read_text()
        assert "-ROUNDS = 1" in text and "+ROUNDS = 2" in text
        assert tags == {
            "git_commit": f"{commit}-dirty",
            "crm_ltv_version": crm_ltv.__version__,
            "git_diff_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "environment_sha256": environment,
        }
        assert client.get_run(child.info.run_id).data.tags.items() >= tags.items()
        assert "git_diff_sha256" not in client.get_run(clean.info.run_id).data.tags
    finally:
        mlflow.set_tracking_uri("")


def test_code_installed_inside_another_repository_records_no_commit_of_it(tmp_path):
    """Tester P: crm-ltv installed into a user's own repository (its .venv ignored there) took
    that repository's commit, '-dirty', and logged the user's uncommitted diff to MLflow. The
    code's own folder must be tracked by the repository git finds; else 'unknown', and the
    release is in crm_ltv_version."""
    repo = tmp_path / "shop"
    installed = repo / ".venv/lib/site-packages/crm_ltv/training"
    installed.mkdir(parents=True)
    (installed / "tracking.py").write_text("# installed\n")
    (repo / ".gitignore").write_text(".venv/\n")
    (repo / "notes.txt").write_text("mine\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    (repo / "notes.txt").write_text("mine, and a secret\n")  # the user's own change
    assert tracking.git_commit(repo) == f"{_git(repo, 'rev-parse', 'HEAD')}-dirty"
    assert tracking.git_commit(installed) == "unknown"
    assert tracking.git_commit(tmp_path) == "unknown"  # no repository at all
    # a copy kept (tracked) in a larger repository: its commit, and its own changes only
    # (review: the repository's changed .env went to MLflow as the code's diff)
    vendored = repo / "tools/crm"
    vendored.mkdir(parents=True)
    (vendored / "tracking.py").write_text("ROUNDS = 1\n")
    _git(repo, "add", "tools")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "two")
    commit = _git(repo, "rev-parse", "HEAD")
    assert tracking.git_commit(vendored) == commit  # notes.txt is still changed, outside it
    assert tracking._uncommitted_diff(vendored) == ""
    (vendored / "tracking.py").write_text("ROUNDS = 2\n")
    assert tracking.git_commit(vendored) == f"{commit}-dirty"
    diff = tracking._uncommitted_diff(vendored)
    assert "+ROUNDS = 2" in diff and "secret" not in diff


def test_tables_and_metrics_keep_a_tiny_p_value_rather_than_rounding_it_to_0():
    from crm_ltv.training.tracking import readable

    assert readable(4.2817e-21) == 4.28e-21 and readable(0.00012) == 0.0001
    assert readable(0.8631661) == 0.8632 and readable(-0.00003) == -3e-05
    assert math.isnan(readable(float("nan")))


def test_commands_started_together_in_a_new_home_share_one_store(tmp_path):
    """Two trains started at once in a new home both created MLflow's tables: one failed with
    `table _alembic_tmp_experiments already exists` (and two creating one experiment would)."""
    import sys

    code = (
        "import sys; from pathlib import Path; from crm_ltv.features.paths import Paths; "
        "from crm_ltv.training.tracking import setup_tracking; "
        "print(setup_tracking(Paths(Path(sys.argv[1])), 'crm-ltv'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    started = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]  # fmt: skip
    done = [p.communicate(timeout=300) for p in started]
    assert [p.returncode for p in started] == [0, 0, 0], [err[-2000:] for _, err in done]
    assert len({out.strip() for out, _ in done}) == 1  # one experiment, the same id for all


def test_a_new_home_store_keeps_every_experiments_files_in_the_home(tmp_path, monkeypatch):
    """MLflow's first open of a new store gave its Default experiment ./mlruns of the folder
    the first command ran in, outside the home; the project's experiments were in the home."""
    from crm_ltv.features.paths import Paths

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    paths = Paths(tmp_path / "home")
    try:
        tracking.setup_tracking(paths, "crm-ltv")
        client = mlflow.MlflowClient()
        found = {e.name: e.artifact_location for e in client.search_experiments()}
        assert set(found) == {"Default", "crm-ltv"}
        for name, location in found.items():
            where = tracking.local_folder(location)
            assert where is not None and where.is_relative_to(paths.artifacts_dir), (name, where)
        assert not (elsewhere / "mlruns").exists()
    finally:
        mlflow.set_tracking_uri("")


def test_making_the_store_and_logging_the_inputs_say_so(tmp_path, monkeypatch):
    """Seconds of silence on Online Retail II between the time split and the models (train)
    or the first study (tune): MLflow's migrations of a new store (1.5 s) and the schema of the
    input datasets, which MLflow infers from every row (5.5 s)."""
    import pandas as pd

    from crm_ltv.features.paths import Paths

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    paths = Paths(tmp_path)
    data = tmp_path / "tx.csv"
    data.write_text("customer_id,timestamp,amount\nc1,2024-01-01,5\nc2,2024-01-02,7\n")
    said: list[str] = []
    try:
        tracking.setup_tracking(paths, "t", progress=said.append)
        tracking.setup_tracking(paths, "t", progress=said.append)  # made: nothing to say
        assert said == [f"creating the MLflow store {paths.mlflow_db}"]
        datasets = tracking.file_datasets([("transactions", pd.read_csv(data), data)])
        with mlflow.start_run():
            tracking.log_datasets(datasets, "training", said.append)
        assert said[1:] == [
            "logging the input files as MLflow datasets (transactions 2 rows: MLflow infers a "
            "schema)"
        ]
    finally:
        mlflow.set_tracking_uri("")
