"""Off-policy evaluation: what each policy would have earned, from decisions another one made.

A logged history holds, per decision, the action sent (an arm), its propensity under the
logging policy, the revenue over the response window and the customer it was for (a customer
may have several decisions, whose windows do not overlap). A policy is a matrix of action
probabilities (serving.policies). Its value is its incremental revenue net of contact costs
per decision (one response window of one customer; per customer where each has one decision):
E[Y(policy)] - E[Y(no_action)] - E[cost], so doing nothing is worth 0.
- IPW weighs each logged revenue by policy probability / propensity of the action taken.
- Doubly robust (DR) adds an outcome model's prediction for every arm and weighs only its
  residual: unbiased when either the propensities or the model are right, with less variance.
  The model is cross-fitted (K folds of customers, each predicted by the model of the others),
  so a row's residual is never its own fit's.
Intervals are percentile bootstraps over customers (all of a customer's decisions together;
paired: one resample for every policy), with the outcome model held fixed. Contact costs are
known, so they are not estimated.

On the sample, `simulate_rewards` draws the responses with the generator's effects (features
.sample: an added purchase with the action's true effect for the customer's type, valued at
the customer's mean order value, in cents; no refunds, unlike the generator's orders), so each
policy's true value under that simulation is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.linear_model import Ridge

ESTIMATORS = ("ipw", "dr")


@dataclass(frozen=True)
class LoggedHistory:
    """Decisions with their propensities and outcomes, arms as column codes."""

    arms: tuple[str, ...]  # the last one is no_action
    action: np.ndarray  # code of the arm sent, per row
    propensity: np.ndarray  # P(arm sent | customer) under the logging policy, in (0, 1]
    revenue: np.ndarray  # over the response window after the decision
    features: np.ndarray  # n x d: what the outcome model reads
    costs: np.ndarray  # per arm
    customers: np.ndarray | None = None  # customer of each row (None: one row per customer)

    def __post_init__(self) -> None:
        n = len(self.action)
        sizes = (len(self.propensity), len(self.revenue), len(self.features))
        if self.customers is not None:
            sizes += (len(self.customers),)
        if any(size != n for size in sizes):
            raise ValueError(f"logged history: {n} actions but {sizes} propensities/revenues/rows")
        if n == 0:
            raise ValueError("logged history: no decisions")
        if not ((self.propensity > 0) & (self.propensity <= 1)).all():
            raise ValueError("logged history: a propensity is not in (0, 1]")


class OutcomeModel(BaseEstimator):
    """Revenue over the window by customer features and arm (ridge regression on the features
    and one indicator per arm): the DR estimator's model of every arm's outcome."""

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def fit(self, x: np.ndarray, arm: np.ndarray, y: np.ndarray, n_arms: int) -> OutcomeModel:
        self.n_arms_ = n_arms
        self.mean_ = x.mean(axis=0)
        self.scale_ = np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        self.model_ = Ridge(alpha=self.alpha).fit(self._design(x, arm), y)
        return self

    def predict_arms(self, x: np.ndarray) -> np.ndarray:
        """n x arms: the predicted revenue of each row under each arm."""
        return np.column_stack(
            [self.model_.predict(self._design(x, np.full(len(x), a))) for a in range(self.n_arms_)]
        )

    def _design(self, x: np.ndarray, arm: np.ndarray) -> np.ndarray:
        indicators = np.eye(self.n_arms_)[arm.astype(int)]
        return np.column_stack([(x - self.mean_) / self.scale_, indicators])


def row_values(
    history: LoggedHistory, policy: np.ndarray, predicted: np.ndarray
) -> dict[str, np.ndarray]:
    """Each row's contribution to the policy's value, per estimator (their mean is the
    estimate): incremental revenue over no_action, net of the policy's contact costs."""
    n = len(history.action)
    rows = np.arange(n)
    none = len(history.arms) - 1
    weight = policy[rows, history.action] / history.propensity
    weight_none = (history.action == none) / history.propensity
    cost = policy @ history.costs
    taken = predicted[rows, history.action]
    residual = history.revenue - taken
    ipw = (weight - weight_none) * history.revenue - cost
    direct = (policy * predicted).sum(axis=1) - predicted[:, none]
    dr = direct + (weight - weight_none) * residual - cost
    return {"ipw": ipw, "dr": dr}


def support(history: LoggedHistory, policy: np.ndarray, candidates: np.ndarray) -> float:
    """Share of the policy's probability mass on arms the logging policy could send (the
    `candidates` mask, n x arms) where it could also have sent no_action, the baseline every
    value is measured against: below 1, IPW cannot see part of what the policy does (with no
    control at all it reported the whole revenue as the policy's)."""
    none = len(history.arms) - 1
    sent = (policy[:, :none] * candidates[:, :none]).sum(axis=1) * candidates[:, none]
    return float((policy[:, none] + sent).sum() / policy.sum())


def customer_codes(history: LoggedHistory) -> np.ndarray:
    """0..G-1 per row: the customer each decision was for (rows on their own without ids)."""
    if history.customers is None:
        return np.arange(len(history.action))
    return np.unique(history.customers, return_inverse=True)[1].ravel()


def cross_fitted_predictions(
    history: LoggedHistory, customers: np.ndarray, folds: int, seed: int
) -> np.ndarray:
    """n x arms: each row's outcome predictions by a model fitted on the other folds of
    customers (a customer's rows in one fold), so DR's residuals are out of sample."""
    n_customers = int(customers.max()) + 1
    folds = min(folds, n_customers)
    n_arms = len(history.arms)
    if folds < 2:
        model = OutcomeModel().fit(history.features, history.action, history.revenue, n_arms)
        return model.predict_arms(history.features)
    fold_of = np.random.default_rng(seed).permutation(n_customers)[customers] % folds
    predicted = np.empty((len(history.action), n_arms))
    for k in range(folds):
        train, test = fold_of != k, fold_of == k
        model = OutcomeModel().fit(
            history.features[train], history.action[train], history.revenue[train], n_arms
        )
        predicted[test] = model.predict_arms(history.features[test])
    return predicted


def estimate_policies(
    history: LoggedHistory,
    policies: dict[str, np.ndarray],
    n_bootstrap: int,
    alpha: float,
    seed: int,
    candidates: np.ndarray | None = None,
    folds: int = 5,
) -> pd.DataFrame:
    """One row per policy: IPW and DR estimates with bootstrap (1 - alpha) intervals and
    standard errors, the contacted share, cost per customer and support."""
    customers = customer_codes(history)
    predicted = cross_fitted_predictions(history, customers, folds, seed)
    names = list(policies)
    values = {name: row_values(history, policies[name], predicted) for name in names}
    columns = np.column_stack([values[n][e] for n in names for e in ESTIMATORS])
    boot = bootstrap_means(columns, n_bootstrap, seed, customers)
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    se = boot.std(axis=0, ddof=1)
    none = len(history.arms) - 1
    mask = candidates if candidates is not None else np.ones_like(policies[names[0]])
    rows = []
    for i, name in enumerate(names):
        policy = policies[name]
        row: dict[str, object] = {"policy": name}
        for j, estimator in enumerate(ESTIMATORS):
            k = 2 * i + j
            row[f"estimated_value_{estimator}"] = float(columns[:, k].mean())
            row[f"ci_low_{estimator}"] = float(low[k])
            row[f"ci_high_{estimator}"] = float(high[k])
            row[f"se_{estimator}"] = float(se[k])
        row["contacted_share"] = float(1 - policy[:, none].mean())
        row["cost_per_customer"] = float((policy @ history.costs).mean())
        row["support"] = support(history, policy, mask)
        rows.append(row)
    return pd.DataFrame(rows)


def bootstrap_means(
    columns: np.ndarray, n_bootstrap: int, seed: int, customers: np.ndarray | None = None
) -> np.ndarray:
    """Column means (per row) of `n_bootstrap` resamples of the customers, each drawn with all
    of their rows (a customer's decisions are not independent); one resample for every column.
    `customers`: 0..G-1 per row (None: every row its own customer)."""
    rng = np.random.default_rng(seed)
    if customers is None:
        customers = np.arange(len(columns))
    n_customers = int(customers.max()) + 1
    sums = np.zeros((n_customers, columns.shape[1]))
    np.add.at(sums, customers, columns)
    rows = np.bincount(customers, minlength=n_customers).astype(float)
    out = np.empty((n_bootstrap, columns.shape[1]))
    for b in range(n_bootstrap):
        drawn = np.bincount(rng.integers(0, n_customers, n_customers), minlength=n_customers)
        out[b] = (drawn @ sums) / (drawn @ rows)
    return out


def true_arm_values(
    true_effect: np.ndarray, order_value: np.ndarray, costs: np.ndarray
) -> np.ndarray:
    """n x arms: each arm's expected incremental revenue net of cost for each customer under
    the simulation with the generator's effects (added purchase probability x mean order value
    - cost); no_action 0."""
    return true_effect * order_value[:, None] - costs[None, :]


def true_policy_values(policies: dict[str, np.ndarray], arm_values: np.ndarray) -> dict[str, float]:
    """Each policy's true value per customer over these customers."""
    return {name: float((p * arm_values).sum(axis=1).mean()) for name, p in policies.items()}


def draw_actions(logging: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One arm per row drawn from its probabilities."""
    cumulative = np.cumsum(logging, axis=1)
    draws = rng.random(len(logging))[:, None] * cumulative[:, -1:]
    return np.minimum((draws >= cumulative).sum(axis=1), logging.shape[1] - 1)


def simulate_rewards(
    action: np.ndarray,
    baseline: np.ndarray,
    true_effect: np.ndarray,
    order_value: np.ndarray,
    order_value_shape: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Revenue over the window: the customer's own (baseline) plus, with the sent arm's true
    effect, one more order of a gamma value around their mean (the generator's draw)."""
    n = len(action)
    effect = true_effect[np.arange(n), action]
    extra = rng.random(n) < effect
    value = rng.gamma(order_value_shape, order_value / order_value_shape)
    return baseline + np.where(extra, np.round(value, 2), 0.0)
