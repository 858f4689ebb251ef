"""Which files a run reads, from configs/data.yaml and the command line, loaded and validated.

The sample's customers table goes with the sample's transactions only: a user's own
transaction file uses a customers table only when one is named.
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from crm_ltv.features.config import DataConfig, SourceConfig
from crm_ltv.features.contract import DataError
from crm_ltv.features.loading import (
    CSV_SUFFIXES,
    PARQUET_SUFFIXES,
    Loaded,
    is_pattern,
    load_campaigns,
    load_customers,
    load_transactions,
    require_file,
    some_rows,
)
from crm_ltv.features.paths import Paths


@dataclass(frozen=True)
class Inputs:
    transactions: Loaded
    customers: Loaded | None

    @property
    def customers_frame(self) -> pd.DataFrame | None:
        return self.customers.frame if self.customers else None


def input_files(path: Path | str) -> list[Path]:
    """The files of a folder (its sub-folders too), of a glob pattern, or one file, in name
    order: one table split in parts (the Dask engine reads them in parallel)."""
    text = str(path)
    if is_pattern(text):
        matched = [Path(p) for p in sorted(glob.glob(text))]
        found = [
            f for p in matched if not (p.is_dir() and _marker(p.name)) for f in _files_under(p)
        ]
    elif Path(text).is_dir():
        found = _files_under(Path(text))
    else:
        require_file(Path(text))
        return [Path(text)]
    read = CSV_SUFFIXES + PARQUET_SUFFIXES
    files = [p for p in found if p.name.lower().endswith(read)]
    if not files:
        raise DataError(f"{path}: no CSV or Parquet files ({', '.join(read)})")
    # Every other file is a part of the table that would be lost without a word (a part-1.csv.bz2
    # beside two .csv parts: a third of the history, tester V); markers are not parts.
    unread = [str(p) for p in found if p not in files and not _marker(p.name)]
    if unread:
        shown = ", ".join(unread[:5]) + (f" and {len(unread) - 5} more" if len(unread) > 5 else "")
        raise DataError(
            f"{path}: {shown} {'is' if len(unread) == 1 else 'are'} not a CSV or Parquet file "
            f"({', '.join(read)}): a folder or glob is one table in parts, and a part not read "
            "would lose its rows; convert or move it, or give a glob that leaves it out (names "
            "beginning with '.' or '_', such as _SUCCESS, and .crc files are skipped)"
        )
    return files


def _files_under(path: Path) -> list[Path]:
    """A file, or every file under a folder by relative path: a partitioned layout
    (year=2010/part-0.parquet) holds its parts in sub-folders, which were skipped without a
    word (tester Z); writers' working folders (_temporary, .hidden) are not read."""
    if not path.is_dir():
        return [path]
    found = []
    for file in path.rglob("*"):
        inside = file.relative_to(path).parts
        if file.is_file() and not any(_marker(part) for part in inside[:-1]):
            found.append(file)
    return sorted(found, key=lambda f: f.relative_to(path).parts)


def _marker(name: str) -> bool:
    """Files that writers of parted tables (Spark, Hadoop, Dask) leave beside the parts."""
    return name.startswith((".", "_")) or name.lower().endswith(".crc")


def _no_sample(table: str, sample: Path) -> DataError:
    return DataError(
        f"no {table} given (--{table}, or {table}.path in configs/data.yaml) and the built-in "
        f"sample is not in this home ({sample}): generate it with `crm-ltv data` (`make data` "
        "in the project), or give your own file"
    )


def input_paths(
    config: DataConfig, paths: Paths, transactions: Path | None, customers: Path | None
) -> tuple[Path, Path | None]:
    """The transactions and customers files to read: the command line's, configs/data.yaml's,
    else the sample's (whose customers go with its own transactions only)."""
    sample = paths.sample_table("transactions")
    tx_path = Path(transactions or config.transactions.path or sample)
    if tx_path == sample and not sample.exists():
        raise _no_sample("transactions", sample)
    if customers is None and config.customers is not None:
        if config.customers.path is not None:
            customers = config.customers.path
        elif tx_path == sample and paths.sample_table("customers").exists():
            customers = paths.sample_table("customers")
    return tx_path, customers


def same_file(a: Path | str, b: Path) -> bool:
    """One file however written (relative to the working directory, through a link)."""
    return Path(a).resolve() == b.resolve()


def load_inputs(
    config: DataConfig,
    paths: Paths,
    transactions: Path | None = None,
    customers: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> Inputs:
    tx_path, customers = input_paths(config, paths, transactions, customers)
    progress(f"loading transactions from {tx_path}")
    if config.transactions.timestamp_format == "mixed":
        progress(
            "warning: timestamp_format 'mixed' guesses each value's layout, and reads an "
            "ambiguous day-first date (03/04/2024) month-first; an explicit format is safer"
        )
    tx = some_rows(
        load_transactions(tx_path, config.transactions, config.validation, paths.rejects_dir)
    )
    progress(tx.report.summary())
    loaded_customers = None
    if customers is not None:
        progress(f"loading customers from {customers}")
        loaded_customers = load_customers(
            customers, config.customers or SourceConfig(), config.validation, paths.rejects_dir
        )
        progress(loaded_customers.report.summary())
        unknown = ids_not_in(tx.frame["customer_id"], loaded_customers.frame["customer_id"])
        if unknown:
            total = tx.frame["customer_id"].nunique()
            progress(unknown_customers_warning(unknown, total, tx_path, Path(customers)))
    return Inputs(tx, loaded_customers)


def require_purchases(transactions: Loaded, nothing: str, bought: bool | None = None) -> None:
    """A file of refunds or zero amounts only has no customer (one who bought): said when it is
    read, not as empty snapshots, or as a cutoff to move later (`nothing`: what cannot be).
    `bought`: whether a line is a purchase, where the rows are on a cluster."""
    if bought is None:
        bought = bool((transactions.frame["amount"] > 0).any())
    if not bought:
        raise DataError(
            f"transactions {transactions.report.source}: the file has no purchase at all (only "
            f"refunds or zero amounts): {nothing}"
        )


def ids_not_in(ids: pd.Series, table: pd.Series) -> int:
    """How many distinct ids are not in the table."""
    return int((~pd.Index(ids.unique()).isin(table.astype(str))).sum())


def unknown_customers_warning(unknown: int, total: int, transactions: Path, customers: Path) -> str:
    """Said by both engines: ids written differently in the two files (an export that lost
    leading zeros) leave every customer's acquisition channel and signup unknown."""
    return (
        f"warning: {unknown:,} of {total:,} customers of {transactions.name} are not in "
        f"{customers.name} (their acquisition channel and signup are unknown); do both files "
        "write ids alike?"
    )


def load_campaign_input(
    config: DataConfig,
    paths: Paths,
    campaigns: Path | None,
    progress: Callable[[str], None],
    outcomes_file: Path,
    transactions: Path | None = None,
) -> Loaded:
    """The campaigns table: the file given, else configs/data.yaml's, else the sample's. The
    sample's campaigns go with the sample's transactions only (`transactions`: the command
    line's): a user's own are sent to `outcomes_file`, where `crm-ltv outcomes` writes their
    campaigns (the sample's contacts matched a few of a shop's ids by chance)."""
    source = config.campaigns or SourceConfig()
    sample = paths.sample_table("campaigns")
    path = campaigns or source.path or sample
    own = transactions or config.transactions.path
    mine = own is not None and not same_file(own, paths.sample_table("transactions"))
    if campaigns is None and source.path is None and mine:
        whose = "--transactions names your" if transactions else "this home reads its"
        if not outcomes_file.exists():
            raise DataError(
                f"no campaigns given (--campaigns, or campaigns.path in configs/data.yaml), and "
                f"{whose} own transactions ({own}), whose customers the sample's campaigns are "
                f"not of: `crm-ltv outcomes` writes campaigns from the service's decision log "
                f"to {outcomes_file}, read by default once it is there: run it first (or give "
                "your own campaigns file)"
            )
        path = outcomes_file  # the campaigns of this shop's own decisions
        progress(f"no campaigns given: reading those `crm-ltv outcomes` wrote, {path}")
    if Path(path) == sample and not sample.exists():
        raise _no_sample("campaigns", sample)
    progress(f"loading campaigns from {path}")
    loaded = some_rows(load_campaigns(path, source, config.validation, paths.rejects_dir))
    progress(loaded.report.summary())
    return loaded


def contacts_found(
    campaigns: Loaded, table: Loaded, progress: Callable[[str], None] = lambda _: None
) -> None:
    """Say how many contacts' customers `table` (transactions, customers) has: ids written
    otherwise in one file (an export that lost leading zeros) matched nothing, and every
    contact read as a customer with no history. None found is an error naming both files and
    an id of each; some not found, a warning."""
    ids = campaigns.frame["customer_id"].astype(str)
    known = table.frame["customer_id"].astype(str)
    found = ids.isin(pd.Index(known.unique()))
    name, source = table.report.table, Path(table.report.source)
    if not found.any():
        raise DataError(
            f"campaigns {campaigns.report.source}: none of its {len(ids):,} contacts' customer "
            f"ids is in the {name} {source} (e.g. {ids.iloc[0]!r} in the campaigns, "
            f"{known.iloc[0]!r} in the {name}): do both files write ids alike (leading zeros, "
            "a prefix)? (or did none of them ever buy?)"
        )
    progress(f"{int(found.sum()):,} of {len(ids):,} contacts' customers found in {name}")
    if not found.all():
        progress(
            f"warning: {int((~found).sum()):,} of {len(ids):,} contacts of "
            f"{Path(campaigns.report.source).name} have a customer id not in {name} "
            f"({source.name}), e.g. {ids[~found].iloc[0]!r}: they never bought, or the files "
            "write ids otherwise"
        )
