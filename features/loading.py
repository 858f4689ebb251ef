"""Read transaction, customer and campaign files into the data contract, validating row by row.

Nothing is dropped silently: every rejected row goes to a rejects file with its reason and is
counted in the report; exact duplicates are reported (and dropped when configured), rows of
one record that disagree (a campaign contact twice, with two outcomes) rejected. Lines that
are not a customer's sale are counted and listed apart, and are not rejects: lines excluded by
a rule on a source column (postage, fees), set aside before validation, and anonymous sales,
validated like any line (one with a bad value is a reject: its sale cannot be counted).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.tseries.api import guess_datetime_format

from crm_ltv.features.config import SourceConfig, ValidationConfig
from crm_ltv.features.contract import (
    CAMPAIGNS,
    CUSTOMERS,
    MAX_ABS_NUMBER,
    TRANSACTIONS,
    YEARS,
    Column,
    DataError,
    TableSchema,
    naive_utc,
)
from crm_ltv.features.paths import replaced_whole
from crm_ltv.features.wording import plural

# pyarrow's reader cancels itself on Ctrl-C through a signal handler of its own, which passes
# the signal on from a thread: one that lands as a read ends reached nobody (1 in ~75 in a
# probe; a tune started with SIGINT ignored ran all its trials after Ctrl-C, once in CI).
# Python's handler, which pyarrow's replaces, never loses one: it runs when the read returns.
pa.enable_signal_handlers(False)

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
_FLAG_VALUES = {"1": True, "0": False, "true": True, "false": False, "yes": True, "no": False}
_GROUP_VALUES = ("treatment", "control")


@dataclass(frozen=True)
class LoadReport:
    table: str
    source: Path
    rows_read: int
    # the reject share's base: rows neither excluded nor anonymous sales (an anonymous line
    # with a bad value is a reject, so counted)
    rows_checked: int
    rows_loaded: int
    rejected: int
    reasons: dict[str, int]  # kind of problem -> rows
    duplicates: int
    duplicates_dropped: bool
    rejects_path: Path
    ignored_columns: tuple[str, ...] = ()
    # Lines that are not sales (postage, fees, adjustments): exclusion rule -> lines it left
    # out, every configured rule listed (a rule matching nothing is often a typo).
    excluded: dict[str, int] = field(default_factory=dict)
    excluded_path: Path | None = None
    # Sales to no known customer, kept out of the customer frame (validation.anonymous_lines).
    anonymous: int = 0
    anonymous_amount: float = 0.0  # their net amount
    anonymous_label: str = ""  # the column whose missing value made them anonymous
    anonymous_path: Path | None = None
    warnings: tuple[str, ...] = ()  # what loaded but may not be what the file meant

    @property
    def reject_share(self) -> float:
        return self.rejected / self.rows_checked if self.rows_checked else 0.0

    def summary(self) -> str:
        lines = [
            f"{self.table}: {plural(self.rows_read, 'row')} read from {self.source}, "
            f"{self.rows_loaded:,} loaded"
        ]
        if self.excluded:
            rules = ", ".join(f"{rule} {n:,}" for rule, n in self.excluded.items())
            lines.append(
                f"  excluded by rule (not rejects): {plural(sum(self.excluded.values()), 'row')}: "
                f"{rules} -> {self.excluded_path}"
            )
        if self.anonymous:
            lines.append(
                f"  anonymous sales: {plural(self.anonymous, 'row')} with no "
                f"{self.anonymous_label}, net amount {self.anonymous_amount:,.2f}, left out of "
                f"customer features (not rejects) -> {self.anonymous_path}"
            )
        if self.rejected:
            why = ", ".join(f"{kind} {n:,}" for kind, n in self.reasons.items())
            lines.append(
                f"  rejected {plural(self.rejected, 'row')} ({self.reject_share:.2%} of "
                f"{self.rows_checked:,} checked): {why} -> {self.rejects_path}"
            )
        if self.duplicates:
            fate = "dropped" if self.duplicates_dropped else "kept"
            lines.append(
                f"  {plural(self.duplicates, 'exact duplicate row')} {fate} -> {self.rejects_path}"
            )
        if self.ignored_columns:
            lines.append(
                f"  columns not in the contract, ignored: {', '.join(self.ignored_columns)}"
            )
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def over_reject_limit(
    what: str,
    rejected: int,
    checked: int,
    limit: float,
    reasons: dict[str, int],
    where: str,
    timestamp_format: str | None = None,
) -> DataError:
    """The error of a file (or a table of files) that rejects more than the limit allows.
    `timestamp_format`: the one the file was read with, when one file's."""
    hint = ""
    if "unparsable timestamp" in reasons and timestamp_format not in (None, "ISO8601", "mixed"):
        hint = (
            f"; timestamps were read with the format {timestamp_format!r}: check it against the "
            "file's (e.g. '%d/%m/%Y %H:%M' for 31/01/2024 10:00; the rejects file shows them)"
        )
    elif "unparsable timestamp" in reasons:  # the most common first mistake: another layout
        hint = (
            "; for timestamps in another layout than ISO 8601 (2024-01-31 10:00), give it with "
            "--timestamp-format (e.g. '%d/%m/%Y %H:%M') or timestamp_format in configs/data.yaml"
        )
    return DataError(
        f"{what}: {rejected:,} of {checked:,} rows ({rejected / checked:.2%}) rejected, above "
        f"the limit of {limit:.2%} (validation.max_reject_share in configs/data.yaml, or "
        f"--max-reject-share); reasons: {', '.join(f'{k} {n:,}' for k, n in reasons.items())}; "
        f"rejected rows with reasons in {where}{hint}"
    )


@dataclass(frozen=True)
class Loaded:
    frame: pd.DataFrame
    report: LoadReport
    # Loaded `with_lines` only (the Dask engine, to find lines repeated across files): the
    # valid anonymous sales, whose lines can repeat too; they and `frame` carry ROW and LINE.
    anonymous: pd.DataFrame | None = None
    # ... and their list (`_listed`), not yet written: its caller writes it (`write_listed`, at
    # report.anonymous_path) once the lines repeated across files are known
    anonymous_listed: pd.DataFrame | None = None


ROW = "_row"  # a row's 0-based data row in its file
LINE = "_line"  # a 64-bit hash of the row as read, every column (`line_hashes`)


@dataclass
class _Problems:
    """Per-row reasons, collected column by column."""

    index: pd.Index
    reasons: pd.Series = field(init=False)
    kinds: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)  # not rejects: the report's warnings

    def __post_init__(self) -> None:
        self.reasons = pd.Series("", index=self.index, dtype=object)

    def add(
        self, mask: pd.Series, kind: str, values: pd.Series | None = None, quoted: bool = True
    ) -> None:
        """`values`: each row's offending value, quoted after the kind (or a detail in
        parentheses, not `quoted`)."""
        if not mask.any():
            return
        rows = mask[mask].index
        text = kind
        if values is not None:
            start, end = (" '", "'") if quoted else (" (", ")")
            text = kind + start + values.loc[rows].astype(str) + end
        current = self.reasons.loc[rows]
        self.reasons.loc[rows] = np.where(current == "", text, current + "; " + text)
        self.kinds[kind] += len(rows)

    @property
    def mask(self) -> pd.Series:
        return self.reasons != ""


def _read_csv(path: Path, sep: str, encoding: str) -> pd.DataFrame:
    """Every value as text. pyarrow's reader is several times faster; on any problem the
    C reader reads again: it names the line of a broken row, pads short rows (whose missing
    fields are then rejected row by row) and tells an encoding problem apart. Where every row
    has more fields than the header (a separator at the end of each line, or an unquoted one
    inside a field), the C reader would take the first fields for an index and shift the
    columns: the fields beyond the header's are read into EXTRA columns instead."""
    options = _csv_options(sep, encoding)
    if len(sep) == 1 and encoding.replace("-", "").lower() == "utf8":
        try:
            return pd.read_csv(path, engine="pyarrow", **options)
        except (ValueError, pa.ArrowException):
            pass
    frame = pd.read_csv(path, engine="c", **options)
    if isinstance(frame.index, pd.RangeIndex):
        return frame
    extra = [f"{EXTRA}{i + 1}" for i in range(frame.index.nlevels)]
    return pd.read_csv(path, engine="c", header=0, names=[*frame.columns, *extra], **options)


def _csv_options(sep: str, encoding: str) -> dict[str, object]:
    return {
        "sep": sep, "dtype": str, "keep_default_na": False, "na_values": [],
        "encoding": encoding,
    }  # fmt: skip


def _header(path: Path, is_csv: bool, sep: str, encoding: str) -> list[str]:
    """The column names as the file writes them: pandas renames a repeated CSV name (the
    second 'amount' becomes 'amount.1', which then looks like a column of its own) and cannot
    read a Parquet file that repeats one."""
    if not is_csv:
        return pq.read_schema(path).names
    first = pd.read_csv(path, engine="c", header=None, nrows=1, **_csv_options(sep, encoding))
    return [str(name) for name in first.iloc[0]]


def _check_names(header: list[str], path: Path) -> None:
    """A name given twice stops loading: which of the two columns is meant is not known.
    "amount " is amount; empty names (separators at the end of the header) are no names."""
    counts = Counter(n for n in (name.strip() for name in header) if n)
    twice = sorted(n for n, times in counts.items() if times > 1)
    if twice:
        raise DataError(f"{path}: the header names {', '.join(map(repr, twice))} more than once")


EXTRA = "(field beyond the header) "  # columns of fields a CSV row has beyond its header's


def _parquet_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """A Parquet file written from a DataFrame with a named index keeps that column."""
    if any(name is not None for name in frame.index.names):
        return frame.reset_index()
    return frame


_PARTS = "; a folder or pattern of parts is read by `--engine dask`"


def is_pattern(path: Path | str) -> bool:
    """Whether a path given is a glob pattern (several files), as glob reads it."""
    return any(c in str(path) for c in "*?[")


def require_file(path: Path) -> None:
    """A path that names nothing is an error saying so, and, when relative, where it was read
    from (a relative `path:` in configs/data.yaml is read from the working folder)."""
    if not path.exists():
        where = "" if path.is_absolute() else f" (relative paths are read from {Path.cwd()})"
        pattern = _PARTS if is_pattern(path) else ""
        raise DataError(f"{path}: no such file{where}{pattern}")


def read_raw(path: Path, sep: str = ",", encoding: str = "utf-8") -> pd.DataFrame:
    """Read a CSV (every value as text, so ids keep leading zeros) or a Parquet file."""
    path = Path(path)
    require_file(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a CSV or Parquet file{_PARTS}")
    name = path.name.lower()
    is_csv = name.endswith(CSV_SUFFIXES)
    if not is_csv and not name.endswith(PARQUET_SUFFIXES):
        raise DataError(
            f"{path}: unsupported file type; expected {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}"
        )
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    sep = "\t" if name.endswith(".tsv") and sep == "," else sep
    try:
        _check_names(_header(path, is_csv, sep, encoding), path)  # before a Parquet read fails
        if is_csv:
            frame = _read_csv(path, sep, encoding)
        else:
            frame = _parquet_columns(pd.read_parquet(path))
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not a text CSV file in {encoding} ({exc.reason}); "
            "if it is text in another encoding, set encoding in configs/data.yaml (e.g. "
            "latin-1, cp1252, utf-16)"
        ) from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        kind = "CSV" if is_csv else "Parquet"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable {kind} file: {first_line}") from None
    if frame.empty:
        raise DataError(f"{path}: has no data rows")
    frame.columns = pd.Index([str(c).strip() for c in frame.columns])
    return frame


@dataclass(frozen=True)
class _Layout:
    """How a file's columns become the contract's: which to parse from which source column,
    and which to compute from others because the file lacks them."""

    schema: TableSchema
    names: dict[str, str | None]  # contract name -> source column name (None: not read)
    parsed: tuple[Column, ...]
    computed: tuple[Column, ...]  # each the product of two parsed columns

    def parse(self, rows: pd.DataFrame, source: SourceConfig, problems: _Problems) -> pd.DataFrame:
        """The contract's columns of these rows, problems noted row by row."""
        fmt, numbers = source.timestamp_format, (source.decimal, source.thousands)
        out = {
            col.name: _parse_column(
                col, rows[self.names[col.name]], fmt, problems, self.names[col.name], numbers
            )
            for col in self.parsed
        }
        for col in self.computed:
            first, second = col.product_of or ()
            out[col.name] = product = out[first] * out[second]
            huge = product.abs() > MAX_ABS_NUMBER  # NaN (a factor rejected) compares False
            problems.add(huge, f"{col.name} ({first} x {second}) beyond +-{MAX_ABS_NUMBER:g}")
        return pd.DataFrame({n: out[n] for n in self.schema.names if n in out}, index=rows.index)


def _layout(
    schema: TableSchema,
    source: SourceConfig,
    raw: pd.DataFrame,
    path: Path,
    anonymous_key: str | None = None,
) -> _Layout:
    """Map the file's columns; a required column that is neither there nor computable from two
    that are (amount = quantity x unit_price) stops loading, naming it and the columns present.
    The factors of a computed column become required: a line needs both. The anonymous key
    (when anonymous lines are kept out) must be in the file but may be empty on a line."""
    problem = schema.unknown_in_mapping(source.columns)  # DataConfig says it when it is read
    if problem is not None:
        raise DataError(problem)
    names = {c: source.columns.get(c, c) for c in schema.names}
    _check_one_column_each(schema.name, names, raw.columns, path)
    found = {c.name: c for c in schema.columns if names[c.name] in raw.columns}
    computed = []
    for col in schema.columns:
        if not col.required or col.name in found:
            continue
        factors = col.product_of or ()
        if factors and all(f in found for f in factors):
            computed.append(col)
            found.update({f: replace(found[f], required=True) for f in factors})
            continue
        message = f"{path}: missing required column {_quoted(col.name, names)}"
        if factors:
            absent = ", ".join(_quoted(f, names) for f in factors if f not in found)
            message += f", and no {' x '.join(factors)} to compute it from ({absent} missing)"
        raise DataError(
            f"{message}; columns present: {', '.join(map(str, raw.columns))}"
            + _separator_hint(raw.columns, source.sep, schema.name)
        )
    absent = [c for c, n in source.columns.items() if n is not None and n not in raw.columns]
    if absent:  # mapped by the user: not there is a typo, not an optional column left out
        raise DataError(
            f"{path}: no column {_quoted(absent[0], names)}, which the column mapping names; "
            f"columns present: {', '.join(map(repr, raw.columns))}"
        )
    if anonymous_key in found:
        found[anonymous_key] = replace(found[anonymous_key], required=False)
    parsed = tuple(found[c.name] for c in schema.columns if c.name in found)
    return _Layout(schema, names, parsed, tuple(computed))


def _check_one_column_each(
    table: str, names: dict[str, str | None], present: pd.Index, path: Path
) -> None:
    """Two contract columns read from one column of the file (`amount: customer_id` leaves
    customer_id reading its own name too) would load one's values as the other's: no two
    contract columns mean the same thing, so this stops loading, naming them."""
    readers: dict[str, list[str]] = {}
    for name, source_name in names.items():
        if source_name is not None and source_name in present:  # a name it lacks: said after
            readers.setdefault(source_name, []).append(name)
    for source_name, both in readers.items():
        if len(both) > 1:
            where = f"{table}.columns in configs/data.yaml"
            if table == "transactions":
                where += " or --column"
            raise DataError(
                f"{path}: the column mapping reads column '{source_name}' as "
                f"{' and '.join(_quoted(n, names) for n in both)}; each contract column needs a "
                f"column of its own ({where}; map an optional one to null to leave it unread)"
            )


def _separator_hint(columns: pd.Index, sep: str, table: str) -> str:
    """A file read with the wrong separator shows one column whose name holds the others (and,
    with decimal commas, fields beyond that header: 68,79 read as two)."""
    columns = pd.Index([c for c in columns if not str(c).startswith(EXTRA)])
    if len(columns) != 1:
        return ""
    for other in (";", "\t", "|", ","):
        if other != sep and other in str(columns[0]):
            shown = "\\t" if other == "\t" else other
            where = f"{table}.sep in configs/data.yaml"
            if table == "transactions":
                where = f"--sep '{shown}' or {where}"
            return f" (one column: is the separator '{shown}'? set {where})"
    return ""


def _quoted(name: str, names: dict[str, str | None]) -> str:
    if names[name] is None:
        return f"'{name}' (mapped to null: left unread)"
    return f"'{name}'" + (f" (mapped to '{names[name]}')" if names[name] != name else "")


def _label(name: str, source_name: str) -> str:
    return name if source_name == name else f"{name} (column '{source_name}')"


def _excluded_lines(
    raw: pd.DataFrame, source: SourceConfig, path: Path
) -> tuple[pd.Series, dict[str, int]]:
    """Lines that are not sales (postage, fees, bad-debt adjustments), by the exact value or the
    prefix of a source column: the first matching rule of each such row, and every rule's count
    (0 shows a rule that matches nothing, such as a misspelt code)."""
    rules = [(c, v, False) for c, values in source.exclude.items() for v in values]
    rules += [(c, v, True) for c, values in source.exclude_prefix.items() for v in values]
    which = pd.Series(None, index=raw.index, dtype=object)
    counts: dict[str, int] = {}
    texts: dict[str, pd.Series] = {}
    for column, value, is_prefix in rules:
        if column not in raw.columns:
            raise DataError(
                f"{path}: an exclusion rule ({'exclude_prefix' if is_prefix else 'exclude'}) "
                f"names column '{column}', which the file does not have; columns present: "
                f"{', '.join(map(str, raw.columns))}"
            )
        if column not in texts:
            texts[column] = _as_text(raw[column])
        text = texts[column]
        hit = text.str.startswith(value) if is_prefix else text.eq(value)
        hit = hit.fillna(False).to_numpy(dtype=bool) & which.isna().to_numpy()
        rule = f"{column} starting '{value}'" if is_prefix else f"{column}='{value}'"
        which[hit] = rule
        counts[rule] = int(hit.sum())
    return which.dropna(), counts


def id_text(values: pd.Series, decimal: str = ".") -> pd.Series:
    """Ids as text: what exports write for "no value" (NULL, N/A, nan, ...) is none, and an
    integral id written as a float ('13085.0', as a spreadsheet or pandas exports it; '13085,0'
    from a file whose `decimal` is ',') is the integer's text, as Parquet's float ids are: the
    same customer in every file. Only the file's own decimal mark is read so: with '.', '1,000'
    may be an id grouped in thousands. (The replacement reads only the ids ending in 0 with the
    mark: it costs seconds on ten million.) `id_of` reads one id alike."""
    text = _as_text(values)
    text = text.where(~text.isin(NULL_MARKERS), pd.NA)
    floats = (text.str.endswith("0") & text.str.contains(decimal, regex=False)).fillna(False)
    floats = floats.astype(bool)
    if floats.any():
        text = text.copy()
        text[floats] = text[floats].str.replace(_float_id(decimal), r"\1", regex=True)
    return text


_NULLS = ("NULL", "NaN", "N/A", "#N/A", "NA", "None", "<NA>", "NaT", "\\N")
NULL_MARKERS = frozenset(v for n in _NULLS for v in (n, n.upper(), n.lower(), n.title()))


def _float_id(decimal: str) -> str:
    """An integral id written as a float with this decimal mark: its integer in group 1."""
    return rf"^(-?\d+){re.escape(decimal)}0+$"


_FLOAT_ID_PATTERN = re.compile(_float_id("."))


def id_of(text: str) -> str | None:
    """One id as `id_text` reads a column of them (decimal '.', as JSON writes numbers), None
    for no id: the service reads its ids one by one, where a pandas call per id cost 2 ms."""
    text = text.strip()
    if not text or text in NULL_MARKERS:
        return None
    whole = _FLOAT_ID_PATTERN.match(text)
    return whole.group(1) if whole else text


def label_of(text: str) -> str | None:
    """One label (a category, a channel) as `_as_text` reads a column of them, None for none:
    stripped, blank is none. The service reads its labels so, one by one."""
    return text.strip() or None


# 4,00000E+12, 4.00000E+12, 1E+11, -1e-05: how a spreadsheet shows a long number, and saves
# it when the column is not text: one leading digit, a signed exponent of two or three digits
# (review: 12E-3 or 00012E-01 is no spreadsheet's and may be a code). A code such as 4E12
# (hexadecimal, a product code) may be a real id.
_SCIENTIFIC = r"[-+]?[1-9](?:[.,]\d+)?[eE][-+]\d{2,3}"


def _scientific(ids: pd.Index) -> np.ndarray:
    """Which ids are numbers in scientific notation: their digits past the first few are lost
    (4,00000E+12 is any of ten million customers), so such ids would merge customers or
    orders. Read over the distinct ids, not the rows."""
    return np.asarray(ids.str.fullmatch(_SCIENTIFIC), dtype=bool)


def _as_text(values: pd.Series) -> pd.Series:
    """Text of each value, stripped; integral numbers from Parquet lose their '.0'. `label_of`
    reads one text label alike."""
    if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():
        values = values.astype("Int64")
    text = values.astype("str").str.strip()
    return text.where(values.notna() & (text != ""), pd.NA)


def _to_datetime(text: pd.Series, fmt: str) -> pd.Series:
    """Parse text; for ISO 8601, the exact layout of the first value is tried first (several
    times faster), and only the values it misses go through the general ISO 8601 parser."""
    first = text.dropna()
    with warnings.catch_warnings():  # a day-first value: pandas' advice, not ours (rejects say)
        warnings.simplefilter("ignore", UserWarning)
        exact = guess_datetime_format(first.iloc[0]) if fmt == "ISO8601" and len(first) else None
    try:
        if exact and exact.startswith("%Y-%m-%d"):
            parsed = pd.to_datetime(text, format=exact, errors="coerce")
            retry = parsed.isna() & text.notna()
            if retry.any():
                parsed = parsed.astype("datetime64[us]")
                parsed[retry] = pd.to_datetime(text[retry], format=fmt, errors="coerce")
            return parsed
        return pd.to_datetime(text, format=fmt, errors="coerce")
    # offsets that differ between rows, or some with a zone and some without (these taken as
    # UTC): compare them all in UTC
    except (ValueError, TypeError):
        return pd.to_datetime(text, format=fmt, errors="coerce", utc=True)


_ZONE = r"(?:Z|[+-]\d\d:?\d\d|UTC)$"


def _zones_mixed(text: pd.Series, parsed: pd.Series, label: str) -> list[str]:
    """Values with a zone among values without: those are taken as UTC, said once. Read only
    where the file has a zone at all (its first or last value), so a plain file pays little."""
    ends = [text.first_valid_index(), text.last_valid_index()]
    if ends[0] is None or not any(re.search(_ZONE, str(text[end])) for end in ends):
        return []
    values = text[parsed.notna()].dropna()
    zoned = values.str.contains(_ZONE, regex=True)
    if zoned.all():
        return []
    return [
        f"{int((~zoned).sum()):,} {label} values without a time zone among {int(zoned.sum()):,} "
        "with one: taken as UTC"
    ]


def _parse_datetime(text: pd.Series, raw: pd.Series, fmt: str) -> pd.Series:
    return naive_utc(raw if pd.api.types.is_datetime64_any_dtype(raw) else _to_datetime(text, fmt))


def _plain_number(text: pd.Series, numbers: tuple[str, str | None]) -> pd.Series:
    """Text as Python reads numbers: the grouping of thousands dropped, a decimal point. With
    marks of its own a number must be written with them (12.50 under decimal ',' and
    thousands '.' is no number, not 1250): others become missing, so rejected."""
    decimal, thousands = numbers
    if (decimal, thousands) == (".", None):
        return text
    if thousands == " ":  # French exports group with no-break spaces
        text = text.str.replace("[\u00a0\u202f]", " ", regex=True)
    d = re.escape(decimal)
    whole = "\\d+" if thousands is None else f"(\\d{{1,3}}({re.escape(thousands)}\\d{{3}})+|\\d+)"
    text = text.where(text.str.fullmatch(f"[-+]?{whole}({d}\\d+)?").fillna(False).astype(bool))
    if thousands is not None:
        text = text.str.replace(thousands, "", regex=False)
    return text.str.replace(decimal, ".", regex=False)


def _parse_column(
    col: Column,
    raw: pd.Series,
    fmt: str,
    problems: _Problems,
    source_name: str,
    numbers: tuple[str, str | None] = (".", None),
) -> pd.Series:
    """`numbers`: the decimal mark and the grouping of thousands (None) of text numbers."""
    label = _label(col.name, source_name)
    typed = (col.kind == "datetime" and pd.api.types.is_datetime64_any_dtype(raw)) or (
        col.kind == "number"
        and pd.api.types.is_numeric_dtype(raw)
        and not pd.api.types.is_bool_dtype(raw)
    )
    read = (lambda v: id_text(v, numbers[0])) if col.kind == "id" else _as_text
    text = raw if typed else read(raw)  # typed Parquet columns need no text
    missing = text.isna()
    if col.required:
        problems.add(missing, f"missing {label}")
    present = ~missing
    if col.kind in ("id", "label"):
        values = pd.Categorical(text)
        if col.kind == "id":
            # code -1 (no id) reads the False appended
            cut = np.append(_scientific(values.categories), False)[values.codes]
            kind = (
                f"{label} in scientific notation (a spreadsheet cut its digits; export the "
                "column as text)"
            )
            problems.add(pd.Series(cut, index=raw.index), kind, text)
        return pd.Series(values, index=raw.index)
    if col.kind == "datetime":
        parsed = _parse_datetime(text, raw, fmt)
        if not pd.api.types.is_datetime64_any_dtype(raw):  # text: zones may be mixed
            problems.notes += _zones_mixed(text, parsed, label)
        problems.add(present & parsed.isna(), f"unparsable {label}", text)
        year = parsed.dt.year
        outside = (year < YEARS.start) | (year >= YEARS.stop)  # NaT compares False
        problems.add(outside, f"{label} outside the years {YEARS.start}..{YEARS.stop - 1}", text)
        return parsed
    if col.kind == "number":
        if typed:
            number = raw.astype("float64")
        else:
            number = pd.to_numeric(_plain_number(text, numbers), errors="coerce").astype("float64")
        bad = present & number.isna()
        if not typed and numbers == (".", None):  # a decimal comma, likely: say so
            comma = bad & text.str.contains(",", regex=False).fillna(False).astype(bool)
            hint = (
                f"non-numeric {label} (a decimal comma, or a comma grouping thousands? set "
                "decimal: ',' or thousands: ',' in configs/data.yaml)"
            )
            problems.add(comma, hint, text)
            bad &= ~comma
        problems.add(bad, f"non-numeric {label}", text)
        problems.add(np.isinf(number), f"infinite {label}", text)
        huge = np.isfinite(number) & (number.abs() > MAX_ABS_NUMBER)
        problems.add(huge, f"{label} beyond +-{MAX_ABS_NUMBER:g}", text)
        if col.min_value is not None:
            problems.add(number < col.min_value, f"{label} below {col.min_value:g}", text)
        if col.max_value is not None:
            problems.add(number > col.max_value, f"{label} above {col.max_value:g}", text)
        return number
    lowered = text.str.lower()
    if col.kind == "group":
        problems.add(present & ~lowered.isin(_GROUP_VALUES), f"{label} not treatment/control", text)
        known = lowered.where(lowered.isin(_GROUP_VALUES))
        return pd.Series(pd.Categorical(known, categories=_GROUP_VALUES), index=raw.index)
    flag = lowered.map(_FLAG_VALUES)
    problems.add(present & flag.isna(), f"{label} not 0/1/true/false", text)
    return flag.astype("boolean")


DUPLICATE_OF = "exact duplicate of row "  # the reason, then the row (and, on Dask, its file)


def _duplicate_reasons(raw: pd.DataFrame, candidates: pd.Index) -> pd.Series:
    """'exact duplicate of row N' for every repeat of an earlier identical row among the
    candidates (sorted row labels of `raw`)."""
    rows = raw.loc[candidates]
    try:
        repeated = rows.duplicated(keep=False)
    except TypeError:  # Parquet lists or structs, which do not hash: compared as text
        rows = rows.astype(str)
        repeated = rows.duplicated(keep=False)
    rows = rows.loc[repeated]  # fast pass; row numbers only for these
    group = rows.groupby(list(rows.columns), sort=False, dropna=False).ngroup()
    first = pd.Series(rows.index, index=rows.index).groupby(group.to_numpy()).transform("first")
    repeat = first != rows.index
    return DUPLICATE_OF + (first[repeat] + 1).astype(str)


def _contact_rows(
    frame: pd.DataFrame, keep: pd.Series, duplicates: pd.Series, key: tuple[str, ...]
) -> tuple[pd.Series, pd.Series]:
    """Kept rows sharing `key` (one contact), compared by what was read of them, not their
    text: ('rows N, M' for every row of a contact whose rows read differently: counted twice,
    with two outcomes or in both groups, and which is right is not known; 'same contact as row
    N, read alike' for each later row of a contact whose rows read the same, written otherwise
    (`1` and `true`) or differing only in a column the contract does not read). Exact
    duplicates are left to `duplicates`."""
    kept = frame.loc[keep.to_numpy()]
    columns = list(kept.columns)
    contact = kept.groupby(list(key), sort=False, observed=True, dropna=False).ngroup()
    reading = kept.groupby(columns, sort=False, observed=True, dropna=False).ngroup()
    readings = reading.groupby(contact).transform("nunique")
    rows = kept.index[(readings > 1).to_numpy()]
    numbers = pd.Series(rows + 1, index=rows).astype(str)
    listed = numbers.groupby(contact.loc[rows]).agg(", ".join)
    disagree = ("rows " + contact.loc[rows].map(listed)) if len(rows) else pd.Series(dtype=object)
    alike = kept.index[
        ((readings == 1) & contact.duplicated(keep="first")).to_numpy()
        & ~kept.index.isin(duplicates.index)
    ]
    first = pd.Series(kept.index, index=kept.index).groupby(contact.to_numpy()).transform("first")
    repeats = "same contact as row " + (first.loc[alike] + 1).astype(str) + ", read alike"
    return disagree, repeats


def load_table(
    schema: TableSchema,
    source: SourceConfig,
    path: Path,
    validation: ValidationConfig,
    rejects_dir: Path,
    with_lines: bool = False,
) -> Loaded:
    """Load one table: map columns, set aside excluded lines, validate each other row, keep
    the valid anonymous ones out, report and write rejects and the lines set aside, enforce
    limits. `with_lines`: also each loaded row's and anonymous sale's row number and line
    hash (`Loaded.anonymous`); one process does not pay for them."""
    path, rejects_dir = Path(path), Path(rejects_dir)
    raw = read_raw(path, source.sep, source.encoding).reset_index(drop=True)
    # the column whose missing value makes a line anonymous, when such lines are kept out
    anonymous_key = schema.anonymous_key if validation.anonymous_lines == "keep_out" else None
    layout = _layout(schema, source, raw, path, anonymous_key)
    excluded, rule_counts = _excluded_lines(raw, source, path)
    rows = raw.drop(index=excluded.index) if len(excluded) else raw  # no copy of a clean file
    problems = _Problems(rows.index)
    headers = _repeated_headers(rows, path)
    if len(headers):  # not values: rejected with their own reason only
        frame = layout.parse(rows.drop(index=headers), source, problems).reindex(rows.index)
        problems.add(pd.Series(rows.index.isin(headers), index=rows.index), HEADER_REPEATED)
    else:
        frame = layout.parse(rows, source, problems)
    extra = [c for c in raw.columns if str(c).startswith(EXTRA)]
    if extra:  # an unquoted separator inside a field shifted this row's values: not trusted
        filled = (rows[extra].fillna("").apply(lambda c: c.str.strip()) != "").any(axis=1)
        problems.add(filled, f"more fields than the header's {len(raw.columns) - len(extra)}")
    rejected = problems.mask
    # An anonymous line with a bad value is a reject (its sale cannot be counted), not a sale.
    unnamed, anonymous_label = pd.Series(False, index=rows.index), ""
    if anonymous_key is not None:
        unnamed = frame[anonymous_key].isna()
        anonymous_label = _label(anonymous_key, layout.names[anonymous_key])
    anonymous = rows.index[(unnamed & ~rejected).to_numpy()]

    # Anonymous lines repeat like any others (two overlapping exports): one report of them.
    duplicates = _duplicate_reasons(raw, rows.index[~rejected.to_numpy()])
    keep = ~rejected & ~unnamed
    if validation.drop_duplicates:
        keep.loc[keep.index.intersection(duplicates.index)] = False
        anonymous = anonymous.difference(duplicates.index)
    # The reject share's base: read - excluded - anonymous as the summary counts them (a
    # repeated anonymous line is a duplicate there, so it is in the base, as any duplicate is).
    checked = len(rows) - len(anonymous)
    if schema.unique_key:
        key = frame[schema.unique_key].astype(object)[keep]
        repeated = pd.Series(False, index=frame.index)
        repeated.loc[key.index[key.duplicated(keep="first").to_numpy()]] = True
        problems.add(repeated, f"repeated {schema.unique_key}", frame[schema.unique_key])
        keep &= ~repeated
        rejected = problems.mask
    if schema.record_key:
        disagree, alike = _contact_rows(frame, keep, duplicates, schema.record_key)
        duplicates = pd.concat([duplicates, alike])  # reported (and dropped) as duplicates
        if validation.drop_duplicates:
            keep.loc[alike.index] = False
        names = [_label(c, str(layout.names[c])) for c in schema.record_key]
        kind = f"{', '.join(names[:-1])} and {names[-1]} repeated with other values"
        rows_of = pd.Series(frame.index.isin(disagree.index), index=frame.index)
        problems.add(rows_of, kind, disagree, quoted=False)
        keep &= ~problems.mask
        rejected = problems.mask
        duplicates = duplicates.drop(disagree.index, errors="ignore")  # a reject, listed once

    # with_lines (a cluster's file among several): its caller cleared the folder, and writes
    # the anonymous list later, which a load that Dask runs again must leave in place
    if not with_lines:
        clear_rejects(rejects_dir, schema.name)
    rejects_path = rejects_dir / f"{schema.name}_rejects.csv"
    _write_rows(raw, pd.concat([problems.reasons[rejected], duplicates]), rejects_path)
    excluded_path = _write_set_aside(
        raw, excluded if rule_counts else None, rejects_dir / f"{schema.name}_excluded.csv"
    )
    anonymous_path, anonymous_listed = None, None
    if anonymous_key is not None:
        anonymous_path = rejects_dir / f"{schema.name}_anonymous.csv"
        anonymous_listed = _listed(raw, pd.Series(f"no {anonymous_label}", index=anonymous))
        if not with_lines:  # else the caller writes it, without the lines an earlier file has
            write_listed(anonymous_listed, anonymous_path)
    used = set(layout.names.values()) | set(source.exclude) | set(source.exclude_prefix)
    used |= set(extra)
    ignored = tuple(
        str(c) for c in raw.columns if c not in used and c not in schema.written_for_reference
    )
    loaded = keep.to_numpy()
    said = (
        tuple(problems.notes)
        + _number_warnings(rows, layout, source)
        + _case_twins(frame, loaded, layout)
        + _currencies(rows, loaded, ignored)
        + _both_negative(frame, loaded, layout)
    )
    if extra:
        said = (
            "every row has more fields than the header: empty ones (a separator at the end of "
            "each line) are not read, rows with values there are rejected",
            *said,
        )
    report = LoadReport(
        table=schema.name,
        source=path,
        rows_read=len(raw),
        rows_checked=checked,
        rows_loaded=int(keep.sum()),
        rejected=int(rejected.sum()),
        reasons=dict(problems.kinds.most_common()),
        duplicates=len(duplicates),
        duplicates_dropped=validation.drop_duplicates,
        rejects_path=rejects_path,
        ignored_columns=ignored,
        excluded=rule_counts,
        excluded_path=excluded_path,
        anonymous=len(anonymous),
        anonymous_amount=float(frame.loc[anonymous, "amount"].sum()) if len(anonymous) else 0.0,
        anonymous_label=anonymous_label,
        anonymous_path=anonymous_path,
        warnings=said,
    )
    if report.rejected and report.reject_share > validation.max_reject_share:
        raise over_reject_limit(
            str(path), report.rejected, report.rows_checked, validation.max_reject_share,
            report.reasons, str(rejects_path), source.timestamp_format,
        )  # fmt: skip
    parsed, frame = frame, frame.loc[keep]
    for name, values in frame.items():  # categories seen only in rejected rows go
        if isinstance(values.dtype, pd.CategoricalDtype):
            frame[name] = values.cat.remove_unused_categories()
    if not with_lines:
        return Loaded(frame.reset_index(drop=True), report)
    lines = line_hashes(raw.loc[frame.index.union(anonymous)])

    def marked(rows: pd.DataFrame) -> pd.DataFrame:
        marks = {ROW: rows.index.to_numpy(np.int64), LINE: lines.loc[rows.index].to_numpy()}
        return rows.assign(**marks).reset_index(drop=True)

    return Loaded(marked(frame), report, marked(parsed.loc[anonymous]), anonymous_listed)


HEADER_REPEATED = "the header repeated (files joined?)"


def _repeated_headers(rows: pd.DataFrame, path: Path) -> pd.Index:
    """Rows whose fields are the header's names, each under its own: a second export joined
    to the first (`cat a.csv b.csv`), a reject of its own. Its names in another order stop
    loading: the later file's columns differ, and its rows would be read under the first
    header's names (quantities as amounts). Only rows whose first field is a name of the
    header are compared field by field."""
    names = [c for c in rows.columns if not str(c).startswith(EXTRA)]
    first = rows[names[0]]
    if pd.api.types.is_numeric_dtype(first) or pd.api.types.is_datetime64_any_dtype(first):
        return pd.Index([])  # a typed Parquet column holds no names
    candidates = rows.loc[_bare(first).isin(names).to_numpy(), names]
    if candidates.empty:
        return pd.Index([])
    fields = candidates.apply(_bare)
    in_place = (fields == pd.Series(names, index=names)).all(axis=1)
    moved_rows = fields.loc[(~in_place & fields.isin(names).all(axis=1)).to_numpy()]
    for row, values in moved_rows.iterrows():  # rows of names only: the first stops loading
        if sorted(values) != sorted(names):
            continue
        moved = ", ".join(
            f"'{value}' under '{name}'" for name, value in values.items() if value != name
        )
        raise DataError(
            f"{path}: row {row + 1:,} repeats the header with its columns in another order "
            f"({moved}): the rows after it would be read under the first header's names "
            "(files joined?); put the later export's columns in the first one's order"
        )
    return fields.index[in_place.to_numpy()]


def line_hashes(raw: pd.DataFrame) -> pd.Series:
    """A 64-bit hash of each row as read, every column, for exact duplicates across files of
    one table: equal for rows alike in every column of files with the same columns (in any
    order), whatever the numbers' Parquet type (int64 or float64) or the times' unit; rows of
    files with other columns never alike. List or struct columns are hashed as text, as
    `_duplicate_reasons` compares them."""
    out = np.zeros(len(raw), dtype=np.uint64)
    spread = np.uint64(0x100000001B3)  # an odd multiplier: the columns' order counts
    for name in sorted(raw.columns):
        values = raw[name]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            # as float64: whole numbers past 2**53 (snowflake ids) may hash alike; customer,
            # time and amount are compared besides (features.cluster._repeats_in)
            values = pd.Series(values.to_numpy("float64", na_value=np.nan), index=raw.index)
        elif pd.api.types.is_datetime64_any_dtype(values):  # with a zone too (review)
            values = values.dt.as_unit("us")
        try:
            column = pd.util.hash_pandas_object(values, index=False).to_numpy()
        except TypeError:  # Parquet lists or structs, which do not hash
            column = pd.util.hash_pandas_object(values.astype(str), index=False).to_numpy()
        label = pd.util.hash_array(np.array([name], dtype=object))
        out = (out * spread + label) * spread + column  # wraps around, as a hash should
    return pd.Series(out, index=raw.index)


_GROUPED = r"^-?[1-9]\d{0,2}(\.\d{3})+$"  # 1.500, 12.000, 1.234.567 (not 0.500)


def _number_warnings(rows: pd.DataFrame, layout: _Layout, source: SourceConfig) -> tuple[str, ...]:
    """A ';' file is most likely European: numbers like 1.500 there are fifteen hundred, but
    read with a decimal point they load as 1.5, silently. Say so when some look like that."""
    if source.sep != ";" or (source.decimal, source.thousands) != (".", None):
        return ()
    out = []
    for col in layout.parsed:
        if col.kind != "number" or pd.api.types.is_numeric_dtype(rows[layout.names[col.name]]):
            continue
        grouped = _as_text(rows[layout.names[col.name]]).str.match(_GROUPED).fillna(False)
        if grouped.any():
            example = rows.loc[grouped.to_numpy(), layout.names[col.name]].iloc[0]
            out.append(
                f"{int(grouped.sum()):,} {_label(col.name, layout.names[col.name])} values like "
                f"'{example}' read as decimals (1.5); if '.' groups thousands there, set "
                "thousands: '.' and decimal: ',' in configs/data.yaml"
            )
    return tuple(out)


def _bare(field: pd.Series) -> pd.Series:
    """A field as text without spaces or a byte-order mark around it: a joined file's second
    header may start with its own (Excel's "CSV UTF-8"), which pandas strips from the first
    line only (review)."""
    return field.astype(str).str.strip().str.lstrip("\ufeff").str.strip()


def _case_twins(frame: pd.DataFrame, loaded: np.ndarray, layout: _Layout) -> tuple[str, ...]:
    """Loaded customer ids that are emails equal but for letter case ('A@x.com', 'a@x.com':
    one address typed twice) are different customers, as the contract says, though likely
    one each, split: say how many, do not fold them. Emails only: other ids may be
    case-sensitive by design (Salesforce's 15-character ids: review). Read over the distinct
    ids."""
    if "customer_id" not in frame.columns:
        return ()
    ids = frame["customer_id"]
    codes = ids.cat.codes.to_numpy()[loaded]
    seen = np.bincount(codes[codes >= 0], minlength=len(ids.cat.categories)) > 0
    used = pd.Index(ids.cat.categories[seen], dtype=object)
    used = used[np.asarray(used.str.contains("@", regex=False), dtype=bool)]
    lowered = used.str.lower()
    twins = lowered.duplicated(keep=False)
    if not twins.any():
        return ()
    example = " / ".join(f"'{v}'" for v in used[lowered == lowered[twins][0]])
    label = _label("customer_id", str(layout.names["customer_id"]))
    return (
        f"{int(twins.sum()):,} {label} values differ from another only in letter case "
        f"({lowered[twins].nunique():,} once lower-cased; e.g. {example}): read as different "
        "customers; lower-case the column if they are one (email addresses are)",
    )


def _currencies(
    rows: pd.DataFrame, loaded: np.ndarray, ignored: tuple[str, ...]
) -> tuple[str, ...]:
    """The contract has no currency: amounts are summed as they are. A column the file names
    like a currency holding several values (among the `loaded` rows) says those sums mix
    currencies."""
    out = []
    for name in ignored:  # Currency, currency_code, Order Currency, Presentment Currency, ...
        if "currency" not in name.lower():
            continue
        values = _as_text(rows[name][loaded]).dropna()
        if pd.to_numeric(values, errors="coerce").notna().all():
            continue  # numbers (a currency_rate column): not codes of currencies (tester Z)
        shares = values.str.upper().value_counts(normalize=True)
        if len(shares) < 2:
            continue
        listed = ", ".join(f"{value} {share:.1%}" for value, share in shares.iloc[:5].items())
        more = f" and {len(shares) - 5:,} more" if len(shares) > 5 else ""
        out.append(
            f"amounts are summed as one currency, but column '{name}' holds {len(shares):,} "
            f"values ({listed}{more} of the loaded rows with one); convert them to one "
            "currency first"
        )
    return tuple(out)


def _both_negative(frame: pd.DataFrame, loaded: np.ndarray, layout: _Layout) -> tuple[str, ...]:
    """A computed amount of two negative factors (quantity -2 at unit_price -10) is positive:
    a purchase. It is what the file says, but a credit note is likelier; say how many."""
    out = []
    for col in layout.computed:
        first, second = col.product_of or ()
        both = (frame[first].to_numpy() < 0) & (frame[second].to_numpy() < 0) & loaded
        if both.any():
            out.append(
                f"{plural(int(both.sum()), 'line')} with both "
                f"{_label(first, str(layout.names[first]))} "
                f"and {_label(second, str(layout.names[second]))} negative: their {col.name} "
                f"({first} x {second}) is positive, read as a purchase (a credit note written "
                f"with both signs? then make {second} positive there to read it as a refund)"
            )
    return tuple(out)


def _write_rows(raw: pd.DataFrame, reasons: pd.Series, path: Path) -> None:
    """The file's rows as they were read, each with its 1-based row number and reason."""
    write_listed(_listed(raw, reasons), path)


def _listed(raw: pd.DataFrame, reasons: pd.Series) -> pd.DataFrame:
    """A list of the file's rows as they were read, each after its 1-based row number and
    reason, indexed by its 0-based row."""
    why = reasons.sort_index()
    # row 1 = the first data row (line 2 of a CSV with a header); the file's own columns may
    # be named row or reason too
    numbers = pd.DataFrame({"row": why.index + 1, "reason": why.to_numpy()}, index=why.index)
    return pd.concat([numbers, raw.loc[why.index]], axis=1)


def write_listed(listed: pd.DataFrame, path: Path) -> None:
    """A list of rows (`_listed`) written whole or not at all (`replaced_whole`: a full disk
    left part of a list, read as all of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_whole(path) as part:
        listed.to_csv(part, index=False)


def _write_set_aside(raw: pd.DataFrame, reasons: pd.Series | None, path: Path) -> Path | None:
    """Write lines set aside (not rejects) when the table can have them (an earlier run's list
    is cleared with its rejects, `clear_rejects`)."""
    if reasons is None:
        return None
    _write_rows(raw, reasons, path)
    return path


def clear_rejects(rejects_dir: Path, table: str) -> None:
    """Earlier runs' reports of a table (rejects, exclusions, anonymous lines), whichever engine
    wrote them: one process's in rejects_dir/, a Dask cluster's per file in
    rejects_dir/NNNNN-<file>/ and its customers repeated across files in <table>_repeated/.
    Left there, they read as this run's: another engine's stale rejects beside its own, and a
    cluster's glob over the per-file folders counted an earlier run's with this one's."""
    files = [*rejects_dir.glob(f"{table}_*.csv")]
    files += rejects_dir.glob(f"[0-9][0-9][0-9][0-9][0-9]-*/{table}_*.csv")
    for old in files:
        old.unlink(missing_ok=True)
        if old.parent != rejects_dir:
            with contextlib.suppress(OSError):  # still holds the other table's reports
                old.parent.rmdir()
    shutil.rmtree(rejects_dir / f"{table}_repeated", ignore_errors=True)


def sort_transactions(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by customer, then time: the order the feature builders work in without re-sorting."""
    codes = frame["customer_id"].cat.codes.to_numpy()
    times = frame["timestamp"].to_numpy()
    order = np.lexsort((times, codes))
    return frame.take(order).reset_index(drop=True)


def load_transactions(
    path: Path,
    source: SourceConfig,
    validation: ValidationConfig,
    rejects_dir: Path,
    with_lines: bool = False,
) -> Loaded:
    loaded = load_table(TRANSACTIONS, source, path, validation, rejects_dir, with_lines)
    return replace(loaded, frame=sort_transactions(loaded.frame))


def some_rows(loaded: Loaded) -> Loaded:
    """A table of which no row is usable stops here with its summary (every line anonymous,
    excluded or rejected under a reject limit of 1), not later at an empty cutoff."""
    if loaded.report.rows_loaded == 0:
        raise DataError(f"no usable row in {loaded.report.source}:\n{loaded.report.summary()}")
    return loaded


def load_customers(
    path: Path, source: SourceConfig, validation: ValidationConfig, rejects_dir: Path
) -> Loaded:
    return load_table(CUSTOMERS, source, path, validation, rejects_dir)


def load_campaigns(
    path: Path, source: SourceConfig, validation: ValidationConfig, rejects_dir: Path
) -> Loaded:
    return load_table(CAMPAIGNS, source, path, validation, rejects_dir)
