"""Tables for analysts, logged with every run: RFM segments and LTV:CAC by acquisition channel."""

from __future__ import annotations

import pandas as pd


def segment_report(test: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Per RFM segment: customers, actual vs predicted churn, predicted vs actual value."""
    frame = pd.DataFrame(
        {
            "rfm_segment": test["rfm_segment"].astype(str).to_numpy(),
            "actual_churn": test["churned"].to_numpy("float64"),
            "predicted_churn": predictions["churn_probability"].to_numpy(),
            "mean_predicted_ltv": predictions["predicted_value"].to_numpy(),
            "mean_actual_value": test["future_value"].to_numpy("float64"),
        }
    )
    table = frame.groupby("rfm_segment").agg(
        customers=("actual_churn", "size"),
        actual_churn=("actual_churn", "mean"),
        predicted_churn=("predicted_churn", "mean"),
        mean_predicted_ltv=("mean_predicted_ltv", "mean"),
        mean_actual_value=("mean_actual_value", "mean"),
    )
    return table.sort_values("customers", ascending=False).reset_index()


def ltv_cac_report(
    test: pd.DataFrame, predictions: pd.DataFrame, customers: pd.DataFrame | None
) -> pd.DataFrame | None:
    """Per acquisition channel: cost per customer against value so far plus predicted value
    over the horizon, and the classic historic LTV. None without acquisition costs."""
    if customers is None or "acquisition_cost" not in customers.columns:
        return None
    cost = customers.drop_duplicates("customer_id").set_index("customer_id")
    frame = pd.DataFrame(
        {
            "channel": cost["acquisition_channel"]
            .reindex(test["customer_id"])
            .astype(object)  # a categorical column refuses a category it lacks
            .fillna("(unknown)")
            .astype(str)
            .to_numpy()
            if "acquisition_channel" in cost.columns
            else "(all)",
            "cac": cost["acquisition_cost"].reindex(test["customer_id"]).to_numpy("float64"),
            "value_to_date": test["monetary_total"].to_numpy("float64"),
            "predicted_value": predictions["predicted_value"].to_numpy(),
            "historic_ltv": test["historic_ltv"].to_numpy("float64"),
        }
    )
    table = frame.groupby("channel").agg(
        customers=("cac", "size"),
        mean_cac=("cac", "mean"),
        mean_value_to_date=("value_to_date", "mean"),
        mean_predicted_value=("predicted_value", "mean"),
        mean_historic_ltv=("historic_ltv", "mean"),
    )
    realised = table["mean_value_to_date"] + table["mean_predicted_value"]
    cac = table["mean_cac"].where(table["mean_cac"] > 0)
    table["value_to_date_and_predicted_to_cac"] = realised / cac
    table["historic_ltv_to_cac"] = table["mean_historic_ltv"] / cac
    return table.reset_index()
