"""Evaluation metrics of churn probabilities and value predictions, all on one held-out snapshot."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    roc_auc_score,
)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean predicted| over equal-width probability bins, by bin size."""
    y, p = np.asarray(y, dtype="float64"), np.asarray(p, dtype="float64")
    which = np.minimum((p * bins).astype("int64"), bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, y, bins) - np.bincount(which, p, bins))
    return float(gap.sum() / max(count.sum(), 1))


def top_share(score: np.ndarray, share: float = 0.1) -> np.ndarray:
    """Boolean mask of the top `share` of rows by score (ties broken by position)."""
    n = max(1, round(len(score) * share))
    order = np.argsort(-np.asarray(score), kind="stable")
    mask = np.zeros(len(score), dtype=bool)
    mask[order[:n]] = True
    return mask


def churn_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y, p = np.asarray(y, dtype="float64"), np.clip(np.asarray(p, dtype="float64"), 1e-7, 1 - 1e-7)
    top = top_share(p)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "expected_calibration_error": expected_calibration_error(y, p),
        # churn rate among the 10% most at risk over the base rate; it cannot pass the ceiling
        # min(10, 1 / base rate), which a high base rate keeps close to 1
        "lift_top10pct": float(y[top].mean() / y.mean()),
        "lift_top10pct_ceiling": float(min(1.0 / top.mean(), 1.0 / y.mean())),
    }


def normalized_gini(y: np.ndarray, pred: np.ndarray) -> float:
    """Gini of the value captured when customers are sorted by prediction, over the Gini of the
    perfect sort: 1 = perfect ranking, 0 = random."""

    def gini(order_by: np.ndarray) -> float:
        order = np.argsort(-order_by, kind="stable")
        captured = np.cumsum(y[order]) / y.sum()
        return float(captured.sum() / len(y) - (len(y) + 1) / (2 * len(y)))

    y, pred = np.asarray(y, dtype="float64"), np.asarray(pred, dtype="float64")
    return gini(pred) / gini(y)


def ltv_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    y, pred = np.asarray(y, dtype="float64"), np.asarray(pred, dtype="float64")
    total = y.sum()
    return {
        "normalized_gini": normalized_gini(y, pred),
        "spearman": float(spearmanr(y, pred).statistic),
        "rmse": float(np.sqrt(np.mean((y - pred) ** 2))),
        "mae": float(mean_absolute_error(y, pred)),
        "top10_value_share": float(y[top_share(pred)].sum() / total),
        "total_predicted": float(pred.sum()),
        "total_actual": float(total),
        "total_predicted_over_actual": float(pred.sum() / total),
    }


def decile_table(y: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    """Customers in ten equal groups by prediction (1 = highest): predicted vs actual."""
    y, pred = np.asarray(y, dtype="float64"), np.asarray(pred, dtype="float64")
    order = np.argsort(-pred, kind="stable")
    decile = np.empty(len(y), dtype="int64")
    decile[order] = np.arange(len(y)) * 10 // len(y) + 1
    table = (
        pd.DataFrame({"decile": decile, "predicted": pred, "actual": y})
        .groupby("decile")
        .agg(
            customers=("actual", "size"),
            mean_predicted=("predicted", "mean"),
            mean_actual=("actual", "mean"),
            total_actual=("actual", "sum"),
        )
    )
    table["share_of_actual"] = table["total_actual"] / y.sum()
    return table.reset_index()
