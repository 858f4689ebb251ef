"""`crm-ltv serve` passes serving.yaml to BentoML through BENTOML_CONFIG_OVERRIDES: a user's
own overrides in that variable are kept, not replaced."""

from __future__ import annotations

import json

import pytest

from crm_ltv.features.config import ConfigError
from crm_ltv.serving.config import SERVICE_NAME, ServingConfig, bentoml_overrides


def test_serving_yaml_alone():
    merged, overridden = bentoml_overrides(ServingConfig(workers=3), None)
    assert json.loads(merged)["services"][SERVICE_NAME]["workers"] == 3 and overridden == []


def test_the_users_overrides_are_kept_and_win_where_both_set_a_key():
    given = json.dumps(
        {"services": {SERVICE_NAME: {"workers": 1, "traffic": {"max_concurrency": 8}}},
         "api_server": {"metrics": {"enabled": False}}}
    )  # fmt: skip
    merged, overridden = bentoml_overrides(ServingConfig(workers=3, access_log=False), given)
    service = json.loads(merged)["services"][SERVICE_NAME]
    assert service["workers"] == 1  # theirs, for this one start
    assert service["traffic"] == {"timeout": 60, "max_concurrency": 8}  # both, merged
    assert service["logging"] == {"access": {"enabled": False}}  # ours, untouched
    assert json.loads(merged)["api_server"] == {"metrics": {"enabled": False}}
    assert overridden == [f"services.{SERVICE_NAME}.workers"]


@pytest.mark.parametrize(
    ("given", "message"),
    [("{workers: 2}", "BENTOML_CONFIG_OVERRIDES: not JSON"), ("[1]", "expected a JSON object")],
)
def test_overrides_that_are_not_a_json_object_are_a_clear_error(given, message):
    with pytest.raises(ConfigError, match=message):
        bentoml_overrides(ServingConfig(), given)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"workers": 0}, f"services.{SERVICE_NAME}.workers: 0 is not a value it takes"),
        ({"workers": "two"}, f"services.{SERVICE_NAME}.workers: 'two' is not a value it takes"),
        (
            {"logging": {"access": {"enabled": "no"}}},
            f"services.{SERVICE_NAME}.logging.access.enabled: 'no' is not of type bool",
        ),
        ({"traffic": {"timeout": -1}}, f"services.{SERVICE_NAME}.traffic.timeout: -1 is not a"),
    ],
)
def test_values_bentoml_refuses_are_one_error_naming_the_key(given, message):
    """Tester A: `"workers": 0` passed, `serve` said "serving on ...", then BentoML failed
    with a dump of its schema (`Or(<function <lambda> at 0x...>, ...) did not validate 0`)."""
    variable = json.dumps({"services": {SERVICE_NAME: given}})
    with pytest.raises(ConfigError) as refused:
        bentoml_overrides(ServingConfig(), variable)
    assert str(refused.value).startswith(f"BENTOML_CONFIG_OVERRIDES: BentoML refuses {message}")
    assert "<function" not in str(refused.value)
    # the server's own settings too, outside the service's (tester Z)
    with pytest.raises(ConfigError, match=r"refuses api_server\.workers: 0 is not a value it"):
        bentoml_overrides(ServingConfig(), json.dumps({"api_server": {"workers": 0}}))
    # what BentoML takes passes: its own word for as many workers as cores, a top-level key
    fine = {"services": {SERVICE_NAME: {"workers": "cpu_count"}}, "api_server": {"timeout": 30}}
    merged, _ = bentoml_overrides(ServingConfig(), json.dumps(fine))
    assert json.loads(merged)["services"][SERVICE_NAME]["workers"] == "cpu_count"


@pytest.mark.parametrize("command", ["serve", "bento"])
def test_serve_and_bento_say_a_bad_variable_before_bentoml_reads_it(tmp_path, command):
    """bentoml parses the variable as it is imported: a JSON traceback, exit code 1."""
    import os
    import subprocess

    from tests.conftest import CLI, free_port, new_home

    args = [command, "--port", str(free_port())] if command == "serve" else [command]
    home = new_home(tmp_path)
    # a home with a store: else `serve` says there is none first (this passed only after a
    # test of the same worker had left MLFLOW_TRACKING_URI set, which hides the home's)
    (home / "mlflow.db").touch()
    env = {**os.environ, "CRM_LTV_HOME": str(home), "BENTOML_CONFIG_OVERRIDES": "{bad",
           "BENTOML_HOME": str(tmp_path / "bentoml")}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == (
        "error: BENTOML_CONFIG_OVERRIDES: not JSON (Expecting property name enclosed in double "
        "quotes at 1)"
    )
