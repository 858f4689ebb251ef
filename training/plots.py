"""Figures logged with every run: how the models and baselines compare on the test snapshot."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from crm_ltv.training.metrics import expected_calibration_error, probability_bins, ranked

Scores = Mapping[str, np.ndarray]


def _axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def roc_plot(y: np.ndarray, scores: Scores) -> Figure:
    fig, ax = _axes("Churn: ROC on the test snapshot", "false positive rate", "true positive rate")
    for name, p in scores.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="random (AUC 0.5)")
    ax.legend(loc="lower right")
    return fig


def pr_plot(y: np.ndarray, scores: Scores) -> Figure:
    fig, ax = _axes("Churn: precision-recall", "recall", "precision")
    for name, p in scores.items():
        precision, recall, _ = precision_recall_curve(y, p)
        ax.plot(recall, precision, label=f"{name} (PR AUC {average_precision_score(y, p):.3f})")
    ax.axhline(np.mean(y), color="k", ls="--", lw=0.8, label=f"base rate {np.mean(y):.3f}")
    ax.legend()
    return fig


def calibration_plot(y: np.ndarray, scores: Scores, bins: int = 10) -> Figure:
    fig, ax = _axes("Churn: calibration", "mean predicted probability", "observed churn rate")
    for name, p in scores.items():
        which = probability_bins(np.asarray(p, dtype="float64"), bins)
        frame = pd.DataFrame({"bin": which, "p": p, "y": y}).groupby("bin").mean()
        ece = expected_calibration_error(y, p, bins)
        ax.plot(frame["p"], frame["y"], marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect")
    ax.legend()
    return fig


def gains_plot(y: np.ndarray, scores: Scores, what: str) -> Figure:
    """Share of all `what` captured when contacting customers in score order, above what random
    contact captures: close models' curves would lie on top of each other on the plain scale."""
    fig, ax = _axes(
        f"Gains over random: {what}",
        "share of customers contacted (highest score first)",
        f"share of {what} captured, minus random (points)",
    )
    y = np.asarray(y, dtype="float64")
    share = np.arange(1, len(y) + 1) / len(y)
    top = max(1, round(len(y) * 0.1)) - 1
    for name, s in scores.items():
        above = 100 * (np.cumsum(ranked(y, s)) / y.sum() - share)
        captured = above[top] + 100 * share[top]  # back from "over random" to the share itself
        ax.plot(share, above, label=f"{name} (top 10%: {captured:.1f}% of {what})")
    ax.axhline(0, color="k", ls="--", lw=0.8, label="random")
    _legend_below(fig, ax)
    return fig


def _legend_below(fig: Figure, ax: plt.Axes) -> None:
    """Under the axes: inside, it covered the curves' steep start, which matters most (W)."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, frameon=False)
    fig.set_figheight(fig.get_figheight() + 0.9)
    fig.tight_layout()


def decile_plot(tables: Mapping[str, pd.DataFrame], horizon_days: int) -> Figure:
    """Each model against its own deciles' actual value: a model ranks customers its own way,
    and one set of bars (LightGBM's) under the baselines' predictions misread them (tester W:
    RFM's top decile looked 12 under its actual, 4.5 under its own)."""
    fig, ax = _axes(
        "LTV: predicted vs actual, by each model's deciles",
        "decile of the model's predicted value (1 = top)",
        f"mean spend in the next {horizon_days} days per customer",
    )
    for (name, table), colour in zip(
        tables.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False
    ):
        ax.plot(table["decile"], table["mean_predicted"], marker="o", color=colour,
                label=f"{name} predicted")  # fmt: skip
        ax.plot(table["decile"], table["mean_actual"], marker="x", ls="--", color=colour,
                label=f"{name} actual")  # fmt: skip
    ax.set_xticks(range(1, 11))
    ax.legend(ncol=2, fontsize=8)
    return fig


def importance_plot(importance: pd.Series, title: str, top: int = 20) -> Figure:
    """Each feature's share of the total gain, on a log scale: one dominant input (BG/NBD's
    value in the LTV model) would flatten every other bar on a linear one. A booster with no
    gain at all (early stopping kept one round from BG/NBD's offset, a tree with no split) gets
    a figure that says so: a log scale of nothing raised and failed the run."""
    share = 100 * importance / max(float(importance.sum()), 1e-12)
    values = share[share > 0].sort_values().tail(top)
    if values.empty:
        fig, ax = plt.subplots(figsize=(7, 2.5), dpi=100)
        ax.set_title(title)
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no feature has any gain: the booster's trees make no split\n"
                "(early stopping kept no correction to its starting score)",
                ha="center", va="center", wrap=True)  # fmt: skip
        return fig
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(values) + 1.5), dpi=100)
    bars = ax.barh(values.index, values.to_numpy())
    ax.bar_label(bars, labels=[f"{v:.1f}%" if v >= 0.1 else f"{v:.2f}%" for v in values],
                 padding=2, fontsize=8)  # fmt: skip
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))  # not 10^0, 10^1
    ax.set(title=title, xlabel="share of total gain (log scale)")
    ax.margins(x=0.15)
    fig.tight_layout()
    return fig


def shap_summary_plot(
    contributions: pd.DataFrame, X: pd.DataFrame, title: str, offset: str | None, top: int = 15
) -> Figure:
    """Beeswarm-style: each dot a customer, x its contribution, colour the feature's value rank.
    A booster that starts from BG/NBD's score credits that start to its input (`offset`), which
    then leads here while its gain importance is small: said under the plot (tester W)."""
    contributions = contributions.drop(columns="(base)")
    order = contributions.abs().mean().sort_values().tail(top).index
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(order) + 1.5), dpi=100)
    rng = np.random.default_rng(0)
    for row, name in enumerate(order):
        x = contributions[name].to_numpy()
        value = X[name] if name in X.columns else pd.Series(np.nan, index=X.index)
        colour = (
            pd.Series(value, copy=False).rank(pct=True).to_numpy()
            if pd.api.types.is_numeric_dtype(value.dtype)
            else np.full(len(x), 0.5)
        )
        jitter = rng.uniform(-0.3, 0.3, len(x))
        points = ax.scatter(x, row + jitter, c=colour, cmap="coolwarm", s=3, vmin=0, vmax=1)
    ax.set_yticks(range(len(order)), list(order))
    ax.axvline(0, color="k", lw=0.8)
    said = (
        f"\n{offset}: includes BG/NBD's starting score, which the trees correct" if offset else ""
    )
    ax.set(title=title, xlabel=f"contribution (raw score){said}")
    fig.colorbar(points, ax=ax, label="feature value (rank, low to high)")
    fig.tight_layout()
    return fig


def history_plot(
    values: list[float], title: str, ylabel: str, higher_is_better: bool = False
) -> Figure:
    fig, ax = _axes(title, "completed trial", ylabel)
    ax.plot(range(len(values)), values, "o", alpha=0.6, label="trial")
    finite = np.where(np.isfinite(values), values, np.nan)
    best = np.fmax if higher_is_better else np.fmin
    ax.plot(range(len(values)), best.accumulate(finite), "-", label="best so far")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend()
    return fig
