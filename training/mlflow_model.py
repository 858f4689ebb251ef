"""The MLflow pyfunc face of a model bundle, logged as model code (no pickle): MLflow's own
tools (`mlflow models serve`, `mlflow.pyfunc.load_model`) score a registered version with it.
Input: the feature table; output: churn_probability and predicted_value per row."""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from crm_ltv.training.bundle import ModelBundle


class BundleModel(PythonModel):
    def load_context(self, context: Any) -> None:
        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return self.bundle.predict(model_input)


mlflow.models.set_model(BundleModel())
