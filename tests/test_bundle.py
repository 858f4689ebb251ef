"""The model bundle: self-contained, plain files, scores as the trained models do."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from crm_ltv.features.rfm import RfmCuts, quintile_scores
from crm_ltv.training import pipeline
from crm_ltv.training.baselines import BgNbdFeatures
from crm_ltv.training.bundle import FORMAT, MANIFEST, ModelBundle
from crm_ltv.training.errors import BundleError


def test_a_saved_bundle_scores_exactly_as_the_trained_models(small_split, small_trained, tmp_path):
    bundle = small_trained.bundle
    X = small_split.test[small_split.feature_names]
    loaded = ModelBundle.load(bundle.save(tmp_path / "bundle"))
    pd.testing.assert_frame_equal(loaded.predict(X), bundle.predict(X), rtol=0, atol=0)
    model = small_trained.churn  # its booster; the bundle's calibration holds the level
    churn = bundle.calibration.apply(model._raw(model.encode(bundle.bgnbd.transform(X))))
    np.testing.assert_array_equal(loaded.predict(X)["churn_probability"], churn)
    value = small_trained.ltv.predict(bundle.bgnbd.transform(X)) * bundle.ltv_scale
    np.testing.assert_allclose(loaded.predict(X)["predicted_value"], value, rtol=1e-12)
    assert loaded.ltv_scale == bundle.ltv_scale and loaded.level == bundle.level
    # the unit the LTV boosters learnt spend in, and their offset's floor (models.offset_floor)
    assert loaded.ltv_unit == bundle.ltv_unit == small_trained.ltv.unit_ > 1.0
    assert loaded.ltv_offset_floor == bundle.ltv_offset_floor == small_trained.ltv.offset_floor_
    assert loaded.encoding_key == bundle.encoding_key
    assert loaded.rfm_cuts == small_split.rfm_cuts and loaded.horizon_days == 90
    # the labels the category cap kept at the data's end, which a request's features pool by
    assert loaded.known_labels == bundle.known_labels == small_split.known_labels
    assert {"category", "channel"} <= set(loaded.known_labels)
    assert set(small_split.train["favourite_category"].dropna()) <= set(
        loaded.known_labels["category"]
    )
    # where the training history began, which a request's history_share reads from
    train = small_split.train
    first = (train["cutoff"] - pd.to_timedelta(train["tenure_days"], unit="D")).min()
    assert loaded.history_start == bundle.history_start == small_split.history_start
    assert loaded.history_start.normalize() == first.normalize()


def test_a_bundle_of_before_the_ltv_unit_scores_in_money(small_split, small_trained, tmp_path):
    """A bundle saved before its LTV boosters learnt spend in a unit (format /1 with no `unit`,
    no `offset_floor`) loads with unit 1 and the floor of one currency unit, as it was trained."""
    folder = small_trained.bundle.save(tmp_path / "bundle")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["format"] == FORMAT == "crm-ltv-bundle/2"
    del manifest["ltv"]["unit"], manifest["ltv"]["offset_floor"]
    manifest["format"] = "crm-ltv-bundle/1"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    old = ModelBundle.load(folder)
    assert old.ltv_unit == 1.0 and old.ltv_offset_floor == 1.0
    encoded = old.encode(small_split.test[small_split.feature_names])
    offset = encoded[:, list(old.model_features).index(old.ltv_offset)]
    value = (
        old.ltv_boosters[0].predict(encoded)
        * np.maximum(np.nan_to_num(offset), 1.0)
        * old.ltv_scale
    )
    np.testing.assert_allclose(old.predicted_value(encoded), value, rtol=1e-12)


def test_a_bundle_holds_plain_files_and_no_class_names(small_trained, tmp_path):
    folder = small_trained.bundle.save(tmp_path / "bundle")
    assert {p.suffix for p in folder.iterdir()} == {".json", ".txt"}  # no pickle, no skops
    manifest = json.loads((folder / MANIFEST).read_text())
    text = (folder / MANIFEST).read_text()
    assert "crm_ltv." not in text and "training." not in text and "Model" not in text
    assert manifest["bgnbd"]["bgnbd"] and manifest["rfm_cuts"]["recency"]
    assert set(manifest["features"]) < set(manifest["model_features"])  # plus BG/NBD's view


def test_a_folder_that_is_no_bundle_says_to_retrain(tmp_path):
    with pytest.raises(BundleError, match="retrain with `crm-ltv train`"):
        ModelBundle.load(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(BundleError, match="retrain"):
        ModelBundle.load(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "crm-ltv-bundle/1"}))
    with pytest.raises(BundleError, match="not a readable model bundle"):
        ModelBundle.load(tmp_path)


def test_a_bundle_labelled_1_with_a_unit_scores_as_it_was_trained(
    small_split, small_trained, tmp_path
):
    """Bundles of earlier on 2026-12-07 hold a unit and floor and say format /1: read as
    unit 1, 139 of 2,630 customers were valued up to 9.4 times higher (review)."""
    bundle = small_trained.bundle
    folder = bundle.save(tmp_path / "bundle")
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps(manifest | {"format": "crm-ltv-bundle/1"}))
    labelled = ModelBundle.load(folder)
    assert (labelled.ltv_unit, labelled.ltv_offset_floor) == (
        bundle.ltv_unit,
        bundle.ltv_offset_floor,
    )
    encoded = bundle.encode(small_split.test[small_split.feature_names])
    np.testing.assert_allclose(
        labelled.predicted_value(encoded), bundle.predicted_value(encoded), rtol=1e-12
    )


def test_a_bundle_whose_meaning_changed_has_a_format_of_its_own(small_trained, tmp_path):
    """Bundles with an LTV unit were labelled /1, as before: a crm-ltv of before scored them
    with no error, some customers' value up to 10 times too high (tester K). A /2 bundle
    without its unit is no bundle, and one of a newer crm-ltv says so."""
    folder = small_trained.bundle.save(tmp_path / "bundle")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["format"] != "crm-ltv-bundle/1"  # what a crm-ltv of before reads
    del manifest["ltv"]["unit"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"not a readable model bundle .*'unit'"):
        ModelBundle.load(folder)
    (folder / MANIFEST).write_text(json.dumps({**manifest, "format": "crm-ltv-bundle/3"}))
    with pytest.raises(BundleError, match="'crm-ltv-bundle/1' and 'crm-ltv-bundle/2': a bundle "
                       "of a newer crm-ltv"):  # fmt: skip
        ModelBundle.load(folder)


def test_bgnbd_inputs_are_fitted_once_on_the_newest_training_cutoff(
    small_split, train_config, monkeypatch
):
    fits = []
    original = BgNbdFeatures.fit

    def counted(self, X, y=None):
        fits.append(len(X))
        return original(self, X, y)

    monkeypatch.setattr(BgNbdFeatures, "fit", counted)
    trained = pipeline.train_models(small_split, train_config)
    newest = int((small_split.train["cutoff"] == small_split.train["cutoff"].max()).sum())
    assert fits == [newest] and newest < len(small_split.train)
    # the models' inputs are BG/NBD fitted as the gate's baseline is: each customer once
    assert trained.bundle.bgnbd.to_params() == trained.baselines["bgnbd"].to_params()


def test_rfm_scores_of_every_part_use_the_training_population_cut_points(small_split):
    cuts = small_split.rfm_cuts
    assert cuts == RfmCuts.of(small_split.train)
    for part in (small_split.train, small_split.valid, small_split.test):
        expected = quintile_scores(part["recency_days"], False, np.asarray(cuts.recency))
        np.testing.assert_array_equal(part["r_score"].to_numpy(), expected)
        expected = quintile_scores(part["monetary_total"], True, np.asarray(cuts.monetary))
        np.testing.assert_array_equal(part["m_score"].to_numpy(), expected)


def test_champions_of_two_runs_each_score_against_their_own_rfm_cut_points(
    small_split, small_bundle
):
    """The gates decide churn and LTV apart, so their champions may come from two runs whose
    RFM reference populations differ: each model gets the RFM scores it was trained with."""
    from dataclasses import replace

    from crm_ltv.features.builders import with_rfm_cuts
    from crm_ltv.training.scoring import Champion, Champions, score_customers

    cuts = small_split.rfm_cuts
    shifted = RfmCuts(*(tuple(v * 1.7 for v in part) for part in (cuts.recency, cuts.frequency,
                                                                   cuts.monetary)))  # fmt: skip
    other = replace(small_bundle, rfm_cuts=shifted)
    champions = Champions.pair(
        Champion("churn", "1", "churn", small_bundle), Champion("ltv", "2", "ltv", other)
    )
    assert not champions.encode_alike
    table = small_split.test.set_index("customer_id")[small_split.feature_names].head(300)
    scores = score_customers(table, champions)
    theirs = other.predict(with_rfm_cuts(table, shifted, _features_config()))
    np.testing.assert_array_equal(scores["predicted_value"], theirs["predicted_value"])
    assert (with_rfm_cuts(table, shifted, _features_config())["r_score"] != table["r_score"]).any()
    np.testing.assert_array_equal(
        scores["churn_probability"], small_bundle.predict(table)["churn_probability"]
    )


def _features_config():
    from crm_ltv.features.config import FeatureConfig, load_config
    from crm_ltv.features.paths import default_config_file

    return load_config(FeatureConfig, default_config_file("features"))


def test_scoring_with_another_features_config_is_warned_about(small_bundle):
    from dataclasses import replace

    from crm_ltv.features.config import config_digest
    from crm_ltv.training.scoring import Champion, Champions

    trained_with = _features_config()
    bundle = replace(small_bundle, metadata={"features_config": config_digest(trained_with)})
    champions = Champions.pair(
        Champion("churn", "3", "churn", bundle), Champion("ltv", "3", "ltv", bundle)
    )
    assert champions.features_config_warning(trained_with) is None
    edited = trained_with.model_copy(update={"windows_days": (30, 60)})
    warning = champions.features_config_warning(edited)
    assert warning is not None and "churn v3 and ltv v3 were trained with" in warning


def test_features_a_champion_reads_but_the_config_does_not_build_are_named(small_bundle):
    from crm_ltv.training.scoring import Champion, Champions

    bundle = small_bundle
    champions = Champions.pair(
        Champion("churn", "3", "churn", bundle), Champion("ltv", "4", "ltv", bundle)
    )
    config = _features_config()
    assert champions.unbuilt_features(config) is None
    edited = config.model_copy(update={"windows_days": (30, 60, 180, 365)})
    lacking = [n for n in ("spend_90d", "orders_90d") if n in bundle.feature_names]
    assert lacking, bundle.feature_names
    said = champions.unbuilt_features(edited, {"uplift v2": ("recency_days",)})
    assert said is not None and said.startswith(
        f"configs/features.yaml does not build {', '.join(lacking)}, which churn v3 and ltv v4 read"
    ), said
    said = champions.unbuilt_features(config, {"uplift v2": ("spend_7d",)})
    assert said is not None and "build spend_7d, which uplift v2 reads (" in said, said


def test_champions_read_history_share_from_the_start_of_the_run_that_has_one(
    small_sample_config, small_split, small_bundle
):
    """A churn champion from before the feature carries no start and does not read it; an LTV
    champion of a newer run does: its start is the pair's, not each file's or request's own."""
    from dataclasses import replace

    from crm_ltv.features.sample import generate_sample
    from crm_ltv.training.scoring import Champion, Champions, scoring_features
    from tests.conftest import parsed_sample

    start = small_bundle.history_start
    old = replace(small_bundle, history_start=None)
    champions = Champions.pair(
        Champion("churn", "1", "churn", old), Champion("ltv", "2", "ltv", small_bundle)
    )
    assert champions.history_start == start and champions.history_start_warning() is None
    # a file that begins later than the training history scores as the whole history does
    tx, _ = parsed_sample(generate_sample(small_sample_config))
    cutoff = small_split.plan.test
    later = start + pd.Timedelta(days=120)
    newcomers = tx.loc[tx["timestamp"] > later, "customer_id"].unique()
    newcomers = np.setdiff1d(newcomers, tx.loc[tx["timestamp"] <= later, "customer_id"])
    config = _features_config()
    whole = scoring_features(tx, cutoff, config, None, champions)
    part = scoring_features(tx[tx["customer_id"].isin(newcomers)], cutoff, config, None, champions)
    assert len(part) > 50
    pd.testing.assert_series_equal(part["history_share"], whole.loc[part.index, "history_share"])
    assert (part["history_share"] < 1).all()
    # two runs that began on other days: said, with what to do
    moved = replace(small_bundle, history_start=start + pd.Timedelta(days=30))
    champions = Champions.pair(
        Champion("churn", "1", "churn", small_bundle), Champion("ltv", "2", "ltv", moved)
    )
    warning = champions.history_start_warning()
    assert warning is not None and "churn v1 was trained on a history from" in warning
    assert "--pair" in warning and champions.history_start == start


def test_scoring_amounts_in_another_unit_than_the_training_ones_is_said(
    small_sample_config, small_split, small_bundle
):
    """Tester F: a file in cents scored by a model of euros read 0.73 to 155 times each
    customer's value, with no word; the value model reads the money unit."""
    from crm_ltv.features.sample import generate_sample
    from crm_ltv.training.scoring import Champion, Champions, scoring_features
    from tests.conftest import parsed_sample

    champions = Champions.pair(
        Champion("churn", "1", "churn", small_bundle), Champion("ltv", "1", "ltv", small_bundle)
    )
    tx, _ = parsed_sample(generate_sample(small_sample_config))
    config = _features_config()
    cutoff = small_split.plan.test
    same = scoring_features(tx, cutoff, config, None, champions)["monetary_total"]
    assert champions.money_unit_warning(same) is None
    cents = tx.assign(amount=tx["amount"] * 100)
    table = scoring_features(cents, cutoff, config, None, champions)
    pd.testing.assert_series_equal(table["monetary_total"], same * 100, rtol=1e-9)
    warning = champions.money_unit_warning(table["monetary_total"])
    assert warning is not None and "in another unit or currency" in warning
    low, high = min(champions.rfm_cuts.monetary), max(champions.rfm_cuts.monetary)
    assert f"buyers' median spend is {same[same > 0].median() * 100:,.2f}" in warning
    assert f"quintiles {low:,.2f} to {high:,.2f}" in warning
    thousandth = tx.assign(amount=tx["amount"] / 1_000)
    table = scoring_features(thousandth, cutoff, config, None, champions)
    assert champions.money_unit_warning(table["monetary_total"]) is not None
    refunds = pd.Series([-5.0, -1.0, 0.0])  # nothing bought: nothing to compare
    assert champions.money_unit_warning(refunds) is None
    # half the file's customers refunded all they bought: the median of every net total is a
    # buyer's smallest, which read as another unit (review of 2026-12-07)
    netted = pd.concat([same, pd.Series(-1.0, index=range(len(same) - 2))])
    assert netted.median() < min(champions.rfm_cuts.monetary) / 10
    assert champions.money_unit_warning(netted) is None
