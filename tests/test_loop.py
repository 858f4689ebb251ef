"""The feedback loop for real: `crm-ltv serve` keeps a holdout and logs propensities; then
`crm-ltv outcomes` turns the decision log into campaigns, which `crm-ltv ab`, `crm-ltv uplift`
and `crm-ltv policy-eval --decisions` read.

The home is a copy of the session's trained home (configs, sample, tracking store: no second
training), so what this module registers (an uplift model) never reaches other modules. Its
service holds out 30% and explores 20%, so that a few hundred decisions have a control group.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from crm_ltv.features.paths import default_config_file
from crm_ltv.serving.config import NO_ACTION
from crm_ltv.serving.holdout import candidates, propensity
from tests.conftest import (
    CLI,
    free_port,
    mlflow_client,
    run,
    start_server,
    stop_server,
    wait_ready,
)
from tests.test_serving import _buyers, _customer_payload

SHARE, EXPLORATION = 0.3, 0.2
AS_OFS = ("2025-03-31", "2025-06-30", "2025-09-30")  # windows over before the sample ends
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _config(home: Path, area: str, **changes: object) -> None:
    config = yaml.safe_load(default_config_file(area).read_text())
    for key, value in changes.items():
        section, _, name = key.rpartition(".")
        (config[section] if section else config)[name] = value
    (home / "configs" / f"{area}.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def home(trained_home, tmp_path_factory) -> Path:
    source = trained_home[0]
    home = tmp_path_factory.mktemp("loop")
    shutil.copytree(source / "configs", home / "configs")
    shutil.copytree(source / "data" / "sample", home / "data" / "sample")
    shutil.copy(source / "mlflow.db", home / "mlflow.db")
    _config(home, "serving", **{"holdout": {"share": SHARE, "period": "month",
            "exploration": EXPLORATION, "salt": "loop"}})  # fmt: skip
    # A few hundred decisions: small uplift learners, and a model per action from 20 sends.
    _config(home, "experiments", **{"uplift.min_contacts": 20, "uplift.n_estimators": 20,
            "uplift.params": {"learning_rate": 0.1, "num_leaves": 3,
                              "min_child_samples": 10}})  # fmt: skip
    return home


@pytest.fixture(scope="module")
def server(home):
    port = free_port()
    log = home / "serve.log"
    env = {**os.environ, "CRM_LTV_HOME": str(home), "BENTOML_HOME": str(home / "bentoml")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("CRM_LTV_API_TOKEN", None)
    process = start_server([CLI, "serve", "--port", str(port)], env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/readyz", process, log)
        yield base
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def decided(server, home) -> list[dict]:
    """Decisions for 150 sample buyers at each of three dates (one request per date)."""
    text = {"customer_id": str, "order_id": str}
    tx = pd.read_csv(home / "data/sample/transactions.csv", parse_dates=["timestamp"], dtype=text)
    customers = pd.read_csv(
        home / "data/sample/customers.csv", parse_dates=["signup_date"], dtype=text
    )
    answers = []
    with httpx.Client(base_url=server, timeout=120) as client:
        for as_of in AS_OFS:
            body = {
                "customers": [_customer_payload(c, tx, customers, as_of)
                              for c in _buyers(tx, as_of, 150)]
                + [{"customer_id": f"new-{i}", "as_of": as_of, "transactions": []}
                   for i in range(30)]
            }  # fmt: skip
            response = client.post("/score", json=body)
            assert response.status_code == 200, response.text
            answers.append(response.json())
    return answers


def test_answers_and_the_decision_log_carry_holdout_and_propensity(decided, home):
    log = [json.loads(x) for x in (home / "logs/decisions.jsonl").read_text().splitlines()]
    by_request = {}
    for line in log:
        by_request.setdefault(line["request_id"], []).append(line)
    held = []
    for answer in decided:
        lines = by_request[answer["request_id"]]
        assert [x["customer_id"] for x in lines] == [c["customer_id"] for c in answer["customers"]]
        for c, line in zip(answer["customers"], lines, strict=True):
            action = c["next_best_action"]["action"]
            assert line["action"] == action and line["holdout"] == c["holdout"]
            assert line["explored"] == c["explored"]
            assert line["propensity"] == pytest.approx(c["propensity"], abs=1e-6)
            choices = candidates(line["policy_action"], line["eligible_actions"])
            expected = propensity(action, line["policy_action"], choices, SHARE, EXPLORATION)
            assert line["propensity"] == pytest.approx(expected, abs=1e-6)
            assert (line["holdout_share"], line["exploration"]) == (SHARE, EXPLORATION)
            if c["holdout"]:
                assert action == NO_ACTION and not c["explored"]
            if c["cold_start"] and not c["holdout"] and not c["explored"]:
                assert action == "welcome_offer"
            held.append(c["holdout"])
    # 540 customers, 30% held out: within 4 standard errors (0.079).
    assert abs(sum(held) / len(held) - SHARE) < 4 * (SHARE * (1 - SHARE) / len(held)) ** 0.5


def test_the_loop_outcomes_ab_uplift_and_policy_eval(decided, home):
    campaigns = home / "data/outcomes/campaigns.csv"
    done = run(home, "outcomes")
    assert done.returncode == 0, done.stderr
    assert f"-> {campaigns}" in done.stdout and "left out" in done.stdout
    table = pd.read_csv(campaigns)
    assert set(table["group"]) == {"treatment", "control"}
    assert table["converted"].isin([0, 1]).all()
    # Every held-out customer is a control of the action the policy wanted for them.
    assert (table.loc[table["group"] == "control", "holdout"]).all()

    # The split to check: (1 - h)(1 - e) / ((1 - h)(1 - e) + h), not 1 - h, written per row
    # and read by `ab` from the file (it checked the config's 0.5: MISMATCH on every action).
    share = (1 - SHARE) * (1 - EXPLORATION) / ((1 - SHARE) * (1 - EXPLORATION) + SHARE)
    assert f"{share:.4f}" in done.stdout and "--expected-treatment-share" not in done.stdout
    assert table["expected_treatment_share"].to_numpy() == pytest.approx(share, abs=1e-6)
    ab = run(home, "ab", "--campaigns", str(campaigns))
    assert ab.returncode == 0, ab.stderr
    assert f"expected treatment share of {share:.4f} (the file's" in ab.stdout
    for action in table["action"].unique():
        assert action in ab.stdout

    uplift = run(home, "uplift", "--campaigns", str(campaigns), "--pool-controls")
    assert uplift.returncode == 0, uplift.stderr
    # The file's policy_action column: policy-chosen sends, never pooled even when asked.
    assert "controls of each action's own" in uplift.stderr
    assert (
        "controls not pooled (uplift.pool_controls / --pool-controls): these sends were "
        "chosen by the policy ('policy_action' column)" in uplift.stderr
    )  # the flag, answered
    # the home's registry, named: an in-process command of another test file may have left
    # MLflow's global registry URI on its own home
    versions = mlflow_client(home).search_model_versions("name='uplift'")
    assert len(versions) == 1

    evaluated = run(home, "policy-eval", "--decisions", str(home / "logs/decisions.jsonl"))
    assert evaluated.returncode == 0, evaluated.stderr
    assert "| priors |" in evaluated.stdout and "| nothing |" in evaluated.stdout
