"""The MLflow pyfunc face of an uplift bundle, logged as model code (no pickle), like
training/mlflow_model.py for churn/LTV. Input: the feature table at send time; output:
`<action>_purchase_effect` and `<action>_value_effect` per row."""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from crm_ltv.training.uplift import UpliftBundle


class UpliftModel(PythonModel):
    def load_context(self, context: Any) -> None:
        self.bundle = UpliftBundle.load(context.artifacts["bundle"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return self.bundle.predict(model_input)


mlflow.models.set_model(UpliftModel())
