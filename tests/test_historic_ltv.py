"""The classic historic LTV formula."""

from __future__ import annotations

import numpy as np
import pytest

from crm_ltv.features.config import HistoricLtvConfig
from crm_ltv.features.historic_ltv import historic_ltv, lifespan_factor


def test_plain_formula_is_order_value_times_rate_times_lifespan():
    config = HistoricLtvConfig(lifespan_years=2.0)
    value = historic_ltv(np.array([50.0]), np.array([6]), np.array([365.25]), config)
    assert value[0] == pytest.approx(50 * 6 * 2)


def test_short_tenure_uses_the_minimum_observation_period():
    config = HistoricLtvConfig(lifespan_years=1.0, min_tenure_days=100)
    value = historic_ltv(np.array([10.0]), np.array([1]), np.array([3]), config)
    assert value[0] == pytest.approx(10 * 365.25 / 100)


def test_retention_and_discount_shrink_later_years():
    config = HistoricLtvConfig(lifespan_years=3.0, annual_retention=0.8, discount_rate=0.1)
    q = 0.8 / 1.1
    assert lifespan_factor(config) == pytest.approx(1 + q + q * q)
    assert lifespan_factor(HistoricLtvConfig(lifespan_years=3.0)) == 3.0
