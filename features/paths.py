"""Every file and folder the project reads or writes, from one place.

The project root is the working directory (the Makefile runs from the repo root);
`CRM_LTV_HOME` points it elsewhere, e.g. for tests in a temporary folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    root: Path

    @classmethod
    def from_env(cls) -> Paths:
        return cls(Path(os.environ.get("CRM_LTV_HOME", ".")).resolve())

    @property
    def configs_dir(self) -> Path:
        return self.root / "configs"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def sample_dir(self) -> Path:
        return self.data_dir / "sample"

    @property
    def features_table(self) -> Path:
        return self.data_dir / "features.parquet"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def rejects_dir(self) -> Path:
        return self.reports_dir / "rejects"

    @property
    def metrics_file(self) -> Path:
        return self.reports_dir / "metrics.json"

    @property
    def best_params_file(self) -> Path:
        """Written by `make tune`, read by `make train`."""
        return self.reports_dir / "best_params.json"

    @property
    def truth_customers(self) -> Path:
        return self.sample_dir / "truth_customers.parquet"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def optuna_db(self) -> Path:
        return self.root / "optuna.db"

    def config_file(self, area: str) -> Path:
        return self.configs_dir / f"{area}.yaml"

    def sample_table(self, table: str) -> Path:
        return self.sample_dir / f"{table}.csv"
