"""Every file and folder the project reads or writes, from one place.

The project home is the CLI's `--home`, else `CRM_LTV_HOME`, else the working directory. Configs
come from the home's `configs/` folder file by file, else from the defaults shipped inside the
package (`crm_ltv.configs`), so the installed tool runs from any folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

HOME_ENV = "CRM_LTV_HOME"
CONFIG_AREAS = ("data", "features", "sample", "train", "tune", "serving", "nba", "experiments")


def nearest_existing(path: Path) -> Path:
    """`path` itself if it exists, else its nearest ancestor that does (the root at least)."""
    return next(p for p in (path, *path.parents) if p.exists())


def part_file(folder: Path, index: int) -> Path:
    """A part of a table a Dask cluster writes: folder/part-NNNNN.parquet."""
    return folder / f"part-{index:05d}.parquet"


def write_refused(path: Path) -> str | None:
    """Why `path` cannot be written as a file, or None. Found by opening it for appending, or
    a temporary file in the nearest folder that exists, as a writer would: permission bits
    tell root nothing about /sys or a read-only mount. A link is followed (a dangling one
    names where the file would be made); nothing is left, and no folder is made."""
    path = path.resolve()
    existing = nearest_existing(path)
    if existing == path:
        if path.is_dir():
            return f"{path} is a folder, not a file"
        if not path.is_file():  # a FIFO would block the open below
            return f"{path} is not a regular file"
        try:
            with path.open("ab"):
                pass
        except OSError as exc:
            return f"{path} is not writable ({exc.strerror or exc})"
        try:  # replaced_whole writes beside it, then renames
            with tempfile.TemporaryFile(dir=path.parent):
                return None
        except OSError as exc:
            why = exc.strerror or exc
            return f"{path} cannot be replaced: {path.parent} is not writable ({why})"
    if not existing.is_dir():
        return f"{existing} is a file, so {path} cannot be made"
    try:
        with tempfile.TemporaryFile(dir=existing):
            return None
    except OSError as exc:
        return f"{path} cannot be made: {existing} is not writable ({exc.strerror or exc})"


@contextlib.contextmanager
def replaced_whole(path: Path) -> Iterator[Path]:
    """A name beside `path` to write to, renamed over `path` once the writing is done: a stop
    or a failure mid-write leaves the earlier file (or none), never a part of one that a later
    step (ab after outcomes, a service reading scores) would take for the whole. The name keeps
    the suffix, so a writer inferring compression from it does as it would on `path`. An
    OSError that names no file (a write or close that failed: a full disk) is given `path`'s
    name, as is one that names the part (a copy's destination is its second name), so the
    error says what could not be written."""
    target = path.resolve()
    part = target.with_name(f".{target.stem}.{os.getpid()}.part{target.suffix}")
    try:
        yield part
        if target.exists():  # the earlier file's mode and owner: scores kept 0600 stay so
            shutil.copymode(target, part)
            with contextlib.suppress(OSError):  # only root may give a file away
                old = target.stat()
                os.chown(part, old.st_uid, old.st_gid)
        os.replace(part, target)
    except OSError as exc:
        if exc.filename in (None, str(part)):
            exc.filename = str(target)
        if exc.filename2 == str(part):
            exc.filename2 = str(target)
        raise
    finally:
        part.unlink(missing_ok=True)


def default_config_file(area: str) -> Path:
    """The packaged default of configs/<area>.yaml."""
    return Path(str(files("crm_ltv.configs") / f"{area}.yaml"))


@dataclass(frozen=True)
class Paths:
    root: Path

    @classmethod
    def from_env(cls) -> Paths:
        return cls(Path(os.environ.get(HOME_ENV) or ".").resolve())

    @property
    def configs_dir(self) -> Path:
        return self.root / "configs"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def sample_dir(self) -> Path:
        return self.data_dir / "sample"

    @property
    def features_table(self) -> Path:
        return self.data_dir / "features.parquet"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def rejects_dir(self) -> Path:
        return self.reports_dir / "rejects"

    @property
    def metrics_file(self) -> Path:
        return self.reports_dir / "metrics.json"

    def best_params_file(self, horizon_days: int) -> Path:
        """Written by `make tune`, read by `make train` of the same horizon (one file each, so
        a tune at another horizon keeps this one's)."""
        return self.reports_dir / f"best_params_h{horizon_days}.json"

    @property
    def truth_customers(self) -> Path:
        return self.sample_dir / "truth_customers.parquet"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def mlflow_db(self) -> Path:
        """MLflow's store of this home (runs and registry), unless MLFLOW_TRACKING_URI names
        another (training.tracking.tracking_uri)."""
        return self.root / "mlflow.db"

    @property
    def optuna_db(self) -> Path:
        return self.root / "optuna.db"

    def config_file(self, area: str) -> Path:
        """The home's configs/<area>.yaml (or .yml) where there is one, else the packaged
        default. A dangling link or a folder of that name is returned too, so that reading it
        says what it is rather than the defaults being used without a word."""
        for own in (self.configs_dir / f"{area}.yaml", self.configs_dir / f"{area}.yml"):
            if own.exists() or own.is_symlink():
                return own
        return default_config_file(area)

    def unread_config_files(self) -> list[Path]:
        """YAML files of configs/ that no area reads (`trian.yaml`, `serve.yaml`): each was
        ignored without a word, its settings taken for in effect."""
        if not self.configs_dir.is_dir():
            return []
        return sorted(
            p
            for p in self.configs_dir.iterdir()
            if p.suffix.lower() in (".yaml", ".yml")
            and (p.stem not in CONFIG_AREAS or p.suffix not in (".yaml", ".yml"))  # data.YAML
        )

    def sample_table(self, table: str) -> Path:
        return self.sample_dir / f"{table}.csv"
