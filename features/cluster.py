"""The same loading and feature builders on a Dask cluster, for histories past one machine.

Input files (a folder or glob of Parquet/CSV) are each loaded and validated by a worker with
the single-process loader; each file's rows are then split by a hash of customer_id and the
pieces gathered per partition, so that each partition holds whole customers (a line that
repeats a line of an earlier file is found there, an exact duplicate as within a file), and
every partition runs the single-process builders. What is
population-wide is computed across partitions and passed in: the category caps (label counts
summed) and the RFM quintile cut points (exact quantiles, `features.quantiles`). The result
equals the single-process table row for row. Imported only by `--engine dask` commands.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import cloudpickle
import dask.config
import numpy as np
import pandas as pd
from dask.sizeof import sizeof
from dask.utils import parse_timedelta
from distributed import Client, Future, LocalCluster, WorkerPlugin, get_worker
from distributed.client import FutureCancelledError, FuturesCancelledError

from crm_ltv.features.arrays import Codes, CustomerAttributes, TransactionArrays, as_cutoff
from crm_ltv.features.builders import (
    KnownLabels,
    LabelCounts,
    features_at,
    population_label_counts,
)
from crm_ltv.features.builders import with_rfm_cuts as _with_rfm_cuts
from crm_ltv.features.config import (
    ConfigError,
    DataConfig,
    FeatureConfig,
    SourceConfig,
    ValidationConfig,
)
from crm_ltv.features.contract import DataError
from crm_ltv.features.inputs import Inputs, ids_not_in, input_files, unknown_customers_warning
from crm_ltv.features.loading import (
    DUPLICATE_OF,
    LINE,
    PARQUET_SUFFIXES,
    ROW,
    Loaded,
    LoadReport,
    clear_rejects,
    load_customers,
    load_transactions,
    over_reject_limit,
    write_listed,
)
from crm_ltv.features.paths import part_file
from crm_ltv.features.quantiles import exact_quantiles
from crm_ltv.features.rfm import QUINTILES, RfmCuts
from crm_ltv.features.wording import plural

Progress = Callable[[str], None]
K = TypeVar("K")
N = TypeVar("N", int, float)
ROWS_PER_PARTITION = 2_000_000  # transactions per partition after the shuffle, at most
RETRIES = 3  # a task whose worker died runs again elsewhere
# The file's index << 40 | the row's: the loader's order of a customer's rows at one instant
# (it sorts by customer and time, stably), and where a repeated line is read.
_ROW = "_row"
_FILE_SHIFT = 40  # _ROW's bits above the row's: the file's index
_IN_FILE = np.int64((1 << _FILE_SHIFT) - 1)  # the row's bits of _ROW
# What was read of a line, compared with its hash: a collision of the 64-bit hashes of two
# lines (about 2^-64 a pair) must also be one of a customer's lines at one instant and amount.
_READ = ["customer_id", "timestamp", "amount"]
_TEXT = ("customer_id", "order_id", "category", "channel", "acquisition_channel")


@sizeof.register(Codes)
@sizeof.register(TransactionArrays)
@sizeof.register(CustomerAttributes)
def _sizeof_arrays(value: Codes | TransactionArrays | CustomerAttributes) -> int:
    """Their arrays' bytes: what the workers' memory manager counts to spill or pause (Dask
    sees a few hundred bytes for an object it does not know)."""
    return sum(sizeof(getattr(value, f.name)) for f in fields(value))


class _LocalWorker(WorkerPlugin):
    """A local worker shares the terminal: its stdout goes to stderr (stdout is for results;
    LightGBM's network talks), and Ctrl-C, which the terminal sends to the whole process
    group, is left to the command (each worker printed its KeyboardInterrupt traceback, and
    a warning for each task cancelled: about 90 lines before the `interrupted:` line); the
    workers stop when the command closes the cluster. A plugin: a restarted worker too."""

    def setup(self, worker: object) -> None:  # on the worker's event loop, its main thread
        sys.stdout.flush()
        os.dup2(2, 1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        logging.getLogger("distributed.worker.state_machine").setLevel(logging.ERROR)


@contextmanager
def connect(scheduler: str | None, progress: Progress) -> Iterator[Client]:
    """A client of the cluster at `scheduler`, else of a local cluster sized to the machine
    (one single-threaded worker process per core, memory shared out equally)."""
    if scheduler:
        # Dask's own setting (DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT; default 30 s)
        timeout = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"))
        try:
            _handshake(scheduler, timeout)
            remote = Client(scheduler, timeout=timeout)
        except Exception as exc:  # nothing answers there; not an address; not a scheduler
            # a refused connection is said at once: "within 30 s" only where it was waited
            waited = "" if isinstance(exc, ConnectionRefusedError) else f" within {timeout:g} s"
            raise ConfigError(
                f"--scheduler {scheduler}: no Dask scheduler answered{waited} "
                f"({type(exc).__name__}: {exc}); start one with `dask scheduler` and point "
                "--scheduler at the address it prints"
            ) from exc
        logging.getLogger("distributed.client").addFilter(_said_by_us)
        with remote as client:
            try:
                workers = len(client.scheduler_info()["workers"])
                progress(f"dask: scheduler {scheduler}, {workers} workers")
                if not workers:  # its tasks would wait for good, and say nothing
                    _wait_for_a_worker(client, scheduler, timeout, progress)
                with _cancelled_after_a_stop(client, progress), _quiet_after_a_stop():
                    yield client
            except Exception as exc:
                if not _connection_lost(client, exc):
                    raise
                raise ConfigError(
                    f"--scheduler {scheduler}: lost the connection to the scheduler mid-run; "
                    "the command's work on the cluster is lost: check that the scheduler still "
                    "runs (its log says why it stopped) and is reachable from here, then run "
                    "the command again"
                ) from exc  # a stop behind it stays the outcome (exit 130, 143)
        return
    workers, dashboard = os.cpu_count() or 1, _dashboard_address()
    try:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=dashboard
        )
    except Exception as exc:  # a pinned dashboard address that cannot be (RuntimeError)
        if dashboard in (None, ":0"):
            raise
        raise ConfigError(
            f"the local Dask cluster did not start with its dashboard at {dashboard!r} (Dask's "
            f"{' or '.join(DASHBOARD_KEYS)}): {type(exc).__name__}: {exc}"
        ) from None
    with cluster, Client(cluster) as client:
        client.register_plugin(_LocalWorker(), name="crm-ltv-local-worker")
        link = client.dashboard_link if dashboard is not None else "off"
        progress(f"dask: local cluster of {workers} workers, dashboard {link}")
        with _quiet_after_a_stop(client):
            yield client


# Dask's config has no key of its own for a local cluster's dashboard (LocalCluster takes an
# argument, `dask scheduler` an option): these, the first set, in a Dask config file or as
# DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__ADDRESS / DASK_DISTRIBUTED__DASHBOARD__ADDRESS.
DASHBOARD_KEYS = ("distributed.scheduler.dashboard.address", "distributed.dashboard.address")


def _dashboard_address() -> str | None:
    """The local cluster's dashboard address: Dask's config, where set (':8787' or
    'localhost:8787' pins it, None or false turns it off), else a free port, so that two runs
    (or a notebook's cluster) on one machine never compete for 8787."""
    for key in DASHBOARD_KEYS:
        value = dask.config.get(key, default=":0")
        if value is None or str(value).lower() in ("", "false", "off", "none"):
            return None
        if value != ":0":
            return f":{value}" if isinstance(value, int) else str(value)
    return ":0"


@contextmanager
def _quiet_after_a_stop(local: Client | None = None) -> Iterator[None]:
    """A stop or an error ends the work: the tasks it cancels, a local cluster's workers closed
    while still computing or fetching from each other, and the client's abandoned gathers
    (asyncio's "Task exception was never retrieved ... AllExit", on any cluster) are each
    logged, two dozen lines before the `interrupted:` line, none of them news. The workers of
    a `local` cluster share the terminal: theirs too (a remote cluster's logs are its own)."""
    try:
        yield
    except BaseException:
        _quiet_logs()
        if local is not None:
            with contextlib.suppress(Exception):  # a worker already gone has nothing to say
                local.run(_quiet_logs)
        raise


@contextmanager
def _cancelled_after_a_stop(client: Client, progress: Progress) -> Iterator[None]:
    """On a stop (or an error) every task the command submitted to a remote cluster is
    cancelled, so that none still queued runs for nobody while the next job waits. Dask cannot
    stop a task already running (a thread): one (lightgbm.dask's training: every round) runs
    to its end on the shared workers, which is said with where to watch it."""
    try:
        yield
    except BaseException:
        if client.status != "running":  # the scheduler is gone (its calls wait for it 30 s)
            raise
        with contextlib.suppress(Exception):  # the scheduler is gone: so are the tasks
            ours = set(client.futures)
            running = {k for keys in client.run(_executing).values() for k in keys} & ours
            client.cancel([Future(key, client) for key in ours], reason="crm-ltv stopped")
            if running:
                # said of boosters only where one trains (it was said in `features` too)
                boosters = any(str(key).startswith(_TRAINING) for key in running)
                rounds = "; a booster in training runs all its rounds" if boosters else ""
                progress(
                    f"dask: cancelled this command's tasks; {len(running)} already running on "
                    "the cluster's workers run to their end (Dask cannot stop a running "
                    f"task{rounds}): the cluster's dashboard, {client.dashboard_link}, shows them"
                )
        raise


# The key of lightgbm.dask's task that trains a booster on a worker (its function's name)
_TRAINING = "_train_part-"


def _said_by_us(record: logging.LogRecord) -> bool:
    """Dask's log line of a client that gave up reconnecting, left out: the `error:` line of
    a lost connection says it (`_connection_lost`)."""
    return not record.getMessage().startswith("Failed to reconnect to scheduler")


def _connection_lost(client: Client, exc: Exception) -> bool:
    """Whether `exc` is the client's connection to a remote scheduler lost mid-run (a scheduler
    that stopped, a network that broke): Dask cancels the futures it has
    ("scheduler-connection-lost"), those submitted after when it gives up reconnecting, and a
    call on the closed comm raises CommClosedError (each was a 112-line traceback). A client
    that gave up (its reconnect window, 30 s, passed while the command worked on its own) is
    closed: its next call fails as it may (ClosedClientError, KeyError 'workers', ...)."""
    cancelled = (FutureCancelledError, FuturesCancelledError)
    if client.status in ("closing", "closed"):
        return not isinstance(exc, (ConfigError, DataError))  # the command's own, as said
    if client.status != "running":  # still reconnecting
        return isinstance(exc, (*cancelled, OSError))  # CommClosedError is an OSError
    lost = "scheduler-connection-lost"  # and reconnected since: the futures are gone
    if isinstance(exc, FutureCancelledError):
        return exc.reason == lost
    if isinstance(exc, FuturesCancelledError):
        return any(group.reason == lost for group in exc.error_groups)
    return False


def _executing(dask_worker: Any) -> list[object]:
    """The keys of the tasks a worker is running now (`Client.run` passes the worker)."""
    return [task.key for task in dask_worker.state.executing]


def _quiet_logs() -> None:
    """Dask's loggers and asyncio's, in this process, at CRITICAL only."""
    for name in [*logging.root.manager.loggerDict, "distributed", "asyncio"]:
        if name == "asyncio" or name.partition(".")[0] == "distributed":
            logging.getLogger(name).setLevel(logging.CRITICAL)


def check_scheduler(scheduler: str) -> None:
    """An address in a scheme Dask connects with, said at once: a dashboard's http:// address
    was tried for the whole connect timeout, then reported as an unknown address scheme."""
    from distributed.comm.registry import backends

    scheme, sep, _ = scheduler.partition("://")
    if sep and scheme not in backends:
        raise ConfigError(
            f"--scheduler {scheduler}: Dask does not connect over {scheme}://; give the address "
            f"`dask scheduler` prints, tcp://HOST:PORT (Dask takes {', '.join(sorted(backends))})"
        )


def _wait_for_a_worker(client: Client, scheduler: str, timeout: float, progress: Progress) -> None:
    """A cluster's workers may still be starting: wait for one as long as for the scheduler."""
    progress(f"dask: waiting up to {timeout:g} s for a worker to join")
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise ConfigError(
            f"--scheduler {scheduler}: no worker joined within {timeout:g} s; start one with "
            f"`dask worker {scheduler} --nthreads 1` (README: Scaling out on Dask)"
        ) from None


def _handshake(scheduler: str, timeout: float) -> None:
    """A Dask scheduler speaks first on a TCP connection: a frame (its length as 8 bytes,
    little-endian) with its handshake. Something else at the address (a dashboard, any web
    server) hung Dask's client forever when silent, or made it read a reply as a frame of
    exabytes (MemoryError). Other protocols (tls://, ...) are left to Dask."""
    scheme, _, address = scheduler.rpartition("://")
    if scheme not in ("", "tcp"):
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError("expected HOST:PORT")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as probe:
        probe.settimeout(timeout)
        try:
            head = probe.recv(8)
        except TimeoutError:
            raise ValueError("something answers there, but sends no Dask handshake") from None
    if len(head) < 8 or not 0 < int.from_bytes(head, "little") < 2**24:
        raise ValueError("something answers there, but not with a Dask handshake")


@dataclass(frozen=True)
class Partitioned:
    """Transactions (and customers) on the cluster, partitioned by customer: futures of each
    partition's arrays, and what the files' validation reported."""

    client: Client
    arrays: list[Future]  # TransactionArrays, whole customers per partition
    customers: list[Future] | None  # CustomerAttributes of the same customers
    reports: tuple[LoadReport, ...]
    customer_reports: tuple[LoadReport, ...]
    first: pd.Timestamp
    last: pd.Timestamp
    sources: tuple[Path, Path | None]  # transactions, customers: as given (file, folder, glob)
    columns: tuple[pd.DataFrame, pd.DataFrame | None]  # each table's columns, no rows

    @property
    def rows(self) -> int:
        return sum(r.rows_loaded for r in self.reports)

    def inputs(self, rejects_dir: Path) -> Inputs:
        """What a run records of its inputs (sources, reports, columns): the rows stay on the
        cluster."""
        tx = Loaded(self.columns[0], combined_report(self.reports, self.sources[0], rejects_dir))
        customers = None
        if self.customer_reports and self.sources[1] and self.columns[1] is not None:
            report = combined_report(self.customer_reports, self.sources[1], rejects_dir)
            customers = Loaded(self.columns[1], report)
        return Inputs(tx, customers)

    def bought(self) -> bool:
        """Whether any line is a purchase (features.inputs.require_purchases)."""
        return any(self.client.gather(self.map(_bought)))

    def map(self, function: Callable[..., Any], *iterables: Sequence[Any], **kwargs: Any) -> list:
        """`function` on every partition's arrays (then customers, then `iterables`), on the
        cluster: futures, one per partition."""
        customers = self.customers or [None] * len(self.arrays)
        return self.client.map(
            function, self.arrays, customers, *iterables, retries=RETRIES, pure=False, **kwargs
        )


def _bought(arrays: TransactionArrays, _: object) -> bool:
    return bool((arrays.amount > 0).any())


def _summed(counts: Iterable[Mapping[K, N]]) -> dict[K, N]:
    """Counts by name (reasons, exclusion rules) of several files, added up."""
    total: dict[K, N] = {}
    for each in counts:
        for name, n in each.items():
            total[name] = total.get(name, 0) + n
    return total


def combined_report(reports: Sequence[LoadReport], source: Path, folder: Path) -> LoadReport:
    """One report of a table read from several files (each file's rows and rejects are in
    `folder`/NNNNN-<file name>/)."""
    first = reports[0]
    excluded = _summed(r.excluded for r in reports)
    reasons = _summed(r.reasons for r in reports)
    ignored = dict.fromkeys(c for r in reports for c in r.ignored_columns)
    return replace(
        first,
        source=source,
        rows_read=sum(r.rows_read for r in reports),
        rows_checked=sum(r.rows_checked for r in reports),
        rows_loaded=sum(r.rows_loaded for r in reports),
        rejected=sum(r.rejected for r in reports),
        reasons=dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        duplicates=sum(r.duplicates for r in reports),
        rejects_path=folder / f"*/{first.table}_rejects.csv",
        ignored_columns=tuple(ignored),
        excluded=excluded,
        excluded_path=folder / f"*/{first.table}_excluded.csv" if excluded else None,
        anonymous=sum(r.anonymous for r in reports),
        anonymous_amount=sum(r.anonymous_amount for r in reports),
        anonymous_path=folder / f"*/{first.table}_anonymous.csv",
        warnings=tuple(f"{Path(r.source).name}: {w}" for r in reports for w in r.warnings),
    )


@dataclass(frozen=True)
class _Split:
    """One file as a worker hands it on: its rows split by partition (the loaded frame itself
    is freed within the task), what the file's validation reported, or why it could not load."""

    pieces: list[pd.DataFrame]
    report: LoadReport | None
    extent: tuple[Any, Any, list[str]]
    meta: pd.DataFrame | None
    error: str | None = None
    # the valid anonymous sales split by their line's hash, when lines are compared across
    # files (`_repeated_lines`), and their list, written once those are known
    # (`_write_anonymous`)
    anonymous: list[pd.DataFrame] = field(default_factory=list)
    anonymous_listed: pd.DataFrame | None = None
    unseen_by: str | None = None  # the worker that found no file at the path, if one did

    def summary(self) -> _Split:
        """All but the rows: what the client gathers (the rows stay on the worker)."""
        return replace(self, pieces=[], anonymous=[], anonymous_listed=None)


def _load_split(
    path: Path,
    index: int,
    table: str,
    source: SourceConfig,
    validation: ValidationConfig,
    rejects_dir: Path,
    partitions: int,
    lines: bool = False,
) -> _Split:
    """Load and validate one file as the single-process path does (its rejects in a folder of
    its own), then split it, in one task: the loaded frame is freed as soon as it is split,
    and only the pieces wait for their partitions. Text columns become plain strings so that
    the files' pieces concatenate. A file that cannot load is reported, not retried:
    retrying reads it to the same error. `lines` (transactions in several files): each row
    carries its line's hash, and the anonymous sales are split too, by that hash; their list
    is written later, by `_write_anonymous`."""
    folder = rejects_dir / f"{index:05d}-{path.name}"
    if not path.exists():  # the client saw it: this machine does not share its storage
        error, worker = f"{path}: no such file", get_worker().address
        return _Split([], None, (None, None, []), None, error, unseen_by=worker)
    try:
        if table == "transactions":
            loaded = load_transactions(path, source, validation, folder, with_lines=lines)
        else:
            loaded = load_customers(path, source, validation, folder)
    except DataError as error:
        return _Split([], None, (None, None, []), None, str(error))
    frame = _numbered(loaded.frame, index)
    split = _Split(_pieces(frame, partitions), loaded.report, _extent(frame), frame.iloc[:0])
    if loaded.anonymous is None:
        return split
    anonymous = _numbered(loaded.anonymous, index)
    key = anonymous[LINE].to_numpy() % np.uint64(partitions)
    return replace(
        split,
        anonymous=_split_by(anonymous, key, partitions),
        anonymous_listed=loaded.anonymous_listed,
    )


def _numbered(frame: pd.DataFrame, index: int) -> pd.DataFrame:
    """A file's rows with text columns as plain strings and their _ROW: the row of the file
    where the loader gives it (ROW), else of the loaded rows (their order alike)."""
    for name in _TEXT:
        if name in frame.columns:
            frame[name] = frame[name].astype("str").where(frame[name].notna())
    rows = frame.pop(ROW).to_numpy() if ROW in frame.columns else np.arange(len(frame))
    frame[_ROW] = np.int64(index) << _FILE_SHIFT | rows.astype(np.int64)
    return frame


def _piece(split: _Split, j: int) -> pd.DataFrame:
    return split.pieces[j]


def _anonymous_piece(split: _Split, j: int) -> pd.DataFrame:
    return split.anonymous[j]


def _rows_in(path: Path) -> int:
    """A file's rows, at most (a CSV's lines, through gzip for .gz): to size the partitions
    before loading. 0 for a file that cannot be read: its load says why, naming it."""
    name = path.name.lower()
    try:
        if name.endswith(PARQUET_SUFFIXES):
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        lines = 0
        with gzip.open(path, "rb") if name.endswith(".gz") else path.open("rb") as handle:
            while block := handle.read(1 << 24):
                lines += block.count(b"\n")
        return lines
    except (OSError, ValueError, EOFError):  # pyarrow's ArrowInvalid is a ValueError
        return 0


@dataclass(frozen=True)
class _Table:
    parts: list[Future]  # frames, partitioned by customer_id (`_pieces`)
    reports: tuple[LoadReport, ...]
    first: pd.Timestamp | None  # of the timestamp column, if any
    last: pd.Timestamp | None
    channels: pd.Index | None  # acquisition channels, if any
    meta: pd.DataFrame  # the columns, no rows
    repeated: int = 0  # lines that repeat a line of an earlier file (`_repeated_lines`)


def _extent(frame: pd.DataFrame) -> tuple[Any, Any, list[str]]:
    times = frame["timestamp"] if "timestamp" in frame.columns else pd.Series([], dtype="M8[us]")
    channels = []
    if "acquisition_channel" in frame.columns:
        channels = frame["acquisition_channel"].dropna().unique().tolist()
    return times.min(), times.max(), channels


def _check_files(reports: Sequence[LoadReport], limit: float, timestamp_format: str) -> None:
    """A file that rejects every row stops the run, whatever the table's total: that is a
    format or a column mapping that does not fit it, not a few bad rows."""
    for report in reports:
        if report.rows_checked and report.rejected == report.rows_checked:
            raise over_reject_limit(
                f"{report.source}: every row rejected", report.rejected, report.rows_checked,
                limit, report.reasons, str(report.rejects_path), timestamp_format,
            )  # fmt: skip


def _check_rejects(
    table: str,
    reports: Sequence[LoadReport],
    limit: float,
    where: str,
    timestamp_format: str | None = None,
) -> None:
    """The reject limit on a table's total: one file may reject more than its share when the
    table as a whole stays under the limit."""
    rejected = sum(r.rejected for r in reports)
    checked = sum(r.rows_checked for r in reports)
    if rejected and rejected / checked > limit:
        reasons = _summed(r.reasons for r in reports)
        worst = sorted((r for r in reports if r.rejected), key=lambda r: -r.reject_share)[:3]
        most = ", ".join(f"{Path(r.source).name} {r.reject_share:.2%}" for r in worst)
        raise over_reject_limit(
            f"{table} ({len(reports)} files; most rejected: {most})", rejected, checked, limit,
            reasons, where, timestamp_format,
        )  # fmt: skip


def _load_partitioned(
    client: Client,
    files: list[Path],
    table: str,
    source: SourceConfig,
    validation: ValidationConfig,
    rejects_dir: Path,
    partitions: int | None,
) -> _Table:
    count = partitions or max(
        len(client.scheduler_info()["workers"]),
        -(-sum(client.gather(client.map(_rows_in, files))) // ROWS_PER_PARTITION),
    )
    clear_rejects(rejects_dir, table)  # an earlier run's, of either engine
    # The workers load with no limit of their own: the limit applies to the table's total.
    per_file = validation.model_copy(update={"max_reject_share": 1.0})
    lines = table == "transactions" and len(files) > 1  # lines repeated across files
    loaded = client.map(
        _load_split,
        files,
        range(len(files)),
        table=table,
        source=source,
        validation=per_file,
        rejects_dir=rejects_dir,
        partitions=count,
        lines=lines,
        retries=RETRIES,
    )
    summaries = client.gather(client.map(_Split.summary, loaded))
    unseen = [
        (path, s.unseen_by)
        for path, s in zip(files, summaries, strict=True)
        if s.unseen_by and path.exists()
    ]
    if unseen:  # a worker's view, not a wrong path (as "no such file" read)
        path, worker = unseen[0]
        more = f" (and {plural(len(unseen) - 1, 'more file')})" if len(unseen) > 1 else ""
        raise ConfigError(
            f"{path}: a worker ({worker}) could not see this file, which this machine sees"
            f"{more}: the workers read the inputs at the paths given, so they need to be on "
            "storage every machine shares (README: Scaling out on Dask)"
        )
    errors = [s.error for s in summaries if s.error]
    if errors:
        more = f" (and {len(errors) - 1} more files)" if len(errors) > 1 else ""
        raise DataError(errors[0] + more)
    reports = tuple(s.report for s in summaries)
    metas = [s.meta.drop(columns=[_ROW, LINE], errors="ignore") for s in summaries]
    _check_files(reports, validation.max_reject_share, source.timestamp_format)
    for path, meta in zip(files, metas, strict=True):
        if list(meta.columns) != list(metas[0].columns):
            raise DataError(
                f"{path}: contract columns {', '.join(meta.columns)} differ from {files[0]}'s "
                f"({', '.join(metas[0].columns)}); every file of one table needs the same (an "
                "optional column in some files only: map it to null, or add it empty to the "
                "others)"
            )
    times = [t for s in summaries for t in s.extent[:2] if pd.notna(t)]
    channels = sorted({c for s in summaries for c in s.extent[2]})
    parts = _gathered(client, loaded, _piece, count)
    repeated = 0
    if lines:  # before the reject limit: a repeated anonymous sale is in its base
        parts, reports, repeated = _without_repeated_lines(
            client, loaded, parts, files, reports, rejects_dir, validation.drop_duplicates
        )
    _check_rejects(
        table, reports, validation.max_reject_share, f"{rejects_dir}/*/{table}_rejects.csv",
        source.timestamp_format,
    )  # fmt: skip
    return _Table(
        parts,
        reports,
        pd.Timestamp(min(times)) if times else None,
        pd.Timestamp(max(times)) if times else None,
        pd.Index(channels, dtype="str") if "acquisition_channel" in metas[0] else None,
        metas[0],
        repeated,
    )


def _gathered(
    client: Client, loaded: list[Future], piece: Callable[[_Split, int], pd.DataFrame], count: int
) -> list[Future]:
    """Partition j of every file's `piece` j, in file order."""
    pieces = [client.map(piece, [f] * count, range(count)) for f in loaded]
    return [
        client.submit(_partition, *(p[j] for p in pieces), retries=RETRIES) for j in range(count)
    ]


@dataclass(frozen=True)
class _Repeats:
    """A partition's lines that repeat a line of an earlier file, by file (its index)."""

    rows: np.ndarray  # their positions among the partition's rows (customers' lines)
    lines: dict[int, int]  # lines repeated, anonymous sales among them
    anonymous: dict[int, list[int]]  # the anonymous sales' 0-based rows in their file
    amounts: dict[int, float]  # the anonymous sales' net amount

    def summary(self) -> _Repeats:
        """All but the positions: what the client gathers."""
        return replace(self, rows=self.rows[:0])


def _repeats_in(frame: pd.DataFrame, names: Sequence[str]) -> pd.Series:
    """'exact duplicate of row N of <file>' for each row of `frame` (a partition's, its index a
    range) that repeats, in every column as read, a line of an earlier file: of the lines
    alike, each later file's first (its others are its loader's duplicates: not counted
    twice)."""
    rows = frame.loc[frame[LINE].duplicated(keep=False).to_numpy()]
    alike = rows.groupby([LINE, *_READ], sort=False, dropna=False, observed=True).ngroup()
    at = pd.Series(rows[_ROW].to_numpy(), index=rows.index)
    first = at.groupby(alike.to_numpy()).transform("min")
    files = at.to_numpy() >> _FILE_SHIFT
    own_first = at.groupby([alike.to_numpy(), files]).transform("min") == at
    first = first[own_first & (files > first.to_numpy() >> _FILE_SHIFT)]
    earlier = pd.Series(names, dtype=object).iloc[first.to_numpy() >> _FILE_SHIFT].to_numpy()
    return DUPLICATE_OF + ((first & _IN_FILE) + 1).astype(str) + " of " + earlier


def _listed(frame: pd.DataFrame, reasons: pd.Series, files: Sequence[str]) -> pd.DataFrame:
    """The rows of `reasons` as loaded, after their file, row (1-based) and reason."""
    rows = frame.loc[reasons.index]
    at = rows[_ROW].to_numpy()
    head = pd.DataFrame(
        {
            "file": pd.Series(files, dtype=object).iloc[at >> _FILE_SHIFT].to_numpy(),
            "row": (at & _IN_FILE) + 1,
            "reason": reasons.to_numpy(),
            _ROW: at,
        },
        index=rows.index,
    )
    return pd.concat([head, rows.drop(columns=[_ROW, LINE])], axis=1)


def _repeated_lines(
    frame: pd.DataFrame,
    anonymous: pd.DataFrame,
    partition: int,
    folder: Path,
    files: tuple[str, ...],
) -> _Repeats:
    """A partition's transaction lines (and the anonymous sales split alike, by their line's
    hash) that repeat a line of an earlier file (files in name order): written to `folder`
    with the row of the earlier file that they repeat; the lines of one file repeated in it
    are its loader's."""
    # whole paths: base names repeat in a Hive layout (2023/part-0.csv, 2024/part-0.csv)
    sold, unnamed = _repeats_in(frame, files), _repeats_in(anonymous, files)
    listed = pd.concat([_listed(frame, sold, files), _listed(anonymous, unnamed, files)])
    if listed.empty:
        return _Repeats(np.array([], dtype=np.int64), {}, {}, {})
    folder.mkdir(parents=True, exist_ok=True)
    listed = listed.sort_values(_ROW, kind="stable").drop(columns=_ROW)
    listed.to_csv(folder / f"{partition:05d}.csv", index=False)
    at = anonymous.loc[unnamed.index, _ROW].to_numpy()
    amounts = anonymous.loc[unnamed.index, "amount"].groupby(at >> _FILE_SHIFT).sum()
    every = np.concatenate([frame.loc[sold.index, _ROW].to_numpy(), at]) >> _FILE_SHIFT
    return _Repeats(
        sold.index.to_numpy(np.int64),
        {int(i): int(n) for i, n in zip(*np.unique(every, return_counts=True), strict=True)},
        {
            int(i): (at[at >> _FILE_SHIFT == i] & _IN_FILE).tolist()
            for i in np.unique(at >> _FILE_SHIFT)
        },
        {int(i): float(n) for i, n in amounts.items()},
    )


def _without(frame: pd.DataFrame, repeats: _Repeats) -> pd.DataFrame:
    return frame.drop(index=repeats.rows).reset_index(drop=True)


def _write_anonymous(split: _Split, path: Path, repeated: list[int]) -> None:
    """A file's list of anonymous sales, without those (0-based rows) dropped as repeats of an
    earlier file's lines: they are listed as repeated lines, and each line is listed once.
    Written by a task of its own once those are known, never by the load, nor edited after:
    Dask runs a load again when a worker that held its result is lost, and a list the load
    wrote was then written whole again, its repeats back in it (tester L)."""
    if split.anonymous_listed is not None:
        write_listed(split.anonymous_listed.drop(index=repeated), path)


def _without_repeated_lines(
    client: Client,
    loaded: list[Future],
    parts: list[Future],
    files: list[Path],
    reports: tuple[LoadReport, ...],
    rejects_dir: Path,
    drop: bool,
) -> tuple[list[Future], tuple[LoadReport, ...], int]:
    """Transaction lines repeating a line of an earlier file, found partition by partition
    (`_repeated_lines`), written to rejects_dir/transactions_repeated/ and counted as their
    file's duplicates; dropped with `drop` (validation.drop_duplicates), as a file's own are.
    The partitions (without them), the reports, and how many there are."""
    anonymous = _gathered(client, loaded, _anonymous_piece, len(parts))
    names = tuple(str(path) for path in files)
    folder = rejects_dir / "transactions_repeated"  # an earlier run's: cleared with its rejects
    found = client.map(
        _repeated_lines, parts, anonymous, range(len(parts)), folder=folder, files=names,
        retries=RETRIES,
    )  # fmt: skip
    summaries = client.gather(client.map(_Repeats.summary, found))
    lines = _summed(s.lines for s in summaries)
    unnamed = {i: [r for s in summaries for r in s.anonymous.get(i, [])] for i in lines}
    amounts = _summed(s.amounts for s in summaries)
    reports = tuple(
        _with_repeated_lines(report, lines.get(i, 0), len(unnamed.get(i, [])),
                             amounts.get(i, 0.0), drop)
        for i, report in enumerate(reports)
    )  # fmt: skip
    client.gather([
        client.submit(_write_anonymous, split, report.anonymous_path,
                      unnamed.get(i, []) if drop else [], retries=RETRIES)
        for i, (split, report) in enumerate(zip(loaded, reports, strict=True))
        if report.anonymous_path is not None
    ])  # fmt: skip
    if not drop:
        return parts, reports, sum(lines.values())
    return client.map(_without, parts, found, retries=RETRIES), reports, sum(lines.values())


def _with_repeated_lines(
    report: LoadReport, lines: int, anonymous: int, amount: float, drop: bool
) -> LoadReport:
    """A transactions file's report with its lines that repeat an earlier file's as exact
    duplicates. Dropped, the anonymous sales among them are no longer anonymous sales, and are
    in the reject share's base, as one file's repeated anonymous sales are."""
    if not lines:
        return report
    if not drop:
        return replace(report, duplicates=report.duplicates + lines)
    left = report.anonymous - anonymous
    return replace(
        report,
        rows_checked=report.rows_checked + anonymous,
        rows_loaded=report.rows_loaded - (lines - anonymous),
        duplicates=report.duplicates + lines,
        anonymous=left,
        anonymous_amount=report.anonymous_amount - amount if left else 0.0,
    )


def _transaction_arrays(frame: pd.DataFrame) -> TransactionArrays:
    """A partition's rows in the loader's order: by customer, then time, then file order."""
    frame = frame.sort_values(["customer_id", "timestamp", _ROW], kind="stable")
    return TransactionArrays.from_frame(frame.drop(columns=[_ROW, LINE], errors="ignore"))


REPEATED = "customer_id of an earlier file"


def _repeated_customers(
    frame: pd.DataFrame, partition: int, folder: Path, files: tuple[str, ...]
) -> dict[int, int]:
    """Rows of a partition's customers table whose customer_id an earlier file has (files in
    name order; one file's own repeats are the loader's rejects): rejected, the first kept,
    written to `folder`; their count per file (by name)."""
    frame = frame.sort_values(_ROW, kind="stable")
    repeated = frame.loc[frame["customer_id"].duplicated(keep="first")]
    if repeated.empty:
        return {}
    index = repeated[_ROW].to_numpy() >> _FILE_SHIFT
    folder.mkdir(parents=True, exist_ok=True)
    rows = repeated.drop(columns=_ROW).assign(file=[files[i] for i in index], reason=REPEATED)
    rows.to_csv(folder / f"{partition:05d}.csv", index=False)
    return {files[i]: int(n) for i, n in zip(*np.unique(index, return_counts=True), strict=True)}


def _with_repeats(report: LoadReport, repeated: int) -> LoadReport:
    """A customers file's report with its rows that repeat an earlier file's as rejects."""
    if not repeated:
        return report
    reasons = {**report.reasons, REPEATED: report.reasons.get(REPEATED, 0) + repeated}
    return replace(
        report,
        rejected=report.rejected + repeated,
        rows_loaded=report.rows_loaded - repeated,
        reasons=reasons,
    )


def _unknown_customers(transactions: pd.DataFrame, customers: pd.DataFrame) -> tuple[int, int]:
    """A partition's distinct transaction customers missing from its customers, and all of
    them: both tables are split by the same hash of customer_id."""
    ids = transactions["customer_id"]
    return ids_not_in(ids, customers["customer_id"]), ids.nunique()


def _customer_attributes(frame: pd.DataFrame, channels: pd.Index | None) -> CustomerAttributes:
    """A partition's customers (the first row of each, `_repeated_customers`), with the whole
    table's acquisition channels as categories."""
    frame = frame.sort_values(_ROW, kind="stable").drop(columns=_ROW)
    if channels is not None:
        frame["acquisition_channel"] = pd.Categorical(
            frame["acquisition_channel"], categories=channels
        )
    return CustomerAttributes.from_frame(frame)


def _pieces(frame: pd.DataFrame, partitions: int) -> list[pd.DataFrame]:
    """A file's rows split by a hash of customer_id: piece j goes to partition j, so every
    table split so (transactions, customers) puts a customer in the same partition."""
    ids = frame["customer_id"].astype("str").to_numpy(dtype=object)
    key = pd.util.hash_array(ids, categorize=False) % np.uint64(partitions)
    return _split_by(frame, key, partitions)


def _split_by(frame: pd.DataFrame, key: np.ndarray, partitions: int) -> list[pd.DataFrame]:
    """Rows by `key` (0..partitions-1): piece j holds those of key j, in the frame's order."""
    order = np.argsort(key, kind="stable")
    bounds = np.searchsorted(key[order], np.arange(partitions + 1, dtype=np.uint64))
    return [frame.iloc[order[bounds[j] : bounds[j + 1]]] for j in range(partitions)]


def _partition(*pieces: pd.DataFrame) -> pd.DataFrame:
    """One partition: its piece of every file, in file order."""
    return pd.concat(pieces, ignore_index=True)


def load_partitioned(
    client: Client,
    config: DataConfig,
    rejects_dir: Path,
    transactions: Path,
    customers: Path | None,
    progress: Progress,
    partitions: int | None = None,
) -> Partitioned:
    """Every file loaded and validated by a worker, then partitioned by customer."""
    files = input_files(transactions)
    progress(f"loading {len(files)} transaction file(s) from {transactions} on the cluster")
    tx = _load_partitioned(
        client, files, "transactions", config.transactions, config.validation, rejects_dir,
        partitions,
    )  # fmt: skip
    progress(combined_report(tx.reports, Path(transactions), rejects_dir).summary())
    if tx.repeated:
        progress(
            f"  of the exact duplicates, {tx.repeated:,} repeat a line of an earlier file -> "
            f"{rejects_dir / 'transactions_repeated'}/"
        )
    rows = sum(r.rows_loaded for r in tx.reports)
    if rows == 0 or tx.first is None or tx.last is None:
        raise DataError(f"{transactions}: no transaction rows loaded")
    count = len(tx.parts)
    progress(f"partitioning {rows:,} rows by customer into {count} partitions")
    empty = client.gather(client.map(len, tx.parts)).count(0) if partitions is not None else 0
    if empty:  # 448 empty parts of 1,000, each a task per step (counted only when chosen)
        progress(
            f"warning: {empty:,} of the {count:,} partitions hold no customer: --partitions "
            f"{partitions} is more than these rows need (without it, about "
            f"{ROWS_PER_PARTITION:,} rows each, at least one per worker)"
        )
    arrays = client.map(_transaction_arrays, tx.parts, retries=RETRIES)
    attributes, customer_reports, customer_columns = None, (), None
    if customers is not None:
        source = config.customers or SourceConfig()
        files = input_files(customers)
        names = tuple(str(path) for path in files)
        table = _load_partitioned(
            client, files, "customers", source, config.validation, rejects_dir, count
        )
        folder = rejects_dir / "customers_repeated"  # an earlier run's: cleared with its rejects
        repeats = _summed(
            client.gather(
                client.map(
                    _repeated_customers, table.parts, range(count), folder=folder, files=names
                )
            )
        )
        customer_reports = tuple(
            _with_repeats(report, repeats.get(path, 0))
            for path, report in zip(names, table.reports, strict=True)
        )
        customer_columns = table.meta
        progress(combined_report(customer_reports, Path(customers), rejects_dir).summary())
        if repeats:
            progress(
                f"  {sum(repeats.values()):,} customers rows repeat a customer_id of an earlier "
                f"file: rejected, the first kept -> {folder}/"
            )
            _check_rejects(
                "customers", customer_reports, config.validation.max_reject_share,
                f"{rejects_dir}/*/customers_rejects.csv and {folder}/",
            )  # fmt: skip
        counts = client.gather(
            client.map(_unknown_customers, tx.parts, table.parts, retries=RETRIES)
        )
        unknown, total = (sum(column) for column in zip(*counts, strict=True))
        if unknown:
            warning = unknown_customers_warning(unknown, total, Path(transactions), Path(customers))
            progress(warning)
        channels = shared(client, table.channels)
        attributes = client.map(
            _customer_attributes, table.parts, channels=channels, retries=RETRIES
        )
    return Partitioned(
        client, arrays, attributes, tx.reports, customer_reports, tx.first, tx.last,
        (Path(transactions), Path(customers) if customers else None),
        (tx.meta, customer_columns),
    )  # fmt: skip


def shared(client: Client, value: object) -> Future:
    """`value` as a future that tasks take as an argument (Dask would read the dicts of a
    value passed as it is as parts of its task graph). Made by a task from its pickled bytes,
    not scattered: scattered data has no lineage, so once released it cannot be made again,
    and a result that depends on it is lost with the worker that held it."""
    return client.submit(cloudpickle.loads, cloudpickle.dumps(value))


def _label_counts(arrays: TransactionArrays, _: object, cutoff: pd.Timestamp) -> LabelCounts:
    return population_label_counts(arrays, cutoff)


def label_counts(data: Partitioned, cutoff: pd.Timestamp) -> LabelCounts:
    """The population's label counts at `cutoff`: each partition's, summed."""
    parts = data.client.gather(data.map(_label_counts, cutoff=cutoff))
    out = {}
    for name in parts[0] if parts else ():
        counts = pd.concat([p[name] for p in parts])
        out[name] = counts.groupby(level=0, sort=True).sum()
    return out


def _features(
    arrays: TransactionArrays,
    customers: CustomerAttributes | None,
    cutoff: pd.Timestamp,
    config: FeatureConfig,
    rfm_cuts: RfmCuts | None,
    counts: LabelCounts,
    known: KnownLabels | None,
    history_start: pd.Timestamp,
) -> pd.DataFrame:
    """One partition's features at `cutoff`; without `rfm_cuts`, scores against the
    partition's own quintiles, to be rescored against the population's."""
    return features_at(
        arrays, cutoff, config, customers, rfm_cuts, counts, known, history_start=history_start
    )


def _conform(frame: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    """An empty partition (no customer has a purchase yet) with the others' columns and types."""
    return meta if frame.empty else frame


def conformed(client: Client, frames: list[Future]) -> list[Future]:
    """Partitions with one set of columns and types: empty ones take a non-empty one's."""
    sizes = client.gather(client.map(len, frames))
    full = [f for f, n in zip(frames, sizes, strict=True) if n]
    if not full:
        return frames
    meta = client.submit(lambda frame: frame.iloc[:0], full[0])
    return client.map(_conform, frames, meta=meta, retries=RETRIES)


def rfm_cuts_of(client: Client, frames: list[Future], rows: Callable | None = None) -> RfmCuts:
    """`RfmCuts.of` the partitions together (or the `rows` of each), computed where they are."""

    def columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
        part = frame if rows is None else frame.loc[rows(frame)]
        return {
            "recency": -part["recency_days"].to_numpy("float64"),
            "frequency": part["frequency"].to_numpy("float64"),
            "monetary": part["monetary_total"].to_numpy("float64"),
        }

    def map_parts(function: Callable) -> list:
        return client.gather(
            client.map(lambda frame: function(columns(frame)), frames, retries=RETRIES)
        )

    cuts = exact_quantiles(map_parts, QUINTILES)
    return RfmCuts(
        *(tuple(float(x) for x in cuts[k]) for k in ("recency", "frequency", "monetary"))
    )


def with_rfm_cuts(
    client: Client, frames: list[Future], cuts: RfmCuts, config: FeatureConfig
) -> list[Future]:
    return client.map(_with_rfm_cuts, frames, cuts=cuts, config=config, retries=RETRIES)


def features_on_cluster(
    data: Partitioned,
    cutoff: str | pd.Timestamp,
    config: FeatureConfig,
    rfm_cuts: RfmCuts | None = None,
    progress: Progress = lambda _: None,
    known_labels: KnownLabels | None = None,
    history_start: pd.Timestamp | None = None,
) -> list[Future]:
    """`build_features` at `cutoff` on the cluster: a future of each partition's table. RFM
    scores against `rfm_cuts`, else against the quintile cut points of the whole population
    at the cutoff; the category cap pools by the population's counts, or by `known_labels`;
    `history_share` reads from `history_start`, else from the data's first line: as the
    single-process path."""
    cutoff = as_cutoff(cutoff)
    counts = label_counts(data, cutoff) if known_labels is None else {}
    frames = conformed(
        data.client,
        data.map(
            _features, cutoff=cutoff, config=config, rfm_cuts=rfm_cuts,
            counts=shared(data.client, counts), known=known_labels,
            history_start=data.first if history_start is None else history_start,
        ),
    )  # fmt: skip
    if rfm_cuts is None:
        if not any(data.client.gather(data.client.map(len, frames))):
            return frames  # nobody has bought by then: no cut points (the caller says so)
        cuts = rfm_cuts_of(data.client, frames)
        frames = with_rfm_cuts(data.client, frames, cuts, config)
    progress(f"features at {cutoff:%Y-%m-%d %H:%M} on {len(frames)} partitions")
    return frames


def _write(frame: pd.DataFrame, path: Path, index: bool) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=index)
    return len(frame)


def write_parts(client: Client, frames: list[Future], folder: Path, index: bool = True) -> int:
    """Each partition written by its worker as folder/part-NNNNN.parquet; the rows written.
    Files of an earlier run in the folder go first, so the folder holds this table only; with
    no row to write (an error for the caller), nothing is touched."""
    if sum(client.gather(client.map(len, frames))) == 0:
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("part-*.parquet"):
        old.unlink()
    paths = [part_file(folder, i) for i in range(len(frames))]
    rows = sum(client.gather(client.map(_write, frames, paths, index=index, retries=RETRIES)))
    _check_seen(folder, paths)
    return rows


SEEN_WAIT = 5.0  # seconds the client waits to see what the workers wrote (a shared mount's lag)


def _check_seen(folder: Path, paths: Sequence[Path]) -> None:
    """The parts the workers wrote, as this machine sees them: a worker without the shared
    storage wrote them to its own disk, and the run said "wrote N parts" over an empty
    folder (tester L). The folder is listed afresh (a network file system reads a listing
    again when the folder is opened) until every part is there, or for SEEN_WAIT seconds."""
    deadline = time.monotonic() + SEEN_WAIT
    while True:
        names = set(os.listdir(folder))
        unseen = [path for path in paths if path.name not in names]
        if not unseen:
            return
        if time.monotonic() > deadline:
            raise ConfigError(
                f"{folder}: the workers wrote {plural(len(unseen), 'part')} that this machine "
                f"does not see ({unseen[0].name}{', ...' if len(unseen) > 1 else ''}): is --out "
                "on storage every machine shares? (README: Scaling out on Dask)"
            )
        time.sleep(0.5)


def value_counts(client: Client, frames: list[Future], column: str) -> pd.Series:
    """A column's value counts over every partition (categories in their order)."""
    parts = client.gather(client.map(lambda frame: frame[column].value_counts(sort=False), frames))
    return pd.concat(parts).groupby(level=0, sort=False, observed=False).sum()
