"""Baselines the LightGBM models must beat, each predicting both churn and future value.

- `RfmBaseline`: the CRM team's heuristic made honest: each (R, F, M) score cell predicts the
  churn rate and mean future value its customers had in training.
- `BgNbdBaseline`: the classic probabilistic pair, BG/NBD (Fader, Hardie & Lee 2005) for
  purchase counts and dropout, Gamma-Gamma for spend per purchase, both fitted by maximum
  likelihood with numpy/scipy. A "purchase" is a purchase day, as in `frequency`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, expit, gammaln, hyp2f1
from sklearn.base import BaseEstimator, TransformerMixin

from crm_ltv.features.columns import Columns, as_floats

PREDICTIONS = ("churn_probability", "predicted_value")
_LOG_BOUNDS = (-10.0, 10.0)


def _fit_log_params(neg_ll, start: np.ndarray) -> np.ndarray:
    """Maximum likelihood over positive parameters, searched on the log scale."""
    result = minimize(
        lambda log_params: neg_ll(np.exp(log_params)),
        np.log(start),
        method="L-BFGS-B",
        bounds=[_LOG_BOUNDS] * len(start),
    )
    if not np.isfinite(result.fun):
        raise ValueError(f"maximum likelihood did not converge: {result.message}")
    return np.exp(result.x)


class BgNbd(BaseEstimator):
    """BG/NBD on (x repeat purchases, t_x time of the last, T time observed), any time unit."""

    def fit(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> BgNbd:
        x, t_x, T = (np.asarray(v, dtype="float64") for v in (x, t_x, T))
        self.params_ = _fit_log_params(
            lambda p: -bgnbd_log_likelihood(p, x, t_x, T).sum() / len(x),
            np.array([1.0, 1.0, 1.0, 1.0]),
        )
        return self

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = self.params_
        x = np.asarray(x, dtype="float64")
        repeat = x > 0
        log_odds_dead = (
            np.log(a)
            - np.log(np.where(repeat, b + x - 1, 1.0))
            + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        )
        return np.where(repeat, expit(-log_odds_dead), 1.0)

    def expected_purchases(
        self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """E[purchases in (T, T + t]] given the history."""
        r, alpha, a, b = self.params_
        x = np.asarray(x, dtype="float64")
        z = t / (alpha + T + t)
        tail = ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
        return (a + b + x - 1) / (a - 1) * (1.0 - tail) * self.p_alive(x, t_x, T)

    def p_no_purchase(self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(no purchase in (T, T + t]): dead already, or alive and no Poisson event. A BG/NBD
        customer only drops out right after a purchase, so an alive one without a purchase
        stays alive; the rate's posterior given alive is Gamma(r + x, alpha + T)."""
        r, alpha, _, _ = self.params_
        alive = self.p_alive(x, t_x, T)
        quiet = ((alpha + T) / (alpha + T + t)) ** (r + np.asarray(x, dtype="float64"))
        return 1.0 - alive + alive * quiet


def bgnbd_log_likelihood(
    params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Per-customer log-likelihood of BG/NBD with params (r, alpha, a, b)."""
    r, alpha, a, b = params
    repeat = x > 0
    head = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    stayed = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
    safe_b = np.where(repeat, b + x - 1, 1.0)
    dropped = betaln(a + 1, safe_b) - betaln(a, b) - (r + x) * np.log(alpha + t_x)
    return head + np.where(repeat, np.logaddexp(stayed, dropped), stayed)


class GammaGamma(BaseEstimator):
    """Spend per purchase: gamma around a customer mean that is itself gamma across customers."""

    def fit(self, x: np.ndarray, m: np.ndarray) -> GammaGamma:
        x, m = np.asarray(x, dtype="float64"), np.asarray(m, dtype="float64")
        keep = (x >= 1) & (m > 0)
        if keep.sum() < 10:
            raise ValueError("Gamma-Gamma needs at least 10 customers with positive spend")
        x, m = x[keep], m[keep]
        # Fitted in units of the mean spend, then scaled back: gamma is in money, and a shop's
        # cents or yen put it past the search's bounds (stuck at e^10; p and q do not move
        # with the unit, gamma moves with it).
        unit = float(np.mean(m))
        p, q, gamma = _fit_log_params(
            lambda p: -gamma_gamma_log_likelihood(p, x, m / unit).sum() / len(x),
            np.array([1.0, 2.0, 1.0]),
        )
        self.params_ = np.array([p, q, gamma * unit])
        return self

    def expected_spend(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Posterior mean spend per purchase; the population mean where spend is not positive."""
        p, q, gamma = self.params_
        x, m = np.asarray(x, dtype="float64"), np.asarray(m, dtype="float64")
        prior = p * gamma / (q - 1) if q > 1 else float("nan")
        usable = (x >= 1) & (m > 0)
        posterior = (gamma + m * x) * p / np.where(usable, p * x + q - 1, 1.0)
        return np.where(usable, posterior, prior)


def gamma_gamma_log_likelihood(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per-customer log-likelihood of the mean spend m over x purchases, params (p, q, gamma)."""
    p, q, gamma = params
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(gamma)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(gamma + m * x)
    )


@dataclass(frozen=True)
class PurchaseHistory:
    """The BG/NBD / Gamma-Gamma summary of each customer, in model time units."""

    x: np.ndarray  # repeat purchase days
    t_x: np.ndarray  # first to last purchase
    T: np.ndarray  # first purchase to the cutoff
    m: np.ndarray  # net spend per purchase day

    @classmethod
    def of(cls, X: Columns, unit_days: float) -> PurchaseHistory:
        frequency = as_floats(X["frequency"])
        tenure = as_floats(X["tenure_days"])
        recency = as_floats(X["recency_days"])
        return cls(
            x=frequency - 1,
            t_x=(tenure - recency) / unit_days,
            T=tenure / unit_days,
            m=as_floats(X["monetary_total"]) / frequency,
        )


class BgNbdBaseline(BaseEstimator):
    """Churn = P(no purchase in the horizon); value = E[purchases] x E[spend per purchase]."""

    def __init__(self, horizon_days: int = 90, time_unit_days: float = 7.0) -> None:
        self.horizon_days = horizon_days
        self.time_unit_days = time_unit_days

    def fit(self, X: pd.DataFrame, y: object = None) -> BgNbdBaseline:
        h = PurchaseHistory.of(X, self.time_unit_days)
        self.bgnbd_ = BgNbd().fit(h.x, h.t_x, h.T)
        self.gamma_gamma_ = GammaGamma().fit(h.x + 1, h.m)
        return self

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self.predict_columns(X), index=X.index)

    def to_params(self) -> dict[str, Any]:
        """The fitted model as plain numbers (a model bundle's `bgnbd` entry)."""
        return {
            "horizon_days": self.horizon_days,
            "time_unit_days": self.time_unit_days,
            "bgnbd": [float(v) for v in self.bgnbd_.params_],
            "gamma_gamma": [float(v) for v in self.gamma_gamma_.params_],
        }

    @classmethod
    def from_params(cls, raw: Mapping[str, Any]) -> BgNbdBaseline:
        fitted = cls(int(raw["horizon_days"]), float(raw["time_unit_days"]))
        fitted.bgnbd_ = BgNbd()
        fitted.bgnbd_.params_ = np.asarray(raw["bgnbd"], dtype="float64")
        fitted.gamma_gamma_ = GammaGamma()
        fitted.gamma_gamma_.params_ = np.asarray(raw["gamma_gamma"], dtype="float64")
        return fitted

    def predict_columns(self, X: Columns) -> dict[str, np.ndarray]:
        h = PurchaseHistory.of(X, self.time_unit_days)
        t = self.horizon_days / self.time_unit_days
        purchases = self.bgnbd_.expected_purchases(t, h.x, h.t_x, h.T)
        spend = self.gamma_gamma_.expected_spend(h.x + 1, h.m)
        return {
            "churn_probability": self.bgnbd_.p_no_purchase(t, h.x, h.t_x, h.T),
            "predicted_value": purchases * spend,
            "p_alive": self.bgnbd_.p_alive(h.x, h.t_x, h.T),
        }


class RfmBaseline(BaseEstimator):
    """Churn rate and mean future value of the customer's (R, F, M) cell in training; cells
    unseen in training fall back to the (R, F) cell, then to the overall mean."""

    LEVELS = (("r_score", "f_score", "m_score"), ("r_score", "f_score"))

    def fit(self, X: pd.DataFrame, y: pd.DataFrame) -> RfmBaseline:
        frame = X[list(self.LEVELS[0])].assign(
            churn_probability=np.asarray(y["churned"], dtype="float64"),
            predicted_value=np.asarray(y["future_value"], dtype="float64"),
        )
        self.cells_ = [
            frame.groupby(list(keys), observed=True)[list(PREDICTIONS)].mean()
            for keys in self.LEVELS
        ]
        self.overall_ = frame[list(PREDICTIONS)].mean()
        return self

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(np.nan, index=X.index, columns=list(PREDICTIONS))
        for keys, cells in zip(self.LEVELS, self.cells_, strict=True):
            looked_up = X[list(keys)].join(cells, on=list(keys))[list(PREDICTIONS)]
            out = out.fillna(looked_up)
        return out.fillna(self.overall_)


class BgNbdFeatures(TransformerMixin, BaseEstimator):
    """BG/NBD's view of each customer as extra model inputs: P(alive), P(no purchase in the
    horizon) and expected value. Fitted on (a seeded sample of) training rows only: the newest
    training cutoff's (`training.pipeline.newest_cutoff`)."""

    ADDED = ("bgnbd_p_alive", "bgnbd_churn_probability", "bgnbd_value")

    def __init__(
        self,
        horizon_days: int = 90,
        time_unit_days: float = 7.0,
        max_fit_rows: int = 50_000,
        random_state: int = 42,
    ) -> None:
        self.horizon_days = horizon_days
        self.time_unit_days = time_unit_days
        self.max_fit_rows = max_fit_rows
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: object = None) -> BgNbdFeatures:
        rows = X
        if len(X) > self.max_fit_rows:
            rng = np.random.default_rng(self.random_state)
            rows = X.iloc[np.sort(rng.choice(len(X), self.max_fit_rows, replace=False))]
        self.baseline_ = BgNbdBaseline(self.horizon_days, self.time_unit_days).fit(rows)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return X.assign(**self.added(X))

    def to_params(self) -> dict[str, Any]:
        return self.baseline_.to_params()

    @classmethod
    def from_params(cls, raw: Mapping[str, Any]) -> BgNbdFeatures:
        baseline = BgNbdBaseline.from_params(raw)
        fitted = cls(baseline.horizon_days, baseline.time_unit_days)
        fitted.baseline_ = baseline
        return fitted

    def added(self, X: Columns) -> dict[str, np.ndarray]:
        """The columns `transform` adds, from a table or columns by name."""
        predicted = self.baseline_.predict_columns(X)
        return {
            "bgnbd_p_alive": predicted["p_alive"],
            "bgnbd_churn_probability": predicted["churn_probability"],
            "bgnbd_value": predicted["predicted_value"],
        }
