"""MLflow setup and run provenance: where runs go, the data hash, the git commit."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from pydantic import BaseModel

from crm_ltv import __version__
from crm_ltv.features.config import config_area
from crm_ltv.features.inputs import Inputs, input_files
from crm_ltv.features.paths import Paths

NOTE = "mlflow.note.content"  # the description the MLflow UI shows on experiments and runs
# The code that ran, not the home: the checkout's root (editable install: its folders hold the
# package), or the installed package's folder; its commit, and its changes only.
CODE = Path(__file__).resolve().parents[1]
# What reproduces a run, on the run and on each of its child runs (a search finds them too).
PROVENANCE = (
    "data_sha256", "git_commit", "git_diff_sha256", "crm_ltv_version", "environment_sha256"
)  # fmt: skip


def tracking_uri(paths: Paths) -> str:
    """`MLFLOW_TRACKING_URI` if set, else the SQLite file mlflow.db in the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or home_store_uri(paths)


def home_store_uri(paths: Paths) -> str:
    return f"sqlite:///{paths.mlflow_db}"


def no_home_store(paths: Paths) -> str | None:
    """Why a command that reads models finds none in this home, before MLflow opens its store:
    it would make an empty mlflow.db there (a misspelt --home got a new store, and was told to
    train first). None when the home has a store, or the store is a server's."""
    store = paths.mlflow_db
    if tracking_uri(paths) != home_store_uri(paths) or store.exists():
        return None
    return (
        f"no {store.name} in {paths.root}: nothing was trained in this home (--home or "
        "$CRM_LTV_HOME: is it the one you trained in?)"
    )


@contextlib.contextmanager
def first_open(uri: str) -> Iterator[None]:
    """One process at a time opens a local SQLite store (MLflow's, Optuna's) and creates what
    it holds: two commands started together in a new home both created MLflow's tables, and
    one failed (`table _alembic_tmp_experiments already exists`), as would two creating one
    experiment."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    # MLflow's "Creating initial MLflow database tables ..." INFO lines, amid our progress
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# MLflow 3 opens an experiment on its GenAI traces page unless told it holds model training.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
UI_QUERY = "?workflowType=machine_learning"  # the UI's model-training mode (registry in sidebar)


def setup_tracking(
    paths: Paths,
    experiment: str,
    description: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> str:
    """Point MLflow at the project's store; artifacts of new experiments go to mlartifacts/.
    The registry too: MLflow keeps the first registry it resolved in a process, so homes used
    one after another in one process (a backtest) would share one registry. The experiment
    opens on its runs table in the UI, with `description` on top. Making the home's store
    takes seconds (MLflow's migrations), so `progress` is told."""
    uri = tracking_uri(paths)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    with first_open(uri):
        _make_home_store(paths, uri, progress)
        check_home_artifacts(paths)  # before a new experiment is made at this place
        found = mlflow.get_experiment_by_name(experiment)
        if found is None:
            experiment_id = mlflow.create_experiment(
                experiment, artifact_location=paths.artifacts_dir.as_uri()
            )
        else:
            experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    tags = EXPERIMENT_KIND | ({NOTE: description} if description else {})
    mlflow.set_experiment_tags(tags)
    return experiment_id


def _make_home_store(
    paths: Paths, uri: str, progress: Callable[[str], None] = lambda _: None
) -> None:
    """A new home store with the home's artifact root: MLflow's own first open gave its Default
    experiment ./mlruns of whatever folder the first command ran in (outside the home)."""
    if uri != home_store_uri(paths) or paths.mlflow_db.exists():
        return
    progress(f"creating the MLflow store {paths.mlflow_db}")
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(uri, paths.artifacts_dir.as_uri()).engine.dispose()  # made: not kept open


def local_folder(uri: str) -> Path | None:
    """The folder a `file://` artifact URI names (MLflow records them absolute), or None for
    another scheme (a tracking server's)."""
    if not uri.startswith("file://"):
        return None
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(uri).path))


_SAID: set[str] = set()  # warnings printed by this process (train checks early and again)


def check_home_artifacts(paths: Paths, moved_is_error: bool = True) -> None:
    """MLflow records each experiment's artifact folder as an absolute path: in a moved home
    every model read failed as 'holds no model bundle' (refused here, before any work), and a
    copied one writes its new runs' files into the original's (said here). Every experiment of
    the home's own store, not the command's alone: in a moved home the experiment commands
    made their first experiments at the new place and registered an uplift champion there,
    one store over two folders, broken whichever way the home went next (tester U). The UI
    (`moved_is_error` False) shows a moved home's runs and metrics, and says its files do not
    show."""
    if tracking_uri(paths) != home_store_uri(paths) or not paths.mlflow_db.exists():
        return
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        experiments = MlflowClient(home_store_uri(paths)).search_experiments()  # active ones
    except (MlflowException, SQLAlchemyError):  # a store that cannot be read (or is being
        return  # made by another command: train's early check holds no lock): its reader says so
    elsewhere: dict[Path, list[str]] = {}
    for found in experiments:
        where = local_folder(found.artifact_location)
        # the project's own (its artifact folder named as a home's): not MLflow's Default, nor
        # one made by hand with a folder of its own, which MLflow may not have made yet
        ours = where is not None and where.name == paths.artifacts_dir.name
        if ours and found.experiment_id != "0" and not _here(paths, where):
            elsewhere.setdefault(where, []).append(repr(found.name))
    for where, names in elsewhere.items():
        which = (
            f"experiment {names[0]} keeps its files"
            if len(names) == 1
            else f"experiments {', '.join(names)} keep their files"
        )
        said = f"{paths.mlflow_db}: {which} in {where}"
        if where.exists():  # a copy: it works, on the original's files
            _say_once(
                f"warning: {said}, outside this home: was it copied from there? Its runs and "
                "models are read from there, and new runs' files go there too"
            )
            continue
        if not moved_is_error:
            _say_once(
                f"warning: {said}, which is not there: was the home moved? Its runs and "
                "metrics show, their files (plots, configs, models) do not"
            )
            continue
        from crm_ltv.features.config import ConfigError

        raise ConfigError(
            f"{said}, which is not there: was the home moved? MLflow records absolute paths, "
            "so its runs and models cannot be used here: move the home back, or start this "
            "one afresh (remove its mlflow.db and mlartifacts/)"
        )


def _here(paths: Paths, where: Path) -> bool:
    if where.resolve() == paths.artifacts_dir.resolve():
        return True
    # one folder spelt two ways (a bind mount, a case-insensitive file system)
    return where.exists() and paths.artifacts_dir.exists() and where.samefile(paths.artifacts_dir)


def _say_once(line: str) -> None:
    """Process-wide: a second call of the same process (a test in process) says nothing."""
    if line not in _SAID:
        _SAID.add(line)
        print(line, file=sys.stderr)


def ui_links(paths: Paths, base: str) -> list[str]:
    """The UI address of each experiment in the home's store, opening its runs table."""
    from mlflow import MlflowClient

    uri = tracking_uri(paths)
    mlflow.set_tracking_uri(uri)
    with first_open(uri):
        _make_home_store(paths, uri)
    check_home_artifacts(paths, moved_is_error=False)
    experiments = MlflowClient().search_experiments()
    return [
        f"{e.name}: {base}/#/experiments/{e.experiment_id}{UI_QUERY}"
        for e in experiments
        if e.name != "Default"
    ] or [f"no experiments yet (run `crm-ltv train`): {base}/#/experiments{UI_QUERY}"]


def file_sha256(*files: Path | None) -> str:
    """The data hash: of one input file, the SHA-256 of its bytes (what `sha256sum` prints);
    of several (a folder or glob: its files; transactions and customers), the SHA-256 of their
    digests in order. Each file is read once per process while it is unchanged: a run hashes
    its files for the run and again for each file's MLflow dataset."""
    paths = [Path(p) for given in files if given is not None for p in input_files(given)]
    digests = [_one_file_sha256(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("".join(digests).encode()).hexdigest()


@functools.lru_cache(maxsize=1024)
def _one_file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """Keyed by size and modification time too, so a rewritten file is hashed again."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def logged_path(path: Path | str) -> str:
    """A file as a run records it (params, dataset sources): absolute, since a path relative
    to the folder the command ran from names no file to whoever reads the run."""
    return str(Path(path).resolve())


def file_datasets(files: Sequence[tuple[str, pd.DataFrame, Path]]) -> list[Any]:
    """One MLflow dataset per input file (name, loaded table, file): the UI shows its source
    and the sha256 of that file's own bytes, so a changed file is told apart by its digest."""
    import mlflow.data

    with warnings.catch_warnings():  # MLflow registers its local-file source twice and says so
        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
        return [
            mlflow.data.from_pandas(
                frame, source=logged_path(path), name=name, digest=file_sha256(path)[:16]
            )
            for name, frame, path in files
        ]


def input_datasets(inputs: Inputs) -> list[Any]:
    """The loaded input files as MLflow datasets, built once for a run and its children."""
    tables = [("transactions", inputs.transactions)]
    if inputs.customers is not None:
        tables.append(("customers", inputs.customers))
    return file_datasets([(n, t.frame, Path(t.report.source)) for n, t in tables])


def log_datasets(
    datasets: Sequence[Any], context: str, progress: Callable[[str], None] = lambda _: None
) -> None:
    """Attach datasets built once by `file_datasets` to the active run. Their schema is
    inferred on the first log, with MLflow's hint on integer columns (for a model's signature:
    not one). That reads every row (Online Retail II's 794,244 lines: 5.5 s), so `progress`
    is told before."""
    if datasets:
        rows = ", ".join(f"{d.name} {len(d.df):,} rows" for d in datasets)
        progress(f"logging the input files as MLflow datasets ({rows}: MLflow infers a schema)")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer column")
        for dataset in datasets:
            mlflow.log_input(dataset, context=context)


def git_commit(root: Path) -> str:
    """HEAD's commit, with '-dirty' when tracked files differ; 'unknown' outside a checkout of
    this code: git looks up from `root` for any repository, and a package installed into a
    user's own repository (its .venv ignored there) took that one's commit, and its diff went
    to MLflow (tester P). The code's folder must be tracked by the repository found."""
    try:
        subprocess.run(
            ["git", "ls-files", "--error-unmatch", "."], cwd=root, capture_output=True, check=True
        )
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def _uncommitted_diff(root: Path) -> str:
    """`git diff HEAD` of `root`'s folder: what a '-dirty' commit does not say (a copy of the
    code kept in a larger repository logged that repository's changes, its secrets too)."""
    try:
        return subprocess.run(
            ["git", "diff", "HEAD", "--", "."], cwd=root, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""


def input_sources(inputs: Inputs) -> list[Path]:
    """The files a run read its transactions (and customers) from, in that order."""
    sources = [Path(inputs.transactions.report.source)]
    if inputs.customers is not None:
        sources.append(Path(inputs.customers.report.source))
    return sources


def input_tags(inputs: Inputs) -> dict[str, str]:
    """The files as tags, which a search by `tags.transactions` reads (train's and tune's)."""
    return {
        "transactions": str(inputs.transactions.report.source),
        "customers": str(inputs.customers.report.source) if inputs.customers else "none",
    }


def log_provenance(*files: Path | None) -> dict[str, str]:
    """Tag the active run with what reproduces it: the hash of its input files (none: no
    data_sha256), the code's commit ('unknown' for an installed package: its version says
    which release), the installed packages (environment/requirements.txt and its hash) and,
    when the checkout has uncommitted changes, their diff
    (code/uncommitted.diff) and its hash, since two runs of one '-dirty' commit may differ.
    Returns the tags."""
    commit = git_commit(CODE)
    environment = installed_packages()
    tags = {
        "git_commit": commit,
        "crm_ltv_version": __version__,
        "environment_sha256": hashlib.sha256(environment.encode()).hexdigest(),
    }
    # what the run ran on: an install without requirements.lock's pins resolves newer releases,
    # which neither the commit nor the version shows (tester Y)
    mlflow.log_text(environment, "environment/requirements.txt")
    given = [f for f in files if f is not None]
    if given:
        tags["data_sha256"] = file_sha256(*given)
    if commit.endswith("-dirty"):
        diff = _uncommitted_diff(CODE)
        tags["git_diff_sha256"] = hashlib.sha256(diff.encode()).hexdigest()
        mlflow.log_text(diff, "code/uncommitted.diff")
    mlflow.set_tags(tags)
    return tags


def installed_packages() -> str:
    """`pip freeze` of this Python, without running pip: name==version per line, sorted."""
    from importlib.metadata import distributions

    found = {(d.metadata["Name"] or "").lower(): d.version for d in distributions()}
    return "".join(f"{name}=={version}\n" for name, version in sorted(found.items()) if name)


def inherited_provenance() -> dict[str, str]:
    """The active run's provenance tags, to set on the child runs it opens next."""
    active = mlflow.active_run()
    if active is None:
        return {}
    tags = mlflow.get_run(active.info.run_id).data.tags
    return {k: tags[k] for k in PROVENANCE if k in tags}


def log_config_files(paths: Paths, areas: Sequence[str], configs: Sequence[BaseModel]) -> None:
    """The configs/<area>.yaml files the run read, under config/, and the settings in effect as
    config/<area>.json: a home's file may set a few keys over the packaged ones."""
    for area in areas:
        mlflow.log_artifact(str(paths.config_file(area)), "config")
    for config in configs:
        mlflow.log_dict(config.model_dump(mode="json"), f"config/{config_area(config)}.json")


@contextlib.contextmanager
def killable_run(**start: Any) -> Iterator[mlflow.ActiveRun]:
    """`mlflow.start_run(**start)`, but a run stopped by Ctrl-C or SIGTERM reads KILLED, with
    the runs around it, not FAILED (MLflow's own exit), which would read as a defect."""
    with mlflow.start_run(**start) as run:
        try:
            yield run
        except KeyboardInterrupt:
            while mlflow.active_run() is not None:
                mlflow.end_run("KILLED")
            raise


def readable(value: float, decimals: int = 4) -> float:
    """Rounded to the digits people read; a value below them (a tiny p-value) keeps three
    significant digits rather than becoming 0."""
    return round(value, decimals) if abs(value) >= 10**-decimals else float(f"{value:.3g}")


def log_table(frame: pd.DataFrame, name: str, decimals: int = 4) -> None:
    """A table under tables/, numbers `readable`, a named index kept as columns."""
    table = frame.reset_index() if frame.index.name or frame.index.names[0] else frame
    floats = table.select_dtypes("floating").columns
    table = table.assign(
        **{c: table[c].map(lambda v: readable(v, decimals), na_action="ignore") for c in floats}
    )
    table.columns = [str(c) for c in table.columns]
    mlflow.log_table(table, f"tables/{name}.json")


def log_figure(figure: object, name: str) -> None:
    """A matplotlib figure under plots/ (cropped to what it draws: a long title or tick labels
    are not cut off), closed once logged."""
    import matplotlib.pyplot as plt

    mlflow.log_figure(figure, f"plots/{name}.png", save_kwargs={"bbox_inches": "tight"})
    plt.close(figure)
