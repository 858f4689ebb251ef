"""The LightGBM models: scikit-learn contract, input handling, and behaviour."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from crm_ltv.training.attributions import METHODS
from crm_ltv.training.bundle import KINDS
from crm_ltv.training.models import ChurnModel, LtvModel


def test_estimators_follow_the_scikit_learn_contract(small_split, train_config):
    model = ChurnModel(params={"num_leaves": 7}, n_estimators=20)
    assert clone(model).get_params() == model.get_params()
    assert not hasattr(model, "booster_")  # nothing fitted in __init__
    names = small_split.feature_names
    fitted = model.fit(
        small_split.train[names],
        small_split.train["churned"],
        eval_set=(small_split.valid[names], small_split.valid["churned"]),
    )
    assert fitted is model and model.n_features_in_ == len(names)
    with pytest.raises(ValueError, match="eval_set"):
        LtvModel().fit(small_split.train[names], small_split.train["future_value"])
    with pytest.raises(ValueError, match="not fitted"):
        LtvModel().predict(small_split.test[names])


def _raw(bundle, kind, encoded: np.ndarray) -> np.ndarray:
    """The model's raw score: the booster's, plus the baseline it boosts from (if any)."""
    if kind == "churn":
        base = bundle.base(encoded, "churn")
        raw = bundle.churn_booster.predict(encoded, raw_score=True)
        return raw if base is None else raw + base
    return np.log(bundle.predicted_value(encoded))


def test_probabilities_are_probabilities_and_contributions_add_up(small_split, small_bundle):
    X = small_split.test[small_split.feature_names]
    predicted = small_bundle.predict(X)
    p = predicted["churn_probability"]
    assert predicted.index.equals(X.index) and ((p >= 0) & (p <= 1)).all()
    assert "bgnbd_p_alive" in small_bundle.model_features  # BG/NBD feeds the models
    encoded = small_bundle.encode(X)
    contributions = small_bundle.contributions("churn", encoded, "shap")
    np.testing.assert_allclose(
        contributions.sum(axis=1), _raw(small_bundle, "churn", encoded), rtol=1e-6
    )
    assert (predicted["predicted_value"] >= 0).all()


def test_input_as_a_service_sends_it_scores_the_same(small_split, small_bundle):
    """Text instead of categories, floats instead of integers, columns in any order."""
    X = small_split.test[small_split.feature_names].head(50)
    sent = X.astype({c: str for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)})
    sent = sent.astype({c: "float64" for c in X.select_dtypes("integer").columns})[X.columns[::-1]]
    pd.testing.assert_frame_equal(small_bundle.predict(sent), small_bundle.predict(X))


def test_unknown_categories_count_as_missing_and_missing_features_are_named(
    small_split, small_bundle
):
    X = small_split.test[small_split.feature_names].head(5)
    odd = X.astype({"favourite_category": str}).assign(favourite_category="spaceships")
    assert np.isfinite(small_bundle.predict(odd).to_numpy()).all()
    with pytest.raises(ValueError, match="missing features: recency_days"):
        small_bundle.predict(X.drop(columns="recency_days"))
    with pytest.raises(ValueError, match="feature frequency: expected numbers"):
        small_bundle.predict(X.astype({"frequency": str}).assign(frequency="many"))


def _vary(X: pd.DataFrame, column: str, values: np.ndarray) -> pd.DataFrame:
    """Each customer repeated once per value of `column`, all else equal."""
    repeated = X.loc[X.index.repeat(len(values))].reset_index(drop=True)
    repeated[column] = np.tile(values, len(X)).astype(X[column].dtype)
    return repeated


def test_churn_risk_does_not_fall_as_recency_grows(small_split, small_bundle):
    X = small_split.test[small_split.feature_names]
    X = X[X["tenure_days"] >= 360].sample(200, random_state=0)
    grid = np.arange(0, 361, 30)  # recency stays within each customer's tenure
    p = small_bundle.predict(_vary(X, "recency_days", grid))["churn_probability"].to_numpy()
    p = p.reshape(len(X), len(grid))
    assert (np.diff(p, axis=1) >= -1e-12).all()
    # and it does rise, where recency can move alone: a customer of one purchase day has
    # recency = tenure, so the models may read their recency from tenure or history_share
    repeat = (X["frequency"] >= 2).to_numpy()
    assert repeat.sum() > 50
    assert (p[repeat, -1] > p[repeat, 0]).mean() > 0.9


def test_predicted_value_grows_with_past_spend(small_split, small_bundle):
    X = small_split.test[small_split.feature_names].sample(200, random_state=0)
    grid = np.array([10, 50, 100, 250, 500, 1000, 5000], dtype="float64")
    value = small_bundle.predict(_vary(X, "monetary_total", grid))["predicted_value"].to_numpy()
    value = value.reshape(len(X), len(grid))
    assert (np.diff(value, axis=1) >= -1e-9).all()
    assert (value[:, -1] > value[:, 0]).mean() > 0.9


@pytest.mark.parametrize("method", METHODS)
def test_both_contribution_methods_add_up_to_the_raw_score(small_split, small_bundle, method):
    encoded = small_bundle.encode(small_split.test[small_split.feature_names].head(300))
    for kind in KINDS:
        contributions = small_bundle.contributions(kind, encoded, method)
        raw = _raw(small_bundle, kind, encoded)
        np.testing.assert_allclose(contributions.sum(axis=1), raw, rtol=1e-9, atol=1e-9)
        assert np.abs(contributions[:, :-1]).max() > 0.01


def test_a_bundle_without_an_offset_scores_and_explains_in_its_unit(small_split, train_config):
    """Review 3: with an offset the LTV unit cancels; without one the bundle's value and its
    contributions' base must carry it (mutations dropping it passed every test)."""
    from crm_ltv.training.pipeline import train_models

    baselines = train_config.baselines.model_copy(update={"bgnbd_as_offset": False})
    trained = train_models(small_split, train_config.model_copy(update={"baselines": baselines}))
    bundle, X = trained.bundle, small_split.test[small_split.feature_names].head(300)
    assert bundle.ltv_offset is None and bundle.ltv_unit > 1.0
    value = trained.ltv.predict(bundle.bgnbd.transform(X)) * bundle.ltv_scale
    np.testing.assert_allclose(bundle.predict(X)["predicted_value"], value, rtol=1e-12)
    actual = small_split.test["future_value"].mean()  # in money, not units of 90-odd
    assert actual / 5 < value.mean() < actual * 5
    encoded = bundle.encode(X)
    for method in METHODS:
        contributions = bundle.contributions("ltv", encoded, method)
        np.testing.assert_allclose(contributions.sum(axis=1), _raw(bundle, "ltv", encoded),
                                   rtol=1e-9, atol=1e-9)  # fmt: skip


def test_path_attributions_share_shap_base_and_mostly_its_top_feature(small_split, small_bundle):
    encoded = small_bundle.encode(small_split.test[small_split.feature_names])
    for kind in KINDS:
        path = small_bundle.contributions(kind, encoded, "path")
        shap = small_bundle.contributions(kind, encoded, "shap")
        np.testing.assert_allclose(path[:, -1], shap[:, -1], rtol=1e-12)
        top = [np.abs(c[:, :-1]).argmax(axis=1) for c in (path, shap)]
        assert (top[0] == top[1]).mean() > 0.9
        assert not np.allclose(path, shap)  # two methods, not one
    with pytest.raises(ValueError, match="contribution method: expected one of"):
        small_bundle.contributions("churn", encoded[:2], "lime")  # type: ignore[arg-type]


def test_columns_by_name_encode_as_the_table_does(small_split, small_trained):
    """The service's form (arrays, Categoricals, or lists with None) gives the same matrix."""
    bundle = small_trained.bundle
    X = small_split.test[small_split.feature_names].head(50)
    arrays = {c: X[c].array if X[c].dtype == "category" else X[c].to_numpy() for c in X}
    lists = {
        c: [
            None if pd.isna(v) else (str(v) if X[c].dtype == "category" else float(v)) for v in X[c]
        ]
        for c in X
    }
    table = bundle.encode(X)
    np.testing.assert_array_equal(bundle.encode(arrays), table)
    np.testing.assert_array_equal(bundle.encode(lists), table)
    raw = _raw(bundle, "churn", table)
    calibrator = copy.deepcopy(small_trained.churn.calibrator_)
    assert bundle.calibration.coef == calibrator.coef_[0, 0]  # the level moves the intercept only
    calibrator.intercept_ = np.array([bundle.calibration.intercept])
    np.testing.assert_array_equal(  # the calibration's arithmetic is LogisticRegression's
        bundle.churn_probability(table), calibrator.predict_proba(raw[:, None])[:, 1]
    )


def test_categories_in_another_order_encode_by_their_values(small_split, small_bundle):
    """pandas calls unordered dtypes with the same categories in another order equal (and
    hashes them alike); the cached category lookup must still follow each one's codes."""
    X = small_split.test[small_split.feature_names].head(200)
    column = next(c for c in X if X[c].dtype == "category" and X[c].nunique() >= 2)
    values = X[column].astype("str").where(X[column].notna())
    names = sorted(values.dropna().unique())
    forward = pd.Categorical(values, categories=names)
    backward = pd.Categorical(values, categories=names[::-1])
    assert forward.dtype == backward.dtype and hash(forward.dtype) == hash(backward.dtype)
    expected = small_bundle.encode(X)
    for cat in (forward, backward, forward, backward):  # cached after the first of each
        np.testing.assert_array_equal(small_bundle.encode(X.assign(**{column: cat})), expected)


@pytest.mark.parametrize("objective", ["tweedie", "hurdle"])
@pytest.mark.parametrize("refit", [False, True])
def test_the_value_model_learns_the_rows_that_weigh(objective, refit):
    """Half the rows buy more often, and spend more, as x grows; half less as x grows. Alike,
    the halves cancel out (flat in x); each booster (a hurdle's two) follows the half that
    weighs, early-stopped or refit."""
    rng = np.random.default_rng(0)
    n = 6000
    x = rng.uniform(0, 1, n)
    rising = np.arange(n) < n // 2
    level = np.where(rising, x, 1 - x)
    spend = 100 * level * (rng.uniform(size=n) < level)
    X = pd.DataFrame({"x": x, "noise": rng.normal(size=n)})
    grid = pd.DataFrame({"x": [0.1, 0.9], "noise": [0.0, 0.0]})
    for weighs, direction in ((rising, 1), (~rising, -1)):
        model = LtvModel(
            objective=objective, n_estimators=60, params={"learning_rate": 0.1},
            fixed_rounds=(60, 60) if refit else None,
        )  # fmt: skip
        valid = None if refit else (X[weighs], spend[weighs])
        model.fit(X, spend, eval_set=valid, sample_weight=np.where(weighs, 1.0, 1e-4))
        for booster in model.boosters():  # the raw score at x = 0.1 and 0.9
            low, high = booster.predict(model.encode(grid), raw_score=True)
            assert direction * (high - low) > 1.0, (objective, refit, direction, low, high)


@pytest.mark.parametrize("objective", ["tweedie", "hurdle"])
def test_the_value_model_does_not_depend_on_the_money_unit(small_split, train_config, objective):
    """The same customers in cents (spend and BG/NBD's value, the offset, x100) fit the same
    boosters, early-stopped and refit: the same rounds, predictions 100x. In money, lambda_l2
    read a tweedie G and H that grow with the unit (34 rounds for 47 on a sample in cents)."""
    from crm_ltv.training.pipeline import ModelData, ltv_model

    data = ModelData.of(small_split, train_config)
    config = train_config.model_copy(
        update={"ltv": train_config.ltv.model_copy(update={"objective": objective})}
    )

    def fitted(times: float, rounds: tuple[int, ...] | None = None) -> tuple[LtvModel, np.ndarray]:
        train, valid = (
            X.assign(bgnbd_value=X["bgnbd_value"] * times) for X in (data.train, data.valid)
        )
        model = ltv_model(data, config, rounds=rounds)
        eval_set = None if rounds else (valid, small_split.valid["future_value"] * times)
        model.fit(train, small_split.train["future_value"] * times, eval_set)
        return model, model.predict(valid)

    (euros, value), (cents, value_in_cents) = fitted(1.0), fitted(100.0)
    assert euros.offset == "bgnbd_value" and euros.rounds_[0] > 1
    assert cents.rounds_ == euros.rounds_
    np.testing.assert_allclose(value_in_cents, 100 * value, rtol=1e-9)
    (_, refit), (_, refit_in_cents) = fitted(1.0, euros.rounds_), fitted(100.0, euros.rounds_)
    np.testing.assert_allclose(refit_in_cents, 100 * refit, rtol=1e-9)
    assert cents.unit_ == pytest.approx(100 * euros.unit_, rel=1e-12)


def test_a_shift_without_an_offset_is_no_value_to_convert(small_split, train_config):
    """Review: the Dask engine passes zero shifts without an offset; read as a value, they
    started every row at -log(unit) and predicted unit times the value (870.95 for 12.64)."""
    from crm_ltv.training.pipeline import ModelData, ltv_model

    baselines = train_config.baselines.model_copy(update={"bgnbd_as_offset": False})
    config = train_config.model_copy(update={"baselines": baselines})
    data = ModelData.of(small_split, config)
    model = ltv_model(data, config, rounds=(5,)).fit(data.train, small_split.train["future_value"])
    assert model.offset is None and model.unit_ > 1
    encoded = model.encode(data.valid)
    zeros, shifts = np.zeros(len(encoded)), np.linspace(-0.5, 0.5, len(encoded))
    assert model._start(encoded, None) is None
    np.testing.assert_array_equal(model._start(encoded, zeros), zeros)
    np.testing.assert_array_equal(model._start(encoded, shifts), shifts)


def test_a_booster_with_no_gain_gets_an_importance_figure(small_split):
    """Early stopping that keeps one round of trees with no split (Online Retail II's first
    year with tuned churn params) left every gain 0, and the log-scaled figure failed the run."""
    import io

    from crm_ltv.training import plots

    names = small_split.feature_names
    model = ChurnModel(params={"min_data_in_leaf": 10**6}, n_estimators=3).fit(
        small_split.train[names],
        small_split.train["churned"],
        eval_set=(small_split.valid[names], small_split.valid["churned"]),
    )
    booster = model.booster_
    gain = pd.Series(booster.feature_importance("gain"), index=booster.feature_name())
    assert (gain == 0).all()
    figure = plots.importance_plot(gain, "Churn model: feature importance")
    figure.savefig(io.BytesIO(), format="png")
    assert "no feature has any gain" in figure.axes[0].texts[0].get_text()
