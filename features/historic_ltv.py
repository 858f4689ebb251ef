"""Historic LTV by the classic formula, for reports and as a feature.

LTV = average order value x purchases per year x lifespan factor, where the lifespan factor
is the lifespan in years, or, with a yearly retention r and discount rate d, the sum of
q^k over the lifespan for q = r / (1 + d) (continuous in the lifespan).
"""

from __future__ import annotations

import numpy as np

from crm_ltv.features.config import HistoricLtvConfig

DAYS_PER_YEAR = 365.25


def lifespan_factor(config: HistoricLtvConfig) -> float:
    years = config.lifespan_years
    q = (config.annual_retention or 1.0) / (1.0 + config.discount_rate)
    if abs(q - 1.0) <= 1e-5 + 1e-8:  # np.isclose(q, 1.0), without its 35 us per call
        return years
    return float((1.0 - q**years) / (1.0 - q))


def historic_ltv(
    order_value: np.ndarray,
    n_orders: np.ndarray,
    tenure_days: np.ndarray,
    config: HistoricLtvConfig,
) -> np.ndarray:
    """Classic LTV per customer; short tenures count as `min_tenure_days` to damp new buyers."""
    observed_days = np.maximum(np.asarray(tenure_days, dtype="float64"), config.min_tenure_days)
    per_year = np.asarray(n_orders, dtype="float64") / observed_days * DAYS_PER_YEAR
    return np.asarray(order_value, dtype="float64") * per_year * lifespan_factor(config)
