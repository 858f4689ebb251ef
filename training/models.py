"""The LightGBM churn classifier and LTV regressor, as scikit-learn estimators.

Each model takes a feature table as `features.build_features` returns it (categorical columns as
categories or strings, numbers of any type), plus BG/NBD's view of each customer when training
adds it (fitted once per run, outside the models), and keeps the vocabulary of the categories
it saw in training. Unknown categories count as missing. A training run saves both models into
one model bundle (`training.bundle`), which scores with the same `encode_inputs`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from crm_ltv.features.columns import Columns, as_floats, n_rows

EvalSet = tuple[pd.DataFrame, pd.Series | np.ndarray]


def _is_categorical(column: pd.Series) -> bool:
    return isinstance(column.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(
        column.dtype
    )


def fit_vocabularies(X: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """Sorted categories seen in training, per categorical column."""
    vocabularies = {}
    for name in X.columns:
        if _is_categorical(X[name]):
            values = pd.Series(X[name], copy=False).dropna().astype(str).unique()
            vocabularies[name] = tuple(sorted(values))
    return vocabularies


@functools.lru_cache(maxsize=256)
def _vocabulary_codes(vocabulary: tuple[str, ...]) -> dict[str, int]:
    return {value: code for code, value in enumerate(vocabulary)}


# By dtype identity: unordered dtypes with the same categories in another order are equal
# (and hash alike) in pandas, but their codes mean other categories.
_CATEGORIES_IN: dict[tuple[int, tuple[str, ...]], tuple[pd.CategoricalDtype, np.ndarray]] = {}


def _categories_in(dtype: pd.CategoricalDtype, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Vocabulary index of each category of `dtype`, then -1 (for code -1, missing). Cached:
    the builders share their dtypes, and reading the categories costs more than the codes."""
    key = (id(dtype), vocabulary)
    hit = _CATEGORIES_IN.get(key)
    if hit is not None and hit[0] is dtype:
        return hit[1]
    lookup = _vocabulary_codes(vocabulary)
    known = np.array([*(lookup.get(str(c), -1) for c in dtype.categories), -1], dtype=np.intp)
    known.flags.writeable = False
    if len(_CATEGORIES_IN) >= 1024:
        _CATEGORIES_IN.clear()
    _CATEGORIES_IN[key] = (dtype, known)  # holds the dtype, so its id is not reused meanwhile
    return known


def _category_codes(values: Any, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Vocabulary index of each value as float, NaN for missing or unknown values."""
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        values = values.array
    if isinstance(values, pd.Categorical):  # look up each category once, then take by code
        codes = _categories_in(values.dtype, vocabulary)[values.codes]
    else:
        lookup = _vocabulary_codes(vocabulary)
        text = np.asarray(values, dtype=object)
        missing = pd.isna(text)
        codes = np.fromiter(
            (-1 if gone else lookup.get(str(v), -1) for v, gone in zip(text, missing, strict=True)),
            np.intp,
            len(text),
        )
    return np.where(codes >= 0, codes, np.nan)


def _numbers(name: str, values: Any) -> np.ndarray:
    try:
        return as_floats(values)
    except (TypeError, ValueError):
        raise ValueError(f"feature {name}: expected numbers") from None


def run_params(seed: int, n_jobs: int) -> dict[str, Any]:
    """What every LightGBM fit of the project sets: seed and threads, same result on a rerun
    (deterministic, row-wise histograms), and quiet."""
    return {
        "seed": seed,
        "num_threads": n_jobs,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


def encode_inputs(
    X: Columns,
    names: Sequence[str],
    model_features: Sequence[str],
    vocabularies: Mapping[str, tuple[str, ...]],
    added: Callable[[Mapping[str, Any]], Mapping[str, np.ndarray]] | None = None,
) -> np.ndarray:
    """The booster input of a feature table or its columns by name: the features `names`
    (numbers checked), plus what `added` derives from them (BG/NBD's view), encoded."""
    missing = [n for n in names if n not in X]
    if missing:
        raise ValueError(f"missing features: {', '.join(missing)}")
    inputs = {n: X[n] if n in vocabularies else _numbers(n, X[n]) for n in names}
    if added is not None:
        inputs |= added(inputs)
    return encode_features(inputs, model_features, vocabularies)


def encode_features(
    X: Columns, columns: Sequence[str], vocabularies: Mapping[str, tuple[str, ...]]
) -> np.ndarray:
    """Model input: float matrix in `columns` order; categories become their vocabulary index.

    `X` is a feature table or its columns by name (a request's few customers are encoded
    without a DataFrame: pandas' per-column cost outweighs the numbers there).
    """
    out = np.empty((n_rows(X), len(columns)), dtype="float64")
    for j, name in enumerate(columns):
        if name in vocabularies:
            out[:, j] = _category_codes(X[name], vocabularies[name])
        else:
            out[:, j] = _numbers(name, X[name])
    return out


@dataclass(frozen=True)
class Calibration:
    """Raw churn score (log-odds) -> probability, as fitted on the validation snapshot.

    sigmoid: Platt scaling, expit(raw x coef + intercept) (LogisticRegression's arithmetic);
    isotonic: linear interpolation between thresholds, clipped (IsotonicRegression's).
    """

    method: Literal["sigmoid", "isotonic"]
    coef: float = 1.0
    intercept: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    @classmethod
    def of(cls, calibrator: Any) -> Calibration:
        """From a fitted scikit-learn LogisticRegression or IsotonicRegression."""
        if hasattr(calibrator, "X_thresholds_"):
            return cls(
                "isotonic",
                x=tuple(float(v) for v in calibrator.X_thresholds_),
                y=tuple(float(v) for v in calibrator.y_thresholds_),
            )
        return cls(
            "sigmoid", coef=float(calibrator.coef_[0, 0]), intercept=float(calibrator.intercept_[0])
        )

    def apply(self, raw: np.ndarray) -> np.ndarray:
        if self.method == "isotonic":
            return np.interp(raw, np.asarray(self.x), np.asarray(self.y))
        return expit(raw * self.coef + self.intercept)


def base_score(
    encoded: np.ndarray,
    model_features: Sequence[str],
    offset: str | None,
    floor: float = 1.0,
) -> np.ndarray | None:
    """The raw score a booster starts from: None, or the logit of a probability input named
    `offset` (churn: BG/NBD's P(no purchase)), or the log of a value input (LTV: BG/NBD's
    value, at least `floor`). The boosters then learn corrections to the baseline, not the
    whole answer."""
    if offset is None:
        return None
    return offset_transform(encoded[:, list(model_features).index(offset)], offset, floor)


def offset_transform(column: np.ndarray, offset: str, floor: float = 1.0) -> np.ndarray:
    """The raw score of the baseline input `offset`: logit of a probability, log of a value
    floored at `floor` (`offset_floor`; 1.0, one currency unit, in bundles before 2026-12-07)."""
    column = np.asarray(column, dtype="float64")
    if offset in LOGIT_OFFSETS:
        p = np.clip(np.nan_to_num(column, nan=0.5), 1e-6, 1 - 1e-6)
        return np.log(p) - np.log1p(-p)
    return np.log(np.maximum(np.nan_to_num(column, nan=0.0), floor))


LOGIT_OFFSETS = ("bgnbd_churn_probability",)
# Log-value offsets floor the baseline value at a thousandth of the LTV unit (`target_unit`),
# not at one currency unit, which is a cent or a euro as the data come: Online Retail II's
# unit is about 1,100 (a floor of about 1, where the floor of one unit was set and measured);
# the sample's about 95.
MIN_OFFSET_SHARE = 1e-3


def offset_floor(unit: float) -> float:
    """The floor of a log-value offset for boosters that learn spend in units of `unit`."""
    return MIN_OFFSET_SHARE * unit


def target_unit(y: pd.Series | np.ndarray) -> float:
    """The unit the LTV boosters learn spend in: the mean of the positive targets (a buyer's
    mean spend in a window), 1.0 without any. With a log link a leaf's value is -G / (H +
    lambda_l2) and the tweedie loss's G and H grow with the money unit (by s^(2 - p)), while
    lambda_l2 and min_sum_hessian_in_leaf do not: a target in cents fitted another booster than
    the same in euros. In this unit the fit is the same whatever the currency. The buyers' mean,
    not every row's, so that the share of buyers (which moves with the horizon and the season)
    does not set the unit either."""
    y = _labels(y)
    positive = y[y > 0]
    return float(positive.mean()) if len(positive) else 1.0


def ltv_start(base: np.ndarray | None, unit: float) -> np.ndarray | None:
    """The raw score the spend booster starts from, in units of `unit`: the baseline's log
    value (the log of spend in money) minus log(unit); None without a baseline."""
    return None if base is None else base - np.log(unit)


def ltv_value(
    boosters: Sequence[lgb.Booster],
    encoded: np.ndarray,
    num_threads: int,
    base: np.ndarray | None = None,
    unit: float = 1.0,
) -> np.ndarray:
    """Predicted value from the LTV boosters: spend in units of `unit` (the training target's,
    `target_unit`; 1.0 in bundles before it), times exp of its start (`ltv_start`) when the
    spend booster boosts from the baseline value, times `unit`; times P(any purchase) for a
    hurdle."""
    spend, *buy = boosters
    value = spend.predict(encoded, num_threads=num_threads)
    start = ltv_start(base, unit)
    if start is not None:
        value = value * np.exp(start)
    value = value * unit
    for booster in buy:
        value = value * booster.predict(encoded, num_threads=num_threads)
    return value


class _Booster(BaseEstimator):
    """What both models share: encoding, LightGBM training with early stopping, contributions."""

    def _prepare(self, X: pd.DataFrame) -> None:
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.model_features_ = [str(n) for n in X.columns]
        self.vocabularies_ = fit_vocabularies(X)
        unknown = set(self.monotone or {}) - set(self.model_features_)
        if unknown:
            raise ValueError(f"monotone: no feature named {', '.join(sorted(unknown))}")

    def encode(self, X: Columns) -> np.ndarray:
        """The booster's input matrix (model_features_ order) from a feature table or its
        columns by name."""
        self._check_fitted()
        return encode_inputs(X, self.model_features_, self.model_features_, self.vocabularies_)

    def _train(
        self,
        objective: str,
        X: np.ndarray,
        y: np.ndarray,
        eval_set: tuple[np.ndarray, np.ndarray] | None,
        callbacks: Sequence[Callable[..., None]] = (),
        extra: Mapping[str, Any] | None = None,
        rounds: int | None = None,
        init: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
        weight: np.ndarray | None = None,
    ) -> lgb.Booster:
        """Early-stopped on `eval_set`; without one (a refit), exactly `rounds` rounds. `init`:
        the raw scores training and validation rows start from (None: LightGBM's own);
        `weight`: the training rows' (validation rows weigh alike)."""
        names = self.model_features_
        categorical = [n for n in names if n in self.vocabularies_]
        params = self.lgb_params(objective, extra)
        train = lgb.Dataset(
            X,
            y,
            feature_name=names,
            categorical_feature=categorical,
            init_score=init[0],
            weight=weight,
        )
        if eval_set is None:
            return lgb.train(params, train, num_boost_round=rounds or self.n_estimators)
        valid = lgb.Dataset(eval_set[0], eval_set[1], reference=train, init_score=init[1])
        return lgb.train(
            params,
            train,
            num_boost_round=self.n_estimators,
            valid_sets=[valid],
            valid_names=["valid"],
            callbacks=[
                # the first metric alone, as the study and the Dask engine read it
                lgb.early_stopping(
                    self.early_stopping_rounds, first_metric_only=True, verbose=False
                ),
                *callbacks,
            ],
        )

    def lgb_params(self, objective: str, extra: Mapping[str, Any] | None = None) -> dict:
        """LightGBM's parameters of a booster of this model (the Dask engine trains with them)."""
        return {
            **(self.params or {}),
            **(extra or {}),
            "objective": objective,
            **run_params(self.random_state, self.n_jobs),
            "monotone_constraints": [
                int((self.monotone or {}).get(n, 0)) for n in self.model_features_
            ],
        }

    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_names_in_"):
            raise ValueError(f"{type(self).__name__} is not fitted yet")

    def _needs_eval_set(self, eval_set: EvalSet | None) -> None:
        if eval_set is None and self.fixed_rounds is None:
            raise ValueError(
                f"{type(self).__name__}.fit needs eval_set=(X_valid, y_valid) to stop early "
                "(or fixed_rounds, to refit)"
            )

    def boosters(self) -> list[lgb.Booster]:
        return [self.booster_]

    def base(self, encoded: np.ndarray) -> np.ndarray | None:
        """The raw score the (spend) booster starts from, per row (see `base_score`)."""
        return base_score(encoded, self.model_features_, self.offset, self.offset_floor_)

    @property
    def offset_floor_(self) -> float:
        """The floor of a log-value offset (`offset_floor`); a probability's has none."""
        return 1.0

    def _start(self, encoded: np.ndarray, shift: np.ndarray | None) -> np.ndarray | None:
        """Where training rows start: the base, moved by `shift` (their label window's level,
        so that the boosters learn who is above or below it, not the windows' seasons)."""
        base = self.base(encoded)
        if shift is None:
            return base
        return shift if base is None else base + shift

    @property
    def rounds_(self) -> tuple[int, ...]:
        """Boosting rounds of each booster (boosters() order): what a refit trains again."""
        # best_iteration is 0 without early stopping and -1 in a booster read from a model
        # string (one cut to its rounds already, as lightgbm.dask's are)
        return tuple(
            b.best_iteration if b.best_iteration > 0 else b.current_iteration()
            for b in self.boosters()
        )


# LightGBM's metrics where higher is better (their @k forms too); every other one is a loss.
# (training.config.HIGHER_IS_BETTER is another table: the project's own gate metrics.)
LIGHTGBM_MAXIMISED = ("auc", "auc_mu", "average_precision", "ndcg", "map", "mean_average_precision")
METRIC_KEYS = ("metric", "metrics", "metric_types")  # LightGBM's names of the setting


def watched_metric(params: Mapping[str, Any], objective: str) -> str:
    """The metric early stopping watches: the first configured one, else the objective's own
    (LightGBM names it after the objective: binary -> binary_logloss, tweedie -> tweedie)."""
    for key in METRIC_KEYS:
        if params.get(key):
            metric = params[key]
            first = metric.split(",")[0] if isinstance(metric, str) else metric[0]
            return str(first).strip()
    return "binary_logloss" if objective == "binary" else objective


def higher_is_better(metric: str) -> bool:
    return metric.split("@")[0] in LIGHTGBM_MAXIMISED


def _best_score(booster: lgb.Booster) -> tuple[str, float]:
    """(metric, value) at the best round of the booster that early stopping watched."""
    metric, value = next(iter(booster.best_score["valid"].items()))
    return str(metric), float(value)


def _labels(y: pd.Series | np.ndarray) -> np.ndarray:
    return np.asarray(y, dtype="float64")


class ChurnModel(ClassifierMixin, _Booster):
    """P(no purchase in the horizon): LightGBM, early-stopped and calibrated on validation.

    Calibration matters because the probabilities feed expected-value decisions; sigmoid
    (Platt) keeps the ranking, isotonic may tie neighbours.
    """

    def __init__(
        self,
        n_estimators: int = 2000,
        early_stopping_rounds: int = 100,
        params: dict[str, Any] | None = None,
        monotone: dict[str, int] | None = None,
        calibration: str = "sigmoid",
        random_state: int = 42,
        n_jobs: int = 2,
        fixed_rounds: tuple[int, ...] | None = None,
        offset: str | None = None,
    ) -> None:
        self.offset = offset
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.params = params
        self.monotone = monotone
        self.calibration = calibration
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.fixed_rounds = fixed_rounds

    def fit(
        self,
        X: pd.DataFrame,
        y: pd.Series | np.ndarray,
        eval_set: EvalSet | None = None,
        callbacks: Sequence[Callable[..., None]] = (),
        shift: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
        sample_weight: np.ndarray | None = None,
    ) -> ChurnModel:
        """`shift`: raw-score moves of the training and validation rows (see `_start`);
        `sample_weight`: the training rows' weights."""
        self._needs_eval_set(eval_set)
        self._prepare(X)
        self.classes_ = np.array([0, 1])
        if eval_set is None:  # a refit: the rounds, and the calibration, come from elsewhere
            rounds = self.fixed_rounds[0]
            X_train = self.encode(X)
            self.booster_ = self._train(
                "binary",
                X_train,
                _labels(y),
                None,
                (),
                None,
                rounds,
                (self._start(X_train, shift[0]), None),
                sample_weight,
            )
            self.best_iteration_, self.validation_score_ = rounds, float("nan")
            self.validation_metric_ = None  # nothing held out from a refit
            self.calibration_ = Calibration("sigmoid")  # the raw log-odds' own probability
            return self
        X_train = self.encode(X)
        X_valid, y_valid = self.encode(eval_set[0]), _labels(eval_set[1])
        init = (self._start(X_train, shift[0]), self._start(X_valid, shift[1]))
        self.booster_ = self._train(
            "binary", X_train, _labels(y), (X_valid, y_valid), callbacks, None, None, init,
            sample_weight,
        )  # fmt: skip
        self.best_iteration_ = self.booster_.best_iteration
        self.validation_metric_, self.validation_score_ = _best_score(self.booster_)
        self.calibrate(self._raw(X_valid), y_valid)
        return self

    def calibrate(self, raw: np.ndarray, y: np.ndarray) -> ChurnModel:
        """Fit the calibration of raw log-odds (with the base) to validation outcomes."""
        if self.calibration == "isotonic":
            self.calibrator_ = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")
            self.calibrator_.fit(raw, y)
        elif self.calibration == "sigmoid":
            self.calibrator_ = LogisticRegression(C=1e6).fit(raw[:, None], y)
        else:
            raise ValueError(f"calibration: expected sigmoid or isotonic, got {self.calibration!r}")
        self.calibration_ = Calibration.of(self.calibrator_)
        return self

    def _raw(self, encoded: np.ndarray) -> np.ndarray:
        raw = self.booster_.predict(encoded, raw_score=True, num_threads=self.n_jobs)
        base = self.base(encoded)
        return raw if base is None else raw + base

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.calibration_.apply(self._raw(self.encode(X)))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype("int64")


class LtvModel(RegressorMixin, _Booster):
    """Net spend over the horizon; negative targets (refunds only) count as 0.

    tweedie: one regressor with a log link, for a target that is mostly zero with a long right
    tail. hurdle: P(any purchase) x E[spend | purchase], two boosters. The boosters learn spend
    in units of `unit_` (`target_unit`: the training buyers' mean spend), so that the same
    history in cents or in euros fits the same boosters; predictions are in money.
    """

    def __init__(
        self,
        objective: str = "tweedie",
        tweedie_variance_power: float = 1.5,
        n_estimators: int = 2000,
        early_stopping_rounds: int = 100,
        params: dict[str, Any] | None = None,
        monotone: dict[str, int] | None = None,
        random_state: int = 42,
        n_jobs: int = 2,
        fixed_rounds: tuple[int, ...] | None = None,
        offset: str | None = None,
    ) -> None:
        self.offset = offset
        self.fixed_rounds = fixed_rounds
        self.objective = objective
        self.tweedie_variance_power = tweedie_variance_power
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.params = params
        self.monotone = monotone
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(
        self,
        X: pd.DataFrame,
        y: pd.Series | np.ndarray,
        eval_set: EvalSet | None = None,
        callbacks: Sequence[Callable[..., None]] = (),
        shift: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
        sample_weight: np.ndarray | None = None,
    ) -> LtvModel:
        """`shift`: log-value moves of the training and validation rows (see `_start`);
        `sample_weight`: the training rows' weights."""
        self._needs_eval_set(eval_set)
        self._prepare(X)
        self.unit_ = target_unit(y)  # of the training rows alone
        X_train, y_train = self.encode(X), self.target(y)
        if eval_set is None:
            return self._refit(X_train, y_train, shift[0], sample_weight)
        X_valid, y_valid = self.encode(eval_set[0]), self.target(eval_set[1])
        init = (self._start(X_train, shift[0]), self._start(X_valid, shift[1]))
        if self.objective == "tweedie":
            power = {"tweedie_variance_power": self.tweedie_variance_power}
            self.booster_ = self._train(
                "tweedie", X_train, y_train, (X_valid, y_valid), callbacks, power, None, init,
                sample_weight,
            )  # fmt: skip
            self.buy_booster_ = None
        elif self.objective == "hurdle":
            self.buy_booster_ = self._train(
                "binary",
                X_train,
                (y_train > 0) * 1.0,
                (X_valid, (y_valid > 0) * 1.0),
                callbacks,
                weight=sample_weight,
            )
            buyers, valid_buyers = y_train > 0, y_valid > 0
            self.booster_ = self._train(
                "gamma",
                X_train[buyers],
                y_train[buyers],
                (X_valid[valid_buyers], y_valid[valid_buyers]),
                init=tuple(
                    None if b is None else b[m]
                    for b, m in zip(init, (buyers, valid_buyers), strict=True)
                ),
                weight=None if sample_weight is None else sample_weight[buyers],
            )
        else:
            raise ValueError(f"objective: expected tweedie or hurdle, got {self.objective!r}")
        self.best_iteration_ = self.booster_.best_iteration
        watched = self.buy_booster_ if self.buy_booster_ is not None else self.booster_
        self.validation_metric_, self.validation_score_ = _best_score(watched)
        return self

    def _refit(
        self, X: np.ndarray, y: np.ndarray, shift: np.ndarray | None, weight: np.ndarray | None
    ) -> LtvModel:
        spend_rounds, *buy_rounds = self.fixed_rounds
        base = self._start(X, shift)
        if self.objective == "tweedie":
            power = {"tweedie_variance_power": self.tweedie_variance_power}
            self.booster_ = self._train(
                "tweedie", X, y, None, (), power, spend_rounds, (base, None), weight
            )
            self.buy_booster_ = None
        else:
            buyers = y > 0
            self.buy_booster_ = self._train(
                "binary", X, buyers * 1.0, None, (), None, *buy_rounds, weight=weight
            )
            self.booster_ = self._train(
                "gamma",
                X[buyers],
                y[buyers],
                None,
                (),
                None,
                spend_rounds,
                (None if base is None else base[buyers], None),
                None if weight is None else weight[buyers],
            )
        self.best_iteration_, self.validation_score_ = spend_rounds, float("nan")
        self.validation_metric_ = None  # nothing held out from a refit
        return self

    def target(self, y: pd.Series | np.ndarray) -> np.ndarray:
        """What the boosters learn: spend (negative, refunds only, counts as 0) in units of
        `unit_` (`target_unit` of the training rows)."""
        return np.clip(_labels(y), 0.0, None) / self.unit_

    @property
    def offset_floor_(self) -> float:
        return offset_floor(self.unit_)

    def _start(self, encoded: np.ndarray, shift: np.ndarray | None) -> np.ndarray | None:
        """Where the spend booster's rows start, in units of `unit_`: the baseline's log value
        less log(unit_) (`ltv_start`), moved by `shift` (a ratio: unit-free). A shift alone is
        no value to convert: the Dask engine passes zeros without an offset, which read as
        -log(unit) made every prediction `unit_` times too large (review of 2026-12-07: a mean
        of 870.95 for 12.64)."""
        start = ltv_start(self.base(encoded), self.unit_)
        if shift is None:
            return start
        return shift if start is None else start + shift

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        encoded = self.encode(X)  # checks that the model is fitted
        return ltv_value(self.boosters(), encoded, self.n_jobs, self.base(encoded), self.unit_)

    def boosters(self) -> list[lgb.Booster]:
        """Log value: the spend booster's raw score (hurdle: plus the purchase log-odds)."""
        return [self.booster_, *([self.buy_booster_] if self.buy_booster_ is not None else [])]
