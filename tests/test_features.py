"""Feature builders on tiny inline frames, every value computed by hand."""

from __future__ import annotations

import math
import re
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from crm_ltv.features.arrays import Codes, CustomerAttributes, TransactionArrays
from crm_ltv.features.builders import build_features, feature_columns
from crm_ltv.features.config import FeatureConfig
from crm_ltv.features.contract import DataError
from crm_ltv.features.registry import feature_registry
from crm_ltv.features.rfm import RfmCuts
from crm_ltv.features.sample import generate_sample
from tests.conftest import ROOT, frame, parsed_sample

CUTOFF = "2024-06-30"
COLUMNS = "customer_id timestamp amount order_id category channel"
ROWS = [
    ("001", "2024-01-10 12:00", 40.0, "A", "books", "online"),
    ("001", "2024-01-10 12:00", 10.0, "A", "toys", "online"),  # second line of order A
    ("001", "2024-04-01 09:00", 30.0, "B", "books", "store"),
    ("001", "2024-04-01 18:00", 20.0, "C", "books", "online"),  # same day, another order
    ("001", "2024-06-15 10:00", -10.0, "B", "books", "store"),  # refund
    ("001", "2024-06-29 08:00", 60.0, "D", "toys", "online"),
    ("001", "2024-07-05 10:00", 100.0, "E", "books", "online"),  # after the cutoff
    ("002", "2024-06-29 23:59:59", 5.0, "F", "music", "app"),
    ("003", "2024-05-01 10:00", -5.0, "G", "books", "online"),  # refund only: not a buyer
    ("004", "2024-07-01 10:00", 50.0, "H", "books", "online"),  # first purchase after cutoff
]


@pytest.fixture()
def tx() -> pd.DataFrame:
    return frame(ROWS, COLUMNS)


@pytest.fixture()
def features(tx: pd.DataFrame, feature_config: FeatureConfig) -> pd.DataFrame:
    return build_features(tx, CUTOFF, feature_config)


def test_population_is_customers_with_a_purchase_up_to_the_cutoff(features):
    assert features.index.tolist() == ["001", "002"]  # leading zeros kept, 003/004 left out
    assert features.index.name == "customer_id"


def test_rfm_basics(features):
    c = features.loc["001"]
    assert c["recency_days"] == 1
    assert c["frequency"] == 3  # Jan 10, Apr 1 (two orders), Jun 29
    assert c["n_orders"] == 4  # A, B, C, D
    assert c["monetary_total"] == pytest.approx(150.0)  # 160 bought - 10 refunded
    assert c["monetary_mean"] == pytest.approx(37.5)
    assert c["monetary_max"] == pytest.approx(60.0)  # A=50, B=30, C=20, D=60
    assert c["tenure_days"] == 172
    assert features.loc["002", "recency_days"] == 1  # 23:59:59 the day before the cutoff


def test_window_spend_and_orders(features):
    c = features.loc["001"]
    assert c["spend_30d"] == pytest.approx(50.0)  # -10 on Jun 15, 60 on Jun 29
    assert c["orders_30d"] == 1
    assert c["spend_90d"] == pytest.approx(100.0)  # from Apr 1 00:00 (exclusive)
    assert c["orders_90d"] == 3
    assert c["spend_180d"] == pytest.approx(150.0)
    assert c["orders_365d"] == 4
    assert c["spend_trend_90d"] == pytest.approx((100 - 50) / 150)
    assert c["orders_trend_90d"] == pytest.approx((3 - 1) / 4)


def test_inter_purchase_times_refunds_and_overdue(features):
    c = features.loc["001"]
    assert c["ipt_mean_days"] == pytest.approx(85.5)  # gaps of 82 and 89 days
    assert c["ipt_std_days"] == pytest.approx(3.5)
    assert c["overdue_ratio"] == pytest.approx(1 / 85.5)
    assert c["refund_rate"] == pytest.approx(10 / 160)
    single = features.loc["002"]
    assert math.isnan(single["ipt_mean_days"]) and math.isnan(single["overdue_ratio"])
    assert single["refund_rate"] == 0.0


def test_categories_and_channels(features):
    c = features.loc["001"]
    assert c["n_categories"] == 2
    p = np.array([90, 70]) / 160  # books 40+30+20, toys 10+60
    assert c["category_entropy"] == pytest.approx(-(p * np.log(p)).sum())
    assert c["favourite_category"] == "books"
    assert c["n_channels"] == 2
    assert c["main_channel"] == "online"  # orders A, C, D online; B in store
    assert c["main_channel_share"] == pytest.approx(0.75)
    assert features.loc["002", "category_entropy"] == 0.0


def test_historic_ltv_and_lifecycle(features, feature_config):
    lifespan = feature_config.historic_ltv.lifespan_years
    expected = 37.5 * (4 / 172 * 365.25) * lifespan
    assert features.loc["001", "historic_ltv"] == pytest.approx(expected)
    assert features.loc["001", "lifecycle_stage"] == "developing"
    assert features.loc["002", "lifecycle_stage"] == "new"


def test_customer_table_features(tx, feature_config):
    customers = pd.DataFrame(
        {
            "customer_id": ["001", "002"],
            "signup_date": pd.to_datetime(["2024-01-01", "2024-07-01"]),  # 002: after cutoff
            "acquisition_channel": ["referral", "social"],
        }
    )
    out = build_features(tx, CUTOFF, feature_config, customers=customers)
    assert out.loc["001", "days_since_signup"] == 181
    assert math.isnan(out.loc["002", "days_since_signup"])
    assert out["acquisition_channel"].tolist() == ["referral", "social"]


def test_columns_follow_the_registry(tx, feature_config):
    names = [s.name for s in feature_registry(feature_config)]
    customers = pd.DataFrame(
        {"customer_id": ["001"], "signup_date": ["2024-01-01"], "acquisition_channel": ["x"]}
    )
    assert build_features(tx, CUTOFF, feature_config, customers).columns.tolist() == names
    bare = build_features(tx[["customer_id", "timestamp", "amount"]], CUTOFF, feature_config)
    expected = [s.name for s in feature_registry(feature_config) if s.requires is None]
    assert bare.columns.tolist() == expected


def test_orders_without_order_id_are_distinct_purchase_timestamps(tx, feature_config):
    out = build_features(tx.drop(columns="order_id"), CUTOFF, feature_config)
    assert out.loc["001", "n_orders"] == 4  # the two 12:00 lines on Jan 10 are one order


def test_an_order_is_one_whatever_lies_between_its_lines(feature_config):
    """Real exports interleave two invoices' lines at one timestamp, and an invoice's lines may
    carry two timestamps with another invoice between them: an order is a distinct order_id."""
    rows = [
        ("001", "2024-03-01 10:00", 100.0, "inv1", "books", "online"),
        ("001", "2024-03-01 10:00", 1.0, "inv2", "books", "online"),
        ("001", "2024-03-01 10:00", 100.0, "inv1", "books", "online"),
        ("001", "2024-03-01 10:05", 7.0, "inv3", "books", "store"),
        ("001", "2024-03-01 10:09", 50.0, "inv1", "books", "online"),  # inv1, later line
        ("001", "2024-06-01 10:00", 150.0, "inv4", "books", "online"),
        ("002", "2024-03-01 10:00", 5.0, "inv1", "books", "online"),  # another's inv1
    ]
    tx = frame(rows, COLUMNS)
    # the loader's order: by customer and time, lines of one timestamp as they came
    for rows_in in (tx, tx.sample(frac=1.0, random_state=1)):
        out = build_features(rows_in, CUTOFF, feature_config)
        c = out.loc["001"]
        assert c["n_orders"] == 4  # inv1, inv2, inv3, inv4
        assert c["monetary_max"] == pytest.approx(250.0)  # inv1: 100 + 100 + 50
        assert c["monetary_mean"] == pytest.approx(408.0 / 4)
        assert c["orders_30d"] == 1 and c["orders_365d"] == 4
        assert c["main_channel"] == "online" and c["main_channel_share"] == pytest.approx(0.75)
        assert out.loc["002", "n_orders"] == 1


@pytest.mark.parametrize("seed", range(20))
def test_orders_are_numbered_as_distinct_customer_and_id_pairs(seed):
    """The fast path (runs of one id, where ids rise within each customer) and the lookup of
    customers whose ids come back give what hashing every (customer, id) pair gives."""
    from crm_ltv.features.builders import _orders, _starts

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    pos = np.sort(rng.integers(0, 30, n))
    seconds = np.sort(rng.integers(0, 50, n))  # by customer, then time
    order = np.lexsort((seconds, pos))
    pos, seconds = pos[order], seconds[order]
    rising = np.cumsum(rng.integers(0, 2, n))  # ids that mostly rise with time ...
    codes = np.where(rng.random(n) < 0.2, rng.integers(0, 40, n), rising)  # ... or come back
    codes = np.where(rng.random(n) < 0.1, -1, codes)  # and rows without an id
    new_time = _starts(seconds) | _starts(pos)
    by_time = np.cumsum(new_time)
    pairs = pd.MultiIndex.from_arrays([pos, np.where(codes < 0, -by_time, codes)])
    expected = pd.factorize(pairs)[0]
    np.testing.assert_array_equal(_orders(pos, new_time, codes), expected)
    fast = pd.factorize(pd.MultiIndex.from_arrays([pos, rising]))[0]
    np.testing.assert_array_equal(_orders(pos, new_time, rising), fast)


def test_a_refund_that_cancels_its_purchases_leaves_zero(feature_config):
    """Sums of amounts are rounded to a millionth: 0.1 + 0.2 - 0.3 is 5.6e-17 in floats, which
    made a spend trend of -1 where nothing was spent in either window, and equal totals summed
    in another order fell on both sides of a quintile cut."""
    rows = [
        ("001", "2023-10-10 12:00", 5.0, "A", "books", "online"),  # before both windows
        ("001", "2024-05-10 12:00", 0.1, "B", "books", "online"),
        ("001", "2024-05-11 12:00", 0.2, "C", "books", "online"),
        ("001", "2024-05-12 12:00", -0.3, "C", "books", "online"),
        ("002", "2024-05-10 12:00", 0.3, "D", "books", "online"),
        ("003", "2024-05-10 12:00", 0.2, "E", "books", "online"),
        ("003", "2024-05-11 12:00", 0.1, "F", "books", "online"),
        ("004", "2024-05-10 12:00", 0.3, "G", "books", "online"),  # -2.8e-17: no -0.0 written
        ("004", "2024-05-11 12:00", -0.1, "G", "books", "online"),
        ("004", "2024-05-12 12:00", -0.2, "G", "books", "online"),
    ]
    out = build_features(frame(rows, COLUMNS), CUTOFF, feature_config)
    assert 0.1 + 0.2 - 0.3 != 0.0 and 0.2 + 0.1 != 0.3  # what the rounding is for
    assert 0.3 - 0.1 - 0.2 < 0.0
    money = out.select_dtypes("number").loc["004"]
    assert not np.signbit(money[money == 0.0]).any(), money[money == 0.0]
    assert out.loc["004", "spend_90d"] == 0.0 and out.loc["004", "monetary_total"] == 0.0
    assert out.loc["001", "spend_90d"] == 0.0 and out.loc["001", "spend_trend_90d"] == 0.0
    assert out.loc["001", "monetary_total"] == 5.0
    assert out.loc["002", "monetary_total"] == out.loc["003", "monetary_total"] == 0.3
    assert out.loc["002", "m_score"] == out.loc["003", "m_score"]


def test_input_is_not_modified_and_order_does_not_matter(tx, feature_config):
    before = tx.copy()
    sorted_result = build_features(tx, CUTOFF, feature_config)
    pd.testing.assert_frame_equal(tx, before)
    shuffled = tx.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(build_features(shuffled, CUTOFF, feature_config), sorted_result)
    as_categories = tx.astype({"customer_id": "category", "category": "category"})
    pd.testing.assert_frame_equal(
        build_features(as_categories, CUTOFF, feature_config), sorted_result
    )


def test_rare_categories_are_pooled_beyond_the_limit(tx, feature_config):
    config = feature_config.model_copy(update={"max_categories": 2})
    out = build_features(tx, CUTOFF, config)
    # up to the cutoff: books 3 purchase lines, toys 2, music 1 -> music becomes "(other)"
    assert out.loc["002", "favourite_category"] == "(other)"
    assert out.loc["001", "favourite_category"] == "books"


def test_a_requests_customers_pool_categories_as_the_population_did(feature_config):
    """A request's few customers are not a population: with 60 one-category customers and a
    cap of 50, the cap would pool 11 of them as "(other)" in a batch and none alone. With the
    labels the population's cap kept (the bundle's `known_labels`), a customer's features are
    the population's in any batch, also where a kept label is nobody's favourite."""
    from crm_ltv.features.builders import feature_columns, kept_labels, population_label_counts

    rows = [(f"c{i:02d}", "2024-05-01 10:00", 10.0, f"o{i}", f"cat_{i:02d}", "web")
            for i in range(60)]  # fmt: skip
    # c60..c69 buy books most, and toys and garden (kept by the cap, nobody's favourite)
    for i in range(60, 70):
        rows += [(f"c{i}", "2024-05-02 10:00", 15.0, f"o{i}", "books", "web"),
                 (f"c{i}", "2024-05-02 10:00", 10.0, f"o{i}", "toys", "web"),
                 (f"c{i}", "2024-05-02 10:00", 10.0, f"o{i}", "garden", "web")]  # fmt: skip
    arrays = TransactionArrays.from_frame(frame(rows, COLUMNS))
    everyone = np.arange(arrays.n_customers)
    known = kept_labels(population_label_counts(arrays, CUTOFF), feature_config)
    assert known["category"][-1] == "(other)" and {"books", "toys", "garden"} < set(
        known["category"]
    )

    def features(customers, known_labels=None) -> pd.DataFrame:
        part = arrays.take(np.isin(arrays.customer.codes, customers))
        out = feature_columns(part, CUTOFF, feature_config, known_labels=known_labels)
        names = ["favourite_category", "n_categories", "category_entropy"]
        return pd.DataFrame({n: np.asarray(out.columns[n], dtype=object) for n in names},
                            index=out.customer_ids)  # fmt: skip

    population = features(everyone)
    assert population["favourite_category"].eq("(other)").sum() == 60 - 49 + 3
    alone = features(everyone[-1:])  # c69 alone: nothing pooled by its own few labels
    assert alone.loc["c69", "n_categories"] == 3
    for customers in (everyone[-1:], everyone[:5], everyone[55:65], everyone):
        pd.testing.assert_frame_equal(
            features(customers, known), population.loc[features(customers).index]
        )


def test_a_scored_file_pools_categories_as_the_model_kept_them(feature_config):
    """`crm-ltv score` pooled by the scored file's own counts, the service by the model's kept
    labels: a label common in the file but pooled in training was itself in one, "(other)" in
    the other, and the same customer got two scores."""
    from crm_ltv.features.builders import feature_columns

    config = feature_config.model_copy(update={"max_categories": 2})
    known = {"category": ("books", "toys", "(other)")}  # what training kept
    rows = [(f"c{i}", "2024-05-01 10:00", 10.0, f"o{i}", "garden", "web") for i in range(5)]
    rows += [("c9", "2024-05-01 10:00", 10.0, "o9", "books", "web")]
    tx = frame(rows, COLUMNS)
    own = build_features(tx, CUTOFF, config)
    assert own.loc["c0", "favourite_category"] == "garden"  # the file's own cap keeps it
    scored = build_features(tx, CUTOFF, config, known_labels=known)
    assert scored["favourite_category"].astype(str).tolist() == ["(other)"] * 5 + ["books"]
    arrays = TransactionArrays.from_frame(tx)
    for i, customer in enumerate(scored.index):
        alone = feature_columns(
            arrays.take(arrays.customer.codes == i), CUTOFF, config, known_labels=known
        )
        assert (
            str(alone.columns["favourite_category"][0])
            == scored.loc[customer, "favourite_category"]
        )


def test_no_buyer_before_the_cutoff_gives_an_empty_table(tx, feature_config):
    out = build_features(tx, "2023-01-01", feature_config)
    assert out.empty
    assert "recency_days" in out.columns


def test_missing_columns_and_bad_values_are_named(tx, feature_config):
    with pytest.raises(DataError, match=r"missing required column.*amount"):
        build_features(tx.drop(columns="amount"), CUTOFF, feature_config)
    bad = tx.assign(amount=tx["amount"].where(tx.index != 2, np.inf))
    with pytest.raises(DataError, match="1 row with a missing, non-numeric or infinite amount"):
        build_features(bad, CUTOFF, feature_config)
    with pytest.raises(DataError, match="cutoff 'not a date'"):
        build_features(tx, "not a date", feature_config)


def test_window_sums_stay_float_when_no_row_falls_in_a_window(feature_config):
    tx = frame([("a", "2023-01-01", 10.0)])
    out = build_features(tx, CUTOFF, feature_config)
    assert out["spend_30d"].dtype == "float64" and out.loc["a", "spend_30d"] == 0.0


def test_purchases_without_any_category_or_channel_give_missing_labels(feature_config):
    tx = frame(
        [("a", "2024-01-01", 10.0, None, None), ("a", "2024-01-02", -3.0, "books", "web")],
        "customer_id timestamp amount category channel",
    )
    out = build_features(tx, CUTOFF, feature_config)
    assert pd.isna(out.loc["a", "favourite_category"]) and out.loc["a", "n_categories"] == 0
    assert pd.isna(out.loc["a", "main_channel"]) and math.isnan(out.loc["a", "main_channel_share"])


def test_season_places_the_cutoff_in_the_year(feature_config):
    tx = frame([("a", "2023-05-01", 10.0)])
    new_year = build_features(tx, "2024-01-01", feature_config)
    assert new_year.loc["a", "season_sin"] == pytest.approx(0.0)
    assert new_year.loc["a", "season_cos"] == pytest.approx(1.0)
    midsummer = build_features(tx, "2024-07-02", feature_config)
    assert midsummer.loc["a", "season_cos"] == pytest.approx(-1.0, abs=1e-3)


def test_history_share_reads_tenure_against_the_shops_history(tx, feature_config):
    # the data begin 2024-01-10 with 001's first order, 172 days before the cutoff
    share = build_features(tx, CUTOFF, feature_config)["history_share"]
    assert share["001"] == pytest.approx(1.0)
    assert share["002"] == pytest.approx(1 / 172)
    earlier = build_features(tx, CUTOFF, feature_config, history_start=pd.Timestamp("2023-12-31"))
    assert earlier.loc["001", "history_share"] == pytest.approx(172 / 182)
    # a customer known from before a model's training history began counts as since its start
    later = build_features(tx, CUTOFF, feature_config, history_start=pd.Timestamp("2024-03-01"))
    assert later.loc["001", "history_share"] == 1.0


def test_one_customers_rows_read_the_history_from_the_given_start(tx, feature_config):
    """A request holds its own customer's lines only: without the model's history start, a
    customer who bought first yesterday would look known since the data began."""
    own = tx[tx["customer_id"] == "002"]
    assert build_features(own, CUTOFF, feature_config).loc["002", "history_share"] == 1.0
    start = pd.Timestamp(tx["timestamp"].min())
    alone = build_features(own, CUTOFF, feature_config, history_start=start)
    assert alone.loc["002", "history_share"] == pytest.approx(1 / 172)


def _as_request_lists(tx: pd.DataFrame, order: list[str]) -> TransactionArrays:
    """What the service hands the builders: per customer (in `order`), its rows as lists."""
    groups = {cid: rows for cid, rows in tx.groupby("customer_id", sort=False)}
    rows = pd.concat([groups[c] for c in order])

    def text(name: str) -> list[str | None]:
        return [None if pd.isna(v) else str(v) for v in rows[name]]

    return TransactionArrays.from_lists(
        order,
        [len(groups[c]) for c in order],
        [t.to_pydatetime() for t in rows["timestamp"]],
        rows["amount"].tolist(),
        text("order_id"),
        text("category"),
        text("channel"),
    )


def test_request_lists_give_the_features_of_the_frame(small_sample_config, feature_config):
    """The service's path (lists, no DataFrame) equals the training path, value for value."""
    sample = generate_sample(small_sample_config.model_copy(update={"n_customers": 400}))
    tx, customers = parsed_sample(sample)
    rng = np.random.default_rng(0)
    tx = tx.astype({"customer_id": str, "order_id": object, "category": object})
    tx["timestamp"] = tx["timestamp"].astype("datetime64[us]")
    gaps = rng.random(len(tx)) < 0.05  # some lines without order id or category
    tx.loc[gaps, "order_id"] = None
    tx.loc[rng.random(len(tx)) < 0.05, "category"] = None
    tx.loc[tx.index[0], "timestamp"] += pd.Timedelta(microseconds=700_001)  # sub-second
    customers = customers.astype({"customer_id": str})
    customers.loc[customers.index[:20], "signup_date"] = pd.NaT
    customers.loc[customers.index[20:40], "acquisition_channel"] = None
    cutoff = pd.Timestamp("2024-09-30")
    cuts = RfmCuts.of(build_features(tx, cutoff, feature_config, customers))
    expected = build_features(tx, cutoff, feature_config, customers, cuts)

    order = list(rng.permutation(tx["customer_id"].unique()))  # request order, not sorted
    attributes = CustomerAttributes(
        pd.Index(customers["customer_id"], dtype=object),
        customers["signup_date"].to_numpy(),
        Codes.from_values([None if pd.isna(v) else v for v in customers["acquisition_channel"]]),
    )
    got = feature_columns(_as_request_lists(tx, order), cutoff, feature_config, attributes, cuts)
    assert len(got) == len(expected) > 150
    pd.testing.assert_frame_equal(got.frame().loc[expected.index], expected)


def test_request_lists_must_add_up():
    with pytest.raises(ValueError, match="n_rows add up to 3, not 2 rows"):
        TransactionArrays.from_lists(
            ["a"], [3], [datetime(2024, 1, 1)] * 2, [1.0, 2.0], [None] * 2, [None] * 2, [None] * 2
        )


def test_same_weeks_last_year_lie_wholly_before_the_cutoff(feature_config):
    """spend/orders_last_year_90d: (cutoff - 365 days, cutoff - 275 days], nothing later."""
    rows = [
        ("001", "2023-06-30 10:00", 10.0, "A", "books", "online"),  # a year and a day: out
        ("001", "2023-07-02 10:00", 20.0, "B", "books", "online"),  # in
        ("001", "2023-09-28 10:00", 40.0, "C", "books", "online"),  # window ends 09-29 00:00
        ("001", "2023-10-01 10:00", 80.0, "D", "books", "online"),  # past the 90 days: out
        ("001", "2024-06-29 10:00", 5.0, "E", "books", "online"),
    ]
    c = build_features(frame(rows, COLUMNS), CUTOFF, feature_config).loc["001"]
    assert c["spend_last_year_90d"] == pytest.approx(60.0)
    assert c["orders_last_year_90d"] == 2


def test_every_feature_stays_within_its_registry_bounds(small_sample_config, feature_config):
    """The service refuses feature rows outside these bounds, so the builders must never make
    one: checked on a sample with refunds, categories, channels and signups, early and late."""
    tx, customers = parsed_sample(generate_sample(small_sample_config))
    bounded = [s for s in feature_registry(feature_config) if (s.low, s.high) != (None, None)]
    for cutoff in ("2023-04-15", "2025-06-30"):
        table = build_features(tx, cutoff, feature_config, customers)
        for spec in bounded:
            values = table[spec.name].dropna().to_numpy("float64")
            assert len(values), (cutoff, spec.name)
            if spec.low is not None:
                assert values.min() >= spec.low, (cutoff, spec.name, values.min())
            if spec.high is not None:
                assert values.max() <= spec.high, (cutoff, spec.name, values.max())
            # the service refuses 2.5 orders: whole numbers wherever the registry says so, and
            # every integer column of the builders said so
            if spec.integer:
                assert np.all(values == np.round(values)), (cutoff, spec.name)
            if pd.api.types.is_integer_dtype(table[spec.name]):
                assert spec.integer, (cutoff, spec.name)


def test_the_readme_feature_table_says_what_the_registry_says(feature_config):
    """The README's feature table is the registry's, one row per feature (the window rows
    grouped): a definition changed in one and not the other misled an audit (tester N: the
    last-year window read as a calendar date, the season's angle not given)."""
    specs = {spec.name: spec.description for spec in feature_registry(feature_config)}
    table = (ROOT / "README.md").read_text().split("## Features", 1)[1].split("\n\n**", 1)[0]
    rows = re.findall(r"^\| (`.+?`) \| (.+?) \| [^|]*\|$", table, re.MULTILINE)
    named = {name: text for names, text in rows for name in re.findall(r"`(\w+)`", names)}
    assert sorted(named) == sorted(specs)
    single = {names.strip("`"): text for names, text in rows if "," not in names}
    assert len(single) > 20
    assert {name: specs[name] for name in single} == single
    # a grouped row says each window's text with N for its days
    for names, text in rows:
        for name in re.findall(r"`(\w+)`", names) if "," in names else ():
            days = re.search(r"_(\d+)d$", name).group(1)
            assert re.sub(rf"\b{days}\b", "N", specs[name]) == text, (name, specs[name], text)
