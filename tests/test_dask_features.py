"""The Dask engine's features equal the single-process ones exactly, on a local cluster of two
worker processes (one thread each); the cap on categories and the RFM cut points are the whole
population's; a worker killed mid-run costs a recomputation, not the result."""

from __future__ import annotations

import contextlib
import os
import shutil
import time

import numpy as np
import pandas as pd
import psutil
import pytest

from crm_ltv.features.builders import build_features
from crm_ltv.features.config import DataConfig
from crm_ltv.features.contract import DataError
from crm_ltv.features.inputs import input_files, load_inputs
from crm_ltv.features.paths import Paths
from crm_ltv.features.quantiles import exact_quantiles

pytestmark = pytest.mark.dask
cluster = pytest.importorskip("crm_ltv.features.cluster")


def _single(files, feature_config, cutoff, tmp_path) -> pd.DataFrame:
    """The single-process path: the loader on the one file, then `build_features`."""
    inputs = load_inputs(DataConfig(), Paths(tmp_path), files[0], files[2])
    return build_features(inputs.transactions.frame, cutoff, feature_config, inputs.customers_frame)


def _on_cluster(dask_client, files, feature_config, cutoff, tmp_path, partitions=3):
    data = cluster.load_partitioned(
        dask_client,
        DataConfig(),
        tmp_path / "rejects",
        files[1],
        files[2],
        lambda _: None,
        partitions,
    )
    frames = cluster.features_on_cluster(data, cutoff, feature_config)
    return data, pd.concat(dask_client.gather(frames)).sort_index()


@pytest.mark.parametrize("cutoff", ["2025-03-01", "2025-12-31"])
def test_features_equal_the_single_process_ones_exactly(
    dask_client, dask_sample_files, feature_config, tmp_path, cutoff
):
    # a cap of 4 categories pools the rarer ones as "(other)": the population's rarest, not
    # each partition's
    config = feature_config.model_copy(update={"max_categories": 4})
    expected = _single(dask_sample_files, config, cutoff, tmp_path)
    data, got = _on_cluster(dask_client, dask_sample_files, config, cutoff, tmp_path)
    single = load_inputs(DataConfig(), Paths(tmp_path / "single"), dask_sample_files[0])
    assert len(data.arrays) == 3 and data.rows == len(single.transactions.frame) > 4_000
    loaded = pd.concat(
        pd.DataFrame({"customer_id": a.customer.names[a.customer.codes]})
        for a in dask_client.gather(data.arrays)
    )
    assert len(loaded) == data.rows  # the partitions hold every loaded row, once
    assert (got["favourite_category"] == "(other)").any()
    pd.testing.assert_frame_equal(got, expected)


def test_partitions_hold_whole_customers_and_the_cut_points_are_the_populations(
    dask_client, dask_sample_files, feature_config, tmp_path
):
    data, table = _on_cluster(
        dask_client, dask_sample_files, feature_config, "2025-12-31", tmp_path, 4
    )
    names = [set(a.customer.names) for a in dask_client.gather(data.arrays)]
    assert sum(map(len, names)) == len(set().union(*names))  # no customer in two partitions
    frames = cluster.features_on_cluster(data, "2025-12-31", feature_config)
    from crm_ltv.features.rfm import RfmCuts

    assert cluster.rfm_cuts_of(dask_client, frames) == RfmCuts.of(table)


def _wait_until_gone(pid: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)
    raise AssertionError(f"worker process {pid} still running {seconds:.0f} s after os._exit")


def test_a_worker_killed_mid_run_is_survived_with_the_same_result(
    dask_client, dask_sample_files, feature_config, tmp_path
):
    expected = _single(dask_sample_files, feature_config, "2025-12-31", tmp_path)
    data = cluster.load_partitioned(
        dask_client, DataConfig(), tmp_path / "rejects", dask_sample_files[1], dask_sample_files[2],
        lambda _: None, 4,
    )  # fmt: skip
    dask_client.gather(data.arrays + data.customers)
    # the customers' attributes: made with the population's channels, a shared value that
    # must be made again too (a scattered one could not: "lost dependencies")
    holders = dask_client.who_has(data.customers)
    victim = next(iter(holders[data.customers[0].key]))
    pid = dask_client.run(os.getpid, workers=[victim])[victim]
    with contextlib.suppress(Exception):  # the worker dies while answering, whatever it says
        dask_client.run(os._exit, 1, workers=[victim])
    _wait_until_gone(pid)  # killed for sure: not a run that passed because no kill happened
    frames = cluster.features_on_cluster(data, "2025-12-31", feature_config)
    got = pd.concat(dask_client.gather(frames)).sort_index()
    pd.testing.assert_frame_equal(got, expected)
    dask_client.wait_for_workers(2, timeout=60)  # the nanny restarted it for the next tests


def test_exact_quantiles_equal_numpys_over_any_partitioning():
    rng = np.random.default_rng(7)
    for _ in range(60):
        values = [
            rng.lognormal(3, 2, int(rng.integers(0, 400))),
            rng.integers(1, 6, int(rng.integers(0, 400))).astype(float),  # many ties
            np.round(rng.normal(0, 50, int(rng.integers(1, 400))), 2),
        ]
        parts = [{"x": v} for v in values]
        got = exact_quantiles(lambda f, parts=parts: [f(p) for p in parts], (0.2, 0.5, 0.8), 8)
        np.testing.assert_array_equal(
            got["x"], np.quantile(np.concatenate(values), [0.2, 0.5, 0.8])
        )
    with pytest.raises(ValueError, match="no values"):
        exact_quantiles(lambda f: [f({"x": np.empty(0)})], (0.5,))


def test_input_files_from_a_folder_a_glob_or_a_file(dask_sample_files, tmp_path):
    parts = dask_sample_files[1]
    expected = [parts / f"tx-{i}.parquet" for i in range(5)]
    assert input_files(parts) == expected
    assert input_files(f"{parts}/tx-[0-1].parquet") == expected[:2]
    assert input_files(dask_sample_files[0]) == [dask_sample_files[0]]
    (tmp_path / "notes.md").write_text("no data here")
    with pytest.raises(DataError, match="no CSV or Parquet files"):
        input_files(tmp_path)
    # a part that is not read is refused, not skipped (tester V: a part-1.csv.bz2 among .csv
    # parts lost a third of the history); writers' markers are skipped
    table = tmp_path / "table"
    table.mkdir()
    for name in ("part-0.csv", "part-1.csv.bz2", "_SUCCESS", ".part-0.csv.crc", "part-2.csv"):
        (table / name).write_text("x")
    for given in (table, f"{table}/part-*"):
        with pytest.raises(DataError, match=r"part-1\.csv\.bz2 is not a CSV or Parquet file"):
            input_files(given)
    assert input_files(f"{table}/part-[02].csv") == [table / "part-0.csv", table / "part-2.csv"]
    (table / "part-1.csv.bz2").unlink()
    # a partitioned layout's sub-folders hold parts too (tester Z: skipped without a word);
    # a writer's working folder does not
    for folder, name in (("year=2025", "part-3.csv"), ("_temporary", "part-9.csv")):
        (table / folder).mkdir()
        (table / folder / name).write_text("x")
    parts = [table / "part-0.csv", table / "part-2.csv", table / "year=2025" / "part-3.csv"]
    assert input_files(table) == parts
    assert input_files(f"{table}/*") == parts
    (table / "year=2025" / "notes.md").write_text("x")
    with pytest.raises(DataError, match=r"year=2025/notes\.md is not a CSV or Parquet file"):
        input_files(table)


def _dirty_copy(parts, folder, bad_rows: int):
    """The five parts, `bad_rows` of the first with an amount that is not a number."""
    folder.mkdir()
    for path in sorted(parts.iterdir()):
        frame = pd.read_parquet(path)
        if path.name == "tx-0.parquet":
            frame.loc[frame.index[:bad_rows], "amount"] = "twelve"
        frame.to_parquet(folder / path.name, index=False)
    return folder


def test_the_reject_limit_applies_to_the_tables_total_not_to_each_file(
    dask_client, dask_sample_files, tmp_path
):
    parts = dask_sample_files[1]
    rows = len(pd.read_parquet(parts / "tx-0.parquet"))
    total = sum(len(pd.read_parquet(p)) for p in parts.iterdir())
    bad = int(rows * 0.04)  # 4% of the first file, under 1% of the table
    assert bad / total < 0.01 < bad / rows
    said: list[str] = []
    data = cluster.load_partitioned(
        dask_client, DataConfig(), tmp_path / "rejects", _dirty_copy(parts, tmp_path / "a", bad),
        None, said.append, 3,
    )  # fmt: skip
    assert sum(r.rejected for r in data.reports) == bad
    assert data.rows == total - bad
    assert any(f"rejected {bad:,} rows" in line for line in said), said
    rejects = pd.read_csv(next((tmp_path / "rejects").glob("00000-*/transactions_rejects.csv")))
    assert len(rejects) == bad
    # a run on other files in the same home: the earlier run's reports are gone, not counted
    # with this run's by the glob it points to
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copy(parts / "tx-1.parquet", clean / "only.parquet")
    (tmp_path / "rejects/00000-tx-0.parquet/customers_rejects.csv").write_text("row,reason\n")
    cluster.load_partitioned(dask_client, DataConfig(), tmp_path / "rejects", clean, None,
                             lambda _: None, 2)  # fmt: skip
    left = sorted(p.relative_to(tmp_path / "rejects").as_posix()
                  for p in (tmp_path / "rejects").glob("*/transactions_*.csv"))  # fmt: skip
    assert left and all(name.startswith("00000-only.parquet/") for name in left), left
    assert (tmp_path / "rejects/00000-tx-0.parquet/customers_rejects.csv").exists()  # not its

    worse = int(rows * 0.3)  # 6% of the table: over the limit, said once for the total
    said_once = (
        rf"transactions \(5 files; most rejected: tx-0.parquet {worse / rows:.2%}\): {worse:,} of "
        rf"{total:,} rows .* rejected, above the limit of 1\.00% .*reasons: .*amount"
    )
    with pytest.raises(DataError, match=said_once):
        cluster.load_partitioned(
            dask_client, DataConfig(), tmp_path / "rejects-b",
            _dirty_copy(parts, tmp_path / "b", worse), None, lambda _: None, 3,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("broken", "said"),
    [
        ("no amount column", r"tx-3\.parquet.*amount"),
        ("not parquet", r"tx-3\.parquet: not a readable Parquet file"),
        ("every amount a word", r"tx-3\.parquet: every row rejected: .* reasons: .*amount"),
    ],
)
def test_a_file_that_cannot_load_is_named_in_one_error(
    dask_client, dask_sample_files, tmp_path, broken, said
):
    """With the partitions counted from the files first (the CLI's default), as a worker's
    load finds it, and a file whose every row is rejected too: the table's limit would let
    the other files' clean rows hide it."""
    folder = tmp_path / "parts"
    folder.mkdir()
    for path in sorted(dask_sample_files[1].iterdir()):
        frame = pd.read_parquet(path)
        if path.name == "tx-3.parquet" and broken == "not parquet":
            (folder / path.name).write_text("Invoice,Amount\n1,2\n")
            continue
        if path.name == "tx-3.parquet" and broken == "no amount column":
            frame = frame.drop(columns="amount")
        if path.name == "tx-3.parquet" and broken == "every amount a word":
            frame["amount"] = "twelve"
        frame.to_parquet(folder / path.name, index=False)
    with pytest.raises(DataError, match=said):
        cluster.load_partitioned(
            dask_client, DataConfig(), tmp_path / "rejects", folder, None, lambda _: None
        )


def _customers_in_two_files(path, folder, repeated: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every customer in a.csv, then the first `repeated` again in b.csv (another channel)."""
    customers = pd.read_csv(path)
    folder.mkdir()
    customers.to_csv(folder / "a.csv", index=False)
    again = customers.head(repeated).assign(acquisition_channel="repeated")
    again.to_csv(folder / "b.csv", index=False)
    return customers, again


def test_a_customer_in_two_customers_files_is_rejected_once_and_counted(
    dask_client, dask_sample_files, tmp_path
):
    folder = tmp_path / "customers"
    customers, again = _customers_in_two_files(dask_sample_files[2], folder, 5)
    said: list[str] = []
    data = cluster.load_partitioned(
        dask_client, DataConfig(), tmp_path / "rejects", dask_sample_files[1], folder,
        said.append, 3,
    )  # fmt: skip
    assert any("5 customers rows repeat a customer_id" in line for line in said), said
    written = pd.concat(
        pd.read_csv(p) for p in (tmp_path / "rejects" / "customers_repeated").glob("*.csv")
    )
    assert sorted(written["customer_id"].astype(str)) == sorted(again["customer_id"].astype(str))
    assert set(written["file"]) == {str(folder / "b.csv")}
    repeats = [r.reasons.get(cluster.REPEATED, 0) for r in data.customer_reports]
    assert repeats == [0, 5]  # counted as the second file's rejects, in the run's inputs too
    assert data.customer_reports[1].rows_loaded == 0
    assert data.inputs(tmp_path / "rejects").customers.report.rejected == 5
    kept = dask_client.gather(data.customers)
    assert sum(len(k.ids) for k in kept) == len(customers)  # every customer once, the first row
    channels = {
        i: k.acquisition_channel.names[c]
        for k in kept
        for i, c in zip(k.ids, k.acquisition_channel.codes, strict=True)
    }
    assert "repeated" not in set(channels.values())


def test_a_run_of_either_engine_clears_the_rejects_earlier_runs_of_the_other_left(
    dask_client, dask_sample_files, tmp_path, monkeypatch
):
    """A cluster writes a table's rejects per file (NNNNN-<file>/, customers_repeated/), one
    process in the folder itself: each engine cleared its own layout only, so the other's
    stale rejects stayed beside this run's."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rejects, config = Paths(tmp_path).rejects_dir, DataConfig()
    tx = _dirty_copy(dask_sample_files[1], tmp_path / "dirty", 5)
    customers = tmp_path / "customers"
    _customers_in_two_files(dask_sample_files[2], customers, 5)

    def written() -> list[str]:
        return sorted(p.relative_to(rejects).as_posix() for p in rejects.rglob("*") if p.is_file())

    cluster.load_partitioned(dask_client, config, rejects, tx, customers, lambda _: None, 2)
    assert "00000-tx-0.parquet/transactions_rejects.csv" in written()
    assert "customers_repeated/00000.csv" in written() or "customers_repeated/00001.csv" in (
        written()
    )
    load_inputs(config, Paths(tmp_path), dask_sample_files[0], dask_sample_files[2])
    single = written()
    assert "transactions_rejects.csv" in single and "customers_rejects.csv" in single
    assert not [name for name in single if "/" in name], single  # no folder of a file
    cluster.load_partitioned(dask_client, config, rejects, dask_sample_files[1], None,
                             lambda _: None, 2)  # fmt: skip
    top = [name for name in written() if "/" not in name]
    assert top == [n for n in single if n.startswith("customers_")]  # not this run's table
    assert "00004-tx-4.parquet/transactions_rejects.csv" in written()


def test_customers_repeated_across_files_count_toward_the_reject_limit(
    dask_client, dask_sample_files, tmp_path
):
    folder = tmp_path / "customers"
    _customers_in_two_files(dask_sample_files[2], folder, 50)  # 50 of 1,050 rows: 4.8%
    with pytest.raises(DataError, match=r"customers \(2 files; most rejected: b\.csv 100"):
        cluster.load_partitioned(
            dask_client, DataConfig(), tmp_path / "rejects", dask_sample_files[1], folder,
            lambda _: None, 3,
        )  # fmt: skip


def test_rows_are_counted_before_loading_through_gzip_and_zero_for_an_unreadable_file(tmp_path):
    frame = pd.DataFrame({"customer_id": range(300), "amount": 1.0})
    frame.to_csv(tmp_path / "a.csv.gz", index=False)
    frame.to_csv(tmp_path / "b.csv", index=False)
    frame.to_parquet(tmp_path / "c.parquet")
    (tmp_path / "d.parquet").write_text("not parquet")
    counts = [cluster._rows_in(tmp_path / n) for n in ("a.csv.gz", "b.csv", "c.parquet")]
    assert counts == [301, 301, 300]  # a CSV's lines: its rows and the header, at most
    assert cluster._rows_in(tmp_path / "d.parquet") == 0  # its load says what is wrong


def _overlapping_files(parts, folder, overlap: int, kind: str) -> tuple[pd.DataFrame, int]:
    """The parts as one table (three lines made anonymous sales; a column of the shop's own
    named `row`, as the rejects lists name theirs) written as a.<kind> and b.<kind>, b starting
    `overlap` lines before a ends, as yearly exports that share days, plus b's first line once
    more at its end (one file's own repeat); the table, and where b starts in it."""
    table = pd.concat(pd.read_parquet(p) for p in sorted(parts.iterdir())).reset_index(drop=True)
    assert not table.duplicated().any()  # the overlap is the table's only repeats
    table["row"] = "shop's own"
    end = len(table) // 2
    start = end - overlap
    table.loc[[start + 1, start + 5, end + 3], "customer_id"] = ""  # two in the overlap
    folder.mkdir()
    later = table.iloc[start:]
    for name, rows in (("a", table.iloc[:end]), ("b", pd.concat([later, later.iloc[:1]]))):
        if kind == "csv":
            rows.to_csv(folder / f"{name}.csv", index=False)
        else:
            rows.to_parquet(folder / f"{name}.parquet", index=False)
    return table, start


@pytest.mark.parametrize(("drop", "kind"), [(True, "parquet"), (False, "parquet"), (True, "csv")])
def test_lines_repeated_across_files_are_exact_duplicates_as_in_one_file(
    dask_client, dask_sample_files, feature_config, tmp_path, drop, kind
):
    """Exact duplicates were found within a file only: overlapping files kept the overlap,
    its customers' lines counted twice in their features, its anonymous sales twice."""
    overlap = 40
    table, start = _overlapping_files(dask_sample_files[1], tmp_path / "in", overlap, kind)
    a, b = (tmp_path / "in" / f"{name}.{kind}" for name in ("a", "b"))
    config = DataConfig().model_copy(
        update={"validation": DataConfig().validation.model_copy(update={"drop_duplicates": drop})}
    )
    # one process on the two files as one: the counts to match
    together = tmp_path / f"together.{kind}"
    if kind == "csv":  # the lines of both, one header
        together.write_text(a.read_text() + "".join(b.read_text().splitlines(True)[1:]))
    else:
        pd.concat(pd.read_parquet(p) for p in (a, b)).to_parquet(together, index=False)
    single = load_inputs(config, Paths(tmp_path / "single"), together).transactions.report
    said: list[str] = []
    rejects = tmp_path / "rejects"
    data = cluster.load_partitioned(
        dask_client, config, rejects, tmp_path / "in", dask_sample_files[2], said.append, 3
    )
    got = cluster.combined_report(data.reports, tmp_path / "in", rejects)
    counts = ("rows_read", "rows_checked", "rows_loaded", "duplicates", "anonymous")
    assert [getattr(got, n) for n in counts] == [getattr(single, n) for n in counts]
    assert got.duplicates == overlap + 1 and [r.duplicates for r in data.reports] == [0, 41]
    assert got.anonymous == (1 if drop else 3) + 2 and data.rows == single.rows_loaded
    assert got.anonymous_amount == pytest.approx(single.anonymous_amount)
    assert any(f"{overlap} repeat a line of an earlier file" in line for line in said), said
    # each line of the overlap once, as b's row with a's as the reason
    listed = pd.concat(pd.read_csv(p) for p in (rejects / "transactions_repeated").glob("*.csv"))
    listed = listed.sort_values("row")
    assert set(listed["file"]) == {str(b)}
    assert listed["row"].tolist() == list(range(1, overlap + 1))
    assert listed["reason"].tolist() == [
        f"exact duplicate of row {start + i + 1} of {a}" for i in range(overlap)
    ]
    own = pd.read_csv(rejects / f"00001-{b.name}" / "transactions_rejects.csv")
    assert own["reason"].tolist() == ["exact duplicate of row 1"]  # b's own repeat, not twice
    anonymous = sorted(rejects.glob("*/transactions_anonymous.csv"))
    unnamed = pd.concat(pd.read_csv(p) for p in anonymous)
    assert len(unnamed) == got.anonymous  # a repeat dropped is listed as one, not as a sale
    for path in anonymous:  # the shop's own `row` column kept its name where rows were taken out
        assert path.read_text().splitlines()[0].endswith(",row"), path
    if drop:  # the features of the table without its overlap
        path = tmp_path / "table.parquet"
        table.to_parquet(path, index=False)
        inputs = load_inputs(config, Paths(tmp_path / "t"), path, dask_sample_files[2])
        expected = build_features(
            inputs.transactions.frame, "2025-12-31", feature_config, inputs.customers_frame
        )
        frames = cluster.features_on_cluster(data, "2025-12-31", feature_config)
        pd.testing.assert_frame_equal(pd.concat(dask_client.gather(frames)).sort_index(), expected)


def test_the_anonymous_sales_lists_stay_without_repeats_when_lost_workers_make_dask_load_again(
    dask_client, dask_sample_files, tmp_path
):
    """A worker lost after the loading made Dask run a file's load again for the later steps,
    and that load wrote the file's list of anonymous sales whole again: the sales dropped as
    repeats of an earlier file's lines (listed as such) were back in it, listed twice and no
    longer matching the summary (tester L: 5,401 lines)."""
    _overlapping_files(dask_sample_files[1], tmp_path / "in", 40, "csv")
    rejects = tmp_path / "rejects"
    data = cluster.load_partitioned(
        dask_client, DataConfig(), rejects, tmp_path / "in", None, lambda _: None, 3
    )
    dask_client.gather(data.arrays)
    anonymous = sorted(rejects.glob("*/transactions_anonymous.csv"))
    report = cluster.combined_report(data.reports, tmp_path / "in", rejects)

    def lists() -> list[str]:
        return [path.read_text() for path in anonymous]

    written = lists()
    assert sum(len(text.splitlines()) - 1 for text in written) == report.anonymous == 3
    loaded = rejects / "00001-b.csv" / "transactions_rejects.csv"  # rewritten by b's load
    stamp = loaded.stat().st_mtime_ns
    # a partition lost: made again from every file's load (their results were released)
    victim = next(iter(dask_client.who_has(data.arrays[:1])[data.arrays[0].key]))
    pid = dask_client.run(os.getpid, workers=[victim])[victim]
    with contextlib.suppress(Exception):  # the worker dies while answering
        dask_client.run(os._exit, 1, workers=[victim])
    _wait_until_gone(pid)
    dask_client.gather(data.arrays)
    dask_client.wait_for_workers(2, timeout=60)  # the nanny restarted it for the next tests
    assert loaded.stat().st_mtime_ns != stamp  # b was loaded again
    assert lists() == written
