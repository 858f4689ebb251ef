"""Shared fixtures: the project's real configs and small inline transaction frames."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.config import DataConfig, FeatureConfig, SampleConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


@pytest.fixture(scope="session")
def feature_config() -> FeatureConfig:
    return load_config(FeatureConfig, CONFIGS / "features.yaml")


@pytest.fixture(scope="session")
def data_config() -> DataConfig:
    return load_config(DataConfig, CONFIGS / "data.yaml")


@pytest.fixture(scope="session")
def small_sample_config() -> SampleConfig:
    config = load_config(SampleConfig, CONFIGS / "sample.yaml")
    return config.model_copy(update={"n_customers": 3_000})


def frame(rows: list[tuple], columns: str = "customer_id timestamp amount") -> pd.DataFrame:
    """A transactions frame from tuples; timestamps as ISO strings."""
    out = pd.DataFrame(rows, columns=columns.split())
    out["timestamp"] = pd.to_datetime(out["timestamp"], format="ISO8601")
    return out
