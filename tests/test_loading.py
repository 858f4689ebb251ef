"""Loading and validation: every error names the file, column or row; nothing is lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crm_ltv.features.config import SourceConfig, ValidationConfig
from crm_ltv.features.contract import DataError
from crm_ltv.features.loading import (
    id_of,
    id_text,
    line_hashes,
    load_campaigns,
    load_customers,
    load_transactions,
)

HEADER = "customer_id,timestamp,amount,category\n"
GOOD = [
    "007,2024-01-01 10:00:00,10.50,books",
    "007,2024-01-03 09:00:00,-4.00,books",  # refund: kept
    "0100,2024-01-02 12:00:00,20,toys",
]


def _write(tmp_path: Path, lines: list[str], header: str = HEADER, name: str = "tx.csv") -> Path:
    path = tmp_path / name
    path.write_text(header + "\n".join(lines) + "\n")
    return path


def _load(path: Path, tmp_path: Path, source: SourceConfig | None = None, **validation):
    return load_transactions(
        path, source or SourceConfig(), ValidationConfig(**validation), tmp_path / "rejects"
    )


def test_good_rows_load_typed_sorted_with_ids_as_text(tmp_path):
    loaded = _load(_write(tmp_path, GOOD), tmp_path)
    tx = loaded.frame
    assert tx["customer_id"].astype(str).tolist() == ["007", "007", "0100"]
    assert tx["amount"].tolist() == [10.5, -4.0, 20.0]
    assert pd.api.types.is_datetime64_any_dtype(tx["timestamp"])
    assert loaded.report.rows_read == 3 and loaded.report.rows_loaded == 3
    assert loaded.report.rejected == 0 and loaded.report.duplicates == 0
    rejects = pd.read_csv(loaded.report.rejects_path)
    assert rejects.empty and list(rejects.columns[:2]) == ["row", "reason"]


def test_column_mapping_and_timestamp_format(tmp_path):
    path = _write(tmp_path, ["0042;31/12/2023 23:15;12,5"], header="Cust;When;Amt\n")
    source = SourceConfig(
        columns={"customer_id": "Cust", "timestamp": "When", "amount": "Amt"},
        timestamp_format="%d/%m/%Y %H:%M",
        sep=";",
    )
    with pytest.raises(DataError, match="non-numeric amount \\(column 'Amt'\\)"):
        _load(path, tmp_path, source, max_reject_share=0.0)
    path = _write(tmp_path, ["0042;31/12/2023 23:15;12.5"], header="Cust;When;Amt\n")
    tx = _load(path, tmp_path, source).frame
    assert tx.loc[0, "customer_id"] == "0042"
    assert tx.loc[0, "timestamp"] == pd.Timestamp("2023-12-31 23:15")


def test_short_rows_are_rejected_and_long_rows_named_by_line(tmp_path):
    short = _load(_write(tmp_path, [*GOOD, "9,2024-01-01 10:00:00"]), tmp_path, max_reject_share=1)
    assert pd.read_csv(short.report.rejects_path)["reason"].tolist() == ["missing amount"]
    with pytest.raises(DataError, match="Expected 4 fields in line 5, saw 6"):
        _load(_write(tmp_path, [*GOOD, "9,2024-01-01 10:00:00,1,b,x,y"]), tmp_path)


def test_tab_separated_files_need_no_separator_option(tmp_path):
    path = _write(
        tmp_path, ["007\t2024-01-01 10:00:00\t3"], "customer_id\ttimestamp\tamount\n", "t.tsv"
    )
    assert _load(path, tmp_path).frame["amount"].tolist() == [3.0]


def test_missing_required_column_lists_the_columns_present(tmp_path):
    path = _write(tmp_path, ["a,2024-01-01,1"], header="client,timestamp,amount\n")
    with pytest.raises(DataError) as err:
        _load(path, tmp_path)
    assert "missing required column 'customer_id'" in str(err.value)
    assert "columns present: client, timestamp, amount" in str(err.value)
    mapped = SourceConfig(columns={"customer_id": "cust"})
    with pytest.raises(DataError, match="'customer_id' \\(mapped to 'cust'\\)"):
        _load(path, tmp_path, mapped)


@pytest.mark.parametrize("amount", ["1", "68,79"])  # a decimal comma: a field beyond the header
def test_a_wrong_separator_is_suggested(tmp_path, amount):
    path = _write(tmp_path, [f"a;2024-01-01;{amount}"], header="customer_id;timestamp;amount\n")
    with pytest.raises(DataError, match="is the separator ';'\\? set --sep ';' or transactions"):
        _load(path, tmp_path)


def test_unknown_mapping_name_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"names 'client'.*contract columns: customer_id"):
        _load(_write(tmp_path, GOOD), tmp_path, SourceConfig(columns={"client": "x"}))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (",2024-01-01 10:00:00,1,books", "missing customer_id"),
        ("  ,2024-01-01 10:00:00,1,books", "missing customer_id"),
        ("9,yesterday,1,books", "unparsable timestamp 'yesterday'"),
        ("9,2024-02-30 10:00:00,1,books", "unparsable timestamp '2024-02-30 10:00:00'"),
        ("9,,1,books", "missing timestamp"),
        ("9,2024-01-01 10:00:00,ten,books", "non-numeric amount 'ten'"),
        ("9,2024-01-01 10:00:00,,books", "missing amount"),
        ("9,2024-01-01 10:00:00,inf,books", "infinite amount 'inf'"),
        ("9,2024-01-01 10:00:00,-Infinity,books", "infinite amount '-Infinity'"),
        ("9,2024-01-01 10:00:00,NaN,books", "non-numeric amount 'NaN'"),
        ("9,2024-01-01 10:00:00,1e308,books", "amount beyond +-1e+12 '1e308'"),
        ("9,2024-01-01 10:00:00,-2e12,books", "amount beyond +-1e+12 '-2e12'"),
        (
            "9,1899-12-31 23:00:00,1,books",
            "timestamp outside the years 1900..2199 '1899-12-31 23:00:00'",
        ),
        (
            "9,2200-01-01 00:00:00,1,books",
            "timestamp outside the years 1900..2199 '2200-01-01 00:00:00'",
        ),
    ],
)
def test_each_bad_row_is_rejected_with_its_reason_and_row(tmp_path, line, reason):
    loaded = _load(
        _write(tmp_path, [*GOOD, line]), tmp_path, max_reject_share=0.5, anonymous_lines="reject"
    )
    assert loaded.report.rejected == 1 and loaded.report.rows_loaded == 3
    rejects = pd.read_csv(loaded.report.rejects_path, dtype=str, keep_default_na=False)
    assert rejects["row"].tolist() == ["4"]
    assert rejects["reason"].tolist() == [reason]
    assert reason.split(" '")[0] in loaded.report.summary()


def test_several_problems_in_one_row_are_all_named(tmp_path):
    loaded = _load(
        _write(tmp_path, [*GOOD, ",when,x,books"]),
        tmp_path,
        max_reject_share=0.5,
        anonymous_lines="reject",
    )
    reason = pd.read_csv(loaded.report.rejects_path)["reason"].iloc[0]
    assert reason == "missing customer_id; unparsable timestamp 'when'; non-numeric amount 'x'"


def test_too_many_rejects_fail_with_the_count_and_keep_the_rejects_file(tmp_path):
    lines = [f"{i},2024-01-01 10:00:00,{i},books" for i in range(90)]
    lines += ["9,nope,1,books", "9,2024-01-01 10:00:00,bad,books"]
    with pytest.raises(DataError) as err:
        _load(_write(tmp_path, lines), tmp_path)
    message = str(err.value)
    assert "2 of 92 rows (2.17%) rejected, above the limit of 1.00%" in message
    assert "unparsable timestamp 1" in message and "non-numeric amount 1" in message
    assert len(pd.read_csv(tmp_path / "rejects" / "transactions_rejects.csv")) == 2
    assert _load(_write(tmp_path, lines), tmp_path, max_reject_share=0.05).report.rejected == 2


def test_exact_duplicates_are_reported_and_dropped_or_kept(tmp_path):
    path = _write(tmp_path, [*GOOD, GOOD[0], GOOD[0]])
    dropped = _load(path, tmp_path)
    assert dropped.report.duplicates == 2 and dropped.report.rows_loaded == 3
    rejects = pd.read_csv(dropped.report.rejects_path)
    assert rejects["reason"].tolist() == ["exact duplicate of row 1"] * 2
    assert rejects["row"].tolist() == [4, 5]
    assert "2 exact duplicate rows dropped" in dropped.report.summary()
    kept = _load(path, tmp_path, drop_duplicates=False)
    assert kept.report.duplicates == 2 and kept.report.rows_loaded == 5


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.csv", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _touch(d / "empty.csv", b""), "file is empty"),
        (lambda d: _touch(d / "header.csv", HEADER.encode()), "has no data rows"),
        (lambda d: _touch(d / "data.xlsx", b"PK\x03\x04"), "unsupported file type"),
        (lambda d: _touch(d / "bad.parquet", b"not parquet at all"), "not a readable Parquet"),
        (
            lambda d: _touch(d / "latin.csv", HEADER.encode() + b"1,2024-01-01,3,caf\xe9\n"),
            "not a text CSV file in utf-8",
        ),
    ],
)
def test_unreadable_inputs_get_one_clear_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DataError, match=message) as err:
        _load(path, tmp_path)
    assert str(path) in str(err.value)


def _touch(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_parquet_with_numeric_ids_and_zone_aware_times(tmp_path):
    path = tmp_path / "tx.parquet"
    pd.DataFrame(
        {
            "customer_id": [12, 12, 7],
            "timestamp": pd.to_datetime(["2024-01-01T10:00:00+02:00"] * 3),
            "amount": [1.0, 2.0, 3.0],
        }
    ).to_parquet(path)
    tx = _load(path, tmp_path).frame
    assert tx["customer_id"].astype(str).tolist() == ["12", "12", "7"]
    assert tx["timestamp"].iloc[0] == pd.Timestamp("2024-01-01 08:00")  # UTC, zone dropped


def test_customers_table_rules(tmp_path):
    path = _write(
        tmp_path,
        ["001,2023-05-01,referral,12.5", "002,,organic,0", "001,2023-06-01,social,3", "003,,x,-1"],
        header="customer_id,signup_date,acquisition_channel,acquisition_cost\n",
        name="customers.csv",
    )
    loaded = load_customers(
        path, SourceConfig(), ValidationConfig(max_reject_share=1), tmp_path / "r"
    )
    assert loaded.frame["customer_id"].astype(str).tolist() == ["001", "002"]
    reasons = pd.read_csv(loaded.report.rejects_path)["reason"].tolist()
    assert reasons == ["repeated customer_id '001'", "acquisition_cost below 0 '-1'"]


def test_campaigns_table_rules(tmp_path):
    path = _write(
        tmp_path,
        [
            "001,2024-01-01 09:00:00,win_back,Treatment,1,20",
            "002,2024-01-01 09:00:00,win_back,control,no,0",
            "003,2024-01-01 09:00:00,win_back,holdout,1,0",
            "004,2024-01-01 09:00:00,win_back,control,maybe,0",
            "005,2024-01-01 09:00:00,winback_discount,control,1,0",
        ],
        header="customer_id,sent_at,action,group,converted,revenue\n",
        name="campaigns.csv",
    )
    loaded = load_campaigns(
        path, SourceConfig(), ValidationConfig(max_reject_share=1), tmp_path / "r"
    )
    assert loaded.frame["group"].tolist() == ["treatment", "control", "control"]
    assert loaded.frame["converted"].tolist() == [True, False, True]
    # any action loads: the A/B analysis reads it and marks it outside the catalogue
    assert loaded.frame["action"].astype(str).tolist()[-1] == "winback_discount"
    reasons = pd.read_csv(loaded.report.rejects_path)["reason"].tolist()
    assert reasons == [
        "group not treatment/control 'holdout'",
        "converted not 0/1/true/false 'maybe'",
    ]
    assert pd.read_csv(loaded.report.rejects_path)["row"].tolist() == [3, 4]


@pytest.mark.parametrize("drop_duplicates", [True, False])
def test_a_contact_on_rows_that_disagree_is_rejected_every_copy(tmp_path, drop_duplicates):
    """One customer's send of one action on two rows with another outcome or group was counted
    twice; which row is right is not known, so neither is kept. Rows alike in every column are
    duplicates (reported once, not also rejects); another action at the same send is another
    contact."""
    path = _write(
        tmp_path,
        [
            "001,2024-01-01 09:00:00,win_back,treatment,1,20",
            "001,2024-01-01 09:00:00,win_back,treatment,0,0",  # another outcome
            "002,2024-01-01 09:00:00,win_back,treatment,0,0",
            "002,2024-01-01T09:00:00,win_back,control,0,0",  # the other group, same instant
            "003,2024-01-01 09:00:00,win_back,control,0,0",
            "003,2024-01-01 09:00:00,win_back,control,0,0",  # an exact duplicate
            "004,2024-01-01 09:00:00,win_back,control,1,5",
            "004,2024-01-01 09:00:00,win_back,control,1,5",  # exact, but for row 9:
            "004,2024-01-01 09:00:00,win_back,control,0,0",
            "001,2024-01-01 09:00:00,vip_invitation,control,0,0",  # another action
        ],
        header="customer_id,sent_at,action,group,converted,revenue\n",
        name="campaigns.csv",
    )
    validation = ValidationConfig(max_reject_share=1, drop_duplicates=drop_duplicates)
    loaded = load_campaigns(path, SourceConfig(), validation, tmp_path / "r")
    kept = loaded.frame["customer_id"].astype(str) + " " + loaded.frame["action"].astype(str)
    copies = 1 if drop_duplicates else 2
    assert kept.tolist() == ["003 win_back"] * copies + ["001 vip_invitation"]
    report = loaded.report
    # row 8 repeats row 7 exactly: a duplicate when dropped, else one of the rows that disagree
    assert report.rejected == (6 if drop_duplicates else 7)
    assert report.duplicates == (2 if drop_duplicates else 1)
    why = "customer_id, sent_at and action repeated with other values"
    assert report.reasons == {why: report.rejected}
    assert f"{why} {report.rejected}" in report.summary()
    rejects = pd.read_csv(report.rejects_path)
    assert rejects["row"].is_unique  # no row listed twice
    reasons = dict(zip(rejects["row"], rejects["reason"], strict=True))
    assert reasons[1] == reasons[2] == f"{why} (rows 1, 2)"
    assert reasons[3] == reasons[4] == f"{why} (rows 3, 4)"
    assert reasons[6] == "exact duplicate of row 5"
    if drop_duplicates:
        assert reasons[7] == reasons[9] == f"{why} (rows 7, 9)"
        assert reasons[8] == "exact duplicate of row 7"
    else:
        assert reasons[7] == reasons[8] == reasons[9] == f"{why} (rows 7, 8, 9)"
    limited = ValidationConfig(max_reject_share=0.5, drop_duplicates=drop_duplicates)
    with pytest.raises(DataError, match=f"{why} {report.rejected}"):  # over the reject limit
        load_campaigns(path, SourceConfig(), limited, tmp_path / "r")


@pytest.mark.parametrize("drop_duplicates", [True, False])
def test_a_contact_on_rows_that_read_alike_is_one_contact_not_a_reject(tmp_path, drop_duplicates):
    """Rows of one contact written otherwise (`1` and `true`, a 'T' in the time, `20` and
    `20.0`) or differing in a column the contract does not read were rejected, every copy, as
    'repeated with other values': they are one contact, the first row kept."""
    path = _write(
        tmp_path,
        [
            "005,2024-01-01 09:00:00,win_back,treatment,1,20,export-1",
            "005,2024-01-01T09:00:00,win_back,treatment,true,20.0,export-2",
            "006,2024-01-01 09:00:00,win_back,control,0,0,export-1",
        ],
        header="customer_id,sent_at,action,group,converted,revenue,note\n",
        name="campaigns.csv",
    )
    validation = ValidationConfig(drop_duplicates=drop_duplicates)
    loaded = load_campaigns(path, SourceConfig(), validation, tmp_path / "r")
    assert loaded.report.rejected == 0 and loaded.report.duplicates == 1
    copies = ["005"] if drop_duplicates else ["005", "005"]
    assert loaded.frame["customer_id"].astype(str).tolist() == [*copies, "006"]
    rejects = pd.read_csv(loaded.report.rejects_path)
    assert rejects[["row", "reason"]].values.tolist() == [[2, "same contact as row 1, read alike"]]


LINES = "Invoice,StockCode,Quantity,InvoiceDate,Price,Customer ID\n"
RETAIL = SourceConfig(
    columns={
        "customer_id": "Customer ID",
        "timestamp": "InvoiceDate",
        "quantity": "Quantity",
        "unit_price": "Price",
        "order_id": "Invoice",
    }
)


def test_amount_is_quantity_times_unit_price_without_an_amount_column(tmp_path):
    path = _write(
        tmp_path,
        ["1,85048,12,2024-01-01 10:00:00,2.5,007", "C2,85048,-2,2024-01-09 10:00:00,2.5,007"],
        LINES,
    )
    tx = _load(path, tmp_path, RETAIL).frame
    assert tx["amount"].tolist() == [30.0, -5.0]  # a cancellation is a refund
    assert tx["unit_price"].tolist() == [2.5, 2.5]


def test_lines_without_quantity_or_a_numeric_unit_price_are_rejected_with_the_reason(tmp_path):
    lines = [
        "1,85048,12,2024-01-01 10:00:00,2.5,007",
        "2,85048,3,2024-01-02 10:00:00,,007",
        "3,85048,3,2024-01-03 10:00:00,cheap,007",
        "4,85048,,2024-01-04 10:00:00,1,007",
    ]
    loaded = _load(_write(tmp_path, lines, LINES), tmp_path, RETAIL, max_reject_share=1)
    assert loaded.frame["amount"].tolist() == [30.0]
    rejects = pd.read_csv(loaded.report.rejects_path)
    assert rejects["row"].tolist() == [2, 3, 4]
    assert rejects["reason"].tolist() == [
        "missing unit_price (column 'Price')",
        "non-numeric unit_price (column 'Price') 'cheap'",
        "missing quantity (column 'Quantity')",
    ]
    assert loaded.report.reasons == {
        "missing unit_price (column 'Price')": 1,
        "non-numeric unit_price (column 'Price')": 1,
        "missing quantity (column 'Quantity')": 1,
    }


def test_a_line_total_beyond_the_contract_bound_is_rejected_naming_its_factors(tmp_path):
    lines = ["1,85048,12,2024-01-01 10:00:00,2.5,007", "2,85048,1e9,2024-01-02 10:00:00,1e4,007"]
    loaded = _load(_write(tmp_path, lines, LINES), tmp_path, RETAIL, max_reject_share=1)
    assert loaded.frame["amount"].tolist() == [30.0]
    rejects = pd.read_csv(loaded.report.rejects_path)
    assert rejects["reason"].tolist() == ["amount (quantity x unit_price) beyond +-1e+12"]


def test_no_amount_and_no_unit_price_names_the_columns(tmp_path):
    path = _write(tmp_path, ["1,85048,12,2024-01-01 10:00:00,2.5,007"], LINES)
    no_price = RETAIL.model_copy(update={"columns": {**RETAIL.columns, "unit_price": "Cost"}})
    with pytest.raises(DataError) as err:
        _load(path, tmp_path, no_price)
    assert (
        "missing required column 'amount', and no quantity x unit_price to compute it from "
        "('unit_price' (mapped to 'Cost') missing); columns present: Invoice, StockCode"
    ) in str(err.value)


def test_anonymous_lines_are_reported_apart_and_kept_out_not_rejected(tmp_path):
    lines = [
        "1,85048,12,2024-01-01 10:00:00,2.5,007",
        "2,85048,4,2024-01-02 10:00:00,2.5,",
        "2,85048,4,2024-01-02 10:00:00,2.5,",  # an exact repeat: a duplicate, counted once
        "3,22041,-1,2024-01-03 10:00:00,3,  ",
        "4,22041,1,2024-01-04 10:00:00,x,",  # no id and no price: a reject, not a sale
    ]
    loaded = _load(_write(tmp_path, lines, LINES), tmp_path, RETAIL, max_reject_share=0.5)
    report = loaded.report
    assert loaded.frame["customer_id"].astype(str).tolist() == ["007"]
    assert (report.anonymous, report.anonymous_amount) == (2, 7.0)  # 4 x 2.5 - 3
    # the base of the reject share is what the summary leaves: 5 read - 2 anonymous (the
    # repeated anonymous line is counted once, as a duplicate, and checked like any duplicate)
    assert (report.rejected, report.duplicates, report.rows_checked) == (1, 1, 3)
    assert "rejected 1 row (33.33% of 3 checked)" in report.summary()
    assert "1 exact duplicate row dropped" in report.summary()
    assert "anonymous sales: 2 rows with no customer_id (column 'Customer ID'), net amount " in (
        report.summary()
    )
    assert "left out of customer features" in report.summary()
    anonymous = pd.read_csv(report.anonymous_path)
    assert anonymous["row"].tolist() == [2, 4]
    assert set(anonymous["reason"]) == {"no customer_id (column 'Customer ID')"}

    with pytest.raises(DataError, match=r"4 of 5 rows \(80.00%\) rejected"):
        _load(_write(tmp_path, lines, LINES), tmp_path, RETAIL, anonymous_lines="reject")
    rejected = _load(
        _write(tmp_path, lines, LINES), tmp_path, RETAIL, max_reject_share=1,
        anonymous_lines="reject",
    ).report  # fmt: skip
    assert rejected.anonymous == 0 and rejected.anonymous_path is None
    assert rejected.reasons["missing customer_id (column 'Customer ID')"] == 4
    assert not (tmp_path / "rejects" / "transactions_anonymous.csv").exists()  # no stale list


def test_anonymous_lines_with_bad_values_are_rejects_not_sales(tmp_path):
    """An anonymous line gets the checks of any other: a sale whose amount or time cannot be
    read is not counted as one (a net amount of inf), it is a reject with its reason, counted
    in the reject share."""
    lines = [
        "007,2024-01-01 10:00:00,10",
        ",2024-01-02 10:00:00,5",  # a valid anonymous sale
        ",2024-01-02 10:00:00,abc",
        ",2024-01-02 10:00:00,1e400",
        ",garbage,3",
        ",2024-01-02 10:00:00,",
    ]
    path = _write(tmp_path, lines, "customer_id,timestamp,amount\n")
    report = _load(path, tmp_path, max_reject_share=1).report
    assert (report.rows_loaded, report.anonymous, report.anonymous_amount) == (1, 1, 5.0)
    assert (report.rejected, report.rows_checked) == (4, 5)
    assert "net amount 5.00" in report.summary()
    rejects = pd.read_csv(report.rejects_path)
    assert rejects["row"].tolist() == [3, 4, 5, 6]
    assert rejects["reason"].tolist() == [
        "non-numeric amount 'abc'",
        "infinite amount '1e400'",
        "unparsable timestamp 'garbage'",
        "missing amount",
    ]
    assert pd.read_csv(report.anonymous_path)["row"].tolist() == [2]
    with pytest.raises(DataError, match=r"4 of 5 rows \(80.00%\) rejected"):
        _load(path, tmp_path)


def test_lines_are_excluded_by_value_and_by_prefix_counted_per_rule(tmp_path):
    lines = [
        "1,85048,12,2024-01-01 10:00:00,2.5,007",
        "1,POST,1,2024-01-01 10:00:00,18,007",
        "2,POST,1,2024-01-02 10:00:00,18,",  # excluded, so not anonymous either
        "A3,B,1,2024-01-03 10:00:00,-100,",
        "4,BANK CHARGES,1,2024-01-04 10:00:00,oops,007",  # excluded before validation
    ]
    source = RETAIL.model_copy(
        update={
            "exclude": {"StockCode": ("POST", "BANK CHARGES", "DOT")},
            "exclude_prefix": {"Invoice": ("A",)},
        }
    )
    loaded = _load(_write(tmp_path, lines, LINES), tmp_path, source, max_reject_share=0)
    report = loaded.report
    assert report.excluded == {
        "StockCode='POST'": 2,
        "StockCode='BANK CHARGES'": 1,
        "StockCode='DOT'": 0,  # listed: a rule that matches nothing may be a typo
        "Invoice starting 'A'": 1,
    }
    assert (report.rows_loaded, report.rejected, report.anonymous) == (1, 0, 0)
    assert "excluded by rule (not rejects): 4 rows: StockCode='POST' 2" in report.summary()
    assert "StockCode" not in report.ignored_columns
    excluded = pd.read_csv(report.excluded_path)
    assert excluded["row"].tolist() == [2, 3, 4, 5]
    assert excluded["reason"].tolist()[2:] == ["Invoice starting 'A'", "StockCode='BANK CHARGES'"]


def test_an_exclusion_on_a_column_the_file_lacks_names_it(tmp_path):
    path = _write(tmp_path, ["1,85048,12,2024-01-01 10:00:00,2.5,007"], LINES)
    source = RETAIL.model_copy(update={"exclude": {"Stock Code": ("POST",)}})
    with pytest.raises(DataError, match="exclusion rule \\(exclude\\) names column 'Stock Code'"):
        _load(path, tmp_path, source)


def test_real_exports_load_as_their_shops_write_them(tmp_path):
    """What the audit of real exports found: decimal commas and grouped thousands, ids a
    spreadsheet wrote as floats, NULL markers, a trailing separator, spaces in the header,
    time zones on some lines only, and Latin-1 text."""
    european = _write(
        tmp_path,
        [
            "C1;2024-01-05 10:00:00;1.500,25",
            "C2;2024-01-06 10:00:00;12,50",
            "C3;2024-01-07 10:00:00;-3,00",
        ],
        header="customer_id;timestamp;amount\n",
    )
    source = SourceConfig(sep=";", decimal=",", thousands=".")
    assert _load(european, tmp_path, source).frame["amount"].tolist() == [1500.25, 12.5, -3.0]
    # read with the defaults, the decimal commas are rejected with the likely reason
    with pytest.raises(DataError, match="a decimal comma, or a comma grouping thousands\\?"):
        _load(european, tmp_path, SourceConfig(sep=";"))
    grouped = _write(
        tmp_path, ["C1;2024-01-05 10:00:00;1.500", "C2;2024-01-06 10:00:00;12.5"],
        header="customer_id;timestamp;amount\n",
    )  # fmt: skip
    report = _load(grouped, tmp_path, SourceConfig(sep=";")).report
    assert report.warnings == (
        "1 amount values like '1.500' read as decimals (1.5); if '.' groups thousands there, "
        "set thousands: '.' and decimal: ',' in configs/data.yaml",
    )
    assert "  warning: 1 amount values like '1.500'" in report.summary()

    ids = _write(
        tmp_path,
        [
            "13085.0,2024-01-05 10:00:00,10,",
            "13085,2024-01-06 10:00:00,5,",
            "NULL,2024-01-06 11:00:00,7,",
            "#N/A,2024-01-06 12:00:00,8,",
        ],
        header=" customer_id , timestamp,amount\n",  # spaces around names, a trailing comma
    )
    loaded = _load(ids, tmp_path)
    assert loaded.frame["customer_id"].astype(str).tolist() == ["13085", "13085"]
    assert loaded.frame["amount"].tolist() == [10.0, 5.0]
    assert loaded.report.anonymous == 2 and loaded.report.anonymous_amount == 15.0
    assert loaded.report.warnings == (
        "every row has more fields than the header: empty ones (a separator at the end of each "
        "line) are not read, rows with values there are rejected",
    )

    zones = _write(
        tmp_path,
        [
            "C1,2024-01-05T10:00:00+01:00,10",
            "C2,2024-01-06T10:00:00.250+01:00,5",
            "C3,2024-01-06 10:00:00,4",
            "C4,not a date,3",
        ],
        header="customer_id,timestamp,amount\n",
    )
    loaded = _load(zones, tmp_path, max_reject_share=0.5)
    assert loaded.frame["timestamp"].tolist() == [
        pd.Timestamp("2024-01-05 09:00"),
        pd.Timestamp("2024-01-06 09:00:00.250"),
        pd.Timestamp("2024-01-06 10:00"),  # no zone: taken as UTC, as the others are
    ]
    assert loaded.report.reasons == {"unparsable timestamp": 1}
    assert loaded.report.warnings == (
        "1 timestamp values without a time zone among 2 with one: taken as UTC",
    )

    latin = tmp_path / "latin.csv"
    latin.write_bytes(
        "customer_id,timestamp,amount,note\nC1,2024-01-05,10,Café\n".encode("latin-1")
    )
    with pytest.raises(
        DataError, match=r"not a text CSV file in utf-8 .*set encoding in configs/data.yaml"
    ):
        _load(latin, tmp_path)
    loaded = _load(latin, tmp_path, SourceConfig(encoding="latin-1"))
    assert loaded.report.rows_loaded == 1


def test_a_mapped_column_that_is_not_there_is_an_error_not_left_out(tmp_path):
    path = _write(
        tmp_path, ["C1,2024-01-05,10,I1"], header="customer_id,timestamp,amount,Invoice\n"
    )
    with pytest.raises(DataError, match="no column 'order_id' \\(mapped to 'InvoiceNo'\\)"):
        _load(path, tmp_path, SourceConfig(columns={"order_id": "InvoiceNo"}))
    loaded = _load(path, tmp_path, SourceConfig(columns={"order_id": "Invoice"}))
    assert loaded.frame["order_id"].astype(str).tolist() == ["I1"]


def test_a_header_name_given_twice_stops_loading_before_pandas_renames_it(tmp_path):
    """pandas reads a second 'amount' as 'amount.1', ignored: which amount was meant is not
    known. A column really named 'amount.1', or empty names after a trailing separator, load."""
    twice = _write(tmp_path, ["C1,2024-01-05,1,2"], header="customer_id,timestamp,amount,amount\n")
    with pytest.raises(DataError, match=r"tx.csv: the header names 'amount' more than once"):
        _load(twice, tmp_path)
    parquet = tmp_path / "twice.parquet"
    columns = [pa.array(["C1"]), pa.array(["2024-01-05"]), pa.array([1.0]), pa.array([2.0])]
    pq.write_table(
        pa.table(columns, names=["customer_id", "timestamp", "amount", "amount"]), parquet
    )
    with pytest.raises(DataError, match=r"twice.parquet: the header names 'amount' more than once"):
        _load(parquet, tmp_path)

    own = _write(
        tmp_path, ["C1,2024-01-05,1,2,,"], header="customer_id,timestamp,amount,amount.1,,\n"
    )
    loaded = _load(own, tmp_path)
    assert loaded.frame["amount"].tolist() == [1.0]
    assert loaded.report.ignored_columns[0] == "amount.1"


def test_one_file_column_read_as_two_contract_columns_is_an_error(tmp_path):
    """Mapping amount to the file's customer_id column would load the ids as amounts too."""
    path = _write(tmp_path, ["17,2024-01-05,3,18"], header="customer_id,timestamp,amount,client\n")
    with pytest.raises(DataError) as err:
        _load(path, tmp_path, SourceConfig(columns={"amount": "customer_id"}))
    assert (
        "tx.csv: the column mapping reads column 'customer_id' as 'customer_id' and 'amount' "
        "(mapped to 'customer_id'); each contract column needs a column of its own "
        "(transactions.columns in configs/data.yaml or --column; map an optional one to null to "
        "leave it unread)"
    ) in str(err.value)
    both = SourceConfig(columns={"customer_id": "client", "order_id": "client"})
    with pytest.raises(DataError, match="reads column 'client' as 'customer_id' \\(mapped"):
        _load(path, tmp_path, both)
    # each contract column from a column of its own, however the file names them: fine
    swapped = SourceConfig(columns={"customer_id": "client", "amount": "customer_id"})
    loaded = _load(path, tmp_path, swapped)
    assert loaded.frame["customer_id"].astype(str).tolist() == ["18"]
    assert loaded.frame["amount"].tolist() == [17.0]
    # a file whose 'channel' column holds categories: channel mapped to null is not read
    shop = _write(
        tmp_path, ["17,2024-01-05,3,books"], header="customer_id,timestamp,amount,channel\n"
    )
    unread = SourceConfig(columns={"category": "channel", "channel": None})
    loaded = _load(shop, tmp_path, unread)
    assert loaded.frame["category"].astype(str).tolist() == ["books"]
    assert "channel" not in loaded.frame.columns
    with pytest.raises(DataError, match=r"missing required column 'amount' \(mapped to null"):
        _load(shop, tmp_path, SourceConfig(columns={"amount": None}))


def test_parquet_written_from_an_indexed_frame_or_with_lists_loads(tmp_path):
    frame = pd.DataFrame(
        {"customer_id": ["C1", "C1", "C2"], "timestamp": pd.to_datetime(["2024-01-05"] * 3),
         "amount": [10.0, 10.0, 4.0], "tags": [["a"], ["a"], ["b", "c"]]}
    )  # fmt: skip
    indexed = tmp_path / "indexed.parquet"
    frame.drop(columns="tags").set_index("customer_id").to_parquet(indexed)
    assert _load(indexed, tmp_path).report.rows_loaded == 2  # one exact duplicate dropped
    lists = tmp_path / "lists.parquet"
    frame.to_parquet(lists)
    loaded = _load(lists, tmp_path)
    assert loaded.report.rows_loaded == 2 and loaded.report.duplicates == 1


def test_customers_missing_from_the_customers_table_are_counted(tmp_path):
    """A float-written id (13085.0) now matches the customers table's 13085; an id the table
    lacks is said, not silently left without a channel or signup."""
    from crm_ltv.features.config import DataConfig
    from crm_ltv.features.inputs import load_inputs
    from crm_ltv.features.paths import Paths

    tx = _write(
        tmp_path,
        ["13085.0,2024-01-05,10", "C9,2024-01-05,3"],
        header="customer_id,timestamp,amount\n",
    )
    customers = tmp_path / "cu.csv"
    customers.write_text("customer_id,signup_date,acquisition_channel\n13085,2023-01-01,web\n")
    said: list[str] = []
    inputs = load_inputs(DataConfig(), Paths(tmp_path), tx, customers, said.append)
    assert inputs.customers_frame["customer_id"].astype(str).tolist() == ["13085"]
    assert "warning: 1 of 2 customers of tx.csv are not in cu.csv" in "\n".join(said)


def test_numbers_fields_and_names_that_would_load_wrong_are_refused(tmp_path):
    """What a review of the first fixes found: a number that does not follow the declared
    marks, a row whose unquoted comma shifted its values, a misspelt amount beside quantity and
    unit price, a header naming a column twice once trimmed, a file column named 'row'."""
    marks = SourceConfig(sep=";", decimal=",", thousands=".")
    path = _write(
        tmp_path,
        ["C1;2024-01-05;12.50", "C2;2024-01-05;1.2.3,4", "C3;2024-01-05;1 234,5",
         "C4;2024-01-05;1.234,5", "C5;2024-01-05;-7"],
        header="customer_id;timestamp;amount\n",
    )  # fmt: skip
    loaded = _load(path, tmp_path, marks, max_reject_share=1.0)
    assert loaded.frame["amount"].tolist() == [1234.5, -7.0]
    assert loaded.report.reasons == {"non-numeric amount": 3}
    french = SourceConfig(sep=";", decimal=",", thousands=" ")
    path = _write(tmp_path, ["C1;2024-01-05;1\u00a0234,5"], header="customer_id;timestamp;amount\n")
    assert _load(path, tmp_path, french).frame["amount"].tolist() == [1234.5]

    shifted = _write(
        tmp_path,
        ["C1,2024-01-05,Mug,1,10,", "C2,2024-01-06,Pack, 6,3,7.5", "C3,2024-01-07,Cup,2,4,"],
        header="customer_id,timestamp,description,quantity,amount\n",
    )
    loaded = _load(shifted, tmp_path, max_reject_share=0.5)
    assert loaded.frame["amount"].tolist() == [10.0, 4.0]
    assert loaded.report.reasons == {"more fields than the header's 5": 1}
    rejects = pd.read_csv(loaded.report.rejects_path)
    assert rejects["row"].tolist() == [2]

    path = _write(tmp_path, ["C1,2024-01-05,2,3.5"], header="customer_id,timestamp,qty,price\n")
    misspelt = SourceConfig(columns={"amount": "Totl", "quantity": "qty", "unit_price": "price"})
    with pytest.raises(DataError, match="no column 'amount' \\(mapped to 'Totl'\\)"):
        _load(path, tmp_path, misspelt)
    path = _write(tmp_path, ["C1,2024-01-05,1,2"], header="customer_id,timestamp,amount,amount \n")
    with pytest.raises(DataError, match="the header names 'amount' more than once"):
        _load(path, tmp_path)
    path = _write(tmp_path, ["C1,2024-01-05,x,1", "C1,2024-01-05,x,1"],
                  header="customer_id,timestamp,row,amount\n")  # fmt: skip
    rejects = pd.read_csv(_load(path, tmp_path).report.rejects_path)
    assert rejects.columns[:2].tolist() == ["row", "reason"] and len(rejects) == 1


def test_one_id_reads_as_a_column_of_ids_reads():
    """The service reads its ids one by one (`id_of`), the loader a column (`id_text`): one
    customer either way. '13085.00' was left as it is (only '.0' endings were read)."""
    ids = ["13085", " 13085.0 ", "13085.00", "-7.0", "1300", "b.0", "0.5", "007", "", "  ",
           "NULL", "n/a", "None", "1.0e3", "A 1"]  # fmt: skip
    expected = ["13085", "13085", "13085", "-7", "1300", "b.0", "0.5", "007", None, None,
                None, None, None, "1.0e3", "A 1"]  # fmt: skip
    assert [id_of(i) for i in ids] == expected
    column = id_text(pd.Series(ids, dtype=object))
    assert [None if pd.isna(v) else v for v in column] == expected


def test_a_float_id_is_read_with_the_files_own_decimal_mark(tmp_path):
    """A European export (pandas' `to_csv(sep=';', decimal=',')` of float ids) wrote
    '12346,0': with `decimal: ','` it kept the comma, so the customer matched no other file.
    The file's own mark only: under '.', '1,000' may be an id grouped in thousands."""
    european = SourceConfig(sep=";", decimal=",", encoding="latin-1")
    lines = ["12346,0;2024-01-05 10:00:00;1,5", "12346;2024-01-06 10:00:00;2", "1.000;2024-01-07;3"]
    path = tmp_path / "tx.csv"
    path.write_bytes(("customer_id;timestamp;amount\n" + "\n".join(lines) + "\n").encode("latin-1"))
    loaded = _load(path, tmp_path, european)
    assert sorted(loaded.frame["customer_id"].astype(str)) == ["1.000", "12346", "12346"]
    customers = tmp_path / "cu.csv"
    customers.write_text("customer_id;acquisition_cost\n12346,0;2,5\n")
    read = load_customers(customers, european, ValidationConfig(), tmp_path / "rejects")
    assert read.frame["customer_id"].astype(str).tolist() == ["12346"]
    campaigns = tmp_path / "ca.csv"
    campaigns.write_text("customer_id;sent_at;action;group\n12346,0;2024-01-04;win_back;control\n")
    read = load_campaigns(campaigns, european, ValidationConfig(), tmp_path / "rejects")
    assert read.frame["customer_id"].astype(str).tolist() == ["12346"]
    point = id_text(pd.Series(["1,000", "12346,0", "12346.0"]))
    assert point.tolist() == ["1,000", "12346,0", "12346"]


def test_one_label_reads_as_a_column_of_labels_reads():
    """The service reads a transaction's category and channel one by one (`label_of`)."""
    from crm_ltv.features.loading import _as_text, label_of

    labels = [" books ", "books", "", "   ", "NULL", "Home & Garden", "\tweb\n"]
    column = _as_text(pd.Series(labels, dtype=object))
    assert [label_of(v) for v in labels] == [None if pd.isna(v) else v for v in column]
    assert label_of(" books ") == "books" and label_of("  ") is None


def test_line_hashes_are_alike_for_rows_alike_in_every_column_of_files_alike():
    """The Dask engine compares lines of several files by these: a Parquet file stores a
    number as int64 or float64, a time in ns or us, and lists do not hash."""
    rows = pd.DataFrame(
        {
            "id": [1, 2, 2],
            "at": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-02"]).as_unit("ns"),
            "tags": [["a"], ["b"], ["b"]],
        }
    )
    same = rows.assign(id=rows["id"].astype(float), at=rows["at"].dt.as_unit("us"))[
        ["tags", "at", "id"]
    ]  # other types, other column order
    hashes = line_hashes(rows)
    assert hashes[1] == hashes[2] != hashes[0]
    assert line_hashes(same).tolist() == hashes.tolist()
    assert not set(line_hashes(rows.rename(columns={"tags": "labels"}))) & set(hashes)
    assert not set(line_hashes(rows.assign(note=""))) & set(hashes)


SHOP = "Name;Email;Created at;Total;Customer ID\n"  # a shop's export saved by a spreadsheet


def test_ids_in_scientific_notation_are_rejected_as_cut_by_a_spreadsheet(tmp_path):
    """4,00000E+12 is any of ten million customers: read as an id, it merged 50,000 customers
    into 41 (tester E, finding 1). Such rows are rejects, counted in the reject share."""
    source = SourceConfig(
        columns={"customer_id": "Customer ID", "timestamp": "Created at", "amount": "Total",
                 "order_id": "Name"},
        sep=";", decimal=",",
    )  # fmt: skip
    lines = [f"#{i};c{i}@x.com;2024-01-05;1,50;{4000000000000 + i}" for i in range(1, 98)]
    lines += [
        "#98;a@x.com;2024-01-05;1,50;4,00000E+12",
        "#99;b@x.com;2024-01-05;2,50;4.00000e-12",
        "1E+11;c@x.com;2024-01-05;3,50;401",  # the order id this time
        "#100;d@x.com;2024-01-05;4,50;4E12",  # no exponent sign: a code, as written
        "#101;e@x.com;2024-01-05;4,50;12E-3",  # no spreadsheet writes these (review): codes
        "#102;f@x.com;2024-01-05;4,50;00012E-01",
    ]
    loaded = _load(_write(tmp_path, lines, header=SHOP), tmp_path, source, max_reject_share=0.05)
    cut = "a spreadsheet cut its digits; export the column as text"
    assert loaded.report.reasons == {
        f"customer_id (column 'Customer ID') in scientific notation ({cut})": 2,
        f"order_id (column 'Name') in scientific notation ({cut})": 1,
    }
    assert loaded.report.rejected == 3 and loaded.report.rows_loaded == 100
    rejects = pd.read_csv(loaded.report.rejects_path, dtype=str)
    assert rejects["row"].tolist() == ["98", "99", "100"]
    assert rejects["reason"].tolist()[0] == (
        f"customer_id (column 'Customer ID') in scientific notation ({cut}) '4,00000E+12'"
    )
    assert {"4E12", "12E-3", "00012E-01"} <= set(loaded.frame["customer_id"].astype(str))
    no_ids = _load(_write(tmp_path, ["#1;a@x.com;2024-01-05;1,50;"], header=SHOP), tmp_path, source)
    assert no_ids.report.anonymous == 1 and no_ids.report.rejected == 0  # no id at all: read

    whole = _write(tmp_path, lines[-6:-3], header=SHOP)  # every row: the reason stops the load
    with pytest.raises(DataError) as err:
        _load(whole, tmp_path, source)
    assert "3 of 3 rows (100.00%) rejected" in str(err.value)
    assert f"reasons: customer_id (column 'Customer ID') in scientific notation ({cut}) 2" in str(
        err.value
    )


def test_a_repeated_header_is_rejected_as_such_or_stops_loading_when_its_columns_moved(tmp_path):
    """Two exports joined (`cat`): the second header is a reject of its own; with its columns
    in another order, the rows after it would load quantities as amounts (tester E, finding
    2), so loading stops, naming the row and the columns that moved."""
    header = "customer_id,timestamp,amount,quantity\n"
    first = ["a,2024-01-01 10:00:00,10.50,1", "b,2024-01-02 10:00:00,20,2"]
    joined = _write(tmp_path, [*first, header.strip(), "c,2024-01-03 10:00:00,30,3"], header)
    loaded = _load(joined, tmp_path, max_reject_share=0.5)
    assert loaded.report.reasons == {"the header repeated (files joined?)": 1}
    assert loaded.report.rows_loaded == 3 and loaded.report.rejected == 1
    rejects = pd.read_csv(loaded.report.rejects_path, dtype=str)
    assert rejects[["row", "reason"]].values.tolist() == [
        ["3", "the header repeated (files joined?)"]
    ]
    assert loaded.frame["amount"].tolist() == [10.5, 20.0, 30.0]

    swapped = "customer_id,timestamp,quantity,amount"  # the later export's own order
    moved = _write(tmp_path, [*first, swapped, "c,2024-01-03 10:00:00,3,30"], header)
    with pytest.raises(DataError) as err:
        _load(moved, tmp_path, max_reject_share=0.5)
    assert str(err.value) == (
        f"{moved}: row 3 repeats the header with its columns in another order ('quantity' under "
        "'amount', 'amount' under 'quantity'): the rows after it would be read under the first "
        "header's names (files joined?); put the later export's columns in the first one's order"
    )
    # the later export's byte-order mark (Excel's "CSV UTF-8") before its header (review)
    marked = _write(tmp_path, [*first, "\ufeff" + swapped, "c,2024-01-03 10:00:00,3,30"], header)
    with pytest.raises(DataError, match="row 3 repeats the header with its columns in another"):
        _load(marked, tmp_path, max_reject_share=0.5)


def test_customer_ids_equal_but_for_case_are_counted_in_a_warning_not_folded(tmp_path):
    """An email typed 'A@x.com' on one line and 'a@x.com' on another is two customers, as the
    contract says; split customers lose their refunds unseen (tester E, finding 3)."""
    lines = [
        "a@x.com,2024-01-01 10:00:00,10,",
        "A@x.com,2024-01-02 10:00:00,5,",
        "A@X.COM,2024-01-03 10:00:00,-5,",
        "b@x.com,2024-01-01 10:00:00,7,",
        "B@x.com,2024-01-01 10:00:00,ten,",  # rejected: not a loaded id
        "c@x.com,2024-01-01 10:00:00,1,",
    ]
    loaded = _load(_write(tmp_path, lines), tmp_path, max_reject_share=0.5)
    assert loaded.report.warnings == (
        "3 customer_id values differ from another only in letter case (1 once lower-cased; "
        "e.g. 'A@X.COM' / 'A@x.com' / 'a@x.com'): read as different customers; lower-case the "
        "column if they are one (email addresses are)",
    )
    assert "  warning: 3 customer_id values differ" in loaded.report.summary()
    assert loaded.frame["customer_id"].nunique() == 5
    assert _load(_write(tmp_path, GOOD), tmp_path).report.warnings == ()
    # ids that are no emails may be case-sensitive by design (Salesforce's: review)
    coded = ["0015g00000AbCdE,2024-01-01 10:00:00,10,", "0015g00000abcde,2024-01-02 10:00:00,5,"]
    assert _load(_write(tmp_path, coded), tmp_path).report.warnings == ()


def test_a_currency_column_of_several_values_is_warned_of(tmp_path):
    """Amounts are summed as one currency; a 'Currency Code' column, ignored, that holds EUR
    and USD says the sums mix them (tester E, finding 4). Shares are of the loaded rows."""
    header = "customer_id,timestamp,amount,Currency Code\n"
    lines = [f"c{i},2024-01-01 10:00:00,{i},{'USD' if i % 4 == 0 else 'EUR'}" for i in range(1, 9)]
    lines += ["x,2024-01-01 10:00:00,bad,JPY", ",2024-01-01 10:00:00,3,JPY"]  # reject, anonymous
    loaded = _load(_write(tmp_path, lines, header), tmp_path, max_reject_share=0.5)
    assert loaded.report.ignored_columns == ("Currency Code",)
    assert loaded.report.warnings == (
        "amounts are summed as one currency, but column 'Currency Code' holds 2 values (EUR "
        "75.0%, USD 25.0% of the loaded rows with one); convert them to one currency first",
    )
    rates = [f"c{i},2024-01-01 10:00:00,{i},{1 + i / 100}" for i in range(1, 4)]  # numbers
    assert _load(_write(tmp_path, rates, "customer_id,timestamp,amount,currency_rate\n"),
                 tmp_path).report.warnings == ()  # fmt: skip
    one = [f"c{i},2024-01-01 10:00:00,{i},{'EUR' if i % 2 else 'eur'}" for i in range(1, 4)]
    single = _write(tmp_path, one, "customer_id,timestamp,amount,currency\n")
    assert _load(single, tmp_path).report.warnings == ()  # one currency, in either case
    named = _write(tmp_path, lines[:8], "customer_id,timestamp,amount,Presentment Currency\n")
    warned = _load(named, tmp_path).report.warnings[0]
    assert warned.startswith("amounts are summed as one currency, but column 'Presentment")


def test_lines_with_quantity_and_unit_price_both_negative_are_counted(tmp_path):
    """-2 x -10 is a purchase of 20: what the file says, but likelier a credit note (tester E,
    finding 6). A file's own amount column is read as it is: no warning then."""
    header = "Name,Email,Created at,Qty,Price\n"
    lines = ["#1,a@x.com,2024-01-05,2,10.00", "#2,a@x.com,2024-01-06,-2,-10.00",
             "#3,b@x.com,2024-01-05,1,5.00", "#4,b@x.com,2024-01-07,-1,5.00"]  # fmt: skip
    source = SourceConfig(
        columns={"customer_id": "Email", "timestamp": "Created at", "quantity": "Qty",
                 "unit_price": "Price", "order_id": "Name"},
    )  # fmt: skip
    loaded = _load(_write(tmp_path, lines, header), tmp_path, source)
    assert loaded.frame["amount"].tolist() == [20.0, 20.0, 5.0, -5.0]  # read as written
    assert loaded.report.warnings == (
        "1 line with both quantity (column 'Qty') and unit_price (column 'Price') negative: "
        "their amount (quantity x unit_price) is positive, read as a purchase (a credit note "
        "written with both signs? then make unit_price positive there to read it as a refund)",
    )
    with_amount = _write(tmp_path, [f"{line},-20" for line in lines], header.strip() + ",Total\n")
    given = SourceConfig(columns={**source.columns, "amount": "Total"})
    assert _load(with_amount, tmp_path, given).report.warnings == ()


# Ctrl-C at a random moment about the end of each of 600 reads (in a process of its own: the
# signal handlers are the process's); prints how many had not reached Python's handler soon
# after their read (pyarrow's handed them on to the next read of a CSV, if there was one).
# With pyarrow's handler about 4.5 in 600 did: a regression passes unseen about 1% of runs.
_CTRL_C_AT_A_READ_S_END = """
import os, random, signal, sys, threading, time
from pathlib import Path
from crm_ltv.features.loading import _read_csv
path = Path(sys.argv[1])
handled = []
signal.signal(signal.SIGINT, lambda signum, frame: handled.append(signum))
took = []
for _ in range(5):
    start = time.monotonic()
    _read_csv(path, ",", "utf-8")
    took.append(time.monotonic() - start)
took = sorted(took)[2]
random.seed(0)
late = 0
for _ in range(600):
    timer = threading.Timer(random.uniform(0.5 * took, 1.2 * took), os.kill,
                            (os.getpid(), signal.SIGINT))
    before = len(handled)
    timer.start()
    _read_csv(path, ",", "utf-8")
    timer.join()
    time.sleep(0.02)
    late += len(handled) == before
print(late)
"""


def test_ctrl_c_as_a_csv_read_ends_is_never_lost(tmp_path):
    """pyarrow's own handler of Ctrl-C during a read passed the signal on from a thread, and
    kept about 1 in 75 that landed as the read ended for its next read: a tune started with
    SIGINT ignored (a background job, which the CLI then handles) ran all its trials after
    one (CI)."""
    rows = [f"{i},2024-01-01 10:00:00,{i % 97}.50,books" for i in range(20_000)]
    path = _write(tmp_path, rows)
    done = subprocess.run(
        [sys.executable, "-c", _CTRL_C_AT_A_READ_S_END, str(path)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"], done.stdout
