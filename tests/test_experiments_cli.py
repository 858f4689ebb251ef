"""`crm-ltv ab`, `plan-ab` and `cohorts` for real on a small sample home: printed tables, and
each command's MLflow experiment with its descriptions, metrics, tables and plots."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_ltv.experiments.cohorts import NOT_YET
from tests.conftest import new_home, run


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = new_home(tmp_path_factory.mktemp("experiments"))
    made = run(home, "data", "--n-customers", "400")
    assert made.returncode == 0, made.stderr
    return home


def _client(home: Path):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    return MlflowClient()


def _artifacts(client, run_id: str, folder: str) -> set[str]:
    return {Path(a.path).name for a in client.list_artifacts(run_id, folder)}


def test_ab_prints_a_row_per_action_and_logs_its_experiment(home):
    result = run(home, "ab", "--by", "rfm_segment")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "lift pts [95%]" in lines[0] and "SRM p" in lines[0]
    for action in ("welcome_offer", "recommendation", "vip_invitation", "win_back"):
        assert any(line.strip().startswith(action) for line in lines[1:5])
    assert "by action and rfm_segment at send time" in result.stdout
    client = _client(home)
    experiment = client.get_experiment_by_name("crm-ltv-ab-tests")
    assert "treatment against control" in experiment.tags["mlflow.note.content"]
    (found,) = client.search_runs([experiment.experiment_id])
    assert "contacts with an outcome" in found.data.tags["mlflow.note.content"]
    assert 0 < found.data.metrics["win_back_conversion_rate_treatment"] <= 1
    assert "win_back_min_detectable_lift_abs" in found.data.metrics
    assert _artifacts(client, found.info.run_id, "tables") == {
        "ab_by_action.json",
        "ab_by_action_and_rfm_segment.json",
    }
    assert _artifacts(client, found.info.run_id, "plots") == {
        "lift_by_action.png",
        "lift_by_rfm_segment.png",
    }


def test_ab_rejects_campaign_rows_outside_the_action_catalogue(home, tmp_path):
    campaigns = (home / "data/sample/campaigns.csv").read_text().splitlines()
    campaigns.append(campaigns[1].replace(campaigns[1].split(",")[2], "winback_discount"))
    path = tmp_path / "campaigns.csv"
    path.write_text("\n".join(campaigns) + "\n")
    result = run(home, "ab", "--campaigns", str(path), "--max-reject-share", "0.5")
    assert result.returncode == 0, result.stderr
    assert "rejected 1 rows" in result.stderr
    assert "action not in the action catalogue 1" in result.stderr
    strict = run(home, "ab", "--campaigns", str(path), "--max-reject-share", "0")
    assert strict.returncode == 2 and "action not in the action catalogue" in strict.stderr
    unknown = run(home, "ab", "--by", "favourite_colour")
    assert unknown.returncode == 2 and "--by 'favourite_colour'" in unknown.stderr


def test_plan_ab_prints_customers_per_group(home):
    result = run(home, "plan-ab", "--baseline-rate", "0.1", "--lift", "0.2")
    assert result.returncode == 0, result.stderr
    assert "3,835 customers per group" in result.stdout  # tests/test_experiments_ab.py
    bad = run(home, "plan-ab", "--baseline-rate", "0.6", "--lift", "1.0")
    assert bad.returncode == 2 and "error: --baseline-rate/--lift" in bad.stderr


def test_cohorts_prints_retention_transitions_and_ltv_cac_and_logs_them(home):
    result = run(home, "cohorts")
    assert result.returncode == 0, result.stderr
    assert (
        "cohort retention" in result.stdout and "weighted by cohort size: month 1" in result.stdout
    )
    assert "lifecycle stage" in result.stdout and NOT_YET in result.stdout
    assert "LTV:CAC by acquisition channel" in result.stdout and "paid_search" in result.stdout
    client = _client(home)
    experiment = client.get_experiment_by_name("crm-ltv-cohorts")
    assert "LTV:CAC" in experiment.tags["mlflow.note.content"]
    (found,) = client.search_runs([experiment.experiment_id])
    assert "retention month 1" in found.data.tags["mlflow.note.content"]
    assert 0 < found.data.metrics["retention_month_1"] < 1
    assert "historic_ltv_to_cac_paid_search" in found.data.metrics
    assert _artifacts(client, found.info.run_id, "plots") == {
        "cohort_retention.png",
        "lifecycle_transitions.png",
    }
    assert "ltv_cac_by_channel_and_cohort.json" in _artifacts(client, found.info.run_id, "tables")
