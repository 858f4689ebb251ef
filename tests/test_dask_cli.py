"""The commands with `--engine dask`, for real, pointed at a running cluster with --scheduler
(the session's local cluster): what a user does with a real one."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from crm_ltv.cli import OUT_KEPT, TRAIN_KEPT
from crm_ltv.features.builders import build_features
from crm_ltv.features.config import ConfigError, DataConfig
from crm_ltv.features.inputs import load_inputs
from crm_ltv.features.paths import Paths
from tests.conftest import CLI, free_port, mlflow_client, new_home, run, without_baseline_gate

pytestmark = pytest.mark.dask


@pytest.fixture()
def home(tmp_path, dask_sample_files):
    home = new_home(tmp_path / "home")
    shutil.copytree(dask_sample_files[1], home / "parts")
    shutil.copy(dask_sample_files[2], home / "customers.csv")
    shutil.copy(dask_sample_files[0], home / "transactions.csv")
    return home


def test_features_on_a_cluster_by_its_scheduler_address_equal_the_single_process_ones(
    home, dask_client, feature_config
):
    address, customers = dask_client.scheduler.address, home / "customers.csv"
    done = run(
        home, "features", "--engine", "dask", "--scheduler", address, "--transactions",
        str(home / "parts/*.parquet"), "--customers", str(home / "customers.csv"),
        "--as-of", "2025-06-01", "--out", str(home / "on_dask"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"dask: scheduler {address}, 2 workers" in done.stderr
    assert "loading 5 transaction file(s)" in done.stderr
    inputs = load_inputs(DataConfig(), Paths(home), home / "transactions.csv", customers)
    single = build_features(
        inputs.transactions.frame, "2025-06-01", feature_config, inputs.customers_frame
    )
    assert f"{len(single):,} customers x {single.shape[1]} features" in done.stdout
    pd.testing.assert_frame_equal(pd.read_parquet(home / "on_dask").sort_index(), single)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["features", "--scheduler", "tcp://127.0.0.1:1"], "--scheduler needs --engine dask"),
        # was silently ignored by the single engine
        (["features", "--partitions", "4"], "--partitions needs --engine dask"),
        # an unset variable ran on a local cluster instead of the one meant
        (["features", "--engine", "dask", "--scheduler", ""], "--scheduler: empty"),
        (
            ["score", "--engine", "dask", "--as-of", "2025-01-01", "--out", "x.csv"],
            "--engine dask writes a folder of Parquet parts",
        ),
    ],
)
def test_bad_engine_options_get_one_clear_error(home, args, message):
    done = run(home, *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "dask:" not in done.stderr  # no cluster reached


def test_a_scheduler_address_in_a_scheme_dask_does_not_take_is_refused_at_once(home, monkeypatch):
    """A dashboard's http:// address was tried for Dask's whole connect timeout, then said to
    be in an "unknown address scheme 'http'"."""
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "2s")
    done = run(home, "features", "--engine", "dask", "--scheduler", "http://127.0.0.1:8722",
               "--transactions", str(home / "parts"))  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(
        "error: --scheduler http://127.0.0.1:8722: Dask does not connect over http://; give the "
        "address `dask scheduler` prints, tcp://HOST:PORT (Dask takes inproc, tcp, tls, "
    ), done.stderr


def test_a_missing_file_is_named_as_by_the_single_engine_before_a_cluster_starts(home, tmp_path):
    """A relative `path:` of configs/data.yaml that names nothing: the Dask engine named it
    made absolute, without where relative paths are read from, once connected to a cluster."""
    path = home / "configs/data.yaml"
    data = yaml.safe_load(path.read_text())
    data["transactions"]["path"] = "in/tx.csv"
    path.write_text(yaml.safe_dump(data))
    said = []
    for engine in (["--engine", "dask"], []):
        done = run(home, "features", *engine, cwd=tmp_path)
        assert done.returncode == 2 and "dask:" not in done.stderr, done.stderr  # no cluster
        said.append(done.stderr.splitlines()[-1])
    assert said[0] == said[1], said
    assert said[0] == f"error: in/tx.csv: no such file (relative paths are read from {tmp_path})"


def test_features_before_anyones_first_purchase_is_one_clear_error(home, dask_client):
    """...and leaves the output of an earlier run as it was (it was emptied)."""
    (home / "none").mkdir()
    (home / "none/part-00000.parquet").write_bytes(b"an earlier run's table")
    done = run(home, "features", "--engine", "dask", "--scheduler", dask_client.scheduler.address,
               "--transactions", str(home / "parts"), "--as-of", "2000-01-01",
               "--out", str(home / "none"))  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "no customer has a purchase up to 2000-01-01" in done.stderr
    assert (home / "none/part-00000.parquet").read_bytes() == b"an earlier run's table"
    into_inputs = run(home, "features", "--engine", "dask", "--transactions", str(home / "parts"),
                      "--out", str(home / "parts"))  # fmt: skip
    assert into_inputs.returncode == 2 and "is an input of this run" in into_inputs.stderr


def test_an_out_that_holds_the_inputs_or_is_a_file_is_refused_before_any_work(home):
    """A wildcard in a folder's name ('par?s/*'): --out parts deleted the input parts and wrote
    over them. An --out that is a file failed after the whole run (File exists)."""
    before = sorted(p.name for p in (home / "parts").iterdir())
    done = run(home, "features", "--engine", "dask", "--transactions",
               str(home / "par?s" / "*"), "--out", str(home / "parts"))  # fmt: skip
    assert done.returncode == 2 and "is an input of this run" in done.stderr, done.stderr
    assert sorted(p.name for p in (home / "parts").iterdir()) == before
    for out in (Path("/proc/crm-ltv-test"), Path("/sys/crm-ltv-test/sub")):  # not writable
        done = run(home, "features", "--engine", "dask", "--out", str(out))
        assert done.returncode == 2 and "dask:" not in done.stderr, done.stderr  # no cluster
        assert f"--out {out}: its parts cannot be written: " in done.stderr
        assert "is not writable" in done.stderr
        assert f"{out}/part-00000.parquet" in done.stderr  # the name its parts take
    (home / "taken").write_text("a file")
    for out in (home / "taken", home / "taken/sub"):
        done = run(home, "score", "--engine", "dask", "--as-of", "2025-01-01", "--out", str(out))
        assert done.returncode == 2, done.stderr
        assert f"--out {out}: {home / 'taken'} is a file" in done.stderr
        assert "dask:" not in done.stderr  # no cluster started


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__ADDRESS", "127.0.0.1:{port}",
         "dashboard http://127.0.0.1:{port}/status"),
        ("DASK_DISTRIBUTED__DASHBOARD__ADDRESS", "None", "dashboard off"),
    ],
)  # fmt: skip
def test_a_local_clusters_dashboard_follows_dasks_config(home, monkeypatch, variable, value, said):
    """It took a random port whatever Dask's config said: no address to pin, no way off."""
    port = free_port()
    monkeypatch.setenv(variable, value.format(port=port))
    done = run(home, "features", "--engine", "dask", "--transactions", str(home / "parts"),
               "--as-of", "2025-06-01", "--out", str(home / "on_dask"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"dask: local cluster of {os.cpu_count()} workers, {said.format(port=port)}\n" in (
        done.stderr
    )


def test_relative_paths_are_read_and_written_from_the_callers_folder(
    home, dask_client, feature_config
):
    """A real cluster's workers resolved them in their own working folder: the run read
    another file of the same name and wrote its parts there, and said it had succeeded. (The
    session's workers work in the repository, the command here in its home.)"""
    done = run(home, "features", "--engine", "dask", "--scheduler", dask_client.scheduler.address,
               "--transactions", "transactions.csv", "--as-of", "2025-06-01", "--out", "rel_out",
               cwd=home)  # fmt: skip
    assert done.returncode == 0, done.stderr
    inputs = load_inputs(DataConfig(), Paths(home), home / "transactions.csv")
    single = build_features(inputs.transactions.frame, "2025-06-01", feature_config)
    pd.testing.assert_frame_equal(pd.read_parquet(home / "rel_out").sort_index(), single)


def test_customers_missing_from_the_customers_table_are_warned_of_as_by_the_single_engine(
    home, dask_client
):
    customers = pd.read_csv(home / "customers.csv", dtype=str)
    customers["customer_id"] = "C" + customers["customer_id"].str.lstrip("0")  # ids rewritten
    customers.to_csv(home / "renamed.csv", index=False)
    said = []
    for engine in (["--engine", "dask", "--scheduler", dask_client.scheduler.address], []):
        done = run(home, "features", *engine, "--transactions", str(home / "transactions.csv"),
                   "--customers", str(home / "renamed.csv"), "--as-of", "2025-06-01",
                   "--out", str(home / ("on_dask" if engine else "single.parquet")))  # fmt: skip
        assert done.returncode == 0, done.stderr
        lines = done.stderr.splitlines()  # each after its '[   2.1s] ' time
        said.append([line.split("] ", 1)[1] for line in lines if "write ids alike" in line])
    assert said[0] == said[1] and len(said[0]) == 1, said
    assert "of transactions.csv are not in renamed.csv" in said[0][0]


def test_a_scheduler_without_workers_is_one_clear_error(home, monkeypatch):
    """Its tasks waited for good, and the command said nothing after 'loading'."""
    import subprocess
    import sys
    import time

    port = free_port()
    dask_cli = str(Path(sys.executable).parent / "dask")
    scheduler = subprocess.Popen(
        [dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--dashboard-address", ":0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):  # up within a few seconds
            if _listening(port):
                break
            time.sleep(0.2)
        monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "2s")
        done = run(home, "features", "--engine", "dask", "--scheduler", f"tcp://127.0.0.1:{port}",
                   "--transactions", str(home / "parts"), timeout=120)  # fmt: skip
    finally:
        scheduler.terminate()
        scheduler.wait(30)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"--scheduler tcp://127.0.0.1:{port}: no worker joined within 2 s; start one with " in (
        done.stderr
    )


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_scheduler_nobody_answers_at_is_one_clear_error(home, monkeypatch):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "2s")  # Dask's: 30 s
    done = run(home, "features", "--engine", "dask", "--scheduler", f"tcp://127.0.0.1:{port}",
               "--transactions", str(home / "parts"))  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    # refused at once: it said "within 2 s" (30 by default) after a second
    said = f"--scheduler tcp://127.0.0.1:{port}: no Dask scheduler answered (ConnectionRefused"
    assert said in done.stderr and "answered within" not in done.stderr, done.stderr


def test_a_scheduler_address_where_something_else_listens_is_one_clear_error(home, monkeypatch):
    """A dashboard or web server's port given by mistake: Dask's client hung for good on a
    silent one, and read a reply as a frame of exabytes (MemoryError) from one that answers."""
    import socket

    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "2s")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections complete in the backlog; nothing is ever sent
        port = silent.getsockname()[1]
        done = run(home, "features", "--engine", "dask", "--scheduler", f"tcp://127.0.0.1:{port}",
                   "--transactions", str(home / "parts"))  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    said = f"--scheduler tcp://127.0.0.1:{port}: no Dask scheduler answered within 2 s "
    assert said + "(ValueError: something answers there, but sends no Dask handshake)" in (
        done.stderr
    )


def test_what_the_dask_engine_cannot_train_fails_before_a_cluster_starts(home):
    path = home / "configs/train.yaml"
    train = yaml.safe_load(path.read_text())
    train["ltv"]["objective"] = "hurdle"
    path.write_text(yaml.safe_dump(train))
    done = run(home, "train", "--engine", "dask", "--transactions", str(home / "parts"))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "ltv.objective hurdle: --engine dask trains tweedie only" in done.stderr
    assert "dask:" not in done.stderr  # no cluster was started or reached


def _interrupted(
    home: Path,
    log: Path,
    after: str,
    *args: str,
    command: str = "train",
    wait: float = 1,
    until: Callable[[], bool] | None = None,
) -> str:
    """`crm-ltv COMMAND --engine dask ARGS` sent Ctrl-C as a terminal sends it (to the whole
    process group) `wait` seconds after it says `after` (and, given `until`, once that holds);
    what it wrote to stderr. It exits 130."""
    env = {**os.environ, "CRM_LTV_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    argv = [CLI, command, "--engine", "dask", "--partitions", "2",
            "--transactions", str(home / "transactions.csv"), *args]  # fmt: skip
    with log.open("w") as err:
        proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 180
        while after not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        time.sleep(wait)  # the workers busy with its tasks
        while until is not None and not until():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return log.read_text()


def _both_workers_train(client: Any) -> bool:
    """Whether both workers of a two-worker cluster run a booster's training task
    (`_train_part`: lightgbm.dask's function, named in its tasks' keys)."""

    def training(dask_worker: Any) -> bool:
        return any("_train_part" in str(t.key) for t in dask_worker.state.executing)

    return sum(client.run(training).values()) == 2


def _not_progress(said: str) -> list[str]:
    """The lines of stderr that are not the run's progress lines (each after its time)."""
    return [line for line in said.splitlines() if not line.startswith("[")]


def test_ctrl_c_on_a_local_cluster_ends_in_one_line(home, tmp_path):
    """The terminal sends Ctrl-C to the whole process group: each local worker printed its
    KeyboardInterrupt traceback, the workers a warning per cancelled task and the client its
    abandoned gathers (about 90 lines before the `interrupted:` line)."""
    said = _interrupted(home, tmp_path / "train.err", "snapshots at")
    assert _not_progress(said) == [f"interrupted: {TRAIN_KEPT}"], said


def test_ctrl_c_in_features_ends_in_one_line_and_leaves_the_earlier_table(home, tmp_path):
    """features had no stop of its own: Ctrl-C ended it with no `interrupted:` line (exit 130
    with the terminal's, or Dask's tracebacks), and SIGTERM with none at all."""
    out = tmp_path / "features"
    out.mkdir()
    (out / "notes.txt").write_text("kept")
    said = _interrupted(
        home, tmp_path / "features.err", "dask: local cluster", "--out", str(out),
        command="features", wait=0,
    )  # fmt: skip
    assert _not_progress(said) == [f"interrupted: {OUT_KEPT}"], said
    assert (out / "notes.txt").read_text() == "kept"


def test_ctrl_c_on_a_remote_scheduler_ends_in_one_line(home, tmp_path, dask_client):
    """A cluster's scheduler and workers are not in the command's process group: the client
    alone stops, and it printed two asyncio tracebacks of its abandoned gathers ("Task
    exception was never retrieved ... AllExit") before the `interrupted:` line."""
    address = dask_client.scheduler.address
    said = _interrupted(home, tmp_path / "train.err", "snapshots at", "--scheduler", address)
    assert f"dask: scheduler {address}" in said
    assert _not_progress(said) == [f"interrupted: {TRAIN_KEPT}"], said


def test_ctrl_c_while_a_remote_cluster_trains_cancels_the_rest_and_says_what_runs_on(
    home, tmp_path, dask_client
):
    """Dask cannot stop a running task: on a shared cluster lightgbm.dask's training ran all
    its rounds after the command had gone (about 80 s), with nothing said. The command's tasks
    are cancelled, and the run says what still runs and where to watch it."""
    address = dask_client.scheduler.address
    # a fixed second after the progress line was not enough on a loaded machine (CI): the
    # boosters' tasks had not yet started on both workers
    said = _interrupted(
        home, tmp_path / "train.err", "training churn booster", "--scheduler", address,
        until=lambda: _both_workers_train(dask_client),
    )  # fmt: skip
    assert "Traceback" not in said and said.endswith(f"interrupted: {TRAIN_KEPT}\n"), said
    assert "dask: cancelled this command's tasks; 2 already running on the cluster's workers" in (
        said
    )
    assert "(Dask cannot stop a running task; a booster in training runs all its rounds)" in said
    assert f"dashboard, {dask_client.dashboard_link}, shows them" in said
    stopped = time.monotonic()
    while any(dask_client.run(lambda dask_worker: len(dask_worker.state.executing)).values()):
        assert time.monotonic() - stopped < 300, "the workers still run the command's tasks"
        time.sleep(0.5)  # the booster's rounds, run to their end
    assert not dask_client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.tasks)


def test_without_dask_installed_the_engine_says_which_extra_to_install(monkeypatch):
    """Dask is an optional extra (the runtime lock has none): a user without it gets the pip
    line, not an ImportError. Simulated: this environment has Dask."""
    from crm_ltv import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "distributed" else real(name)
    )
    with pytest.raises(ConfigError, match=r"pip install '/path/to/crm-ltv\[dask\]' -c "):
        cli._on_dask(cli.Engine.dask, None, None)
    assert cli._on_dask(cli.Engine.single, None, None) is False


@pytest.mark.heavy
def test_train_then_score_on_a_cluster(home, dask_client):
    """`train --engine dask` registers models through MLflow as the single-process path does;
    `score --engine dask` writes partitioned Parquet. Heavy: two full CLI runs (about 40 s)."""
    without_baseline_gate(home)
    address, customers = dask_client.scheduler.address, str(home / "customers.csv")
    common = ["--engine", "dask", "--scheduler", address, "--customers", customers]
    trained = run(home, "train", "--transactions", str(home / "parts"), *common)
    assert trained.returncode == 0, trained.stderr
    assert "with lightgbm.dask" in trained.stderr and "churn: churn v1" in trained.stdout
    assert "refitting both models on every labelled cutoff" in trained.stderr
    # the LTV line one process prints, with the unit (tester L: not printed on Dask)
    assert re.search(r"LTV model \(tweedie\): [\d,]+ rounds?, spend in units of [\d,.]+ \(the "
                     r"training buyers' mean\)", trained.stderr), trained.stderr  # fmt: skip
    metadata = json.loads(next((home / "mlartifacts").rglob("bundle.json")).read_text())["metadata"]
    rows = json.loads((home / "reports/metrics.json").read_text())["rows"]
    params = mlflow_client(home).get_run(metadata["run_id"]).data.params
    # Every row the cluster trained on, not the client's samples of them
    assert rows == {"train": int(params["cluster_train_rows"]),
                    "validation": int(params["cluster_valid_rows"]),
                    "test": int(params["cluster_test_rows"])}  # fmt: skip
    assert int(params["train_rows"]) == rows["train"]
    run_ = mlflow_client(home).get_run(metadata["run_id"])
    assert run_.inputs.dataset_inputs == []  # no dataset that says 0 rows: they stay there
    assert not list((home / "mlartifacts").rglob("ltv_cac_by_channel*"))
    assert metadata["fit"].startswith("refit") and metadata["refit_rows"] == sum(rows.values())
    scored = run(
        home, "score", "--as-of", "2025-12-31", "--out", str(home / "scores"),
        "--transactions", str(home / "parts"), *common,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    table = pd.read_parquet(home / "scores")
    assert table["customer_id"].is_unique and table["churn_probability"].between(0, 1).all()
    assert f"scored {len(table):,} customers" in scored.stdout
    # without the customers table: its features scored as missing, as on one process, said
    bare = run(
        home, "score", "--as-of", "2025-12-31", "--out", str(home / "bare"),
        "--transactions", str(home / "parts"), "--engine", "dask", "--scheduler", address,
    )  # fmt: skip
    assert bare.returncode == 0, bare.stderr
    assert "read acquisition_channel, days_since_signup, which these data cannot" in bare.stderr
    assert len(pd.read_parquet(home / "bare")) == len(table)
    # before the first purchase: the error alone, before the champions' warnings and any work
    early = run(
        home, "score", "--as-of", "2022-06-01", "--out", str(home / "early"),
        "--transactions", str(home / "parts"), *common,
    )  # fmt: skip
    assert early.returncode == 2, early.stderr
    assert early.stderr.rstrip().endswith(
        "error: no customer has a purchase up to 2022-06-01 00:00:00; nothing to score"
    ), early.stderr
    assert "warning" not in early.stderr and "scoring at" not in early.stderr, early.stderr


def test_a_dashboard_address_that_cannot_be_is_one_error_naming_the_setting(home, monkeypatch):
    """A 230-line traceback ending "Cluster failed to start: Name or service not known"."""
    monkeypatch.setenv("DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__ADDRESS", "no-such-host:1")
    done = run(home, "features", "--engine", "dask", "--transactions", str(home / "parts"),
               "--as-of", "2025-06-01", "--out", str(home / "on_dask"))  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert (
        "error: the local Dask cluster did not start with its dashboard at 'no-such-host:1' "
        "(Dask's distributed.scheduler.dashboard.address or distributed.dashboard.address): "
    ) in done.stderr


def test_more_partitions_than_customers_is_warned_of(home, dask_client):
    """Tester V: --partitions 1000 over 784 customers wrote 448 empty parts, each a task at
    every step, without a word."""
    tx = pd.read_csv(home / "transactions.csv", dtype=str)
    three = tx.loc[tx["customer_id"].isin(tx["customer_id"].unique()[:3])]
    three.to_csv(home / "three.csv", index=False)
    argv = ["features", "--engine", "dask", "--scheduler", dask_client.scheduler.address,
            "--transactions", str(home / "three.csv"), "--out", str(home / "out")]  # fmt: skip
    done = run(home, *argv, "--partitions", "8")
    assert done.returncode == 0, done.stderr
    empty = 8 - sum(len(pd.read_parquet(p)) > 0 for p in (home / "out").glob("part-*.parquet"))
    assert empty >= 5
    said = f"warning: {empty} of the 8 partitions hold no customer: --partitions 8 is more than"
    assert said in done.stderr, done.stderr
    assert "hold no customer" not in run(home, *argv, "--partitions", "1").stderr


@dataclass(frozen=True)
class _Machines:
    """A cluster of processes, each in a session of its own as on a machine of its own."""

    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]


@contextlib.contextmanager
def _cluster_of_processes(
    folder: Path, workers: int, hidden: Path | None = None
) -> Iterator[_Machines]:
    """`dask scheduler` and `workers` single-threaded `dask worker`s, started as a user starts
    them (each worker in its own working folder under `folder`); killed at the end. `hidden`:
    a folder the first worker sees empty (a tmpfs over it in a mount namespace of its own), as
    a machine without the shared mount sees it; skipped where no namespace can be made."""
    distributed = pytest.importorskip("distributed")
    if hidden is not None:
        probe = ["unshare", "-m", "sh", "-c", f"mount -t tmpfs none '{hidden}'"]
        if subprocess.run(probe, capture_output=True).returncode != 0:
            pytest.skip("no mount namespace here (unshare -m needs root)")
    dask_cli = str(Path(sys.executable).parent / "dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    started: list[subprocess.Popen] = []
    try:
        started.append(subprocess.Popen(
            [dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--dashboard-address", ":0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        ))  # fmt: skip
        for i in range(workers):
            argv = [dask_cli, "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                    "--no-dashboard"]  # fmt: skip
            if hidden is not None and i == 0:
                mount = 'mount -t tmpfs none "$0" && exec "$@"'
                argv = ["unshare", "-m", "sh", "-c", mount, str(hidden), *argv]
            own = folder / f"worker-{i}"
            own.mkdir(parents=True)
            started.append(subprocess.Popen(
                argv, cwd=own, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            ))  # fmt: skip
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        yield _Machines(address, started[0], started[1:])
    finally:
        for proc in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _run_until(
    home: Path, log: Path, after: str, then: Callable[[], None], *args: str,
    until: Callable[[], bool] | None = None, wait: float = 0,
) -> tuple[int, str]:  # fmt: skip
    """`crm-ltv ARGS`, with `then()` done `wait` seconds after it says `after` (and `until`
    holds): its exit code and what it wrote to stderr."""
    env = {**os.environ, "CRM_LTV_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log.open("w") as err:
        proc = subprocess.Popen(
            [CLI, *args], env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 180
        while after not in log.read_text() or (until is not None and not until()):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        time.sleep(wait)
        then()
        return proc.wait(timeout=120), log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("after", "command"),
    [
        ("loading 5 transaction file(s)", "features"),
        # the client gives up reconnecting (Dask's window: here 1 s) while `train` works on its
        # own: its next call failed as a closed client's (a 70-line traceback, review)
        ("creating the MLflow store", "train"),
    ],
)
def test_a_scheduler_lost_mid_run_is_one_clear_error(home, tmp_path, monkeypatch, after, command):
    """The scheduler stopped while the command loaded: a 112-line traceback and exit 1 (Dask's
    FutureCancelledError "scheduler-connection-lost"), tester L."""
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "1s")  # the command's
    out = ["--out", str(tmp_path / "out")] if command == "features" else []
    with _cluster_of_processes(tmp_path, 1) as machines:
        code, said = _run_until(
            home, tmp_path / "command.err", after,
            lambda: os.killpg(machines.scheduler.pid, signal.SIGKILL),
            command, "--engine", "dask", "--scheduler", machines.address,
            "--transactions", str(home / "parts"), *out,
        )  # fmt: skip
    assert code == 2 and "Traceback" not in said, said
    assert _not_progress(said) == [
        f"error: --scheduler {machines.address}: lost the connection to the scheduler mid-run; "
        "the command's work on the cluster is lost: check that the scheduler still runs (its "
        "log says why it stopped) and is reachable from here, then run the command again"
    ], said


def test_a_worker_lost_while_lightgbm_trains_is_not_worded_as_a_setting(home, tmp_path):
    """One of lightgbm.dask's workers killed: the other's "Socket recv error, Connection reset
    by peer" read "LightGBM refused a setting (params in configs/train.yaml ...)", tester L.
    Killed 2 s into the churn booster's training (13 s here; the tester's 5 s may land in the
    next booster's link on a faster machine): one killed while the workers still link leaves
    the other waiting for it (lightgbm.dask's time_out, 10 minutes)."""
    distributed = pytest.importorskip("distributed")
    with (
        _cluster_of_processes(tmp_path, 2) as machines,
        distributed.Client(machines.address) as client,
    ):
        code, said = _run_until(
            home, tmp_path / "train.err", "training churn booster",
            lambda: os.killpg(machines.workers[1].pid, signal.SIGKILL),
            "train", "--engine", "dask", "--scheduler", machines.address,
            "--transactions", str(home / "parts"),
            until=lambda: _both_workers_train(client), wait=2,
        )  # fmt: skip
    assert code == 2 and "Traceback" not in said, said
    error = _not_progress(said)[-1]
    assert error.startswith(
        "error: LightGBM's training on the cluster lost a worker, or the network between the "
        "workers broke ("
    ), said
    assert "refused a setting" not in said


def test_what_a_worker_cannot_see_of_the_shared_storage_is_one_clear_error(home, tmp_path):
    """A worker without the shared mount: its parts of --out went to its own disk, and the run
    said "wrote 1 parts to DIR" over a folder empty on the client; an input it cannot see
    read as a wrong path ("no such file"), tester L."""
    hidden = tmp_path / "shared"
    hidden.mkdir()
    with _cluster_of_processes(tmp_path, 1, hidden=hidden) as machines:
        out = hidden / "features"
        args = ("--engine", "dask", "--scheduler", machines.address, "--partitions", "2")
        done = run(home, "features", *args, "--transactions", str(home / "parts"),
                   "--out", str(out))  # fmt: skip
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert _not_progress(done.stderr) == [
            f"error: {out}: the workers wrote 2 parts that this machine does not see "
            "(part-00000.parquet, ...): is --out on storage every machine shares? (README: "
            "Scaling out on Dask)"
        ], done.stderr
        assert list(out.iterdir()) == []
        shutil.copytree(home / "parts", hidden / "parts")
        done = run(home, "features", *args, "--transactions", str(hidden / "parts"),
                   "--out", str(tmp_path / "features"))  # fmt: skip
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        worker = re.search(r"a worker \((tcp://[^)]+)\)", done.stderr)
        assert worker is not None, done.stderr
        assert _not_progress(done.stderr) == [
            f"error: {hidden / 'parts/tx-0.parquet'}: a worker ({worker[1]}) could not see this "
            "file, which this machine sees (and 4 more files): the workers read the inputs at "
            "the paths given, so they need to be on storage every machine shares (README: "
            "Scaling out on Dask)"
        ], done.stderr


def test_parts_are_counted_in_words(home, dask_client, tmp_path):
    done = run(home, "features", "--engine", "dask", "--scheduler", dask_client.scheduler.address,
               "--partitions", "1", "--transactions", str(home / "parts"),
               "--out", str(tmp_path / "one"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"wrote 1 part to {tmp_path / 'one'}" in done.stderr  # was "wrote 1 parts"


def test_an_error_on_a_remote_cluster_says_what_still_runs_with_boosters_only_in_training(
    dask_client,
):
    """The line said "a booster in training runs all its rounds" after a data error in
    `features`, where no booster runs (tester L); the tasks still running are said."""
    from crm_ltv.features import cluster
    from crm_ltv.features.contract import DataError

    def running() -> int:
        return sum(dask_client.run(lambda dask_worker: len(dask_worker.state.executing)).values())

    said: list[str] = []
    address = dask_client.scheduler.address
    with pytest.raises(DataError), cluster.connect(address, said.append) as client:
        sleeping = client.submit(time.sleep, 3)  # held, as the command holds its tasks
        while not running():
            time.sleep(0.05)
        raise DataError(f"rejected rows above the limit ({sleeping.status})")
    assert said[-1] == (
        "dask: cancelled this command's tasks; 1 already running on the cluster's workers run to "
        "their end (Dask cannot stop a running task): the cluster's dashboard, "
        f"{dask_client.dashboard_link}, shows them"
    )
