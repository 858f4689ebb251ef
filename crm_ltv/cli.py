"""The `crm-ltv` command line. Errors in the user's data or config end in one clear line.

The one module that may import every package; it imports per command, so `--help` answers at
once and no command pays for another's libraries (mlflow, lightgbm, bentoml).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib.util
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from crm_ltv.features.wording import plural

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities.model_registry import ModelVersion

    from crm_ltv.experiments.config import ExperimentsConfig, PolicyEvalConfig
    from crm_ltv.experiments.policy_eval_job import History
    from crm_ltv.features.cluster import Partitioned
    from crm_ltv.features.config import DataConfig, FeatureConfig
    from crm_ltv.features.contract import DataError
    from crm_ltv.features.inputs import Inputs
    from crm_ltv.features.loading import Loaded
    from crm_ltv.features.paths import Paths
    from crm_ltv.serving.config import NbaConfig
    from crm_ltv.training.config import TrainConfig
    from crm_ltv.training.job import TrainResult
    from crm_ltv.training.scoring import Champions
    from crm_ltv.training.uplift import UpliftBundle

app = typer.Typer(
    help="crm-ltv: churn, future value and next-best-action from transaction history.",
    no_args_is_help=True,
    add_completion=False,
)


# The commands that run in `_interruptible` (as a decorator, or around their work)
INTERRUPTIBLE = frozenset({
    "features", "train", "score", "tune", "bento", "ab", "plan-ab", "cohorts", "uplift",
    "outcomes", "policy-eval",
})  # fmt: skip


def _version(given: bool) -> None:
    if given:
        from crm_ltv import __version__

        typer.echo(f"crm-ltv {__version__}")
        raise typer.Exit()


@app.callback()
def _home(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            help="Project home: configs/, data/, mlflow.db, reports/ (default: $CRM_LTV_HOME, "
            "else the working directory). Its configs/ override the packaged defaults."
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    from crm_ltv.features.paths import HOME_ENV

    if ctx.invoked_subcommand in INTERRUPTIBLE:  # a stop from here on reaches its line
        for stop in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop, _put_off)
    if home is not None:
        os.environ[HOME_ENV] = str(home.resolve())  # for this process and servers it starts
    _absolute_store()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # progress is ours


def _absolute_store() -> None:
    """BentoML's store (BENTOML_HOME) as an absolute path, for this process and those it
    starts: a relative one named one store for `crm-ltv bento`'s copies of the models and
    another for its `bentoml build`, which runs in a folder of its own (tester Q)."""
    store = os.environ.get("BENTOML_HOME")
    if store and not os.path.isabs(store):
        os.environ["BENTOML_HOME"] = os.path.abspath(store)


def _paths() -> Paths:
    from crm_ltv.features.paths import HOME_ENV, Paths, nearest_existing

    paths = Paths.from_env()
    existing = nearest_existing(paths.root)
    if not existing.is_dir():  # was blamed on --out, the first path made under it
        from crm_ltv.features.config import ConfigError

        why = "is a file" if existing == paths.root else f"cannot be a folder: {existing} is a file"
        raise ConfigError(f"project home {paths.root} (--home or ${HOME_ENV}): {why}")
    odd = sorted(set("?%") & set(str(paths.root)))
    if odd:  # in its stores' sqlite:/// URIs, '?' began a query (the store went beside the
        # home) and '%' an escape (a traceback)
        from crm_ltv.features.config import ConfigError

        raise ConfigError(
            f"project home {paths.root} (--home or ${HOME_ENV}): its path holds "
            f"{' and '.join(repr(c) for c in odd)}, which the SQLite URIs of its MLflow and "
            "Optuna stores cannot hold: use a folder without them"
        )
    _say_unread_configs(paths)
    return paths


@functools.cache
def _say_unread_configs(paths: Paths) -> None:
    """Once per command: a home's config file that no area reads, with the name it may mean."""
    import difflib

    from crm_ltv.features.paths import CONFIG_AREAS

    for unread in paths.unread_config_files():
        near = difflib.get_close_matches(unread.stem, CONFIG_AREAS, n=1)
        meant = f"; did you mean {near[0]}{unread.suffix.lower()}?" if near else ""
        typer.echo(
            f"warning: {unread} is not read (configs/ holds {', '.join(CONFIG_AREAS)}: "
            f"<area>.yaml){meant}",
            err=True,
        )


F = TypeVar("F", bound=Callable[..., None])


class Progress:
    """Timestamped progress lines on stderr, so stdout stays for results."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        elapsed = time.perf_counter() - self.start
        for i, line in enumerate(message.splitlines()):
            prefix = f"[{elapsed:6.1f}s] " if i == 0 else " " * 10
            typer.echo(prefix + line, err=True)


def _user_errors(command: F) -> F:
    """Bad data or config: one 'error:' line and exit code 2, no traceback."""

    @functools.wraps(command)
    def run(*args: object, **kwargs: object) -> None:
        from crm_ltv.features.config import ConfigError
        from crm_ltv.features.contract import DataError
        from crm_ltv.training.errors import BundleError, ChampionError

        try:
            command(*args, **kwargs)
        except (DataError, ConfigError, ChampionError, BundleError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # a file that could not be read or written (not checked ahead)
            said = _os_error_said(exc)
            if said is None:
                raise
            typer.echo(f"error: {said}", err=True)
            raise typer.Exit(2) from None
        except Exception as exc:
            damaged = _full_store(exc) or _damaged_store(exc)
            if damaged is not None:
                typer.echo(f"error: {damaged}", err=True)
                raise typer.Exit(2) from None
            mlflow_errors = sys.modules.get("mlflow.exceptions")  # a tracking server not there
            if (
                mlflow_errors is not None
                and isinstance(exc, mlflow_errors.MlflowException)
                and exc.message.startswith("API request to")
            ):
                said = exc.message.splitlines()[0]
                typer.echo(f"error: MLflow ({_tracking_uri_said()}): {said}", err=True)
                raise typer.Exit(2) from None
            lightgbm = sys.modules.get("lightgbm")  # loaded only by the commands that train
            if lightgbm is None or not isinstance(exc, lightgbm.basic.LightGBMError):
                raise
            typer.echo(f"error: {_lightgbm_said(exc)}", err=True)
            raise typer.Exit(2) from None

    return run  # type: ignore[return-value]


# LightGBM's words when the network between lightgbm.dask's workers fails: a worker lost
# mid-training ("Socket recv error, Connection reset by peer"), one that cannot be reached,
# a port taken. Not a setting of the user's (they were worded as one, tester L).
_LIGHTGBM_NETWORK = ("Socket ", "Binding port")


def _lightgbm_said(exc: Exception) -> str:
    """The `error:` line of a LightGBM error: its network's, or a setting LightGBM refused."""
    said = str(exc).strip()
    if any(word in said for word in _LIGHTGBM_NETWORK):
        return (
            f"LightGBM's training on the cluster lost a worker, or the network between the "
            f"workers broke ({said}): run the command again (a worker that keeps dying: its "
            "log says why, e.g. its memory limit; a port taken: train.yaml's "
            "local_listen_port, if set)"
        )
    return f"LightGBM refused a setting (params in configs/train.yaml or the tuned ones): {said}"


# Errors of the disk or file system rather than of the code: said in one line even when no file
# is named (a write or close that failed; `replaced_whole` names the outputs it writes). A full
# disk was a 107-line traceback and exit 1 (tester I). With what to do where the reason alone
# does not say it.
_DISK_ERRORS = {
    errno.ENOSPC: "the disk is full: free some space, or write elsewhere, and run again",
    errno.EDQUOT: "your disk quota is used up: free some space and run again",
    errno.EFBIG: "over the largest file this process may write: `ulimit -f`",
    errno.EROFS: None,
    errno.EACCES: None,
}
# No room for what is written: of two names (shutil's copies: source, then destination) the
# file written is the second
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _os_error_said(exc: OSError) -> str | None:
    """The `error:` line of an OSError: the file and the system's reason (for a disk error
    the system's words, not pyarrow's "Error writing bytes to file. Detail: ..."), or None for
    one that names no file and is not a disk's (a defect: its traceback is kept)."""
    if exc.errno not in _DISK_ERRORS:
        return None if exc.filename is None else f"{exc.filename}: {exc.strerror or exc}"
    hint = _DISK_ERRORS[exc.errno]
    said = os.strerror(exc.errno) + (f" ({hint})" if hint else "")
    written = exc.filename2 if exc.errno in _NO_ROOM and exc.filename2 else exc.filename
    return said if written is None else f"{written}: {said}"


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (SQLAlchemy's `orig`, the cause, the context)."""
    chain, seen = exc, []
    while chain is not None and len(seen) < 10:
        seen.append(chain)
        chain = getattr(chain, "orig", None) or chain.__cause__ or chain.__context__
    return seen


def _full_store(exc: BaseException) -> str | None:
    """The `error:` line of a SQLite store that found no room: a full disk under the home
    reaches SQLite (MLflow's tracking database, committed by every run; optuna's) before any
    file of ours, as "database or disk is full", not an OSError: a 473-line traceback and exit
    1 (review 2, P2). SQLite says "disk I/O error" where the file size limit stops it: said
    so only under such a limit (another I/O error keeps its traceback). The store is optuna's
    when its code raised the error, else the tracking database, named by its URI."""
    import resource
    import sqlite3

    said = next((str(e) for e in _causes(exc) if isinstance(e, sqlite3.OperationalError)), "")
    if "database or disk is full" in said:
        reason = f"{os.strerror(errno.ENOSPC)} ({_DISK_ERRORS[errno.ENOSPC]})"
    elif "disk I/O error" in said and (
        resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY
    ):
        reason = f"{said}, under a file size limit ({_DISK_ERRORS[errno.EFBIG]})"
    else:
        return None
    frames = [frame.filename for frame in traceback.extract_tb(exc.__traceback__)]
    ours = [name for name in frames if f"{os.sep}optuna{os.sep}" in name or "mlflow" in name]
    if ours and f"{os.sep}optuna{os.sep}" in ours[-1]:
        store = f"{_paths().optuna_db} (optuna's study)"
    else:
        from crm_ltv.training.tracking import tracking_uri

        store = f"{tracking_uri(_paths())} (MLflow's tracking database)"
    return f"{store}: {reason}"


def _damaged_store(exc: BaseException) -> str | None:
    """What to say when a SQLite store of the home (mlflow.db, optuna.db) is not a database or
    is damaged: it was a 300-line traceback. The store is found by opening each read-only; a
    locked or busy one is not damaged (another command writes it), so is not named."""
    import sqlite3

    seen = _causes(exc)
    if not any(isinstance(e, sqlite3.DatabaseError) for e in seen):
        return None
    paths = _paths()
    for store in (paths.mlflow_db, paths.optuna_db):
        if not store.is_file():
            continue
        try:
            with contextlib.closing(sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True)) as db:
                checked = db.execute("PRAGMA quick_check").fetchone()
            why = None if checked == ("ok",) else f"quick_check: {checked[0] if checked else ''}"
        except sqlite3.DatabaseError as error:
            said = str(error)
            why = said if ("not a database" in said or "malformed" in said) else None
        if why is not None:
            return (
                f"{store}: cannot be read as a SQLite database ({why}); move it away to start "
                "that store afresh"
            )
    return None


def _say_run(run_id: str, experiment: str, paths: Paths) -> None:
    """An experiment command's last line: where to find its MLflow run."""
    from crm_ltv.training.tracking import tracking_uri

    typer.echo(f"MLflow run {run_id} in experiment {experiment!r} at {tracking_uri(paths)}")


def _host_patterns(allowed_hosts: str) -> str:
    """MLflow's --allowed-hosts for these names, each on any port too (a browser sends
    "name:port"), plus MLflow's own default (localhost, private addresses), which a list
    given to it replaces."""
    from mlflow.server.security_utils import get_default_allowed_hosts

    names = [n.strip() for n in allowed_hosts.split(",") if n.strip()]
    named = [p for n in names for p in ((n, f"{n}:*") if ":" not in n else (n,))]
    return ",".join([*named, *get_default_allowed_hosts()])


def _tracking_uri_said() -> str:
    import mlflow

    return str(mlflow.get_tracking_uri())


class _Stopped(KeyboardInterrupt):
    """A scheduler's stop (SIGTERM), raised where Ctrl-C raises KeyboardInterrupt."""


# Code a stop must not be raised inside: SQLAlchemy and what drives it (Alembic, the SQL stores
# of MLflow, Optuna's storages).
_DATABASE_CODE = (
    "sqlalchemy", "alembic", "mlflow.store.db", "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store", "optuna.storages",
)  # fmt: skip
_RETRY_SECONDS = 0.02
_MAX_DEFER_SECONDS = 5.0  # a database call that outlasts this (a stuck lock) is stopped anyway
_pending: list[tuple[int, float]] = []  # the stop put off: its signal, and when it came
_stopped: list[KeyboardInterrupt] = []  # the stop `_interruptible` ended the command with


def _in_database_call(frame: FrameType | None) -> bool:
    """Whether the main thread is inside `_DATABASE_CODE`, at any depth."""
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if any(module == m or module.startswith(f"{m}.") for m in _DATABASE_CODE):
            return True
        frame = frame.f_back
    return False


def _interrupted(signum: int, frame: FrameType | None) -> None:
    """Raise the stop where the signal lands, but not inside a database call: raised in
    SQLAlchemy, it left the SQLite connection holding its lock (the KILLED update then failed
    with "database is locked", exit 1, the run left RUNNING) or made SQLAlchemy log a traceback
    closing its cursor. There it is put off, and SIGALRM (a real signal, which wakes a blocked
    main thread, from no extra thread) brings it back every 20 ms until it lands outside, for
    at most `_MAX_DEFER_SECONDS`."""
    if signum == signal.SIGALRM:
        if not _pending:
            return
        signum = _pending[0][0]
    elif not _pending:
        _pending.append((signum, time.monotonic()))
    if _in_database_call(frame) and time.monotonic() - _pending[0][1] < _MAX_DEFER_SECONDS:
        signal.setitimer(signal.ITIMER_REAL, _RETRY_SECONDS)
        return
    _pending.clear()
    raise _Stopped if signum == signal.SIGTERM else KeyboardInterrupt


def _put_off(signum: int, frame: FrameType | None) -> None:
    """A stop that comes before an interruptible command reaches `_interruptible` (its
    imports, its configs): kept for it, which raises it at once. Else a SIGINT under the
    SIG_IGN a background job inherits was lost (a tune ran its trials to the end), and a
    SIGTERM ended it with no line."""
    if not _pending:
        _pending.append((signum, time.monotonic()))


@contextlib.contextmanager
def _interruptible(what: str) -> Iterator[None]:
    """Long commands end on Ctrl-C or SIGTERM with one line saying what is kept, and the
    shell's exit status for that signal (130, 143), not a traceback; their MLflow runs read
    KILLED (training.tracking.killable_run)."""
    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)
    before = {s: signal.signal(s, _interrupted) for s in handled}
    try:
        if _pending:  # a stop put off since the command started (`_put_off`)
            signal.raise_signal(_pending[0][0])
        yield
    except (KeyboardInterrupt, Exception) as failed:
        stop = _stop_behind(failed)
        if stop is None:
            raise
        typer.echo(f"interrupted: {what}", err=True)
        if stop is not failed:  # the cleanup after the stop failed: the stop stays the outcome
            _cleanup_failed(failed)
        _stopped.append(stop)
        raise typer.Exit(143 if isinstance(stop, _Stopped) else 130) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)  # a stop put off when the work ended: dropped
        _pending.clear()
        for s, handler in before.items():
            signal.signal(s, handler)


# what an experiment command stopped by `_interruptible` leaves (a run opens after the reading)
_RUN_KILLED = "its MLflow run, if it had started, reads KILLED"
# what a stopped `score` or `features` leaves of --out
OUT_KEPT = (
    "--out is written in the last step only (a file whole: an earlier one stays as it was; "
    "--engine dask's folder of parts may be part written)"
)


def _stop_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM that `error` is, or was raised while handling, followed as a
    traceback shows the chain: a failed cleanup after a stop (MLflow's KILLED update on a
    database another process holds locked) ends as the stop did, not as exit 1. Click's own
    exits and aborts keep their meaning."""
    import click

    current: BaseException | None = error
    while current is not None:
        if isinstance(current, KeyboardInterrupt):
            return current
        if isinstance(
            current, (click.exceptions.Exit, click.exceptions.Abort, click.ClickException)
        ):
            return None
        suppressed = current.__suppress_context__
        current = current.__cause__ or (None if suppressed else current.__context__)
    return None


def _cleanup_failed(error: BaseException) -> None:
    """MLflow's store errors in one line (what the user can act on); anything else with its
    traceback, as a defect in the cleanup code would need."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):
        reason = next(iter(str(error).splitlines()), "")
        typer.echo(
            f"warning: the MLflow runs could not all be marked KILLED ({reason}): they may "
            "read RUNNING or FAILED",
            err=True,
        )
        return
    typer.echo("warning: cleaning up after the stop failed:", err=True)
    traceback.print_exception(error, file=sys.stderr)


def _free_port(host: str, port: int) -> None:
    """Refuse a port something already listens on, before printing links to it: the server
    would fail there after a few seconds, and the links would open whatever holds it."""
    import socket

    from crm_ltv.features.config import ConfigError

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"--port {port} on {host}: already in use; choose another") from None
        reason = exc.strerror or str(exc)
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({reason})") from None


def _writable(path: Path, option: str) -> Path:
    """`path` as an output: refused before any work when it is a folder or its folder cannot
    be made or written (not after minutes of scoring). Nothing is made yet: `_write_table`
    makes the folder when it writes, so a command that fails first (a mistyped --home) leaves
    no empty data/ behind."""
    from crm_ltv.features.config import ConfigError
    from crm_ltv.features.paths import write_refused

    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file name")
    refused = write_refused(path)
    if refused is not None:
        raise ConfigError(f"{option}: {refused}")
    return path


def _write_table(frame: pd.DataFrame, path: Path, **options: object) -> None:
    """CSV by a .csv suffix, else Parquet; written whole or not at all (a stop mid-write
    leaves the earlier file: features.paths.replaced_whole)."""
    from crm_ltv.features.paths import replaced_whole

    path.parent.mkdir(parents=True, exist_ok=True)  # `_writable` checked it can be
    with replaced_whole(path) as part:
        if path.suffix.lower() == ".csv":
            frame.to_csv(part, **options)
        else:
            frame.to_parquet(part, **options)


def _absolute(path: Path | None) -> Path | None:
    """A path given on the command line, absolute: what a run logs and prints names the file
    wherever it is read from."""
    return path.resolve() if path is not None else None


def _folder(path: Path, option: str) -> Path:
    """`path` as an output folder, made if needed; refused when it is a file."""
    from crm_ltv.features.config import ConfigError

    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file there, or under a file
        raise ConfigError(f"{option} {path}: cannot be made a folder ({exc.strerror})") from None
    return path


def _parse_columns(pairs: list[str]) -> dict[str, str | None]:
    """NAME=SOURCE pairs; NAME= (nothing after the sign): the file has no such column."""
    from crm_ltv.features.config import ConfigError

    mapping: dict[str, str | None] = {}
    for pair in pairs:
        name, sep, source = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--column {pair!r}: expected CONTRACT_NAME=SOURCE_COLUMN")
        mapping[name.strip()] = source.strip() or None
    return mapping


TransactionsOpt = Annotated[
    Path | None,
    typer.Option(help="Transactions CSV/Parquet (default: configs/data.yaml, else the sample)."),
]
CustomersOpt = Annotated[
    Path | None, typer.Option(help="Customers CSV/Parquet (signup_date, acquisition_channel, ...).")
]
ColumnOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--column",
        help="Map a contract column to your file's column, e.g. --column customer_id=CustID "
        "(repeatable; overrides configs/data.yaml); --column channel= leaves an optional one "
        "unread.",
    ),
]
FormatOpt = Annotated[
    str | None,
    typer.Option(help="Timestamp format of the transactions, e.g. '%d/%m/%Y %H:%M'."),
]
SepOpt = Annotated[str | None, typer.Option(help="CSV field separator of the transactions.")]
RejectShareOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0, max=1.0, help="Share of rejected rows that fails loading (default 0.01)."
    ),
]


class Engine(StrEnum):
    single = "single"
    dask = "dask"


EngineOpt = Annotated[
    Engine,
    typer.Option(
        help="single: one process; dask: a Dask cluster (--transactions may then be a folder "
        "or glob of Parquet/CSV files). README: Scaling out on Dask.",
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (default: local)."),
]
PartitionsOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Dask partitions (default: 2M transactions each, >= workers)."),
]


def _on_dask(engine: Engine, scheduler: str | None, partitions: int | None) -> bool:
    from crm_ltv.features.config import ConfigError

    if scheduler is not None and not scheduler.strip():  # an unset shell variable
        raise ConfigError("--scheduler: empty; give the address `dask scheduler` prints")
    if scheduler and engine is not Engine.dask:
        raise ConfigError("--scheduler needs --engine dask")
    if partitions is not None and engine is not Engine.dask:  # not silently ignored
        raise ConfigError("--partitions needs --engine dask (the single engine has no partitions)")
    if engine is Engine.dask and any(
        importlib.util.find_spec(name) is None for name in ("dask", "distributed")
    ):
        raise ConfigError(
            "--engine dask needs Dask, an optional extra of crm-ltv: pip install "
            "'/path/to/crm-ltv[dask]' -c /path/to/crm-ltv/requirements.lock from a checkout "
            "(`make setup` there installs it into its .venv)"
        )
    if scheduler and engine is Engine.dask:
        from crm_ltv.features.cluster import check_scheduler

        check_scheduler(scheduler)
    return engine is Engine.dask


@contextlib.contextmanager
def _dask_inputs(
    paths: Paths,
    progress: Progress,
    scheduler: str | None,
    partitions: int | None,
    *read: object,
) -> Iterator[Partitioned]:
    """The inputs (`_read_inputs`' arguments after the progress) loaded and partitioned by
    customer on a Dask cluster: the scheduler's, else a local one."""
    from crm_ltv.features import cluster
    from crm_ltv.features.inputs import input_files, input_paths

    transactions, customers, columns, fmt, sep, max_reject_share = read
    config = _data_config(paths, columns, fmt, sep, max_reject_share)
    given = input_paths(config, paths, transactions, customers)
    for path in given:  # no file, or a folder or glob without data: before a cluster starts
        if path is not None:
            input_files(path)  # named as given, as the single engine names it
    # absolute: a real cluster's workers read them from their own working folder
    files = tuple(None if f is None else Path(f).absolute() for f in given)
    with cluster.connect(scheduler, progress) as client:
        yield cluster.load_partitioned(
            client, config, paths.rejects_dir, *files, progress, partitions
        )


def _data_config(
    paths: Paths,
    columns: list[str] | None,
    fmt: str | None,
    sep: str | None,
    max_reject_share: float | None,
) -> DataConfig:
    from crm_ltv.features.config import DataConfig, load_config, override

    config = load_config(DataConfig, paths.config_file("data"))
    mapping = _parse_columns(columns or [])
    source = override(
        config.transactions,
        "command line",
        columns={**config.transactions.columns, **mapping} if mapping else None,
        timestamp_format=fmt,
        sep=sep,
    )
    validation = override(
        config.validation, "--max-reject-share", max_reject_share=max_reject_share
    )
    return override(config, "command line", transactions=source, validation=validation)


def _read_inputs(
    paths: Paths,
    progress: Progress,
    transactions: Path | None,
    customers: Path | None,
    columns: list[str] | None,
    fmt: str | None,
    sep: str | None,
    max_reject_share: float | None,
) -> Inputs:
    """The files a command reads, with the command line's mapping applied, validated."""
    from crm_ltv.features.inputs import load_inputs

    config = _data_config(paths, columns, fmt, sep, max_reject_share)
    return load_inputs(config, paths, transactions, customers, progress)


@app.command()
@_user_errors
def init(
    folder: Annotated[
        Path | None, typer.Argument(help="Project home to write into (default: the home).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite config files already there.")] = False,
) -> None:
    """Write the default configs into FOLDER/configs for editing (each overrides its default)."""
    from crm_ltv.features.paths import CONFIG_AREAS, Paths, default_config_file, replaced_whole

    paths = Paths(_folder(folder, "init").resolve()) if folder is not None else _paths()
    _folder(paths.configs_dir, "init")
    for area in CONFIG_AREAS:
        target = paths.configs_dir / f"{area}.yaml"
        own = paths.config_file(area)  # .yaml, or a .yml the home has (read instead)
        if own.parent == paths.configs_dir and not (force and own == target and own.exists()):
            why = (
                "a link to nothing; remove it" if not own.exists()
                else "exists; --force overwrites" if own == target
                else f"read in place of {target.name}; --force keeps it"
            )  # fmt: skip
            typer.echo(f"kept    {own} ({why})")
            continue
        with replaced_whole(target) as part:  # a full disk left part of one, kept by a rerun
            shutil.copyfile(default_config_file(area), part)
        typer.echo(f"wrote   {target}")
    typer.echo(f"project home {paths.root}: run crm-ltv commands there, or pass --home")


@app.command()
@_user_errors
def data(
    n_customers: Annotated[
        int | None, typer.Option(help="Customers (default: sample.yaml).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: sample.yaml).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: data/sample).")] = None,
) -> None:
    """Generate the built-in sample data (transactions, customers, campaigns, ground truth)."""
    from crm_ltv.features.config import SampleConfig, load_config, override
    from crm_ltv.features.sample import generate_sample, write_sample

    paths = _paths()
    config = override(
        load_config(SampleConfig, paths.config_file("sample")),
        "command line",
        n_customers=n_customers,
        seed=seed,
    )
    folder = _folder(out, "--out") if out else paths.sample_dir
    progress = Progress()
    progress(
        f"generating {config.n_customers:,} customers over {config.years:g} years "
        f"from {config.start_date} (seed {config.seed})"
    )
    sample = generate_sample(config)
    progress(f"writing {len(sample.transactions):,} transactions")
    written = write_sample(sample, folder, config)  # all six, before a line is said
    for name, path in written.items():
        rows = "" if name == "settings" else f"{len(getattr(sample, name)):>10,} rows"
        typer.echo(f"{name:16s} {rows:>15}  {path}")
    progress("done")


@app.command()
@_user_errors
@_interruptible(OUT_KEPT)
def features(
    transactions: TransactionsOpt = None,
    customers: CustomersOpt = None,
    column: ColumnOpt = None,
    timestamp_format: FormatOpt = None,
    sep: SepOpt = None,
    max_reject_share: RejectShareOpt = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="Cutoff, ISO 8601: 2025-06-01 or 2025-06-01T12:00 (default: the last transaction)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output .parquet or .csv (default: data/features.parquet); --engine dask: a "
            "folder of Parquet parts (default: data/features/)."
        ),
    ] = None,
    engine: EngineOpt = Engine.single,
    scheduler: SchedulerOpt = None,
    partitions: PartitionsOpt = None,
    champions: Annotated[
        bool,
        typer.Option(
            "--champions",
            help="Build the rows the champion models read, as `crm-ltv score` and the service "
            "do: RFM scores by their training population's cut points, their categories and "
            "history start (default: this file's own quintiles and first line). For feature "
            "rows to send to the service.",
        ),
    ] = False,
) -> None:
    """Build the feature table at one cutoff and print a summary."""
    from crm_ltv.features.builders import build_features
    from crm_ltv.features.contract import DataError

    paths = _paths()
    feature_config = _feature_config(paths)
    # checked before any work; an empty one (an unset shell variable) is not the default
    given = _cutoff_option(as_of, "--as-of")
    progress = Progress()
    read = (transactions, customers, column, timestamp_format, sep, max_reject_share)
    on_dask = _on_dask(engine, scheduler, partitions)
    _check_out(out, on_dask, _files_read(paths, transactions, customers))
    as_scored = {}  # the file's own quintiles, categories and first line
    if champions:
        scoring = _scoring_champions(paths, progress, feature_config, _train_config(paths))
        as_scored = scoring.feature_args()
        _champion_warnings(progress, scoring, feature_config, None)  # no scores: no level
        progress(
            f"building the rows {scoring.churn.name} v{scoring.churn.version} and "
            f"{scoring.ltv.name} v{scoring.ltv.version} read: their RFM cut points, categories "
            "and history start"
        )
    if on_dask:
        from crm_ltv.features import cluster

        target = (out or paths.features_table.with_suffix("")).absolute()  # a folder of parts
        with _dask_inputs(paths, progress, scheduler, partitions, *read) as data:
            client = data.client
            cutoff = given if given is not None else data.last
            frames = cluster.features_on_cluster(
                data, cutoff, feature_config, progress=progress, **as_scored
            )
            rows = cluster.write_parts(client, frames, target)
            if rows == 0:
                raise DataError(f"no customer has a purchase up to {cutoff}; nothing to build")
            width = client.submit(lambda frame: frame.shape[1], frames[0]).result()
            counts = {c: cluster.value_counts(client, frames, c) for c in _SUMMARY_COLUMNS}
        progress(f"wrote {plural(len(frames), 'part')} to {target}")
        typer.echo(_summary_text(rows, width, counts, cutoff, target))
        return
    target = _writable(out or paths.features_table, "--out")
    inputs = _read_inputs(paths, progress, *read)
    tx = inputs.transactions.frame
    cutoff = given if given is not None else tx["timestamp"].max()
    progress(f"building features at {cutoff}")
    table = build_features(tx, cutoff, feature_config, inputs.customers_frame, **as_scored)
    if table.empty:
        raise DataError(f"no customer has a purchase up to {cutoff}; nothing to build")
    _write_table(table, target, index=True)
    progress(f"wrote {target}")
    typer.echo(_summary(table, cutoff, target))


_SUMMARY_COLUMNS = {"rfm_segment": "RFM segment", "lifecycle_stage": "Lifecycle stage"}


def _require_home_store(paths: Paths, made_by: str = "crm-ltv train") -> None:
    """score and promote read models: a home without a store is a mistake, not a new home.
    `made_by`: the command that registers the models read."""
    from crm_ltv.training.tracking import no_home_store

    problem = no_home_store(paths)
    if problem is not None:
        from crm_ltv.training.errors import ChampionError

        make = "make experiments" if made_by == "crm-ltv uplift" else "make train"
        raise ChampionError(f"{problem}; `{made_by}` (`{make}` in the checkout) there first")


def _scoring_champions(
    paths: Paths, progress: Progress, features: FeatureConfig, config: TrainConfig
) -> Champions:
    """The champions `crm-ltv score` scores with, refused before any data is read when they
    read a feature this features config does not build."""
    from crm_ltv.training.registry import load_champions
    from crm_ltv.training.tracking import setup_tracking

    _require_home_store(paths)
    setup_tracking(paths, config.registry.experiment)
    champions = load_champions(config.registry, progress)
    unbuilt = champions.unbuilt_features(features)
    if unbuilt is not None:
        from crm_ltv.training.errors import ChampionError

        raise ChampionError(unbuilt)
    return champions


def _cutoff_option(value: str | None, option: str) -> pd.Timestamp | None:
    """A date option, its mistakes named by the option (an empty one, an unset shell variable,
    is a mistake, not the default)."""
    import pandas as pd

    from crm_ltv.features.arrays import as_cutoff
    from crm_ltv.features.contract import DataError, iso_dated

    if value is None:
        return None
    try:  # ISO 8601 only: pandas guessed 01/02/2025 month first and 13/02/2025 day first,
        # and took 'now' and 'today' (the machine's clock) and '2025'
        if value.strip() and not iso_dated(value):
            raise ValueError("no date")
        pd.to_datetime(value.strip(), format="ISO8601")
    except (ValueError, TypeError):
        raise DataError(
            f"{option}: {value!r} is not an ISO 8601 date or time (YYYY-MM-DD or "
            "YYYY-MM-DDTHH:MM:SS)"
        ) from None
    try:
        return as_cutoff(value.strip())
    except DataError as exc:
        raise DataError(f"{option}: {exc}") from None


def _files_read(
    paths: Paths, transactions: Path | None, customers: Path | None
) -> tuple[Path | None, ...]:
    """The transactions and customers files a run reads, as loading finds them (the command
    line's, else configs/data.yaml's, else the sample's): --out overwrote the last two."""
    from crm_ltv.features.config import DataConfig, load_config
    from crm_ltv.features.contract import DataError
    from crm_ltv.features.inputs import input_paths

    try:
        return input_paths(
            load_config(DataConfig, paths.config_file("data")), paths, *(transactions, customers)
        )
    except DataError:  # no sample: said by the loading, in its place
        return transactions, customers


def _check_out(out: Path | None, on_dask: bool, inputs: tuple[Path | None, ...]) -> None:
    """--out of features and score: a .csv or .parquet file, or on Dask a folder of parts;
    never one of the inputs, nor the folder they are read from (a run overwrote its input)."""
    import glob

    from crm_ltv.features.config import ConfigError
    from crm_ltv.features.loading import is_pattern
    from crm_ltv.features.paths import nearest_existing, part_file, write_refused

    if out is None:
        return
    target = out.resolve()
    for given in (p for p in inputs if p is not None):
        # a pattern's files and their folders wherever they are (a wildcard in a folder's
        # name too: 'in/s?/*' let --out in/sp delete its inputs), or the file or folder given
        matched = [Path(m).resolve() for m in glob.glob(str(given))] if is_pattern(given) else []
        read = {given.resolve(), *matched, *(m.parent for m in matched)}
        if target in read:
            raise ConfigError(f"--out {out}: is an input of this run ({given}); write elsewhere")
    a_file = out.suffix.lower() in (".csv", ".parquet")
    if on_dask and a_file:
        raise ConfigError(f"--out {out}: --engine dask writes a folder of Parquet parts")
    if not on_dask and not a_file:
        raise ConfigError(f"--out {out}: expected a .csv or .parquet file name")
    if on_dask:  # a folder of parts: not where a file is (found after all the work before)
        blocked = nearest_existing(out)  # a folder: so is every one above it
        if not blocked.is_dir():
            raise ConfigError(
                f"--out {out}: {blocked} is a file; --engine dask writes a folder of parts"
            )
        refused = write_refused(part_file(out, 0))
        if refused is not None:
            raise ConfigError(f"--out {out}: its parts cannot be written: {refused}")


def _summary(table: pd.DataFrame, cutoff: pd.Timestamp, target: Path) -> str:
    counts = {c: table[c].value_counts(sort=False) for c in _SUMMARY_COLUMNS}
    return _summary_text(len(table), table.shape[1], counts, cutoff, target)


def _summary_text(
    rows: int, width: int, counts: dict[str, pd.Series], cutoff: pd.Timestamp, target: Path
) -> str:
    lines = [f"features at {cutoff}: {rows:,} customers x {width} features -> {target}"]
    for column, title in _SUMMARY_COLUMNS.items():
        lines.append(f"{title}:")
        lines += [f"  {name:20s} {n:>9,}  {n / rows:6.1%}" for name, n in counts[column].items()]
    return "\n".join(lines)


HorizonOpt = Annotated[
    int | None, typer.Option(min=1, help="Label window in days (default: configs/train.yaml).")
]


TRAIN_ON_NOTHING = "no customer to train on"
TRAIN_KEPT = (  # what a stopped `train` leaves (stopped while loading: no run yet, tester V)
    f"{_RUN_KILLED}; model versions are registered in the last step only, so none is unless "
    "the stop came during it"
)


def _train_config(paths: Paths, horizon_days: int | None = None) -> TrainConfig:
    from crm_ltv.features.config import load_config, override
    from crm_ltv.training.config import TrainConfig

    config = load_config(TrainConfig, paths.config_file("train"))
    snapshots = override(config.snapshots, "--horizon-days", horizon_days=horizon_days)
    return override(config, "command line", snapshots=snapshots)


def _check_monotone(paths: Paths, config: TrainConfig, feature_config: FeatureConfig) -> None:
    from crm_ltv.training.pipeline import check_monotone

    check_monotone(config, feature_config, str(paths.config_file("train")))


def _tuned_params(
    paths: Paths,
    horizon_days: int,
    progress: Progress,
    inputs: Inputs | None = None,
    settings: dict[str, str] | None = None,
) -> dict | None:
    """Best params of `make tune` for this horizon, if any (README: "Tuning"); a warning when
    they were tuned on other data than `inputs`, or with other `settings` (`config_digests`
    of the train, features and data configs, as read: before --engine dask's changes)."""
    import json

    from crm_ltv.features.config import ConfigError

    path = paths.best_params_file(horizon_days)
    legacy = paths.reports_dir / "best_params.json"
    if legacy.exists():
        progress(f"ignoring {legacy}: made before 2026-12-05, when tuning minimised churn AUC; "
                 f"`crm-ltv tune` writes {path.name}")  # fmt: skip
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
        found_horizon = saved["horizon_days"]
        params = {"churn": dict(saved["churn"]), "ltv": dict(saved["ltv"])}
        studies = ", ".join(saved["studies"].values())
        tuned_on = saved.get("data_sha256")
        if tuned_on is not None and not isinstance(tuned_on, str):
            raise TypeError(f"data_sha256 {tuned_on!r} is not a hash")
        tuned_with = dict(saved.get("settings", {}))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a best-params file of `make tune` ({exc})") from None
    if found_horizon != horizon_days:
        raise ConfigError(
            f"{path}: tuned for a {found_horizon}-day horizon, not {horizon_days}; delete it"
        )
    progress(f"using tuned params from {path} (studies {studies}; delete the file to train "
             "with configs/train.yaml alone)")  # fmt: skip
    if inputs is not None and tuned_on is not None:
        from crm_ltv.training.tracking import file_sha256, input_sources

        if file_sha256(*input_sources(inputs)) != tuned_on:
            progress(
                f"warning: {path.name} was tuned on other data (data_sha256 {tuned_on[:12]}...);"
                " run `crm-ltv tune` on this data, or delete the file"
            )
    changed = [a for a, d in (settings or {}).items() if tuned_with.get(a, d) != d]
    if changed:
        progress(
            f"warning: {path.name} was tuned with other settings of "
            f"{', '.join(f'{a}.yaml' for a in changed)} (or of the command line); run "
            "`crm-ltv tune` with these, or delete the file"
        )
    return params


def _feature_config(paths: Paths) -> FeatureConfig:
    from crm_ltv.features.config import FeatureConfig, load_config

    return load_config(FeatureConfig, paths.config_file("features"))


@app.command()
@_user_errors
def train(
    transactions: TransactionsOpt = None,
    customers: CustomersOpt = None,
    column: ColumnOpt = None,
    timestamp_format: FormatOpt = None,
    sep: SepOpt = None,
    max_reject_share: RejectShareOpt = None,
    horizon_days: HorizonOpt = None,
    engine: EngineOpt = Engine.single,
    scheduler: SchedulerOpt = None,
    partitions: PartitionsOpt = None,
) -> None:
    """Train, evaluate and register the churn and LTV models (MLflow), with baselines."""
    from crm_ltv.features.config import config_digests
    from crm_ltv.features.inputs import require_purchases
    from crm_ltv.training.tracking import check_home_artifacts

    paths = _paths()
    feature_config = _feature_config(paths)
    config = _train_config(paths, horizon_days)
    _check_monotone(paths, config, feature_config)
    progress = Progress()
    read = (transactions, customers, column, timestamp_format, sep, max_reject_share)
    data_config = _data_config(paths, column, timestamp_format, sep, max_reject_share)
    settings = config_digests(config, feature_config, data_config)  # as tune digests them
    check_home_artifacts(paths)  # a moved home: before the data is read (tester U: 10 s)
    with _interruptible(TRAIN_KEPT):
        if _on_dask(engine, scheduler, partitions):
            dask = (scheduler, partitions, settings)
            result = _train_on_dask(
                paths, config, feature_config, data_config, progress, *dask, read
            )
        else:
            inputs = _read_inputs(paths, progress, *read)
            require_purchases(inputs.transactions, TRAIN_ON_NOTHING)
            horizon = config.snapshots.horizon_days
            tuned = _tuned_params(paths, horizon, progress, inputs, settings)
            progress("loading the training libraries (LightGBM, MLflow)")
            from crm_ltv.training.job import run_training

            result = run_training(
                inputs, paths, config, feature_config, tuned, progress, data_config=data_config
            )
    import mlflow

    from crm_ltv.training.run_log import comparison_table

    typer.echo(comparison_table(result.evaluation))
    if result.split.evaluation != "out-of-time":
        typer.echo(
            f"evaluation: {result.split.evaluation}, not out-of-time: the history is too short "
            "for three label windows that do not overlap, so the test customers were held out "
            "at the newest cutoff"
        )
    for kind, reg in result.registered.items():
        verdict = f"now {config.registry.alias}" if reg.decision.promote else "not promoted"
        typer.echo(f"{kind}: {reg.name} v{reg.version} {verdict}: {reg.decision.reason}")
    typer.echo(f"MLflow run {result.run_id} at {mlflow.get_tracking_uri()}; {paths.metrics_file}")


def _train_on_dask(
    paths: Paths,
    config: TrainConfig,
    feature_config: FeatureConfig,
    data_config: DataConfig,
    progress: Progress,
    scheduler: str | None,
    partitions: int | None,
    settings: dict[str, str],
    read: tuple[object, ...],
) -> TrainResult:
    """`train` with the snapshots and boosters on a Dask cluster (training/cluster.py);
    `settings`: the configs' digests as read, for `_tuned_params`."""
    from crm_ltv.features.config import override
    from crm_ltv.features.inputs import require_purchases
    from crm_ltv.training import cluster
    from crm_ltv.training.job import run_training

    cluster.check_supported(config)
    progress("--engine dask: no seasonal level (README: Scaling out on Dask)")
    level = override(config.level, "--engine dask", seasonal=False)
    config = override(config, "--engine dask", level=level)
    with _dask_inputs(paths, progress, scheduler, partitions, *read) as data:
        inputs = data.inputs(paths.rejects_dir)
        require_purchases(inputs.transactions, TRAIN_ON_NOTHING, data.bought())
        split = cluster.split_on_cluster(data, config, feature_config, progress)
        tuned = _tuned_params(paths, config.snapshots.horizon_days, progress, inputs, settings)
        fit = functools.partial(cluster.train_on_cluster, split)
        refit = functools.partial(cluster.refit_on_cluster, split, progress=progress)
        return run_training(
            inputs, paths, config, feature_config, tuned, progress, split.sample, fit, refit,
            data_config=data_config,
        )  # fmt: skip


@app.command()
@_user_errors
@_interruptible(OUT_KEPT)
def score(
    as_of: Annotated[
        str,
        typer.Option(
            help="Score with history up to this date/time (ISO 8601: 2025-06-01, 2025-06-01T12:00)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(help="Output file: .csv or .parquet (--engine dask: a folder of parts)."),
    ],
    transactions: TransactionsOpt = None,
    customers: CustomersOpt = None,
    column: ColumnOpt = None,
    timestamp_format: FormatOpt = None,
    sep: SepOpt = None,
    max_reject_share: RejectShareOpt = None,
    engine: EngineOpt = Engine.single,
    scheduler: SchedulerOpt = None,
    partitions: PartitionsOpt = None,
) -> None:
    """Score every customer with history up to --as-of with the champion models."""
    from crm_ltv.features.contract import DataError

    on_dask = _on_dask(engine, scheduler, partitions)
    paths = _paths()
    _check_out(out, on_dask, _files_read(paths, transactions, customers))
    if not on_dask:
        _writable(out, "--out")
    feature_config = _feature_config(paths)
    config = _train_config(paths)
    cutoff = _cutoff_option(as_of, "--as-of")
    progress = Progress()

    from crm_ltv.training.scoring import (
        absent_inputs,
        absent_inputs_warning,
        score_customers,
        scoring_features,
    )

    champions = _scoring_champions(paths, progress, feature_config, config)
    progress(
        f"scoring with {champions.churn.name} v{champions.churn.version}, "
        f"{champions.ltv.name} v{champions.ltv.version} ({champions.horizon_days}-day horizon)"
    )
    read = (transactions, customers, column, timestamp_format, sep, max_reject_share)
    if on_dask:
        from crm_ltv.features.cluster import features_on_cluster, write_parts
        from crm_ltv.training.cluster import score_on_cluster, score_totals

        with _dask_inputs(paths, progress, scheduler, partitions, *read) as data:
            if cutoff < data.first:  # said before the champions' warnings, and any work
                raise _nothing_to_score(cutoff)
            _champion_warnings(progress, champions, feature_config, cutoff)
            _warn_if_far(progress, cutoff, data.last, champions.horizon_days)
            frames = features_on_cluster(data, cutoff, feature_config, **champions.feature_args())
            first = frames[:1]  # every partition has the same columns
            columns = data.client.gather(data.client.map(lambda f: list(f.columns), first))
            absent = absent_inputs(columns[0] if columns else (), champions)
            if absent:
                progress(absent_inputs_warning(absent))
            progress(f"scoring at {cutoff} on {len(frames)} partitions")
            try:
                scored = score_on_cluster(data.client, frames, champions)
                rows, churn, value = score_totals(data.client, scored)
            except ValueError as exc:
                raise DataError(f"the champion models cannot score these features: {exc}") from None
            if rows == 0:  # lines up to the cutoff, but no purchase (refunds)
                raise _nothing_to_score(cutoff)
            target = out.absolute()  # written by the workers, from their own folder
            write_parts(data.client, scored, target, index=False)
        typer.echo(_scored(rows, churn / rows, value, cutoff, champions, target))
        return
    inputs = _read_inputs(paths, progress, *read)
    stamps = inputs.transactions.frame["timestamp"]
    if cutoff < stamps.min():  # said before the champions' warnings, and any work
        raise _nothing_to_score(cutoff)
    _warn_if_far(progress, cutoff, stamps.max(), champions.horizon_days)
    # before the features: a build that fails or is stopped would hide the likely cause
    _champion_warnings(progress, champions, feature_config, cutoff)
    table = scoring_features(
        inputs.transactions.frame, cutoff, feature_config, inputs.customers_frame, champions
    )
    if table.empty:  # lines up to the cutoff, but no purchase (refunds)
        raise _nothing_to_score(cutoff)
    progress(f"scoring {plural(len(table), 'customer')} at {cutoff}")
    if "monetary_total" in table:
        unit = champions.money_unit_warning(table["monetary_total"])
        if unit is not None:
            progress(unit)
    absent = absent_inputs(table.columns, champions)
    if absent:
        progress(absent_inputs_warning(absent))
    try:
        scores = score_customers(table, champions)
    except ValueError as exc:
        raise DataError(f"the champion models cannot score these features: {exc}") from None
    _write_table(scores, out, index=False)
    churn, value = scores["churn_probability"].mean(), scores["predicted_value"].sum()
    typer.echo(_scored(len(scores), churn, value, cutoff, champions, out))


def _nothing_to_score(cutoff: pd.Timestamp) -> DataError:
    from crm_ltv.features.contract import DataError

    return DataError(f"no customer has a purchase up to {cutoff}; nothing to score")


def _champion_warnings(
    progress: Progress,
    champions: Champions,
    features: FeatureConfig,
    cutoff: pd.Timestamp | None,
) -> None:
    """Champions.warnings, said once there is something to score, not as a page of noise
    before `nothing to score`."""
    for warning in champions.warnings(features, cutoff):
        progress(warning)


def _warn_if_far(
    progress: Progress, cutoff: pd.Timestamp, last: pd.Timestamp | None, horizon: int
) -> None:
    """A cutoff more than a horizon after the data: allowed, but every customer looks lapsed."""
    import pandas as pd

    if last is not None and cutoff - last > pd.Timedelta(days=horizon):
        progress(
            f"warning: --as-of {cutoff:%Y-%m-%d} is {(cutoff - last).days:,} days after the "
            f"last transaction ({last:%Y-%m-%d}), more than the {horizon}-day horizon: every "
            "customer looks lapsed"
        )


def _scored(
    rows: int, churn: float, value: float, cutoff: pd.Timestamp, champions: Champions, out: Path
) -> str:
    """The versions too: the file does not say which pair scored it (tester C: after a
    promote and a rollback, only a progress line on stderr did)."""
    return (
        f"scored {plural(rows, 'customer')} at {cutoff}: mean churn probability {churn:.3f}, total "
        f"predicted value {value:,.0f} over {champions.horizon_days} days, by "
        f"{champions.churn.name} v{champions.churn.version} and {champions.ltv.name} "
        f"v{champions.ltv.version} -> {out}"
    )


@app.command()
@_user_errors
def promote(
    model: Annotated[
        str,
        typer.Option(
            help="Registered model: churn or ltv (configs/train.yaml), or uplift "
            "(configs/experiments.yaml)."
        ),
    ],
    version: Annotated[
        str | None, typer.Option(help="Version to make champion (default: the newest).")
    ] = None,
    pair: Annotated[
        bool,
        typer.Option(
            "--pair", help="churn/ltv: also promote the other model's version of the same run."
        ),
    ] = False,
) -> None:
    """Move the champion alias to a version by hand (the gate of `crm-ltv train` is skipped)."""
    from crm_ltv.features.config import ConfigError
    from crm_ltv.training.registry import (
        chosen_version,
        gate_objection,
        horizon_of,
        model_names,
        promote_by_hand,
        serving_version,
        version_of_run,
    )
    from crm_ltv.training.tracking import setup_tracking

    paths = _paths()
    config = _train_config(paths)
    uplift = _experiments_config(paths).uplift
    pair_names = list(model_names(config.registry).values())
    aliases = dict.fromkeys(pair_names, config.registry.alias)
    aliases[uplift.model_name] = uplift.alias
    if model not in aliases:
        raise ConfigError(f"--model {model!r}: expected one of {', '.join(sorted(aliases))}")
    made_by = "crm-ltv uplift" if model == uplift.model_name else "crm-ltv train"
    _require_home_store(paths, made_by)
    setup_tracking(paths, config.registry.experiment)
    moves = [(model, version)]
    if model in pair_names:  # scoring needs the churn and LTV champions of one horizon
        chosen = chosen_version(model, version, made_by)
        partner = next(n for n in pair_names if n != model)
        if pair:
            mate = version_of_run(partner, chosen.run_id)
            if mate is None:
                raise ConfigError(f"{model} v{chosen.version}: its run registered no {partner}")
            moves.append((partner, str(mate.version)))
        else:
            # the partner version scoring would use beside it: its champion, else its newest
            # of this version's horizon (`serving_versions`), else its newest
            ours = horizon_of(chosen)
            current, _ = serving_version(partner, config.registry.alias, ours)
            theirs = None if current is None else horizon_of(current)
            if None not in (ours, theirs) and ours != theirs:
                raise ConfigError(
                    f"{model} v{chosen.version} predicts {ours} days, the {partner} v"
                    f"{current.version} scoring uses {theirs} days: scoring needs one horizon. "
                    f"Promote both of that run: `crm-ltv promote --model {model} --version "
                    f"{chosen.version} --pair`"
                )
    elif pair:
        raise ConfigError(f"--pair: only churn and ltv are registered in pairs, not {model}")
    changed = False
    for name, wanted in moves:
        previous, moved = promote_by_hand(name, wanted, aliases[name], made_by)
        if str(previous) == moved:  # said as a move, "v2 -> v2" read as a change
            typer.echo(f"{name}: v{moved} is already {aliases[name]}; nothing moved")
            continue
        changed = True
        before = f"v{previous}" if previous else "none"
        typer.echo(f"{name}: {aliases[name]} {before} -> v{moved}")
        objection = gate_objection(name, moved)
        if objection is not None:  # a hand promotion overrides the gate: say what it said
            typer.echo(
                f"warning: {name} v{moved} was held back by its run's gate: {objection}", err=True
            )
    if changed:  # the service copies the champions as it starts, and never looks again
        typer.echo(
            "A running service keeps the versions it loaded: restart `crm-ltv serve` (or build "
            "a new Bento, `crm-ltv bento`) to serve this one; its answers' model_versions say "
            "which they scored with."
        )


@app.command()
@_user_errors
def tune(
    trials: Annotated[
        int | None, typer.Option(min=1, help="Trials per model (default: configs/tune.yaml).")
    ] = None,
    transactions: TransactionsOpt = None,
    customers: CustomersOpt = None,
    column: ColumnOpt = None,
    timestamp_format: FormatOpt = None,
    sep: SepOpt = None,
    max_reject_share: RejectShareOpt = None,
    horizon_days: HorizonOpt = None,
) -> None:
    """Tune both models with Optuna; the next `crm-ltv train` uses the best params."""
    from crm_ltv.features.config import load_config, override
    from crm_ltv.training.config import TuneConfig
    from crm_ltv.training.tracking import check_home_artifacts

    paths = _paths()
    feature_config = _feature_config(paths)
    config = _train_config(paths, horizon_days)
    _check_monotone(paths, config, feature_config)
    tune_config = override(
        load_config(TuneConfig, paths.config_file("tune")), "--trials", trials=trials
    )
    progress = Progress()
    read = (transactions, customers, column, timestamp_format, sep, max_reject_share)
    data_config = _data_config(paths, column, timestamp_format, sep, max_reject_share)
    kept = (
        f"the finished trials are kept in {paths.optuna_db}; the same command resumes the "
        "studies (a trial this stop cut short does not count: another one takes its place)"
    )
    check_home_artifacts(paths)  # a moved home: before the data is read, as in `train`
    # the reading and the split too, as in `train`: seconds on a large file, where a stop
    # was exit 130 with no line, or lost under an inherited SIG_IGN (a background job)
    with _interruptible(kept):
        inputs = _read_inputs(paths, progress, *read)
        from crm_ltv.features.inputs import require_purchases

        require_purchases(inputs.transactions, TRAIN_ON_NOTHING)
        from crm_ltv.training.job import split_inputs
        from crm_ltv.training.tuning import run_tuning

        split = split_inputs(inputs, config, feature_config, progress)
        results = run_tuning(
            split, inputs, paths, config, tune_config, progress, [feature_config, data_config]
        )
    for kind, result in results.items():
        stopped = " (stopped by timeout_minutes)" if result.timed_out else ""
        typer.echo(
            f"{kind}: best validation {result.metric} {result.best_value:.5f} (trial "
            f"{result.best_trial}) after {result.completed} complete and {result.pruned} pruned "
            f"trials{stopped} ({result.name}): {result.best_params}"
        )
    if split.evaluation != "out-of-time":  # on stderr from the split too; said as train says it
        typer.echo(
            f"evaluation: {split.evaluation}, not out-of-time: the studies' scores are measured "
            f"on {len(split.valid):,} validation customers held out at {split.plan.valid:%Y-%m-%d}"
        )
    typer.echo(
        f"best params -> {paths.best_params_file(split.horizon_days)} (used by the next "
        f"`crm-ltv train` at a {split.horizon_days}-day horizon)"
    )


def _registry_versions(
    names: dict[str, str], alias: str, progress: Progress
) -> tuple[dict[str, ModelVersion | None], set[str], str | None]:
    """The versions to serve per kind, the kinds served by a version that is not their
    champion (said in a warning), or why the registry gives none."""
    import mlflow

    from crm_ltv.training.registry import serving_versions

    try:
        # the version reads below take an unreachable registry for one without versions
        mlflow.MlflowClient().search_registered_models(max_results=1)
        found = serving_versions(names, alias)
    except Exception as exc:  # any failure to reach the registry: fall back to the store
        reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        return {}, set(), f"cannot be read ({reason.splitlines()[0]})"
    versions = {kind: version for kind, (version, _) in found.items()}
    for _, warning in found.values():
        if warning is not None:
            progress(warning)
    problem = next(
        (f"model {names[k]!r} has no versions" for k, v in versions.items() if v is None), None
    )
    return versions, {kind for kind, (_, warning) in found.items() if warning}, problem


def _sync_store(progress: Progress) -> tuple[Paths, dict[str, str]]:
    """Copy each champion bundle from the registry into the BentoML model store unless the
    store holds that copy already; the exact store tags to serve (store name -> tag). When the
    registry cannot be read (or has no versions), this home's newest copies in the store are
    served, with a warning; without any, that is an error. Copies are told apart by their
    registry name, version and tracking URI: with several homes on one store, the latest copy
    was another home's (tester S)."""
    import tempfile

    import mlflow

    from crm_ltv.serving.store import STORE_NAMES, describe, newest_copy, store_bundle
    from crm_ltv.training.bundle import READS, bundle_format, format_refused
    from crm_ltv.training.registry import RegistryError, download_bundle, model_names
    from crm_ltv.training.tracking import check_home_artifacts, no_home_store, tracking_uri

    paths = _paths()
    registry = _train_config(paths).registry
    names = model_names(registry)
    # A tracking server that is down should fail in seconds, not after minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    uri = tracking_uri(paths)
    mlflow.set_tracking_uri(uri)  # read only: no experiment to create
    mlflow.set_registry_uri(uri)
    problem = no_home_store(paths)
    versions: dict[str, ModelVersion | None] = {}
    not_champions: set[str] = set()
    if problem is None:
        check_home_artifacts(paths)  # a moved home: refused before any copy; a copied one: said
        versions, not_champions, problem = _registry_versions(names, registry.alias, progress)
    if problem is not None and any(v is None for v in versions.values()):
        # read, and empty: nothing trained here (as `score` says), not a reason to serve the
        # store (tester S: an interrupted first train served another home's models)
        raise RegistryError(
            f"{problem} in the registry at {uri}: run `crm-ltv train` (`make train` in the "
            "checkout) first"
        )
    if problem is not None:
        own = {
            kind: newest_copy(STORE_NAMES[kind], READS, registry_name=name, tracking_uri=uri)
            for kind, name in names.items()
        }
        churn = own["churn"]
        if churn is not None:  # its partner of one training run (one horizon), where stored
            own["ltv"] = newest_copy(
                STORE_NAMES["ltv"], READS, registry_name=names["ltv"], tracking_uri=uri,
                run_id=str(churn.info.metadata.get("run_id")),
            ) or own["ltv"]  # fmt: skip
        missing = [names[kind] for kind, copy in own.items() if copy is None]
        if missing:
            raise RegistryError(
                f"registry at {uri}: {problem}, and the BentoML model store holds no copy of "
                f"this home's {' and '.join(missing)} (of that registry) to serve: run "
                "`crm-ltv train` (`make train` in the checkout; or `crm-ltv promote`) first"
            )
        progress(
            f"warning: registry at {uri}: {problem}; serving this home's newest copies in the "
            "BentoML store: " + ", ".join(describe(c) for c in own.values() if c is not None)
        )
        tags = {STORE_NAMES[kind]: str(copy.tag) for kind, copy in own.items() if copy}
        return paths, tags | _stored_uplift_tag(paths, uri, progress)
    tags = {}
    for kind, found in versions.items():
        assert found is not None
        meta = _copy_identity(names[kind], found, uri)
        copy = newest_copy(STORE_NAMES[kind], READS, **meta)
        if copy is not None:
            # the warning above said when it is not the champion (tester M: "is the champion"
            # followed "has no 'champion' version")
            which = "the version to serve" if kind in not_champions else "the champion"
            progress(f"{kind}: {describe(copy)} is {which}, already in the store")
            tags[STORE_NAMES[kind]] = str(copy.tag)
            continue
        with tempfile.TemporaryDirectory(prefix="crm-ltv-bundle-") as tmp:
            folder = download_bundle(names[kind], str(found.version), Path(tmp))
            refused = format_refused(bundle_format(folder))
            if refused is not None:  # else copied again on every run, refused by each worker
                raise RegistryError(f"{names[kind]} v{found.version}: model bundle of {refused}")
            created = store_bundle(kind, folder, meta)
        progress(f"{kind}: copied {names[kind]} v{found.version} into the store as {created.tag}")
        tags[STORE_NAMES[kind]] = str(created.tag)
    return paths, tags | _sync_uplift(paths, uri, progress)


def _copy_identity(name: str, found: ModelVersion, uri: str) -> dict[str, str]:
    """What tells a store copy of a registered version apart, kept in its metadata: the
    registry name, version and tracking URI of its home, and its run (a registry made again at
    the same path has a v1 too)."""
    return {
        "registry_name": name,
        "registry_version": str(found.version),
        "tracking_uri": uri,
        "run_id": found.run_id,
    }


def _stored_uplift_tag(paths: Paths, uri: str, progress: Progress) -> dict[str, str]:
    """With the registry unreadable: this home's newest uplift copy in the store, else a
    placeholder (the priors decide), not whichever home's copy the store got last."""
    from crm_ltv.serving.store import (
        NO_BUNDLE,
        UPLIFT_STORE_NAME,
        describe,
        newest_copy,
        placeholder_uplift,
    )
    from crm_ltv.training.uplift import FORMAT

    name = _experiments_config(paths).uplift.model_name
    copy = newest_copy(UPLIFT_STORE_NAME, (FORMAT,), registry_name=name, tracking_uri=uri)
    retired = newest_copy(UPLIFT_STORE_NAME, (NO_BUNDLE,), tracking_uri=uri)  # its placeholder
    if copy is not None and (
        retired is None or copy.info.creation_time > retired.info.creation_time
    ):
        progress(f"uplift: serving this home's newest copy, {describe(copy)}")
        return {UPLIFT_STORE_NAME: str(copy.tag)}
    placeholder = retired or placeholder_uplift(
        f"no {name!r} of {uri} in the store: next-best-action uses the priors", uri
    )
    progress("uplift: no copy of this home's in the store: next-best-action uses the priors")
    return {UPLIFT_STORE_NAME: str(placeholder.tag)}


def _sync_uplift(paths: Paths, uri: str, progress: Progress) -> dict[str, str]:
    """The uplift champion into the store like churn/LTV; without one a placeholder version
    (serving.store.retire_uplift), so the service decides with the priors of configs/nba.yaml
    and says so. The store tag to serve."""
    import tempfile

    from crm_ltv.serving.store import (
        NO_BUNDLE,
        UPLIFT_STORE_NAME,
        describe,
        newest_copy,
        placeholder_uplift,
        retire_uplift,
        store_uplift,
        stored_uplift,
    )
    from crm_ltv.training.registry import load_uplift_champion
    from crm_ltv.training.uplift import FORMAT

    config = _experiments_config(paths).uplift
    champion = load_uplift_champion(config.model_name, config.alias)
    if champion is None:
        none = f"no {config.model_name!r} {config.alias} in the registry at {uri}"
        stored = stored_uplift()
        retired = retire_uplift(f"{none}: next-best-action uses the priors", uri)
        progress(
            f"uplift: {none} (`crm-ltv uplift` trains one); "
            + (f"the store's {describe(stored)} retired; " if retired and stored else "")
            + "next-best-action uses the priors of configs/nba.yaml"
        )
        placeholder = (
            retired
            or newest_copy(UPLIFT_STORE_NAME, (NO_BUNDLE,), tracking_uri=uri)
            or placeholder_uplift(f"{none}: next-best-action uses the priors", uri)
        )
        return {UPLIFT_STORE_NAME: str(placeholder.tag)}
    found, bundle = champion
    meta = _copy_identity(config.model_name, found, uri)
    copy = newest_copy(UPLIFT_STORE_NAME, (FORMAT,), **meta)
    if copy is not None:
        progress(f"uplift: {describe(copy)} is the champion, already in the store")
        return {UPLIFT_STORE_NAME: str(copy.tag)}
    with tempfile.TemporaryDirectory(prefix="crm-ltv-uplift-") as tmp:
        created = store_uplift(bundle.save(Path(tmp) / "uplift"), meta)
    progress(f"uplift: copied {config.model_name} v{found.version} into the store as {created.tag}")
    return {UPLIFT_STORE_NAME: str(created.tag)}


def _bentoml(*args: str) -> list[str]:
    """BentoML's command beside this interpreter (`.venv/bin/bentoml`): not on PATH without an
    activated environment, which the README's commands do not ask for."""
    return [str(Path(sys.executable).parent / "bentoml"), *args]


def _bentoml_env(paths: Paths, progress: Progress) -> dict[str, str]:
    """The home for the service, and serving.yaml's workers and logging as BentoML overrides
    (merged into the user's own BENTOML_CONFIG_OVERRIDES, which win where both set a key)."""
    from crm_ltv.features.config import load_config
    from crm_ltv.features.paths import HOME_ENV
    from crm_ltv.serving.config import BENTOML_OVERRIDES_ENV, ServingConfig, bentoml_overrides

    settings = load_config(ServingConfig, paths.config_file("serving"))
    merged, overridden = bentoml_overrides(settings, os.environ.get(BENTOML_OVERRIDES_ENV))
    if overridden:
        progress(
            f"{BENTOML_OVERRIDES_ENV} sets {', '.join(overridden)}: used instead of "
            f"{paths.config_file('serving')}'s"
        )
    return {HOME_ENV: str(paths.root), BENTOML_OVERRIDES_ENV: merged}


@app.command()
@_user_errors
def serve(
    port: Annotated[
        int, typer.Option(help="Port to listen on.", min=1, max=65535, envvar="CRM_LTV_PORT")
    ] = 3000,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on (0.0.0.0: every interface, as a container needs).",
            envvar="CRM_LTV_HOST",
        ),
    ] = "127.0.0.1",
) -> None:
    """Copy the champion models into the BentoML store and serve POST /score."""
    from crm_ltv.features.config import ConfigError
    from crm_ltv.serving.config import blank_token, check_service_configs, outdated_rules
    from crm_ltv.serving.store import SERVED_MODELS_ENV
    from crm_ltv.serving.watchdog import SERVER_PID_ENV

    _free_port(host, port)
    paths = _paths()
    configs = check_service_configs(paths)  # else a worker only logs a mistake, never ready
    blank = blank_token()
    if blank is not None:
        raise ConfigError(blank)
    progress = Progress()
    outdated = outdated_rules(configs.nba, paths.config_file("nba"))
    if outdated:
        progress(outdated)
    # a mistyped --home served the store's copies (another home's models) and logged its
    # decisions there, where that home's `outcomes` never looks
    _require_home_store(paths)
    env = _bentoml_env(paths, progress)  # before bentoml is imported: it reads the overrides
    _, tags = _sync_store(progress)
    # each worker, whenever it starts, declares these exact copies (serving.store.served_tag)
    env[SERVED_MODELS_ENV] = json.dumps(tags)
    env[SERVER_PID_ENV] = str(os.getpid())  # execv keeps it: the supervisor's, for its workers
    progress(f"serving on http://{host}:{port} (OpenAPI page at /, readiness at /readyz)")
    command = _bentoml(
        "serve", "crm_ltv.serving.service:CrmLtv", "--host", host, "--port", str(port)
    )
    os.environ.update(env)
    os.execv(command[0], command)


@app.command()
@_user_errors
@_interruptible("the models copied so far stay in the BentoML store; no Bento is built")
def bento() -> None:
    """Copy the champion models into the BentoML store and build a Bento that carries them."""
    from crm_ltv.features.paths import HOME_ENV
    from crm_ltv.serving.config import (
        BENTOML_OVERRIDES_ENV,
        SERVICE_AREAS,
        ServingConfig,
        bentoml_overrides,
    )
    from crm_ltv.serving.packaging import build_bento, checkout

    # bentoml reads the variable as it is imported: a traceback where it is not JSON
    bentoml_overrides(ServingConfig(), os.environ.get(BENTOML_OVERRIDES_ENV))
    checkout()  # before the store is touched
    progress = Progress()
    paths, tags = _sync_store(progress)
    progress("building the Bento (the project's wheel and the runtime lock)")
    done, built = build_bento(progress, tags)
    if done != 0:
        raise typer.Exit(done)
    # the README says it; served by hand without it, a Bento is not ready (or was, on defaults).
    # The command names this home and store (tester M: a placeholder home, and without the
    # store's BENTOML_HOME the command found no Bento).
    areas = ", ".join(f"{area}.yaml" for area in SERVICE_AREAS)
    progress(
        f"the Bento carries the models, not the configs: serve it with {HOME_ENV} set to the "
        f"project home as an absolute path, whose configs/ it reads ({areas}; packaged "
        f"defaults where a file is missing) and where it writes its decision log, here: "
        f"{_bento_serve_command(paths.root.resolve(), os.environ.get('BENTOML_HOME'), built)}"
    )


def _bento_serve_command(home: Path, store: str | None, bento: str) -> str:
    """The shell line that serves the Bento just built from this home and store, to paste:
    only the values quoted (a quoted `'VAR=a b'` is a command name to the shell), and its
    exact tag (`crm-ltv:latest` was another home's Bento once that home built one: tester S)."""
    from crm_ltv.features.paths import HOME_ENV

    given = {HOME_ENV: str(home)} | ({"BENTOML_HOME": store} if store else {})
    variables = [f"{name}={shlex.quote(value)}" for name, value in given.items()]
    return " ".join([*variables, shlex.join([_bentoml()[0], "serve", bento])])


@app.command("mlflow-ui")
@_user_errors
def mlflow_ui(
    port: Annotated[int, typer.Option(help="Port of the UI.", min=1, max=65535)] = 5000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    allowed_hosts: Annotated[
        str | None,
        typer.Option(
            help="Host names the UI answers to besides localhost and private addresses "
            "(MLflow's --allowed-hosts, comma-separated), e.g. mlflow.example.com: with "
            "--host 0.0.0.0, the name other machines use; the links then name it."
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Server processes (MLflow's default, 4, kept dying and restarting on a busy "
            "2-core machine: /health never answered in 120 s; 1 was up in 80 s).",
            min=1,
        ),
    ] = 1,
) -> None:
    """The MLflow UI over the home's runs and registry, with a link to each experiment.

    The links open each experiment's runs table (MLflow 3 would open on its GenAI pages).
    """
    import socket

    from crm_ltv.features.config import ConfigError
    from crm_ltv.training.tracking import no_home_store, tracking_uri, ui_links

    paths = _paths()
    _free_port(host, port)
    problem = no_home_store(paths)
    if problem is not None:  # tester O: a mistyped home got an empty store, and an empty UI
        raise ConfigError(
            f"{problem}; the UI would show an empty store: run `crm-ltv train` (or an "
            "experiment command) there first"
        )
    # 0.0.0.0 is where it listens, not an address to open; MLflow answers this machine's own
    # name only when it is allowed: the links name an allowed host
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    named = (allowed_hosts or "").split(",")[0].split(":")[0].strip()  # "name:port" -> name
    shown = named if named and "*" not in named else shown
    shown = f"[{shown}]" if ":" in shown else shown  # an IPv6 address in a URL
    typer.echo("MLflow UI: open the runs table of an experiment:")
    for line in ui_links(paths, f"http://{shown}:{port}"):
        typer.echo(f"  {line}")
    if host in ("0.0.0.0", "::") and not allowed_hosts:
        typer.echo(
            f"  (other machines: by a private address, or by name with --allowed-hosts "
            f"{socket.gethostname()})"
        )
    command = [
        sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri(paths),
        "--default-artifact-root", str(paths.artifacts_dir), "--host", host, "--port", str(port),
        "--workers", str(workers),
        *(["--allowed-hosts", _host_patterns(allowed_hosts)] if allowed_hosts else []),
    ]  # fmt: skip
    # MLflow 3's job runner (GenAI scorers) starts several more processes of ~250 MB (8 in
    # 3.17) and a huey store in /dev/shm that outlives the server: nothing here uses it (a
    # user's setting is kept)
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    sys.stdout.flush()
    os.execv(command[0], command)


def _experiments_config(paths: Paths) -> ExperimentsConfig:
    from crm_ltv.experiments.config import ExperimentsConfig
    from crm_ltv.features.config import load_config

    return load_config(ExperimentsConfig, paths.config_file("experiments"))


def _outcomes_file(paths: Paths, config: ExperimentsConfig) -> Path:
    """The campaigns file `crm-ltv outcomes` writes in this home (absolute)."""
    return (paths.root / config.outcomes.campaigns_file).resolve()


CampaignsOpt = Annotated[
    Path | None,
    typer.Option(help="Campaigns CSV/Parquet (default: configs/data.yaml, else the sample)."),
]


@app.command()
@_user_errors
@_interruptible(_RUN_KILLED)
def ab(
    campaigns: CampaignsOpt = None,
    by: Annotated[
        str | None,
        typer.Option(
            help="Also per segment: rfm_segment or lifecycle_stage at send time (features from "
            "the transactions up to it), or acquisition_channel (customers table)."
        ),
    ] = None,
    transactions: TransactionsOpt = None,
    customers: CustomersOpt = None,
    column: ColumnOpt = None,
    timestamp_format: FormatOpt = None,
    sep: SepOpt = None,
    max_reject_share: RejectShareOpt = None,
    expected_treatment_share: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            max=0.99,
            help="The split the sends were drawn with, for the sample-ratio check (default: "
            "each row's expected_treatment_share, which `crm-ltv outcomes` writes, else "
            "experiments.yaml ab).",
        ),
    ] = None,
    balance: Annotated[
        bool,
        typer.Option(
            "--balance/--no-balance",
            help="Compare treatment and control on the features at send time (the "
            "transactions' default file or --transactions; balance: of experiments.yaml).",
        ),
    ] = True,
) -> None:
    """A/B analysis of campaigns per action (and segment): lift, p, revenue, SRM, MDE, balance."""
    from crm_ltv.experiments.segments import SEGMENTS
    from crm_ltv.features.config import ConfigError
    from crm_ltv.features.inputs import contacts_found, load_campaign_input

    if by is not None and by not in SEGMENTS:
        raise ConfigError(f"--by {by!r}: expected one of {', '.join(SEGMENTS)}")
    reading = (transactions, customers, column, timestamp_format, sep)
    if by is None and not balance and any(option is not None for option in reading):
        raise ConfigError(
            "--transactions/--customers (and --column, --timestamp-format, --sep) are read for "
            f"the balance check and the segments of --by only; with --no-balance add --by "
            f"({', '.join(SEGMENTS)}) or leave them out"
        )
    paths = _paths()
    config = _experiments_config(paths)
    progress = Progress()
    data_config = _data_config(paths, None, None, None, max_reject_share)
    from crm_ltv.features.inputs import input_paths

    if by == "acquisition_channel":  # before the files load: a shop's transactions take seconds
        from crm_ltv.experiments.segments import require_customers_table

        require_customers_table(input_paths(data_config, paths, transactions, customers)[1])
    loaded = load_campaign_input(
        data_config, paths, campaigns, progress, _outcomes_file(paths, config), transactions
    )
    unchecked = _balance_unchecked(balance, transactions, data_config, paths)
    segments, segment_files, segment_datasets, features = None, [], [], None
    if by is not None or unchecked is None:
        inputs = _read_inputs(paths, progress, *reading, max_reject_share)
        if by == "acquisition_channel" and inputs.customers is not None:  # its segments' table
            contacts_found(loaded, inputs.customers, progress)
        elif by is None and transactions is None:  # the home's default file: a check by chance
            unchecked = _contacts_unknown(loaded, inputs.transactions, progress)
        else:
            contacts_found(loaded, inputs.transactions, progress)
    if by is not None or unchecked is None:
        from crm_ltv.experiments.segments import (
            features_at_send,
            learnt_features,
            segments_at_send,
        )
        from crm_ltv.training.tracking import input_datasets, input_sources

        segment_files, segment_datasets = input_sources(inputs), input_datasets(inputs)
        _warn_windows(loaded.frame, inputs.transactions.frame, config, progress)
        feature_config = _feature_config(paths)
        if unchecked is None:
            progress("features at each send time: the balance of treatment and control")
            at_send = features_at_send(
                loaded.frame, inputs.transactions.frame, feature_config, inputs.customers_frame
            )
            features = learnt_features(at_send, config.uplift.exclude_features)
        if by is not None:
            progress(f"segments at each send time: {by}")
            segments = segments_at_send(
                loaded.frame,
                by,
                inputs.transactions.frame,
                feature_config,
                inputs.customers_frame,
            )
    progress("analysing and logging to MLflow")
    from crm_ltv.experiments.jobs import (
        NOT_CAUSAL,
        featureless_actions,
        imbalanced_actions,
        run_ab,
    )
    from crm_ltv.experiments.text import design_lines, format_ab

    ab_config = config.ab
    if expected_treatment_share is not None:
        ab_config = ab_config.model_copy(
            update={"expected_treatment_share": expected_treatment_share}
        )
    result = run_ab(
        loaded.frame,
        loaded.report.source,
        paths,
        ab_config,
        by,
        segments,
        segment_files,
        segment_datasets,
        expected_treatment_share is not None,
        features,
        config.balance,
        unchecked,
    )
    typer.echo(format_ab(result.by_action, ["action"]))
    for line in design_lines(result.by_action):
        typer.echo(line)
    if result.by_segment is not None:
        typer.echo(f"\nby action and {by} at send time")
        typer.echo(format_ab(result.by_segment, ["action", str(by)]))
    if result.outcomes.converted_from_revenue:
        from crm_ltv.experiments.ab import FROM_REVENUE

        typer.echo(FROM_REVENUE)
    if result.outcomes.without_outcome:
        typer.echo(f"{result.outcomes.without_outcome:,} contacts without an outcome left out")
    if result.outcomes.without_revenue:
        typer.echo(
            f"{result.outcomes.without_revenue:,} converted contacts without a revenue: in the "
            "conversion rates, left out of the revenue differences"
        )
    typer.echo(f"SRM p: against an expected treatment share of {result.split.text}")
    if unchecked is not None:
        typer.echo(f"balance not checked: {unchecked}")
    else:
        typer.echo(
            "balance: each action's worst standardised mean difference, treatment against "
            "control, over the features at send time; IMBALANCED at |SMD| >= "
            f"{config.balance.smd_threshold:g} with a rank-test p under {config.balance.alpha:g} / "
            "features compared (balance: of configs/experiments.yaml)"
        )
    for action in featureless_actions(result.by_action):
        typer.echo(f"balance not checked: {action}: no feature at send time")
    for action, said in imbalanced_actions(result.by_action).items():
        typer.echo(f"warning: {action}: {NOT_CAUSAL} ({said})")
    _say_run(result.run_id, config.ab.experiment, paths)


def _warn_windows(
    campaigns: pd.DataFrame,
    transactions: pd.DataFrame,
    config: ExperimentsConfig,
    progress: Progress,
) -> None:
    """Warn of campaign rows whose response window the transactions do not hold whole."""
    from crm_ltv.experiments.outcomes import window_warning

    warning = window_warning(campaigns, transactions, config.outcomes.response_window_days)
    if warning is not None:
        progress(warning)


def _contacts_unknown(
    campaigns: Loaded, transactions: Loaded, progress: Callable[[str], None]
) -> str | None:
    """Why the balance is not checked when `ab` read the home's default transactions of its
    own accord (no --transactions, no --by) and none of the file's customers is in them: a
    shop's own campaigns in a home made with the sample, analysed without it before."""
    from crm_ltv.features.contract import DataError
    from crm_ltv.features.inputs import contacts_found

    try:
        contacts_found(campaigns, transactions, progress)
    except DataError:
        return (
            f"none of the contacts' customers is in {transactions.report.source} (give "
            "--transactions)"
        )
    return None


def _balance_unchecked(
    balance: bool, transactions: Path | None, data_config: DataConfig, paths: Paths
) -> str | None:
    """Why `ab` does not check the balance before the send, or None when it does: it needs
    the transactions, read when given or when the home's default file is there."""
    from crm_ltv.features.contract import DataError
    from crm_ltv.features.inputs import input_paths

    if not balance:
        return "--no-balance"
    if transactions is not None:
        return None
    try:
        found = input_paths(data_config, paths, None, None)[0]
    except DataError:  # no sample generated, no transactions configured
        found = None
    if found is not None and found.exists():
        return None
    return (
        f"no transactions file ({found or 'none configured'}) to build the features at send "
        "time from: give --transactions to compare treatment and control before the send"
    )


@app.command("plan-ab")
@_user_errors
@_interruptible(_RUN_KILLED)
def plan_ab(
    baseline_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Control conversion rate, e.g. 0.09.")
    ],
    lift: Annotated[float, typer.Option(help="Relative lift to detect, e.g. 0.1 for +10%.")],
    power: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Power (default 0.8: experiments.yaml).")
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Two-sided significance (default 0.05)."),
    ] = None,
    treatment_share: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of the customers contacted (default ab.expected_treatment_share of "
            "configs/experiments.yaml, 0.5; `crm-ltv outcomes` prints the service's).",
        ),
    ] = None,
) -> None:
    """Customers per group an A/B test needs to detect a lift over a baseline conversion rate."""
    from crm_ltv.experiments.ab import plan_sample_size
    from crm_ltv.features.config import ConfigError

    paths = _paths()
    config = _experiments_config(paths).ab
    try:
        plan = plan_sample_size(
            baseline_rate,
            lift,
            config.power if power is None else power,
            config.alpha if alpha is None else alpha,
            config.expected_treatment_share if treatment_share is None else treatment_share,
        )
    except ValueError as exc:
        raise ConfigError(f"plan-ab: {exc}") from None
    from crm_ltv.experiments.jobs import run_plan
    from crm_ltv.experiments.text import format_plan

    run_id = run_plan(plan, paths, config)
    typer.echo(format_plan(plan, config.exact_test_below))
    _say_run(run_id, config.plan_experiment, paths)


@app.command()
@_user_errors
@_interruptible(_RUN_KILLED)
def cohorts(
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Lifecycle transitions from this date (default: --to minus "
            "cohorts.transition_months of configs/experiments.yaml).",
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", help="...to this date; also the LTV:CAC cutoff (default: the end)."),
    ] = None,
    transactions: TransactionsOpt = None,
    customers: CustomersOpt = None,
    column: ColumnOpt = None,
    timestamp_format: FormatOpt = None,
    sep: SepOpt = None,
    max_reject_share: RejectShareOpt = None,
) -> None:
    """Cohort retention heatmap, lifecycle stage transitions, LTV:CAC and payback per channel."""
    paths = _paths()
    config = _experiments_config(paths).cohorts
    feature_config = _feature_config(paths)
    first, last = _cutoff_option(start, "--from"), _cutoff_option(end, "--to")  # before any work
    if first is not None and last is not None and first >= last:
        from crm_ltv.features.contract import DataError

        raise DataError(f"--from {first:%Y-%m-%d %H:%M} is not before --to {last:%Y-%m-%d %H:%M}")
    progress = Progress()
    inputs = _read_inputs(
        paths, progress, transactions, customers, column, timestamp_format, sep, max_reject_share
    )
    from crm_ltv.features.inputs import require_purchases

    require_purchases(inputs.transactions, "nothing to make cohorts of")
    progress("cohorts, lifecycle transitions and LTV:CAC; logging to MLflow")
    from crm_ltv.experiments.jobs import run_cohorts
    from crm_ltv.experiments.text import format_ltv_cac, format_retention, format_transitions
    from crm_ltv.experiments.tracking import input_datasets, input_sources

    result = run_cohorts(
        inputs.transactions.frame,
        inputs.customers_frame,
        paths,
        feature_config,
        config,
        first,
        last,
        input_datasets(inputs),
        input_sources(inputs),
    )
    typer.echo(format_retention(result.retention, result.headline))
    typer.echo("\n" + format_transitions(result.transitions, result.start, result.end))
    if result.ltv_cac is not None:
        typer.echo(
            "\n" + format_ltv_cac(result.ltv_cac, config.ltv_cac_target, config.gross_margin)
        )
    else:
        typer.echo("\nno customers table with acquisition_channel and acquisition_cost: no LTV:CAC")
    _say_run(result.run_id, config.experiment, paths)


@app.command()
@_user_errors
@_interruptible(
    f"{_RUN_KILLED}; the uplift model is registered in the last step only, so none is unless "
    "the stop came during it"
)
def uplift(
    campaigns: CampaignsOpt = None,
    transactions: TransactionsOpt = None,
    customers: CustomersOpt = None,
    column: ColumnOpt = None,
    timestamp_format: FormatOpt = None,
    sep: SepOpt = None,
    max_reject_share: RejectShareOpt = None,
    pool_controls: Annotated[
        bool | None,
        typer.Option(
            "--pool-controls/--own-controls",
            help="Every control contact as each action's comparison group (only when each "
            "send's action was drawn at random against one control, as in the sample), or "
            "each action's own controls; default uplift.pool_controls (configs/experiments.yaml)",
        ),
    ] = None,
) -> None:
    """Uplift models per action (X-learner, LightGBM) from the campaigns: Qini/AUUC, registry."""
    from crm_ltv.training.tracking import check_home_artifacts

    paths = _paths()
    check_home_artifacts(paths)  # a moved home: before the models are fit (tester Z)
    experiments = _experiments_config(paths)
    config = experiments.uplift
    if pool_controls is not None:
        config = config.model_copy(update={"pool_controls": pool_controls})
    from crm_ltv.features.registry import check_feature_names, feature_registry

    feature_config = _feature_config(paths)
    known = (s.name for s in feature_registry(feature_config))
    where = f"{paths.config_file('experiments')}: uplift.exclude_features"
    check_feature_names(config.exclude_features, known, where)
    progress = Progress()
    skewed = config.learnt_skew()
    if skewed:
        progress(
            f"warning: {where} does not list {', '.join(skewed)}, which the service builds "
            "otherwise than this job (README: Uplift models), so the model learns "
            f"{'it' if len(skewed) == 1 else 'them'} as it is not served; a list written by "
            "an older `crm-ltv init`? Add it to the list unless you mean it"
        )
    data_config = _data_config(paths, None, None, None, max_reject_share)
    from crm_ltv.features.inputs import contacts_found, load_campaign_input

    loaded = load_campaign_input(
        data_config, paths, campaigns, progress, _outcomes_file(paths, experiments), transactions
    )
    from crm_ltv.experiments.outcomes import require_window

    # before the transactions load (run_uplift checks it too, for callers of its own)
    require_window(loaded.frame, config.response_window_days, f"campaigns {loaded.report.source}")
    inputs = _read_inputs(
        paths, progress, transactions, customers, column, timestamp_format, sep, max_reject_share
    )
    contacts_found(loaded, inputs.transactions, progress)  # features come from their history
    _warn_windows(loaded.frame, inputs.transactions.frame, experiments, progress)
    truth = None
    truth_file = paths.sample_dir / "truth_campaigns.parquet"
    if loaded.report.source == paths.sample_table("campaigns") and truth_file.exists():
        import pandas as pd

        progress(f"the sample's true effects: {truth_file}")
        truth = pd.read_parquet(truth_file)
    progress("loading the training libraries (LightGBM, MLflow)")
    from crm_ltv.experiments.uplift import format_uplift
    from crm_ltv.experiments.uplift_job import run_uplift
    from crm_ltv.training.tracking import input_datasets, input_sources

    result = run_uplift(
        loaded.frame, loaded.report.source, inputs.transactions.frame, inputs.customers_frame,
        paths, feature_config, config, truth, progress, input_datasets(inputs),
        input_sources(inputs), experiments.balance,
    )  # fmt: skip
    typer.echo(format_uplift(result.table))
    verdict = f"now {config.alias}" if result.promoted else "not promoted"
    typer.echo(f"{config.model_name} v{result.version} {verdict}: {result.reason}")
    _say_run(result.run_id, config.experiment, paths)


DecisionsOpt = Annotated[
    list[Path] | None,
    typer.Option(
        help="The service's decision log (default: configs/serving.yaml decision_log); again, "
        "or a quoted glob ('logs/decisions.jsonl*'), for its rotated files too (.gz read)."
    ),
]
WindowOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Response window in days (default: experiments.yaml outcomes)."),
]


def _decision_logs(given: list[Path] | None, default: Path, progress: Progress) -> list[Path]:
    """The logs `--decisions` names, else the service's, with a warning for its rotated files
    beside it, which are not read unless given (tester T)."""
    from crm_ltv.experiments.outcomes import decision_logs, rotated_beside

    if given:
        return decision_logs([_absolute(path) for path in given])
    log = default.resolve()
    rotated = rotated_beside(log)
    if rotated:
        shown = ", ".join(p.name for p in rotated[:3]) + (", ..." if len(rotated) > 3 else "")
        progress(
            f"warning: {len(rotated)} rotated file(s) beside {log} ({shown}) are not read: give "
            f"--decisions '{log}*' to read their decisions too"
        )
    return [log]


@app.command()
@_user_errors
@_interruptible(
    "the campaigns file is written in the last step only, whole: an earlier one stays as it was"
)
def outcomes(
    decisions: DecisionsOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Campaigns file to write (default: experiments.yaml outcomes)."),
    ] = None,
    transactions: TransactionsOpt = None,
    window_days: WindowOpt = None,
    column: ColumnOpt = None,
    timestamp_format: FormatOpt = None,
    sep: SepOpt = None,
    max_reject_share: RejectShareOpt = None,
) -> None:
    """The service's decisions joined with later transactions, as a campaigns file."""
    import pandas as pd

    from crm_ltv.experiments.outcomes import (
        decision_outcomes,
        logs_named,
        no_contacts,
        no_controls,
        read_decision_logs,
        require_campaign_rows,
        require_known_customers,
        summary,
    )
    from crm_ltv.features.config import load_config
    from crm_ltv.serving.config import ServingConfig

    paths = _paths()
    experiments = _experiments_config(paths)
    config = experiments.outcomes
    target = out.resolve() if out else _outcomes_file(paths, experiments)
    if target.suffix.lower() != ".csv":
        from crm_ltv.features.config import ConfigError

        raise ConfigError(f"--out {target}: outcomes writes a campaigns CSV; give a .csv name")
    _writable(target, "--out")
    progress = Progress()
    serving = load_config(ServingConfig, paths.config_file("serving"))
    logs = _decision_logs(decisions, paths.root / serving.decision_log, progress)
    log = logs_named(logs)
    progress(f"reading decisions from {log}")
    frame = read_decision_logs(logs, progress)
    inputs = _read_inputs(
        paths, progress, _absolute(transactions), None, column, timestamp_format, sep,
        max_reject_share,
    )  # fmt: skip
    window = window_days or config.response_window_days
    tx = inputs.transactions.frame
    require_known_customers(frame, tx, log, inputs.transactions.report.source)
    result = decision_outcomes(frame, tx, window)
    pending = target.with_name(f"{target.stem}_pending.csv")
    require_campaign_rows(result, target, pending, window, tx["timestamp"].max())
    none = no_contacts(result)
    if none is not None:  # not an error: `make experiments` goes on to policy-eval this log
        typer.echo(f"{none}: no campaigns file written ({target} left as it was, if any)")
        return
    _write_table(result.campaigns, target, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    if len(result.pending):
        _write_table(result.pending, pending, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    typer.echo(summary(result, target, pending if len(result.pending) else None, window))
    controls = int(result.campaigns["group"].astype(str).eq("control").sum())
    waiting = result.pending.loc[result.pending["group"].astype(str).eq("control"), "sent_at"]
    if not controls and len(waiting):
        last = waiting.max() + pd.Timedelta(days=window)
        typer.echo(
            f"next: every control contact of this log ({len(waiting):,}) is in a response "
            "window not over yet, and `crm-ltv ab` and `crm-ltv uplift` compare with controls: "
            f"run outcomes again on transactions up to {last:%Y-%m-%d}"
        )
    elif not controls and result.before_file:
        typer.echo(
            f"next: no control contact has its response window in the transactions, and "
            f"{result.before_file:,} treatment or control rows start before their first line "
            f"({result.first_transaction:%Y-%m-%d}): give transactions that begin before the "
            "decisions (more decisions will not help those)"
        )
    elif not controls:
        typer.echo(f"next: {no_controls(result)}")
    elif window != experiments.uplift.response_window_days:  # uplift would refuse the file
        typer.echo(
            f"next: crm-ltv ab --campaigns {target} (uplift learns "
            f"{experiments.uplift.response_window_days}-day effects: uplift.response_window_days "
            f"of configs/experiments.yaml, not these {window}-day outcomes)"
        )
    else:  # ab reads each row's expected_treatment_share from the file: no option to give
        typer.echo(f"next: crm-ltv ab --campaigns {target}; crm-ltv uplift --campaigns {target}")


@app.command("policy-eval")
@_user_errors
@_interruptible(_RUN_KILLED)
def policy_eval(
    decisions: Annotated[
        list[Path] | None,
        typer.Option(
            help="A decision log of the service to evaluate on (default: a history simulated "
            "on the sample, with each policy's true value); again, or a quoted glob, for its "
            "rotated files too."
        ),
    ] = None,
    transactions: TransactionsOpt = None,
    customers: CustomersOpt = None,
    window_days: WindowOpt = None,
    column: ColumnOpt = None,
    timestamp_format: FormatOpt = None,
    sep: SepOpt = None,
    max_reject_share: RejectShareOpt = None,
) -> None:
    """Off-policy values (IPW, doubly robust) of the uplift policy and its alternatives.

    The policies: uplift, priors, one-action, churn-risk, random and no-contact, each with a
    bootstrap interval (and its true value on the sample).
    """
    import functools

    from crm_ltv.features.config import ConfigError, load_config
    from crm_ltv.serving.config import NbaConfig, outdated_rules
    from crm_ltv.serving.policies import arm_costs, arms_of, rival_policies

    paths = _paths()
    experiments = _experiments_config(paths)
    config = experiments.policy_eval
    window = window_days or experiments.outcomes.response_window_days
    nba = load_config(NbaConfig, paths.config_file("nba"))
    if config.churn_action not in nba.actions:  # before any data is read
        raise ConfigError(
            f"{paths.config_file('experiments')}: policy_eval.churn_action "
            f"{config.churn_action!r} is not an action of {paths.config_file('nba')} "
            f"({', '.join(nba.actions)})"
        )
    from crm_ltv.training.tracking import check_home_artifacts

    check_home_artifacts(paths)  # a moved home: before the models and data are read
    progress = Progress()
    outdated = outdated_rules(nba, paths.config_file("nba"))  # the rules the policies follow
    if outdated:
        progress(outdated)
    transactions, customers = map(_absolute, (transactions, customers))
    logged, logs, log = None, [], ""
    if not decisions:
        _check_simulation_input(paths, _files_read(paths, transactions, customers)[0])
    else:  # a bad log is said before the data and models are loaded
        from crm_ltv.experiments.outcomes import decision_logs, logs_named, read_decision_logs

        logs = decision_logs([_absolute(path) for path in decisions])
        log = logs_named(logs)
        progress(f"reading decisions from {log}")
        logged = read_decision_logs(logs, progress)
    inputs = _read_inputs(
        paths, progress, transactions, customers, column, timestamp_format, sep, max_reject_share
    )
    tx = inputs.transactions.frame
    if logged is not None:  # before the libraries and models load
        from crm_ltv.experiments.outcomes import require_known_customers

        require_known_customers(logged, tx, log, inputs.transactions.report.source)
    progress("loading the training libraries (LightGBM, MLflow)")
    from crm_ltv.experiments import policy_eval_job as job
    from crm_ltv.training.tracking import (
        file_datasets,
        input_datasets,
        input_sources,
        setup_tracking,
    )

    setup_tracking(paths, config.experiment)
    uplift_version, uplift = _uplift_champion(experiments, progress)
    arms, costs = arms_of(nba), arm_costs(nba)
    # the versions that decided: the uplift policy's effects and, simulated, the scores
    params: dict[str, object] = {"response_window_days": window, "uplift_version": uplift_version}
    datasets, files = input_datasets(inputs), input_sources(inputs)
    if logged is None:
        history, effects, versions = _simulated_history(
            paths, inputs, nba, config, window, uplift, progress
        )
        params |= {f"{kind}_version": v for kind, v in versions.items()}
        params |= job.simulation_params(config.simulation)
    else:
        history = job.logged_history(logged, tx, arms, costs, window, log)
        effects = _uplift_effects(uplift, history.contexts, inputs, paths, progress)
        nested = ["model_versions", "prior_expected_values", "eligible_actions"]
        flat = logged.drop(columns=nested, errors="ignore")  # MLflow reads nested values one by one
        each = [flat] if len(logs) == 1 else [flat.loc[flat["log"] == str(p)] for p in logs]
        named = [
            ("decisions" if len(logs) == 1 else f"decisions {path.name}", rows, path)
            for rows, path in zip(each, logs, strict=True)
        ]
        datasets = [*datasets, *file_datasets(named)]
        files = [*files, *logs]
    progress(f"{history.source}; policies decided with serving.nba, estimating")
    from crm_ltv.experiments.outcomes import without_transactions_line

    unmatched = without_transactions_line(*history.without_transactions, "decisions")
    if unmatched:  # cold starts alone are new customers, as expected: not a warning
        progress(("warning: " if history.without_transactions[0] else "") + unmatched)
    rivals = functools.partial(
        rival_policies, nba=nba, churn_share=config.churn_share, churn_action=config.churn_action
    )
    policies = rivals(history.contexts, effects=effects)
    if uplift is None:
        progress("no uplift champion (`crm-ltv uplift`): the uplift policy is skipped")
    result = job.run_policy_eval(history, policies, paths, config, datasets, params, files)
    if result.too_few is not None:
        progress(f"warning: {result.too_few}")
    typer.echo(job.format_policy_table(result.table))
    for name, note in result.notes.items():
        typer.echo(f"  {name}: {note}")
    caveat = job.support_note(result.table)
    if caveat:
        typer.echo(caveat)
    typer.echo(result.best_note)
    _say_run(result.run_id, config.experiment, paths)


def _uplift_champion(
    experiments: ExperimentsConfig, progress: Progress
) -> tuple[str, UpliftBundle | None]:
    """The registered uplift champion's version and bundle, or "none" and None."""
    from crm_ltv.training.registry import load_uplift_champion

    config = experiments.uplift
    champion = load_uplift_champion(config.model_name, config.alias)
    if champion is None:
        return "none", None
    found, bundle = champion
    progress(f"uplift: {config.model_name} v{found.version} ({config.alias})")
    return str(found.version), bundle


def _uplift_effects(
    uplift: UpliftBundle | None,
    contexts: pd.DataFrame,
    inputs: Inputs,
    paths: Paths,
    progress: Progress,
) -> dict | None:
    """Each action's predicted purchase effect for each decision, from features at its as_of."""
    if uplift is None:
        return None
    from crm_ltv.experiments.segments import features_at_send

    progress("uplift effects from the features at each decision's as_of")
    sends = contexts[["customer_id"]].assign(sent_at=contexts["as_of"])
    table = features_at_send(sends, inputs.transactions.frame, _feature_config(paths),
                             inputs.customers_frame)  # fmt: skip
    return uplift.effects(uplift.encode(table))


def _check_simulation_input(paths: Paths, transactions: Path | None) -> None:
    """Without --decisions the history is simulated on the built-in sample only: say so before
    the data is read (`transactions`: the file that would be)."""
    from crm_ltv.features.contract import DataError
    from crm_ltv.features.inputs import same_file

    if transactions is None:  # no sample either: said by the loading
        return
    if not same_file(transactions, paths.sample_table("transactions")):
        raise DataError(
            "policy-eval without --decisions simulates decisions on the built-in sample (its "
            "generator knows the true effects); for your own data give --decisions LOG"
        )
    if not paths.truth_customers.exists():
        raise DataError(f"{paths.truth_customers}: no sample ground truth (`crm-ltv data`)")


def _simulated_history(
    paths: Paths,
    inputs: Inputs,
    nba: NbaConfig,
    config: PolicyEvalConfig,
    window: int,
    uplift: UpliftBundle | None,
    progress: Progress,
) -> tuple[History, dict | None, dict[str, str]]:
    """A history simulated on the sample at the last cutoff whose window is in the data; the
    effects of the uplift model, and the versions of the models that scored it."""
    import numpy as np
    import pandas as pd

    from crm_ltv.experiments.policy_eval_job import simulated_history
    from crm_ltv.features.config import SampleConfig, load_config
    from crm_ltv.serving.policies import arm_costs, arms_of, logging_probabilities
    from crm_ltv.training.registry import load_champions
    from crm_ltv.training.scoring import score_customers, scoring_features

    tx = inputs.transactions.frame
    cutoff = (tx["timestamp"].max() - pd.Timedelta(days=window)).floor("D")
    champions = load_champions(_train_config(paths).registry, progress)
    progress(f"scoring the sample's customers at {cutoff:%Y-%m-%d}")
    table = scoring_features(tx, cutoff, _feature_config(paths), inputs.customers_frame, champions)
    sim = config.simulation
    if len(table) > sim.customers:
        rng = np.random.default_rng(sim.seed)
        table = table.iloc[np.sort(rng.choice(len(table), sim.customers, replace=False))]
    contexts = score_customers(table, champions).assign(
        as_of=cutoff,  # and what nba.yaml's rules read beyond the scores, as the service logs it
        frequency=table["frequency"].to_numpy(),
        recency_days=table["recency_days"].to_numpy(),
        favourite_category=table["favourite_category"].astype(object).to_numpy()
        if "favourite_category" in table
        else None,
    )
    effects = uplift.effects(uplift.encode(table)) if uplift is not None else None
    logging = logging_probabilities(contexts, nba, sim.holdout_share, sim.exploration)
    history = simulated_history(
        contexts, tx, pd.read_parquet(paths.truth_customers),
        load_config(SampleConfig, paths.config_file("sample")),
        arms_of(nba), arm_costs(nba), logging, window, sim.seed,
    )  # fmt: skip
    return history, effects, champions.versions


# Help read through a pipe (`| cat`, `| less`, a CI log) took rich's width for a stream that is
# not a terminal, 80 columns, which cut option names and defaults: `--expected-treatm…`
# (tester I). 120 is the narrowest round width at which every command's help is whole (100
# still cut one; tests/test_cli.py checks each command). A terminal keeps its own width, and
# COLUMNS or TERMINAL_WIDTH, when set, theirs.
_PIPED_HELP_WIDTH = 120


def _piped_help_width() -> None:
    """Typer's help width (its TERMINAL_WIDTH, read when help or a usage error is first
    rendered) for a stdout that is not a terminal. Set in the environment, the one way typer
    reads it without importing rich for every command (175 ms).

    Only for a help request (`--help` among the arguments, or none: the app's help), the
    one output it is for. Typer applies it to every console, stderr's too: set for any command
    line, `crm-ltv score --bogus > scores.csv` drew a 120-column error box in an 80-column
    terminal (review 2, P5). A usage error or a traceback keeps rich's width for stderr."""
    if sys.stdout is None or sys.stdout.isatty():  # None: stdout closed (`>&-`), no help seen
        return
    if "COLUMNS" in os.environ or "TERMINAL_WIDTH" in os.environ:
        return
    if len(sys.argv) > 1 and "--help" not in sys.argv[1:]:
        return
    os.environ["TERMINAL_WIDTH"] = str(_PIPED_HELP_WIDTH)


# Exit code when stdout's reader went away: 128 + SIGPIPE, as the shell reports a tool the
# signal ended (`main`)
READER_GONE = 128 + signal.SIGPIPE


def _stdout_pipe() -> int | None:
    """A copy of stdout's descriptor when it is a pipe or a socket, else None: kept to ask at
    the end whether its reader went away, as fd 1 itself may be /dev/null by then (rich points
    it there when a write of its fails with EPIPE)."""
    import stat

    try:
        mode = os.fstat(1).st_mode
    except OSError:  # closed
        return None
    return os.dup(1) if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) else None


def _reader_gone(pipe: int | None) -> bool:
    """Whether the reader of stdout's pipe (`_stdout_pipe`) has gone: poll says POLLERR (a
    pipe's read end closed) or POLLHUP. A file, a terminal or a closed stdout has no reader."""
    import select

    if pipe is None:
        return False
    poller = select.poll()
    poller.register(pipe, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _exit_code(done: SystemExit, pipe: int | None) -> int | str | None:
    """The code a command exits with: `READER_GONE` when stdout's reader went away, else its
    own. The reader went away when a write met EPIPE (click then exits 1, the BrokenPipeError
    as the exit's context) and stdout's pipe (`pipe`) has no reader, or the last flush does.
    Stdout then points at /dev/null, so that what is left in its buffer does not fail again at
    exit (the recipe of Python's `signal` docs, "Note on SIGPIPE").

    A BrokenPipeError while stdout still has its reader (or is a file) is another pipe's or a
    socket's (a tracking server, a Dask worker): a defect, which click ended with exit 1 and no
    word; its traceback is printed and the exit stays 1 (review 2, P4: it read as 141)."""
    broke = done.__context__
    if isinstance(broke, BrokenPipeError) and not _reader_gone(pipe):
        traceback.print_exception(broke)
        return 1
    if sys.stdout is None:  # closed (`>&-`): click's echo wrote nothing, no reader to lose
        return done.code
    gone = isinstance(broke, BrokenPipeError)
    if not gone:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            gone = True
    if gone:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return READER_GONE if gone else done.code


def main() -> None:  # pragma: no cover - the `crm-ltv` entry point
    """The `crm-ltv` command.

    A reader that stops reading (`crm-ltv --help | head -1`) ends it quietly with exit code
    141 (`READER_GONE`). Python ignores SIGPIPE, so the write raised BrokenPipeError, which
    click turned into exit 1 with no line: a failure of the command, under `set -o pipefail`
    too (tester I). 141 is what the shell reports for `cat`, `grep` or `git log` ended by
    SIGPIPE in the same place, so a script treats crm-ltv as it treats them; 0 would say that
    the whole output was read, which a script reading a run id or a table of scores must not
    take for granted. SIGPIPE's default action is not restored instead: it would kill `serve`
    and the MLflow and HTTP clients on any socket its peer closed."""
    _piped_help_width()
    pipe = _stdout_pipe()
    try:
        app(prog_name="crm-ltv")
    except SystemExit as done:
        code = _exit_code(done, pipe)
        if not _stopped and code in (0, None):
            raise
        # A stopped or failed command has said its line and ended its runs: it exits now,
        # without the interpreter's teardown, where a native library's worker thread still
        # running aborted the process after its line: "terminate called without an active
        # exception", exit -6 instead of 130 (a CSV read Ctrl-C cancelled, CI 2026-12-07), or
        # 134 instead of 2 (tester I, once in ~80 runs of `ab` on bad files). Its folders and
        # runs are closed by then (context managers), so the teardown has nothing left to do.
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: closed (`>&-`)
                stream.flush()
        os._exit(code if isinstance(code, int) else 1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
