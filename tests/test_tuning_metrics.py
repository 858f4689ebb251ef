"""What a tuning study optimises: the metric early stopping watches, in its direction."""

from __future__ import annotations

import numpy as np
import pytest

from crm_ltv.training.config import TrainConfig
from crm_ltv.training.models import higher_is_better, watched_metric
from crm_ltv.training.plots import history_plot
from crm_ltv.training.tuning import study_metric


@pytest.mark.parametrize(
    ("params", "objective", "watched"),
    [
        ({}, "binary", "binary_logloss"),  # LightGBM names the objective's own metric
        ({}, "tweedie", "tweedie"),
        ({"metric": "auc"}, "binary", "auc"),
        ({"metric": "auc,binary_logloss"}, "binary", "auc"),  # the first of a list
        ({"metrics": ["average_precision", "auc"]}, "binary", "average_precision"),
        ({"metric_types": "ndcg@5"}, "lambdarank", "ndcg@5"),
    ],
)
def test_the_watched_metric_is_the_first_configured_else_the_objectives(params, objective, watched):
    assert watched_metric(params, objective) == watched


def test_only_ranking_metrics_are_maximised():
    assert all(higher_is_better(m) for m in ("auc", "average_precision", "ndcg@10", "map@3"))
    assert not any(higher_is_better(m) for m in ("binary_logloss", "tweedie", "mape", "l2"))


def test_each_study_optimises_what_its_model_early_stops_on():
    config = TrainConfig()  # churn.params.metric unset here: the objective's log loss
    assert study_metric("churn", config) == "binary_logloss"
    assert study_metric("ltv", config) == "tweedie"
    churn_auc = config.model_copy(
        update={"churn": config.churn.model_copy(update={"params": {"metric": "auc"}})}
    )
    assert study_metric("churn", churn_auc) == "auc"
    hurdle = config.model_copy(
        update={"ltv": config.ltv.model_copy(update={"objective": "hurdle"})}
    )
    assert study_metric("ltv", hurdle) == "binary_logloss"  # its P(buy) booster stops early


def test_the_history_plot_draws_the_best_so_far_in_the_studys_direction():
    values = [0.80, 0.85, 0.83]
    (_, best) = history_plot(values, "t", "auc", higher_is_better=True).axes[0].lines
    assert np.allclose(best.get_ydata(), [0.80, 0.85, 0.85])
    (_, best) = history_plot(values, "t", "loss").axes[0].lines
    assert np.allclose(best.get_ydata(), [0.80, 0.80, 0.80])


def test_tunes_started_together_in_a_new_home_share_one_study(tmp_path):
    """Two tunes started at once in a new home both created optuna.db's tables: one failed
    (`table studies already exists`) in 4 of 10 tries before the lock."""
    import os
    import subprocess
    import sys

    code = (
        "import sys; from crm_ltv.training.tuning import open_study; "
        "s = open_study('crm-ltv-churn-h90-x', f'sqlite:///{sys.argv[1]}', 'maximize', 10); "
        "print(s._study_id)"
    )
    database = tmp_path / "optuna.db"
    started = [
        subprocess.Popen([sys.executable, "-c", code, str(database)], env=dict(os.environ),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]  # fmt: skip
    done = [p.communicate(timeout=300) for p in started]
    assert [p.returncode for p in started] == [0] * 4, [err[-2000:] for _, err in done]
    assert len({out.strip() for out, _ in done}) == 1  # one study for all


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_pruning_reads_the_best_round_so_far_as_the_trials_value_does(direction):
    """The pruner was given each reported round's own value, while a trial's value is its best
    round's: a trial peaking early (round 7) and declining after was pruned below trials it
    beat. A real LightGBM fit that overfits: the reports are the running best."""
    import lightgbm as lgb
    import optuna

    from crm_ltv.training.tuning import pruning_callback

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = (X[:, 0] + rng.normal(scale=2.0, size=400) > 0).astype(float)
    metric = "auc" if direction == "maximize" else "binary_logloss"
    study = optuna.create_study(direction=direction, pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    lgb.train(
        {"objective": "binary", "metric": metric, "num_leaves": 63, "min_data_in_leaf": 2,
         "learning_rate": 0.3, "verbosity": -1, "seed": 1},
        lgb.Dataset(X[:200], y[:200]),
        num_boost_round=60,
        valid_sets=[lgb.Dataset(X[200:], y[200:])],
        valid_names=["valid"],
        callbacks=[lgb.record_evaluation(record := {}), pruning_callback(trial, 5)],
    )  # fmt: skip
    seen = record["valid"][metric]
    reported = study.trials[0].intermediate_values
    best = np.maximum.accumulate(seen) if direction == "maximize" else np.minimum.accumulate(seen)
    assert reported == {step: pytest.approx(best[step - 1]) for step in range(5, 61, 5)}
    assert reported[60] != pytest.approx(seen[-1])  # it overfits: the last round is worse


def test_a_study_cut_short_by_its_time_limit_says_so_and_names_its_best_trial(
    monkeypatch, tmp_path, small_split, train_config
):
    """Tester C: with timeout_minutes set, a tune ran 1 of its 3 trials to go and exited 0
    without a word; and nothing named the best trial, whose run may be an earlier tune's."""
    import mlflow
    import optuna

    from crm_ltv.features.config import load_config
    from crm_ltv.training.config import TuneConfig
    from crm_ltv.training.pipeline import ModelData
    from crm_ltv.training.tuning import MLFLOW_RUN, run_study
    from tests.conftest import CONFIGS

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    tune = load_config(TuneConfig, CONFIGS / "tune.yaml").model_copy(
        update={"trials": 3, "timeout_minutes": 1e-6}  # Optuna checks it after each trial
    )
    data = ModelData.of(small_split, train_config)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    said: list[str] = []
    experiment = mlflow.create_experiment("t", artifact_location=tmp_path.as_uri())
    try:
        with mlflow.start_run(experiment_id=experiment):
            cut = run_study("churn", small_split, data, train_config, tune, storage, "d1",
                            said.append)  # fmt: skip
            untimed = tune.model_copy(update={"timeout_minutes": None})
            resumed = run_study("churn", small_split, data, train_config, untimed, storage, "d1",
                                said.append)  # fmt: skip
        client = mlflow.MlflowClient()
        study = optuna.load_study(study_name=cut.name, storage=storage)
        best_run = client.get_run(study.best_trial.user_attrs[MLFLOW_RUN])
    finally:
        mlflow.set_tracking_uri(None)
    assert cut.timed_out and cut.ran == 1 and cut.to_go == 3
    assert "churn: stopped by timeout_minutes (1e-06, configs/tune.yaml) after 1 of the 3 " in (
        "\n".join(said)
    )
    assert not resumed.timed_out and resumed.ran == 2  # the rest, without a limit
    assert (resumed.best_trial, resumed.best_run_id) == (
        study.best_trial.number,
        best_run.info.run_id,
    )
    assert best_run.data.tags["study"] == cut.name  # a trial's study, whichever tune ran it
    assert [line for line in said if line.startswith("churn trial 2/2 (study trial 2): ")]
