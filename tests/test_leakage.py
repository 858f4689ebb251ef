"""No leakage: what happens after the cutoff changes no feature; after the window, no label."""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_ltv.features.builders import build_features
from crm_ltv.features.labels import build_labels
from crm_ltv.features.snapshots import build_snapshots

START = pd.Timestamp("2023-01-01")
CUTOFF = pd.Timestamp("2024-01-01")
HORIZON_DAYS = 90
SPAN_S = 2 * 365 * 86_400
CUTOFF_S = int((CUTOFF - START).total_seconds())

customers = st.sampled_from(["001", "01", "1", "b", "c", "zz"])
amounts = st.sampled_from([-30.0, -5.0, 0.0, 4.5, 10.0, 25.0, 120.0])
labels = st.sampled_from(["books", "toys", "home", None])
channels = st.sampled_from(["online", "store", "app"])
orders = st.sampled_from(["o1", "o2", "o3", "o4", "o5"])


def _row(seconds: st.SearchStrategy[int]) -> st.SearchStrategy[tuple]:
    return st.tuples(customers, seconds, amounts, orders, labels, channels)


any_time = st.integers(0, SPAN_S)
after_cutoff = st.integers(CUTOFF_S + 1, SPAN_S)
edits = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "retime", "amount", "category", "channel", "order"]),
        st.integers(0, 10_000),
        _row(after_cutoff),
    ),
    max_size=8,
)


def _frame(rows: list[tuple]) -> pd.DataFrame:
    out = pd.DataFrame(
        rows, columns=["customer_id", "seconds", "amount", "order_id", "category", "channel"]
    )
    out.insert(1, "timestamp", START + pd.to_timedelta(out.pop("seconds"), unit="s"))
    return out


def _edit_future(rows: list[tuple], changes: list[tuple], after_s: int) -> list[tuple]:
    """Apply edits touching only rows later than `after_s` (or adding such rows)."""
    rows = list(rows)
    for kind, pick, new in changes:
        later = [i for i, r in enumerate(rows) if r[1] > after_s]
        if kind == "add":
            rows.append((*new[:1], max(new[1], after_s + 1), *new[2:]))
            continue
        if not later:
            continue
        i = later[pick % len(later)]
        if kind == "remove":
            rows.pop(i)
            continue
        field = {"retime": 1, "amount": 2, "order": 3, "category": 4, "channel": 5}[kind]
        value = max(new[1], after_s + 1) if kind == "retime" else new[field]
        rows[i] = (*rows[i][:field], value, *rows[i][field + 1 :])
    return rows


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(_row(any_time), min_size=1, max_size=25), changes=edits)
def test_changes_after_the_cutoff_change_no_feature(history, changes, feature_config):
    before = build_features(_frame(history), CUTOFF, feature_config)
    after = build_features(_frame(_edit_future(history, changes, CUTOFF_S)), CUTOFF, feature_config)
    pd.testing.assert_frame_equal(before, after)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(_row(any_time), min_size=1, max_size=25), changes=edits)
def test_changes_after_the_label_window_change_no_label(history, changes):
    window_end = CUTOFF_S + HORIZON_DAYS * 86_400
    before = build_labels(_frame(history), CUTOFF, HORIZON_DAYS)
    after = build_labels(_frame(_edit_future(history, changes, window_end)), CUTOFF, HORIZON_DAYS)
    pd.testing.assert_frame_equal(before, after)


def test_snapshot_features_ignore_their_own_label_window(feature_config):
    rows = [
        ("a", 0, 10.0, "o1", "books", "online"),
        ("a", CUTOFF_S + 86_400, 50.0, "o2", "toys", "store"),  # inside the label window
        ("b", 100, 20.0, "o3", "home", "app"),
        ("b", SPAN_S, 1.0, "o4", "home", "app"),  # keeps the window inside the data
    ]
    snaps = build_snapshots(_frame(rows), [CUTOFF], HORIZON_DAYS, feature_config)
    a = snaps.set_index("customer_id").loc["a"]
    assert a["monetary_total"] == 10.0 and a["future_value"] == 50.0 and a["churned"] == 0


def test_the_test_window_s_level_reads_nothing_after_the_test_cutoff(
    small_sample_config, feature_config
):
    """The evaluation fit's level (training.datasets.LevelTarget) comes from the validation
    labels and the shop's windows before the test cutoff: changing every later line changes
    neither it, nor the refit's when the edit is past the last transaction's window."""
    from crm_ltv.features.sample import generate_sample
    from crm_ltv.training.config import SnapshotConfig, SplitConfig
    from crm_ltv.training.datasets import build_time_split

    sample = generate_sample(small_sample_config)
    tx = sample.transactions.assign(timestamp=pd.to_datetime(sample.transactions["timestamp"]))
    snapshots, split = SnapshotConfig(), SplitConfig()
    before = build_time_split(tx, snapshots, split, feature_config)
    later = tx["timestamp"] > before.plan.test
    changed = tx.copy()
    changed.loc[later, "amount"] = changed.loc[later, "amount"] * 3 + 1
    after = build_time_split(changed, snapshots, split, feature_config)
    assert after.levels["evaluation"] == before.levels["evaluation"]
    assert after.levels["refit"] != before.levels["refit"]  # the edit did reach the newest window
