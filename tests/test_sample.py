"""The sample generator: deterministic, realistic, loadable, with its ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crm_ltv.features.config import SourceConfig, ValidationConfig
from crm_ltv.features.loading import load_campaigns, load_customers, load_transactions
from crm_ltv.features.sample import SampleData, generate_sample, write_sample


@pytest.fixture(scope="module")
def sample(small_sample_config) -> SampleData:
    return generate_sample(small_sample_config)


def test_same_seed_same_data_other_seed_other_data(small_sample_config, sample):
    again = generate_sample(small_sample_config)
    for name in ("transactions", "customers", "campaigns", "truth_customers", "truth_campaigns"):
        pd.testing.assert_frame_equal(getattr(sample, name), getattr(again, name))
    other = generate_sample(small_sample_config.model_copy(update={"seed": 7}))
    assert not other.transactions["amount"].equals(sample.transactions["amount"])


def test_shape_of_the_history(small_sample_config, sample):
    tx, truth = sample.transactions, sample.truth_customers
    n = small_sample_config.n_customers
    assert tx["customer_id"].nunique() == n == len(sample.customers) == len(truth)
    refunds = (tx["amount"] < 0).sum() / (tx["amount"] > 0).sum()
    assert 0.02 < refunds < 0.04  # about 3% of lines refunded
    assert tx["timestamp"].min() >= pd.Timestamp(small_sample_config.start_date)
    assert tx["timestamp"].max() < pd.Timestamp("2026-01-01")
    signup_year = sample.customers["signup_date"].dt.year.value_counts()
    assert signup_year[2025] > signup_year[2023] > 0  # acquisitions all along, growing
    alive = truth["alive_at_end"].mean()
    assert 0.1 < alive < 0.7  # many customers really stopped, others did not
    assert truth["purchase_rate_per_year"].std() > 1.0  # heterogeneous rates
    assert set(tx["category"].cat.categories) == set(small_sample_config.categories)
    assert tx.duplicated().sum() == 0  # no line repeated to the letter
    assert (tx["amount"] != 0).all()


def test_seasonality_and_customer_preferences(sample):
    tx = sample.transactions
    by_month = tx[tx["amount"] > 0].groupby(tx["timestamp"].dt.month).size()
    assert by_month[12] > 1.3 * by_month[2]  # the year-end peak
    weekend = tx["timestamp"].dt.day_of_week.isin([5]).mean()
    assert weekend > 1 / 7  # Saturdays busier than an average day
    top_share = tx.groupby("customer_id", observed=True)["category"].agg(
        lambda c: c.value_counts(normalize=True).iloc[0]
    )
    assert top_share.median() >= 0.5  # customers have favourite categories


def test_campaign_effects_are_visible_in_outcomes(sample):
    data = sample.campaigns.join(sample.truth_campaigns[["customer_type", "true_effect"]])
    assert set(data["group"]) == {"treatment", "control"}
    assert data["true_effect"].between(0, 1).all()
    strong = data[data["true_effect"] >= 0.1]
    lift = strong.groupby("group")["converted"].mean()
    assert lift["treatment"] - lift["control"] > 0.05
    extra = sample.truth_campaigns["extra_purchase"]
    assert not extra[sample.truth_campaigns["group"] == "control"].any()


def test_a_campaigns_extra_purchase_comes_after_its_send(small_sample_config):
    """Inside the response window, never earlier on the send's date (the default sample's
    size: 2 of its 488 extra purchases once fell before their send and did not convert)."""
    sample = generate_sample(small_sample_config.model_copy(update={"n_customers": 50_000}))
    extra = sample.truth_campaigns["extra_purchase"]
    assert extra.sum() > 400 and (sample.campaigns.loc[extra, "converted"] == 1).all()


def test_written_files_load_without_a_single_reject(tmp_path, sample, small_sample_config):
    written = write_sample(sample, tmp_path / "sample", small_sample_config)
    args = (SourceConfig(), ValidationConfig(max_reject_share=0.0), tmp_path / "rejects")
    tx = load_transactions(written["transactions"], *args)
    assert tx.report.rejected == 0 and tx.report.duplicates == 0
    assert tx.report.rows_loaded == len(sample.transactions)
    assert tx.frame["customer_id"].astype(str).str.len().eq(8).all()  # zero-padded ids kept
    assert load_customers(written["customers"], *args).report.rejected == 0
    assert load_campaigns(written["campaigns"], *args).report.rejected == 0
    truth = pd.read_parquet(written["truth_customers"])
    assert {"purchase_rate_per_year", "dropout_at", "expected_spend_per_year"} <= set(truth)
    assert np.isfinite(truth.filter(like="effect_").to_numpy()).all()


def test_a_record_that_cannot_be_written_leaves_the_earlier_sample_whole(
    tmp_path, monkeypatch, sample, small_sample_config
):
    """sample.json was written after the five tables were renamed (and after their lines were
    printed): a disk that filled at it, or `crm-ltv data | head -1`, left the new tables with
    no record, or the earlier one, which describes other tables (review 2, P3). It is one of
    the six written all or none."""
    import errno
    import json

    import crm_ltv.features.sample as sample_module

    folder = tmp_path / "sample"
    write_sample(sample, folder, small_sample_config)
    earlier = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert json.loads(earlier["sample.json"])["seed"] == small_sample_config.seed

    class FullDisk:
        @staticmethod
        def dumps(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sample_module, "json", FullDisk)
    other = generate_sample(small_sample_config.model_copy(update={"seed": 7}))
    with pytest.raises(OSError, match="No space left"):
        write_sample(other, folder, small_sample_config.model_copy(update={"seed": 7}))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == earlier  # and no part file
