"""Cohorts and customer value: do customers come back, how do they move between lifecycle
stages, and does each acquisition channel earn back what it costs?

- Retention: customers grouped by the month of their first purchase; the share of each cohort
  buying again k months later (month 0 is the first purchase's month: 100%).
- Lifecycle transitions: the stage of every customer at two cutoffs, from the feature builders
  (the same stages the policy sees), counted from -> to.
- LTV:CAC per acquisition channel and cohort: training.reports.ltv_cac_report on the features
  at the cutoff of everyone acquired by then (a customer who never bought brings 0), on margin
  (revenue x gross_margin), plus payback months (when the mean cumulative net margin first
  covers the mean acquisition cost), flagging channels under the configured ratio (3:1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_ltv.experiments.config import CohortConfig
from crm_ltv.features.builders import build_features
from crm_ltv.features.config import LIFECYCLE_STAGES, FeatureConfig
from crm_ltv.features.contract import DataError
from crm_ltv.training.reports import ltv_cac_report

NOT_YET = "(not yet a customer)"
UNKNOWN = "(unknown)"  # no acquisition month, or no channel, known
ALL_COHORTS = "all"


def _month_number(timestamps: pd.Series) -> np.ndarray:
    """Months since year 0, so that differences count calendar months."""
    return (timestamps.dt.year * 12 + timestamps.dt.month - 1).to_numpy("int64")


def _month_label(number: np.ndarray | pd.Index) -> list[str]:
    return [f"{n // 12:04d}-{n % 12 + 1:02d}" for n in np.asarray(number)]


def purchase_months(transactions: pd.DataFrame) -> pd.DataFrame:
    """One row per purchase line: customer_id (text), month number, months since the customer's
    first purchase, net amount. Refunds count in spend, never as a purchase."""
    tx = transactions[["customer_id", "timestamp", "amount"]]
    month = _month_number(tx["timestamp"])
    ids = tx["customer_id"].astype(str).to_numpy()
    bought = tx["amount"].to_numpy() > 0
    if not bought.any():
        raise DataError("transactions: no purchase (positive amount), so no cohort")
    first = pd.Series(month[bought]).groupby(ids[bought]).min()
    first_of_row = first.reindex(ids).to_numpy()  # NaN for refunds of a customer with no purchase
    known = ~np.isnan(first_of_row)
    return pd.DataFrame(
        {
            "customer_id": ids[known],
            "month": month[known],
            "first_month": first_of_row[known].astype("int64"),
            "purchase": bought[known],
            "amount": tx["amount"].to_numpy("float64")[known],
        }
    ).assign(since=lambda f: f["month"] - f["first_month"])


def cohort_retention(transactions: pd.DataFrame, max_months: int) -> pd.DataFrame:
    """Rows: acquisition month ('2024-03'); columns: `customers` (cohort size), then `m0` ..
    `m<max_months>`, the share of the cohort with a purchase that many months after its first.
    Months after the last month of data are NaN (not observed, not zero)."""
    rows = purchase_months(transactions)
    buys = rows.loc[rows["purchase"] & (rows["since"] <= max_months)]
    active = buys.drop_duplicates(["customer_id", "since"])
    counts = active.pivot_table(
        index="first_month", columns="since", values="customer_id", aggfunc="count", fill_value=0
    ).reindex(columns=range(max_months + 1), fill_value=0)
    sizes = counts[0]
    share = counts.div(sizes, axis=0).astype("float64")
    last = _last_full_month(transactions)
    observed = (counts.index.to_numpy()[:, None] + np.arange(max_months + 1)[None, :]) <= last
    share = share.where(observed)
    share.columns = [f"m{k}" for k in share.columns]
    share.insert(0, "customers", sizes.to_numpy())
    share.index = pd.Index(_month_label(counts.index), name="cohort")
    return share


def retention_headline(retention: pd.DataFrame, months: tuple[int, ...]) -> dict[int, float]:
    """Retention k months after the first purchase over every cohort observed that long,
    weighted by cohort size (a big cohort counts more than a small one)."""
    out = {}
    for k in months:
        column = f"m{k}"
        if column not in retention:
            continue
        seen = retention[column].notna()
        if seen.any():
            weights = retention.loc[seen, "customers"]
            out[k] = float((retention.loc[seen, column] * weights).sum() / weights.sum())
    return out


def lifecycle_transitions(
    transactions: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    config: FeatureConfig,
    customers: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Customers by lifecycle stage at `start` (rows; NOT_YET for those without a purchase
    then) and at `end` (columns), from the feature builders' lifecycle_stage."""
    if start >= end:
        raise DataError(f"lifecycle transitions: --from {start} is not before --to {end}")
    before = _stages(transactions, start, config, customers)
    after = _stages(transactions, end, config, customers)
    frame = pd.DataFrame({"from": before.reindex(after.index).fillna(NOT_YET), "to": after})
    table = pd.crosstab(frame["from"], frame["to"])
    rows = [s for s in (*LIFECYCLE_STAGES, NOT_YET) if s in table.index]
    columns = [s for s in LIFECYCLE_STAGES if s in table.columns]
    return table.reindex(index=rows, columns=columns, fill_value=0).rename_axis(
        index="stage_at_start", columns="stage_at_end"
    )


def _stages(
    transactions: pd.DataFrame,
    cutoff: pd.Timestamp,
    config: FeatureConfig,
    customers: pd.DataFrame | None,
) -> pd.Series:
    table = build_features(transactions, cutoff, config, customers)
    stages = table["lifecycle_stage"].astype(str)
    stages.index = table.index.astype(str)
    return stages


def transition_shares(counts: pd.DataFrame) -> pd.DataFrame:
    """Each row of a transition table as shares of its customers."""
    return counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0)


def ltv_cac_table(
    transactions: pd.DataFrame,
    customers: pd.DataFrame,
    as_of: pd.Timestamp,
    features: FeatureConfig,
    config: CohortConfig,
) -> pd.DataFrame:
    """Per acquisition cohort (config.value_cohort; `all` first) and channel: customers, mean
    CAC, margin to date, historic LTV (both as revenue x config.gross_margin), both ratios to
    CAC, payback months and whether the historic LTV:CAC is under the target.

    Everyone acquired by `as_of` counts: the customers table's rows signed up by then (unknown
    signup: counted) and every buyer; one who never bought cost their CAC and brought 0. The
    cohort is the month of the first purchase, or of the signup for one who never bought."""
    for column in ("acquisition_channel", "acquisition_cost"):
        if column not in customers:
            raise DataError(f"customers: no {column!r} column, so no LTV:CAC by channel")
    customers = customers.drop_duplicates("customer_id")
    customers = customers.assign(customer_id=customers["customer_id"].astype(str))
    history = transactions.loc[transactions["timestamp"] <= as_of]
    table = build_features(history, as_of, features, customers).reset_index()
    table["customer_id"] = table["customer_id"].astype(str)
    acquired = customers
    if "signup_date" in customers:
        acquired = customers.loc[~(pd.to_datetime(customers["signup_date"]) > as_of)]
    never = acquired.loc[~acquired["customer_id"].isin(table["customer_id"]), "customer_id"]
    table = pd.concat(
        [table, pd.DataFrame({"customer_id": never, "monetary_total": 0.0, "historic_ltv": 0.0})],
        ignore_index=True,
    )
    margin = config.gross_margin
    table = table.assign(
        monetary_total=table["monetary_total"].astype("float64") * margin,
        historic_ltv=table["historic_ltv"].astype("float64") * margin,
    )
    months = purchase_months(history)
    first = months.groupby("customer_id")["first_month"].first().reindex(table["customer_id"])
    if "signup_date" in customers:
        signup = pd.to_datetime(customers.set_index("customer_id")["signup_date"])
        signup = signup.reindex(table["customer_id"])
        # a blank signup, or a buyer missing from the table (a rejected row), has no month:
        # only known dates become month numbers (NaT cast to an integer is garbage)
        known_signup = signup.notna().to_numpy()
        signed = pd.Series(np.nan, index=first.index)
        signed[known_signup] = _month_number(signup[known_signup])
        first = first.fillna(signed)
    known = first.notna().to_numpy()
    first_month = first.to_numpy()
    cohort = np.where(
        known,
        _cohort_labels(np.nan_to_num(first_month).astype("int64"), config.value_cohort),
        UNKNOWN,
    )
    cumulative = _cumulative_spend(months, table["customer_id"], first, _last_full_month(history))
    cumulative = cumulative * margin
    parts = []
    for label, rows in [(ALL_COHORTS, np.ones(len(table), bool))] + [
        (c, cohort == c) for c in sorted(set(cohort))
    ]:
        subset = table.loc[rows].reset_index(drop=True)
        # No model here: predicted value 0, so the report's value_to_date_and_predicted_to_cac
        # is value to date / CAC.
        none = pd.DataFrame({"predicted_value": np.zeros(len(subset))})
        report = ltv_cac_report(subset, none, customers)
        assert report is not None  # the columns were checked above
        payback = _payback_months(cumulative.loc[rows], subset, customers)
        report = report.assign(cohort=label, payback_months=report["channel"].map(payback))
        parts.append(report)
    out = pd.concat(parts, ignore_index=True).rename(
        columns={
            "value_to_date_and_predicted_to_cac": "value_to_date_to_cac",
            "mean_value_to_date": "mean_margin_to_date",
        }
    )
    # no CAC (organic): no ratio, so neither under nor over the target (tester W: it read false)
    ratio = out["historic_ltv_to_cac"]
    out["under_target"] = (ratio < config.ltv_cac_target).astype("boolean").where(ratio.notna())
    columns = [
        "cohort",
        "channel",
        "customers",
        "mean_cac",
        "mean_margin_to_date",
        "mean_historic_ltv",
        "value_to_date_to_cac",
        "historic_ltv_to_cac",
        "payback_months",
        "under_target",
    ]
    return out[columns]


def _last_full_month(transactions: pd.DataFrame) -> int:
    """The month number of the last calendar month the data covers to its end: the month of
    the last transaction when that is its last day, else the month before (a partial month
    would read as customers lost)."""
    last = transactions["timestamp"].max()
    month = int(_month_number(pd.Series([last]))[0])
    return month if (last + pd.Timedelta(days=1)).month != last.month else month - 1


def _cohort_labels(first_month: np.ndarray, freq: str) -> np.ndarray:
    year, month = first_month // 12, first_month % 12 + 1
    if freq == "Y":
        return np.array([f"{y:04d}" for y in year])
    if freq == "Q":
        return np.array([f"{y:04d}Q{(m - 1) // 3 + 1}" for y, m in zip(year, month, strict=True)])
    return np.array(_month_label(first_month))


def _cumulative_spend(
    months: pd.DataFrame, ids: pd.Series, first: pd.Series, last: int
) -> pd.DataFrame:
    """Per customer (rows in the order of `ids`): net spend up to and including each month
    since acquisition (`first`, a month number; 0 spend for one who never bought); NaN for
    months after `last`, the last full month of data, and for an unknown acquisition month."""
    spend = months.pivot_table(
        index="customer_id", columns="since", values="amount", aggfunc="sum", fill_value=0.0
    )
    horizon = max(int(spend.columns.max()), int(last - first.min())) if first.notna().any() else 0
    spend = spend.reindex(index=ids.to_numpy(), columns=range(horizon + 1), fill_value=0.0)
    cumulative = spend.cumsum(axis=1)
    start = first.to_numpy("float64")
    observed = (start[:, None] + np.arange(horizon + 1)[None, :]) <= last  # NaN: False
    return cumulative.where(observed).reset_index(drop=True)


def _payback_months(
    cumulative: pd.DataFrame, table: pd.DataFrame, customers: pd.DataFrame
) -> pd.Series:
    """Per channel: the first month since acquisition (0 = the first purchase's month) by which
    the mean cumulative net spend of its customers observed that long covers the mean CAC of
    those same customers (the CAC of everyone against the spend of the older cohorts alone let
    the months' mix of cohorts, not their spend, set the payback); NaN when it never does
    within the months observed, or when there is no CAC to pay back."""
    by_id = customers.set_index("customer_id")
    # object first: a categorical column refuses a category it lacks (customers not in the table)
    channel = by_id["acquisition_channel"].reindex(table["customer_id"]).astype(object)
    channel = channel.fillna(UNKNOWN)
    channel = channel.astype(str).to_numpy()
    cac = by_id["acquisition_cost"].reindex(table["customer_id"]).to_numpy("float64")
    cumulative = cumulative.reset_index(drop=True)
    out = {}
    for name in sorted(set(channel)):
        rows = channel == name
        spend = cumulative.loc[rows].to_numpy("float64")  # NaN: not observed that long
        costs = np.broadcast_to(cac[rows][:, None], spend.shape)
        both = ~np.isnan(spend) & ~np.isnan(costs)
        counted = both.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_spend = np.where(both, spend, 0.0).sum(axis=0) / counted
            mean_cac = np.where(both, costs, 0.0).sum(axis=0) / counted
        covered = np.flatnonzero((counted > 0) & (mean_cac > 0) & (mean_spend >= mean_cac))
        out[name] = float(covered[0]) if len(covered) else np.nan
    return pd.Series(out)
