"""Shared fixtures: the project's real configs and small inline transaction frames."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
import yaml

# Test files run side by side (pytest-xdist), each LightGBM with its own threads: OpenMP's default
# spin-waiting then burns the cores the other process needs (a 3,000-customer `crm-ltv train`
# took 25 s beside another, 15 s with passive waiting). Set before LightGBM is first imported;
# the crm-ltv commands and servers the tests start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from crm_ltv.features.config import DataConfig, FeatureConfig, SampleConfig, load_config
from crm_ltv.features.paths import default_config_file

if TYPE_CHECKING:
    from crm_ltv.training.config import TrainConfig
    from crm_ltv.training.models import ChurnModel

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
CLI = str(Path(sys.executable).parent / "crm-ltv")


def new_home(folder: Path) -> Path:
    """A project home with the real configs; its own data, mlflow.db and reports."""
    shutil.copytree(CONFIGS, folder / "configs")
    return folder


def _cli_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "CRM_LTV_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run(
    home: Path,
    *args: str,
    timeout: float = 300,
    cwd: Path | None = None,
    max_file_size: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """The crm-ltv command, for real, in `home`, with no inherited MLflow tracking URI.
    `max_file_size`: bytes a file it writes may grow to (RLIMIT_FSIZE, `ulimit -f`; a write past
    it fails with EFBIG, Python ignoring SIGXFSZ): a disk that fills, without root."""

    def limited() -> None:
        import resource

        if max_file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_size, max_file_size))

    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, env=_cli_env(home), timeout=timeout,
        cwd=cwd, preexec_fn=limited if max_file_size is not None else None,
    )  # fmt: skip


def run_on_full_disk(
    home: Path, folder: Path, size_kb: int, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """The crm-ltv command, in `home`, with `folder` (made if needed) a tmpfs of `size_kb`: a
    real disk that fills (ENOSPC), mounted without root in a user and mount namespace of its
    own (`unshare -rm`; skipped where those are refused). Its result, and the files it left in
    `folder` (the mount goes with the process, so they are listed in it). `env`: more
    environment variables."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode:
        pytest.skip("no unprivileged user and mount namespace (unshare -rm) here")
    folder.mkdir(parents=True, exist_ok=True)
    listing = folder.with_name(f"{folder.name}.left")
    script = (
        'size=$1 dir=$2 out=$3; shift 3; mount -t tmpfs -o size="$size"k tmpfs "$dir" || exit 99; '
        '"$@"; rc=$?; (cd "$dir" && find . -type f | sort) > "$out"; exit $rc'
    )
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", str(size_kb), str(folder), str(listing),
         CLI, *args],
        capture_output=True, text=True, env={**_cli_env(home), **(env or {})}, timeout=300,
    )  # fmt: skip
    if done.returncode == 99:  # a namespace, but no tmpfs in it (some container profiles)
        pytest.skip(f"no tmpfs can be mounted in a user namespace here: {done.stderr.strip()}")
    return done, listing.read_text().split()


def without_baseline_gate(home: Path) -> None:
    """The home's configs/train.yaml (the packaged default where it has none) with a gate that
    does not ask to beat BG/NBD: for CLI behaviour tests on a few hundred customers."""
    path = home / "configs/train.yaml"
    train = yaml.safe_load((path if path.exists() else default_config_file("train")).read_text())
    for kind in ("churn", "ltv"):
        train["promotion"][kind]["baseline"] = None
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(train))


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One project home trained once per test session, shared by the training, scoring and
    serving tests: 3,000 sample customers and the packaged default configs, but for its own
    configs/train.yaml (one file overrides its default), whose gate does not ask to beat
    BG/NBD: on 3,000 customers the churn model does not always (the rule has its own tests).
    Tests that add versions leave both champions at v1 and every config as they found it."""
    home = tmp_path_factory.mktemp("trained")
    without_baseline_gate(home)
    made = run(home, "data", "--n-customers", "3000")
    assert made.returncode == 0, made.stderr
    result = run(home, "train")
    assert result.returncode == 0, result.stderr
    return home, result


def mlflow_client(home: Path):
    """A client of the home's tracking store and registry, both named: tests that train in
    process leave MLflow's global URIs pointing at their own homes."""
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)  # for the fluent calls of a test (and the project's own reads)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def started_run(
    home: Path,
    run_name: str,
    proc: subprocess.Popen[str],
    timeout: float = 180,
    experiment: str = "crm-ltv",
):
    """The MLflow run of that name once it is RUNNING (the command is inside it): where a
    test stops the command to see the run read KILLED."""
    client = mlflow_client(home)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the command ended ({proc.returncode}) before {run_name}"
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            runs = client.search_runs([found.experiment_id], f"attributes.run_name = '{run_name}'")
            if runs and runs[0].info.status == "RUNNING":
                return runs[0]
        time.sleep(0.2)
    raise AssertionError(f"no RUNNING run {run_name} within {timeout} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A real server in its own process group (so `stop_server` ends its workers too)."""
    env = {k: v for k, v in env.items() if not k.startswith("MAKE")}
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def wait_ready(
    url: str,
    server: subprocess.Popen,
    log: Path,
    timeout: float = 180,
    until: frozenset[int] = frozenset({200}),
) -> list[int]:
    """Poll `url` until it answers a status in `until`; the statuses seen (0 = no connection)."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            seen.append(urllib.request.urlopen(url, timeout=5).status)
        except urllib.error.HTTPError as exc:
            seen.append(exc.code)
        except OSError:
            seen.append(0)
        if seen[-1] in until:
            return seen
        if server.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{url} not ready; server log:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def stop_server(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, 15)
    except ProcessLookupError:
        return
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, 9)


@pytest.fixture(scope="session")
def feature_config() -> FeatureConfig:
    return load_config(FeatureConfig, CONFIGS / "features.yaml")


@pytest.fixture(scope="session")
def data_config() -> DataConfig:
    return load_config(DataConfig, CONFIGS / "data.yaml")


@pytest.fixture(scope="session")
def small_sample_config() -> SampleConfig:
    config = load_config(SampleConfig, CONFIGS / "sample.yaml")
    return config.model_copy(update={"n_customers": 3_000})


def frame(rows: list[tuple], columns: str = "customer_id timestamp amount") -> pd.DataFrame:
    """A transactions frame from tuples; timestamps as ISO strings."""
    out = pd.DataFrame(rows, columns=columns.split())
    out["timestamp"] = pd.to_datetime(out["timestamp"], format="ISO8601")
    return out


def turned_over(frame: pd.DataFrame, newest: pd.Timestamp) -> pd.DataFrame:
    """Churn labels of the cutoffs before `newest` turned over: old windows that teach the
    opposite of the newest (tests of `churn.cutoff_half_life_days`)."""
    old = frame["cutoff"] < newest
    return frame.assign(churned=frame["churned"].where(~old, 1 - frame["churned"]))


def half_life_aucs(
    config: TrainConfig,
    fit: Callable[[TrainConfig], ChurnModel],
    X: pd.DataFrame,
    churned: pd.Series,
) -> dict[float | None, float]:
    """ROC AUC on (X, churned) of the churn booster that `fit(config)` trains with equal weights
    (None) and with a half-life of a day (1.0). Without BG/NBD inputs, whose ranking the booster
    would start from; on its raw scores, which Platt scaling on validation could turn over."""
    from sklearn.metrics import roc_auc_score

    baselines = config.baselines.model_copy(update={"bgnbd_as_features": False})
    aucs = {}
    for half_life in (None, 1.0):
        churn = config.churn.model_copy(update={"cutoff_half_life_days": half_life})
        model = fit(config.model_copy(update={"churn": churn, "baselines": baselines}))
        aucs[half_life] = roc_auc_score(
            churned, model.booster_.predict(model.encode(X), raw_score=True)
        )
    return aucs


def parsed_sample(sample) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A generated sample's transactions and customers with their dates parsed, as loaded."""
    tx = sample.transactions.assign(timestamp=pd.to_datetime(sample.transactions["timestamp"]))
    customers = sample.customers.assign(signup_date=pd.to_datetime(sample.customers["signup_date"]))
    return tx, customers


@pytest.fixture(scope="session")
def train_config():
    from crm_ltv.training.config import TrainConfig

    return load_config(TrainConfig, CONFIGS / "train.yaml")


@pytest.fixture(scope="session")
def small_split(small_sample_config, feature_config, train_config):
    """The time split of a 3,000-customer sample, with its customers table."""
    from crm_ltv.features.sample import generate_sample
    from crm_ltv.training.datasets import build_time_split

    tx, customers = parsed_sample(generate_sample(small_sample_config))
    return build_time_split(
        tx, train_config.snapshots, train_config.split, feature_config, customers
    )


@pytest.fixture(scope="session")
def small_trained(small_split, train_config):
    """Both models of the small split, their bundle and the baselines, as `make train` fits them."""
    from crm_ltv.training.pipeline import train_models

    return train_models(small_split, train_config)


@pytest.fixture(scope="session")
def small_bundle(small_trained):
    return small_trained.bundle


@pytest.fixture(scope="module")
def dask_client():
    """A local Dask cluster of 2 worker processes, one thread and 1 GiB each, per test module
    of the Dask engine (about 2 s to start; idle workers would tick through the rest of the
    session)."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
            dashboard_address=":0",
        ) as local,
        distributed.Client(local) as client,
    ):  # fmt: skip
        yield client


@pytest.fixture(scope="session")
def dask_sample_files(tmp_path_factory, small_sample_config) -> tuple[Path, Path, Path]:
    """1,000 sample customers: the transactions as one CSV (the single-process input) and as
    five Parquet parts of consecutive rows (the Dask engine's); the customers table."""
    from crm_ltv.features.sample import generate_sample

    folder = tmp_path_factory.mktemp("dask-sample")
    sample = generate_sample(small_sample_config.model_copy(update={"n_customers": 1_000}))
    tx = sample.transactions
    tx.to_csv(folder / "transactions.csv", index=False)
    (folder / "parts").mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(tx)), 5)):
        tx.iloc[rows].astype(str).to_parquet(folder / "parts" / f"tx-{i}.parquet", index=False)
    sample.customers.to_csv(folder / "customers.csv", index=False)
    return folder / "transactions.csv", folder / "parts", folder / "customers.csv"
