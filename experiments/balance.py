"""Balance check: were treatment and control alike before the send?

A difference of outcomes is a causal lift only when the groups were drawn at random: then
they are alike, up to chance, on everything known at send time. A targeted campaign (the top
spenders against random others) passes the sample-ratio check whenever its group sizes match
the split, yet its "lift" is the selection. So per action, each numeric feature at send time
(segments.features_at_send, the features uplift learns from) is compared between the treated
contacts and the control contacts the comparison uses: the standardised mean difference

    SMD = (mean_t - mean_c) / sqrt((var_t + var_c) / 2)

and a rank test: Student's t (one pooled variance) on the features' ranks. Under
randomisation both groups are one population, so one variance is right; ranks keep the test
at its level on the skewed, zero-inflated features (refund_rate, spend_30d) of a small
control group, where Welch's t on the values flagged 2-10% of random 90/10 and 95/5 splits
at a stated 0.1% (a control without a large value has a low mean and a tiny variance). Rows
that carry their own chance of treatment (ab.SHARE) are weighted by 1 / p (treatment) and
1 / (1 - p) (control), so a design whose known shares differ between sends is not called
imbalanced for them. A feature of two values (a category's level, a flag) of unweighted rows
gets Fisher's exact test instead, a t-test being liberal where one value is rare; weighted
groups wholly apart have no rank variance and get the exact rank test's p (_apart). An
action is imbalanced when some feature has |SMD| >= `smd_threshold` (0.1, the usual rule)
AND a p-value under `alpha` / features (Bonferroni): a large randomised campaign shows tiny
SMDs that are "significant", a small one large SMDs that are chance; only both together are
a different population.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from crm_ltv.experiments.ab import SHARE
from crm_ltv.experiments.config import BalanceConfig
from crm_ltv.experiments.text import p_said

# Columns `action_balance` adds to an action's row (ab.ab_table's, uplift's run).
COLUMNS = ("balance_feature", "balance_smd", "balance_p_value", "balance_imbalanced")


@dataclass(frozen=True)
class Balance:
    """The worst feature of one comparison (largest |SMD| among those beyond chance, else
    among all), and whether the groups differ before the send."""

    feature: str | None  # None: no numeric feature to compare (or a group empty)
    smd: float
    p_value: float
    imbalanced: bool
    features: int  # features compared: the Bonferroni divisor

    def said(self) -> str:
        return said(self.feature, self.smd, self.p_value)


def said(feature: str | None, smd: float, p_value: float) -> str:
    """'recency_days SMD +1.23, p < 0.0001', as warnings and notes name a feature's
    difference (a Balance's, or the columns of an action's row)."""
    return f"{feature} SMD {smd:+.2f}, p {p_said(p_value)}"


DIFFER = "treatment and control differ before the send"
# The 0/1 feature action_balance adds: the customer has a purchase before the send.
HISTORY = "has_purchase_before_send"


def imbalance_said(balance: Balance) -> str:
    """Why an imbalanced action is no randomised comparison, as uplift's progress, note,
    params and error say it after the action's name."""
    return f"{DIFFER} ({balance.said()}): not a randomised comparison"


def _weighted(values: np.ndarray, weights: np.ndarray) -> tuple[float, float, float]:
    """Weighted mean, variance and Kish's effective size (n for equal weights, where the
    variance is the usual unbiased one)."""
    total = weights.sum()
    mean = float((weights * values).sum() / total)
    n_eff = float(total**2 / (weights**2).sum())
    spread = float((weights * (values - mean) ** 2).sum() / total)
    variance = spread * n_eff / (n_eff - 1.0) if n_eff > 1.0 else math.nan
    return mean, variance, n_eff


def _fisher(
    values: np.ndarray, t: np.ndarray, c: np.ndarray, customers: np.ndarray | None
) -> float:
    """Fisher's exact p of a two-valued feature (a category's level, a flag), each group's
    customers counted once (their first contact's value). A t-test, on ranks or values, is far
    too liberal where one value is rare: one treated customer alone on a category among 20
    treated and 380 controls read p = 1e-5 where 1 in 20 random splits puts them there (p
    0.05), and with 50 unevenly used categories 28% of random 95/5 splits of 400 customers
    were flagged (review of 2026-12-07)."""
    high = values == np.nanmax(values)
    table = []
    for group in (t, c):
        if customers is None:
            k, n = int(high[group].sum()), int(group.sum())
        else:
            first = pd.Series(high[group]).groupby(customers[group], sort=False).first()
            k, n = int(first.sum()), len(first)
        table.append([k, n - k])
    return float(stats.fisher_exact(table).pvalue)


def _apart(n_t: float, n_c: float) -> float:
    """Two-sided p of groups of n_t and n_c wholly apart on a feature constant within each:
    of the C(n_t + n_c, n_t) equally likely random splits, at most two put one value on
    each side (the exact rank test). Three treated customers and three controls fall wholly
    apart by chance one time in ten; read as p = 0, a binary feature flagged about 4% of
    small random campaigns."""
    log_splits = math.lgamma(n_t + n_c + 1.0) - math.lgamma(n_t + 1.0) - math.lgamma(n_c + 1.0)
    return min(1.0, 2.0 * math.exp(-log_splits))


def feature_balance(
    features: pd.DataFrame,
    treated: np.ndarray,
    config: BalanceConfig,
    share: np.ndarray | None = None,
    customers: np.ndarray | None = None,
) -> Balance:
    """Treated rows against the others of `features` (one comparison); `share`: each row's
    chance of treatment, for the inverse-probability weights (None: equal weights);
    `customers`: each row's customer id. A customer contacted at ten sends is about one
    customer's features ten times: the test counts each group's distinct customers at most
    (ten sends to 400 customers read as 4,000 and flagged chance as a difference)."""
    treated = np.asarray(treated, bool)
    if share is None:
        weights = np.ones(len(treated))
    else:
        p = np.asarray(share, float)
        weights = np.where(treated, 1.0 / p, 1.0 / (1.0 - p))
    numeric = [
        name
        for name in features.columns
        if pd.api.types.is_numeric_dtype(features[name])
        or pd.api.types.is_bool_dtype(features[name])
    ]
    found: list[tuple[str, float, float]] = []  # feature, SMD, p
    for name in numeric:
        values = features[name].to_numpy("float64", na_value=np.nan)
        known = np.isfinite(values) & np.isfinite(weights)
        t, c = known & treated, known & ~treated
        if t.sum() < 2 or c.sum() < 2 or np.ptp(values[known]) == 0:
            continue  # a constant (the send's season at one send) has nothing to tell apart
        mean_t, var_t, n_t = _weighted(values[t], weights[t])
        mean_c, var_c, n_c = _weighted(values[c], weights[c])
        if customers is not None:
            n_t = min(n_t, float(len(np.unique(customers[t]))))
            n_c = min(n_c, float(len(np.unique(customers[c]))))
        pooled = math.sqrt((var_t + var_c) / 2.0)
        if pooled > 0:
            smd = (mean_t - mean_c) / pooled
        elif math.isclose(mean_t, mean_c, rel_tol=1e-9, abs_tol=1e-12):  # float noise: alike
            continue
        else:  # constant within each group, and wholly apart
            smd = math.copysign(math.inf, mean_t - mean_c)
        found.append((name, smd, _p_value(values, t, c, weights, n_t, n_c, share, customers)))
    if not found:
        return Balance(None, math.nan, math.nan, False, 0)
    bar = config.alpha / len(found)
    beyond = [f for f in found if abs(f[1]) >= config.smd_threshold and f[2] < bar]
    name, smd, p = max(beyond or found, key=lambda f: abs(f[1]))
    return Balance(name, smd, p, bool(beyond), len(found))


def _p_value(
    values: np.ndarray,
    t: np.ndarray,
    c: np.ndarray,
    weights: np.ndarray,
    n_t: float,
    n_c: float,
    share: np.ndarray | None,
    customers: np.ndarray | None,
) -> float:
    """The test of one feature: Fisher's where it has two values and rows are unweighted (a
    level of a category, a flag: few of one value, where a t-test is liberal), else the rank
    test, or the exact p of groups wholly apart where ranks have no variance (weighted rows)."""
    known = t | c
    if share is None and len(np.unique(values[known])) == 2:
        return _fisher(values, t, c, customers)
    ranks = np.full(len(values), np.nan)
    ranks[known] = stats.rankdata(values[known])
    rank_t, spread_t, _ = _weighted(ranks[t], weights[t])
    rank_c, spread_c, _ = _weighted(ranks[c], weights[c])
    if not spread_t + spread_c > 0:
        return _apart(n_t, n_c)
    test = stats.ttest_ind_from_stats(
        rank_t, math.sqrt(spread_t), n_t, rank_c, math.sqrt(spread_c), n_c, equal_var=True
    )
    return float(test.pvalue)


def balance_columns(balance: Balance) -> dict[str, object]:
    """`balance` as the columns (COLUMNS) of an action's row."""
    return dict(
        zip(
            COLUMNS,
            (balance.feature, balance.smd, balance.p_value, balance.imbalanced),
            strict=True,
        )
    )


def _levels(features: pd.DataFrame, history: pd.Series) -> pd.DataFrame:
    """`features` with each categorical column (favourite_category, main_channel,
    lifecycle_stage, acquisition_channel) as one 0/1 column per level,
    `acquisition_channel=affiliate`: a campaign sent to one
    channel's customers against random others differed on nothing numeric and passed as
    randomised. A customer without the value (no category bought) is 0 on every level;
    missing only where the customer has no purchase by the send, as the numeric features."""
    out = {}
    for name in features.columns:
        column = features[name]
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            out[name] = column
            continue
        for level in sorted(column.dropna().astype(str).unique()):
            out[f"{name}={level}"] = column.astype(str).eq(level).astype(float).where(history)
    return pd.DataFrame(out, index=features.index)


def action_balance(
    frame: pd.DataFrame,
    features: pd.DataFrame,
    config: BalanceConfig,
    pooled: bool = False,
    default_share: float = 0.5,
) -> dict[str, Balance]:
    """Per action of `frame` (columns customer_id, action and treated: bool; `features`
    aligned with it): its treated contacts against its own control contacts, or every
    control contact when the comparison pools them (uplift.pool_controls). Rows with an
    expected_treatment_share are weighted by it, a row without one by `default_share`
    (ab.expected_treatment_share)."""
    treated = frame["treated"].to_numpy(bool)
    # a customer without a purchase by the send has every feature missing, and was left out
    # of each feature's comparison: new customers against established ones passed as alike
    history = features.notna().any(axis=1)
    features = _levels(features, history).assign(**{HISTORY: history.astype(float)})
    action = frame["action"].astype(str).to_numpy()
    customers = frame["customer_id"].astype(str).to_numpy()
    share = None
    if SHARE in frame and frame[SHARE].notna().any():
        share = frame[SHARE].astype("float64").fillna(default_share).to_numpy()
    out = {}
    for name in sorted(set(action[treated])):
        rows = (action == name) | (~treated if pooled else False)
        out[name] = feature_balance(
            features.loc[rows].reset_index(drop=True),
            treated[rows],
            config,
            None if share is None else share[rows],
            customers[rows],
        )
    return out
