"""Figures for analysts, logged with the experiment runs: lifts with their intervals, cohort
retention and lifecycle transitions as annotated heatmaps."""

from __future__ import annotations

from collections.abc import Collection

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from crm_ltv.experiments.text import NONE_DRAWN, group_lacking

# The lift plot's colours, each a verdict, and what its legend says of it.
IMBALANCED_COLOUR = "tab:orange"
VERDICTS = {  # colour -> what it says in the legend
    "tab:blue": "significant gain",
    "tab:red": "significant loss",
    "tab:gray": "not significant",
    IMBALANCED_COLOUR: "[imbalanced] not causal: the groups differ before the send",
}
# Short marks beside a row's label, spelled out in the legend: long suffixes squeezed the
# panel (a segment plot's from 4.05 in to 1.59 in, review s18A #1).
IMBALANCED_MARK = "[imbalanced]"
SRM_MARK = "[SRM]"
# The panel's least width (its title and axis label fit over it): the figure grows with its
# labels instead of the panel shrinking.
PANEL_WIDTH_IN = 5.5


def lift_plot(
    table: pd.DataFrame, label_columns: list[str], imbalanced: Collection[str] = ()
) -> Figure:
    """Absolute conversion lift per row with its interval; zero marked. The colours follow the
    run's verdict: a significant gain or loss only where the action's groups were alike before
    the send; an IMBALANCED action (its `balance_imbalanced` column, or named in `imbalanced`:
    the by-segment table has no balance of its own) in its own colour, since its difference is
    no causal lift (tester J: drawn blue as a win while the run counted no win), and a
    sample-ratio mismatch ringed; each marked beside its label, the legend saying which is
    which. The figure is widened by what its labels take, so the panel keeps its width."""
    labels = [" / ".join(str(v) for v in row) for row in table[label_columns].to_numpy()]
    y = np.arange(len(table))[::-1]
    fig, ax = plt.subplots(figsize=(7, 1.6 + 0.35 * len(table)), dpi=100, layout="constrained")
    lift = table["lift_abs"].to_numpy("float64") * 100
    low = table["lift_abs_low"].to_numpy("float64") * 100
    high = table["lift_abs_high"].to_numpy("float64") * 100
    # per segment, significant after Holm's adjustment over the action's segments; per action
    # alone the column is there but empty (nothing to adjust), and every point read grey
    column = "significant_holm" if len(label_columns) > 1 else "significant"
    significant = table[column].fillna(False).astype(bool).to_numpy()
    differ = table["action"].astype(str).isin(set(imbalanced)).to_numpy()
    if "balance_imbalanced" in table:
        differ = differ | table["balance_imbalanced"].eq(True).to_numpy()
    mismatch = table["srm_mismatch"].fillna(False).astype(bool).to_numpy()
    # a row with no lift (one group, or none drawn by chance) has no point: said beside its
    # label as the CLI's line says it, not marked with its action's verdict (tester Z)
    alone = np.isnan(lift)
    differ = differ & ~alone
    colour = np.where(significant, np.where(lift < 0, "tab:red", "tab:blue"), "tab:gray")
    colour = np.where(differ, IMBALANCED_COLOUR, colour)
    ax.hlines(y, low, high, colors=colour, lw=2)
    if mismatch.any():  # a ring around the point (drawn first: the points stay on top)
        ax.scatter(lift[mismatch], y[mismatch], s=160, facecolors="none", edgecolors="k",
                   linewidths=1.5, zorder=2)  # fmt: skip
    ax.scatter(lift, y, c=colour, zorder=3)
    ax.axvline(0, color="k", lw=0.8)
    marks = [
        " ".join(([IMBALANCED_MARK] if d else []) + ([SRM_MARK] if m else []) + lone)
        for d, m, lone in zip(differ, mismatch, _without_lift(table, alone), strict=True)
    ]
    ax.set_yticks(y, [f"{t}  {m}" if m else t for t, m in zip(labels, marks, strict=True)])
    ax.set(
        title="Conversion lift, treatment minus control (95% interval)",
        xlabel="lift (percentage points); significant: blue a gain, red a loss"
        + (" (Holm-adjusted p)" if column == "significant_holm" else ""),
    )
    shown = [c for c in VERDICTS if c in set(colour[~alone])]
    handles = [Line2D([], [], color=c, marker="o", lw=2, label=VERDICTS[c]) for c in shown]
    if mismatch.any():
        handles.append(
            Line2D([], [], ls="", marker="o", ms=12, mfc="none", mec="k",
                   label=f"{SRM_MARK} sample-ratio mismatch: group sizes refute the expected split")
        )  # fmt: skip
    # under the axis label whatever the rows: in the figure's own margin
    fig.legend(handles=handles, loc="outside lower center", fontsize=7, frameon=False, ncols=2)
    ax.grid(axis="x", alpha=0.3)
    fig.canvas.draw()  # lays the labels out: what they leave of the width is the panel's
    panel = ax.get_position().width * fig.get_figwidth()
    if panel < PANEL_WIDTH_IN:
        fig.set_figwidth(fig.get_figwidth() + PANEL_WIDTH_IN - panel)
    return fig


def _without_lift(table: pd.DataFrame, alone: np.ndarray) -> list[list[str]]:
    """Per row, why it has no lift, where it has none: the group it lacks (as the CLI's SRM
    column says it), else that no group was drawn by chance (shares of 0 and 1 only)."""
    return [
        [f"[{group_lacking(row.get('n_treatment', 1), row.get('n_control', 1)) or NONE_DRAWN}]"]
        if none
        else []
        for (_, row), none in zip(table.iterrows(), alone, strict=True)
    ]


def retention_heatmap(retention: pd.DataFrame) -> Figure:
    """Cohorts (rows, with their sizes) x months since first purchase, percentages written in
    each cell; month 0 (100% by definition) is left out so the colours use their range."""
    shares = retention.drop(columns=["customers", "m0"]).to_numpy("float64") * 100
    rows, columns = shares.shape
    fig, ax = plt.subplots(figsize=(2.5 + 0.6 * columns, 1.5 + 0.3 * rows), dpi=100)
    image = ax.imshow(np.ma.masked_invalid(shares), cmap="Blues", aspect="auto", vmin=0)
    top = np.nanmax(shares) if np.isfinite(shares).any() else 1.0
    for i, j in zip(*np.nonzero(np.isfinite(shares)), strict=True):
        value = shares[i, j]
        colour = "white" if value > 0.6 * top else "black"
        ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(columns), [c.removeprefix("m") for c in retention.columns[2:]])
    ax.set_yticks(
        range(rows),
        [f"{c}  (n={n:,})" for c, n in zip(retention.index, retention["customers"], strict=True)],
    )
    ax.set(
        title="Retention: % of each cohort buying k months after the first purchase",
        xlabel="months since first purchase",
        ylabel="cohort (first purchase month, customers)",
    )
    fig.colorbar(image, ax=ax, label="% of cohort", shrink=0.6)
    fig.tight_layout()
    return fig


def transition_heatmap(counts: pd.DataFrame, start: str, end: str) -> Figure:
    """Lifecycle stage at start (rows) -> at end (columns), as row percentages and counts."""
    totals = counts.sum(axis=1).to_numpy()
    shares = counts.to_numpy("float64") / np.maximum(totals, 1)[:, None] * 100
    fig, ax = plt.subplots(figsize=(2.5 + 1.3 * counts.shape[1], 1.5 + 0.5 * len(counts)), dpi=100)
    ax.imshow(shares, cmap="Greens", aspect="auto", vmin=0, vmax=100)
    for i in range(shares.shape[0]):
        for j in range(shares.shape[1]):
            colour = "white" if shares[i, j] > 60 else "black"
            text = f"{shares[i, j]:.0f}%\n{counts.iat[i, j]:,}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(counts.shape[1]), list(counts.columns))
    ax.set_yticks(
        range(len(counts)), [f"{s}  (n={n:,})" for s, n in zip(counts.index, totals, strict=True)]
    )
    ax.set(
        title=f"Lifecycle stage: {start} -> {end}",
        xlabel=f"stage at {end}",
        ylabel=f"stage at {start}",
    )
    fig.tight_layout()
    return fig


def policy_value_plot(table: pd.DataFrame, window_days: object = None) -> Figure:
    """Each policy's estimated value per customer, IPW and DR with their intervals, and the
    true value where the history was simulated; the figures in the legend."""
    y = np.arange(len(table))[::-1].astype(float)
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.55 * len(table)), dpi=100)
    for offset, estimator, colour in ((0.15, "dr", "tab:blue"), (-0.15, "ipw", "tab:orange")):
        value = table[f"estimated_value_{estimator}"].to_numpy("float64")
        low = table[f"ci_low_{estimator}"].to_numpy("float64")
        high = table[f"ci_high_{estimator}"].to_numpy("float64")
        figures = ", ".join(f"{p} {v:.2f}" for p, v in zip(table["policy"], value, strict=True))
        ax.hlines(y + offset, low, high, colors=colour, lw=2)
        ax.scatter(value, y + offset, c=colour, zorder=3, label=f"{estimator.upper()}: {figures}")
    if "true_value" in table:
        true = table["true_value"].to_numpy("float64")
        figures = ", ".join(f"{p} {v:.2f}" for p, v in zip(table["policy"], true, strict=True))
        ax.scatter(true, y, marker="x", c="k", s=60, zorder=4, label=f"true: {figures}")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, table["policy"].astype(str))
    ax.set(
        title="Policy value per customer: incremental revenue net of contact costs (95% interval)",
        xlabel="value per customer"
        + (f" over the {window_days}-day response window" if window_days else ""),
    )
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=7, frameon=False)
    fig.tight_layout()
    return fig
