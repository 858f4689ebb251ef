"""Long fits say they are still running: a booster prints nothing until it is done."""

from __future__ import annotations

import threading
import time

from crm_ltv.training import heartbeat as heartbeat_module
from crm_ltv.training.heartbeat import heartbeat
from crm_ltv.training.pipeline import refit_bundle, train_models


def test_a_blocking_fit_says_it_is_still_running_until_it_ends():
    """lightgbm.dask prints nothing until it is done (minutes on the sample): a line every
    interval while the block runs, none after it."""
    said: list[str] = []
    heard = threading.Event()

    def progress(line: str) -> None:
        said.append(line)
        heard.set()

    with heartbeat(progress, "training the churn booster", every=0.01):
        assert heard.wait(10)
    after = len(said)
    time.sleep(0.05)
    assert len(said) == after  # stopped with the block
    assert said[0].startswith("still training the churn booster (") and said[0].endswith(" s)")


def test_training_and_refitting_say_which_model_is_still_fitting(
    monkeypatch, small_split, train_config, feature_config
):
    """Tester L: `make train` went quiet for 35-70 s in each fit on a busy machine, the refit
    included; the Dask engine alone said it was still training."""
    monkeypatch.setattr(heartbeat_module, "EVERY_SECONDS", 0.001)
    said: list[str] = []
    trained = train_models(small_split, train_config, progress=said.append)
    refit_bundle(small_split, train_config, feature_config, trained, progress=said.append)
    still = {line.split(" (")[0] for line in said if line.startswith("still ")}
    assert still == {
        "still training the churn model",
        "still training the LTV model",
        "still refitting the churn model",
        "still refitting the LTV model",
    }
    # each said between its model's start and its end
    churn = [i for i, line in enumerate(said) if line.startswith("still training the churn")]
    done = next(i for i, line in enumerate(said) if line.startswith("churn model: "))
    assert max(churn) < done


def test_a_tuning_trial_says_it_is_still_running(monkeypatch, tmp_path, small_split, train_config):
    """Tester L: `make tune` printed nothing for 25-70 s between its trial lines."""
    import mlflow
    import optuna

    from crm_ltv.features.config import load_config
    from crm_ltv.training.config import TuneConfig
    from crm_ltv.training.pipeline import ModelData
    from crm_ltv.training.tuning import _objective, study_metric
    from tests.conftest import CONFIGS

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setattr(heartbeat_module, "EVERY_SECONDS", 0.001)
    tune = load_config(TuneConfig, CONFIGS / "tune.yaml")
    data = ModelData.of(small_split, train_config)
    said: list[str] = []
    metric = study_metric("ltv", train_config)
    objective = _objective(
        "ltv", small_split, data, train_config, tune, said.append, metric, "study-x", 1
    )
    experiment = mlflow.create_experiment("t", artifact_location=tmp_path.as_uri())
    try:
        with mlflow.start_run(experiment_id=experiment):
            study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
            study.optimize(objective, n_trials=1)
    finally:
        mlflow.set_tracking_uri(None)
    assert any(line.startswith("still in ltv trial 1/1 (study trial 0) (") for line in said)
    assert said[-1].startswith("ltv trial 1/1 (study trial 0): ")  # none after the trial's line
