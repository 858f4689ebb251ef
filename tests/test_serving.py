"""The scoring service for real: `make serve` starts `bentoml serve`, called over HTTP.

One trained project home (small sample) and one BentoML store are shared by this module. The
main server runs with CRM_LTV_API_TOKEN set, so every call here carries the token.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bentoml
import httpx
import pandas as pd
import pytest

from crm_ltv.features.builders import build_features
from crm_ltv.features.config import FeatureConfig, load_config
from crm_ltv.features.paths import Paths
from crm_ltv.training.registry import champion_version, load_bundle
from tests.conftest import (
    CLI,
    ROOT,
    free_port,
    mlflow_client,
    new_home,
    run,
    start_server,
    stop_server,
    wait_ready,
)

TOKEN = "s3cret-token"
AS_OF = "2025-06-30"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def home(trained_home) -> Path:
    return trained_home[0]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "CRM_LTV_HOME": str(home), "BENTOML_HOME": str(home / "bentoml")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("CRM_LTV_API_TOKEN", None)
    return {**env, **extra}


@pytest.fixture(scope="module")
def server(home):
    """`make serve` on a free port; the /readyz statuses seen while it started."""
    port = free_port()
    log = home / "serve.log"
    process = start_server(
        ["make", "-s", "serve", f"PORT={port}"], _env(home, CRM_LTV_API_TOKEN=TOKEN), log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        statuses = wait_ready(f"{base}/readyz", process, log)
        yield base, statuses, log
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def http(server):
    base, _, _ = server
    with httpx.Client(base_url=base, timeout=60, headers=_auth()) as client:
        yield client


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def sample(home) -> tuple[pd.DataFrame, pd.DataFrame]:
    text = {"customer_id": str, "order_id": str}
    tx = pd.read_csv(home / "data/sample/transactions.csv", parse_dates=["timestamp"], dtype=text)
    customers = pd.read_csv(
        home / "data/sample/customers.csv", parse_dates=["signup_date"], dtype=text
    )
    return tx, customers


def _customer_payload(cid: str, tx: pd.DataFrame, customers: pd.DataFrame, as_of: str) -> dict:
    rows = tx[(tx["customer_id"] == cid) & (tx["timestamp"] <= pd.Timestamp(as_of))]
    info = customers.set_index("customer_id").loc[cid]
    transactions = [
        {
            "timestamp": r.timestamp.isoformat(),
            "amount": float(r.amount),
            **{k: getattr(r, k) for k in ("order_id", "category", "channel")
               if isinstance(getattr(r, k), str)},
        }
        for r in rows.itertuples()
    ]  # fmt: skip
    return {
        "customer_id": cid,
        "as_of": as_of,
        "transactions": transactions,
        "signup_date": info["signup_date"].isoformat(),
        "acquisition_channel": info["acquisition_channel"],
    }


def _buyers(tx: pd.DataFrame, as_of: str, n: int) -> list[str]:
    past = tx[(tx["timestamp"] <= pd.Timestamp(as_of)) & (tx["amount"] > 0)]
    return sorted(past["customer_id"].unique())[:n]


def test_make_serve_copies_the_champions_and_is_not_ready_before_the_models(server, home):
    base, statuses, log = server
    text = log.read_text()
    assert "churn: copied churn v1 into the store" in text
    assert "ltv: copied ltv v1 into the store" in text
    # The ready line names the exact copies each worker loaded: versions alone do not tell two
    # homes' v1 apart on one store (tester S)
    copies = re.findall(r"copied (?:churn|ltv) v1 into the store as (\S+)", text)
    ready = re.findall(r"ready: churn v1, ltv v1 \(\d+-day horizon; store copies (.+)\)", text)
    assert len(copies) == 2 and ready, text
    assert all(line.split(", ")[:2] == copies for line in ready), (copies, ready)
    # Before the models are loaded /readyz answers 503 (or the socket is not open yet).
    assert set(statuses) <= {0, 503, 200} and statuses[-1] == 200
    assert 503 in statuses
    assert httpx.get(f"{base}/livez").status_code == 200
    metrics = httpx.get(f"{base}/metrics")
    assert metrics.status_code == 200 and "# TYPE" in metrics.text
    spec = httpx.get(f"{base}/docs.json").json()
    assert "/score" in spec["paths"]
    assert httpx.get(f"{base}/").status_code == 200  # the OpenAPI page


def test_score_raw_transactions_with_the_bentoml_client(server, sample, home):
    base, _, _ = server
    tx, customers = sample
    ids = _buyers(tx, AS_OF, 3)
    payload = [_customer_payload(c, tx, customers, AS_OF) for c in ids]
    with bentoml.SyncHTTPClient(base, token=TOKEN) as client:
        answer = client.score(customers=payload)
    answer = answer if isinstance(answer, dict) else answer.model_dump(mode="json")
    got = answer["customers"]
    assert [c["customer_id"] for c in got] == ids
    for c in got:
        assert 0 <= c["churn_probability"] <= 1 and c["predicted_value"] >= 0
        assert c["horizon_days"] == 90 and c["cold_start"] is False
        assert c["model_versions"] == {"churn": "1", "ltv": "1"}
        assert c["rfm_segment"] and c["lifecycle_stage"]
        models = [r["model"] for r in c["reasons"]]
        assert models == ["churn"] * 3 + ["ltv"] * 3
        churn_contrib = [abs(r["contribution"]) for r in c["reasons"][:3]]
        assert churn_contrib == sorted(churn_contrib, reverse=True)
        nba = c["next_best_action"]
        assert nba["action"] and nba["reason"]
    log = [json.loads(line) for line in (home / "logs/decisions.jsonl").read_text().splitlines()]
    mine = [r for r in log if r["request_id"] == answer["request_id"]]
    assert [r["customer_id"] for r in mine] == ids
    assert mine[0]["model_versions"] == {"churn": "1", "ltv": "1"}
    assert mine[0]["action"] == got[0]["next_best_action"]["action"]
    keys = ("weighed_action", "effect_source", "uplift_version")
    for line, c in zip(mine, got, strict=True):  # what priced the expected value, as answered
        nba = c["next_best_action"]
        assert [line[k] for k in keys] == [nba[k] for k in keys], (line, nba)
        assert (line["effect"] is None) == (nba["weighed_action"] is None), line


def test_scoring_far_from_the_champions_level_is_said_in_the_log(http, sample, server):
    """`crm-ltv score` warned when scoring far from the date the level was set for; the
    service scored any as_of silently (2030, 2199, before the training history)."""
    _, _, log = server
    tx, customers = sample
    cid = _buyers(tx, AS_OF, 1)[0]
    far = {**_customer_payload(cid, tx, customers, AS_OF), "as_of": "2030-01-01"}
    for _ in range(6):  # on both workers, whichever takes each call
        assert http.post("/score", json={"customers": [far]}).status_code == 200
    deadline = time.monotonic() + 10
    while "but the level (total value, churn rate)" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    said = [line for line in log.read_text().splitlines() if "but the level" in line]
    assert all("(said once per worker)" in line for line in said)
    assert len(said) <= 2  # 2 workers, each once, however many calls were far


def test_request_id_is_echoed_and_logged(http, sample, home):
    tx, customers = sample
    cid = _buyers(tx, AS_OF, 1)[0]
    body = {"customers": [_customer_payload(cid, tx, customers, AS_OF)]}
    response = http.post("/score", json=body, headers={"X-Request-ID": "req-42"})
    assert response.status_code == 200
    assert response.headers.get_list("x-request-id") == ["req-42"]  # once, not echoed twice
    assert response.json()["request_id"] == "req-42"
    assert '"request_id":"req-42"' in (home / "logs/decisions.jsonl").read_text()


def test_service_scores_equal_crm_ltv_score(http, sample, home):
    """Parity: same customers and cutoff, raw transactions in, the batch command's numbers out;
    and the same again from precomputed features."""
    tx, customers = sample
    out = home / "scores_parity.csv"
    done = run(home, "score", "--as-of", AS_OF, "--out", str(out))
    assert done.returncode == 0, done.stderr
    batch = pd.read_csv(out, dtype={"customer_id": str}).set_index("customer_id")
    ids = _buyers(tx, AS_OF, 60)
    body = {"customers": [_customer_payload(c, tx, customers, AS_OF) for c in ids]}
    response = http.post("/score", json=body)
    assert response.status_code == 200, response.text
    served = pd.DataFrame(response.json()["customers"]).set_index("customer_id")
    expected = batch.loc[ids]
    pd.testing.assert_series_equal(
        served["churn_probability"], expected["churn_probability"], rtol=1e-9, atol=0
    )
    pd.testing.assert_series_equal(
        served["predicted_value"], expected["predicted_value"], rtol=1e-9, atol=0
    )
    assert (served["rfm_segment"] == expected["rfm_segment"]).all()
    assert (served["lifecycle_stage"] == expected["lifecycle_stage"]).all()
    # A customer alone (a request holds its own lines only) is scored as in the file: its
    # history_share reads the shop's history from the champion's training start, not its own
    # (the newest buyers: alone, their lines would make them known since the data began)
    bought = tx[(tx["timestamp"] < pd.Timestamp(AS_OF) - pd.Timedelta(days=2)) & (tx["amount"] > 0)]
    for c in bought.groupby("customer_id")["timestamp"].min().nlargest(3).index:
        alone = http.post(
            "/score", json={"customers": [_customer_payload(c, tx, customers, AS_OF)]}
        )
        assert alone.status_code == 200, alone.text
        got = alone.json()["customers"][0]
        for name in ("churn_probability", "predicted_value"):
            assert got[name] == pytest.approx(batch.loc[c, name], rel=1e-9, abs=0)

    # Precomputed features (built with the champion's RFM reference) give the same scores.
    mlflow_client(home)  # the home's tracking store and registry for the project's reads
    cuts = load_bundle("churn", champion_version("churn", "champion").version).rfm_cuts

    config = load_config(FeatureConfig, Paths(home).config_file("features"))
    table = build_features(tx, AS_OF, config, customers, cuts).loc[ids[:10]]
    rows = json.loads(table.astype(object).where(table.notna(), None).to_json(orient="index"))
    body = {"customers": [{"customer_id": c, "features": rows[c]} for c in ids[:10]]}
    response = http.post("/score", json=body, headers={"X-Request-ID": "rows-no-as-of"})
    assert response.status_code == 200, response.text
    from_features = pd.DataFrame(response.json()["customers"]).set_index("customer_id")
    # rows without as_of are scored as of now: the answer says when, as the decision log does
    # (it answered null while the log had the server's clock, outcomes' join key)
    logged = [json.loads(line) for line in (home / "logs/decisions.jsonl").read_text().splitlines()
              if '"rows-no-as-of"' in line]  # fmt: skip
    assert sorted(a["as_of"] for a in logged) == sorted(from_features["as_of"]) and logged
    scored_at = datetime.fromisoformat(logged[0]["as_of"])
    assert abs(datetime.now(UTC).replace(tzinfo=None) - scored_at) < timedelta(minutes=5)
    pd.testing.assert_series_equal(
        from_features["churn_probability"],
        expected["churn_probability"].iloc[:10],
        rtol=1e-9,
        atol=0,
    )
    # texts read as the builders write them: ' books ' was an unknown category, scored as none
    padded = [{"customer_id": c["customer_id"], "features": {
        k: f" {v} " if isinstance(v, str) else v for k, v in c["features"].items()}}
        for c in body["customers"]]  # fmt: skip
    assert any(isinstance(v, str) for c in padded for v in c["features"].values())
    response = http.post("/score", json={"customers": padded})
    assert response.status_code == 200, response.text
    again = pd.DataFrame(response.json()["customers"]).set_index("customer_id")
    pd.testing.assert_series_equal(again["churn_probability"], from_features["churn_probability"])


def test_cold_start_and_contact_cap(http, sample):
    tx, customers = sample
    body = {
        "customers": [
            {"customer_id": "new-1", "as_of": AS_OF, "transactions": []},
            {"customer_id": "refund-only", "as_of": AS_OF,
             "transactions": [{"timestamp": "2025-06-01", "amount": -20.0}]},
        ]
    }  # fmt: skip
    response = http.post("/score", json=body)
    assert response.status_code == 200, response.text
    for c in response.json()["customers"]:
        assert c["cold_start"] is True and c["churn_probability"] is None
        assert c["next_best_action"]["action"] == "welcome_offer"
        assert "cold start" in c["next_best_action"]["reason"]

    payload = [_customer_payload(c, tx, customers, AS_OF) for c in _buyers(tx, AS_OF, 40)]
    answers = http.post("/score", json={"customers": payload}).json()["customers"]
    acted = [i for i, a in enumerate(answers) if a["next_best_action"]["action"] != "no_action"]
    assert acted, "no customer of 40 gets an action: the policy never pays on the sample"
    first, chosen = payload[acted[0]], answers[acted[0]]["next_best_action"]["action"]
    sent = (datetime.fromisoformat(AS_OF) - timedelta(days=3)).isoformat()
    capped = {**first, "contacts": [{"action": chosen, "sent_at": sent}]}
    again = http.post("/score", json={"customers": [capped]}).json()["customers"][0]
    assert again["next_best_action"]["action"] != chosen


def _bad_requests(tx_ok: dict) -> list[tuple[str, object, list[str]]]:
    def customer(**change):
        return {"customers": [{**tx_ok, **change}]}

    tx = tx_ok["transactions"][0]
    return [
        # said "1 validation error for ScoreRequestIODescriptor", BentoML's class
        # a body nested past the JSON parser's depth: 500 (the second parse, naming customers,
        # raised RecursionError), at ~1,000 levels
        ("nested too deep", b'{"customers": ' + b"[" * 2000 + b"]" * 2000 + b"}",
         ["the request body is not valid JSON: recursion limit exceeded"]),
        ("nested too deep in a customer",
         b'{"customers": [{"customer_id": "c-deep", "as_of": "2025-06-30", "transactions": '
         + b"[" * 2000 + b"]" * 2000 + b"}]}",
         ["the request body is not valid JSON: recursion limit exceeded"]),
        # went into the answer, the decision log and campaigns.csv as sent
        ("a newline in an id", customer(customer_id="a\nb"),
         ["customer_id", "holds a control character ('\\\\n')"]),
        ("a NUL in an id", customer(customer_id="a\u0000b"),
         ["customer_id", "holds a control character ('\\\\x00')"]),
        ("an empty body", b"", ['Field required: the body should be {\\"customers\\": [...]}',
                                "(an empty body reads as {})"]),
        ("malformed JSON", b'{"customers": [',
         ['"1 validation error for ScoreRequest"',
          "the request body is not valid JSON: EOF while parsing"]),
        ("a decimal comma", customer(transactions=[{**tx, "amount": "12,50"}]),
         ["customer 'c-ok'", "transactions.0.amount", "'12,50' is text; send a JSON number"]),
        ("a time zone refusal says its times are UTC",
         customer(transactions=[{**tx, "timestamp": "2025-07-01T01:30:00+02:00"}]),
         ["transactions.0.timestamp: 2025-06-30T23:30:00 is after as_of 2025-06-30T00:00:00 "
          "(times given with a zone are shown in UTC)"]),
        ("wrong type", customer(transactions=[{**tx, "amount": "forty"}]),
         ["customer 'c-ok'", "transactions.0.amount"]),
        ("missing field", customer(transactions=[{"amount": 3.0}]),
         ["customer 'c-ok'", "transactions.0.timestamp", "Field required"]),
        ("missing customer_id", {"customers": [{"as_of": AS_OF, "transactions": []}]},
         ["customer_id", "Field required"]),
        ("NaN amount", b'{"customers": [{"customer_id": "c-nan", "as_of": "2025-06-30",'
         b' "transactions": [{"timestamp": "2025-06-01", "amount": NaN}]}]}',
         ["customer 'c-nan'", "transactions.0.amount", "finite"]),
        ("infinite amount", b'{"customers": [{"customer_id": "c-inf", "as_of": "2025-06-30",'
         b' "transactions": [{"timestamp": "2025-06-01", "amount": 1e999}]}]}',
         ["customer 'c-inf'", "transactions.0.amount", "finite"]),
        ("unknown feature", {"customers": [{"customer_id": "c-f", "features": {"shoe_size": 42}}]},
         ["customer 'c-f'", "unknown 'shoe_size' (no feature of that name)"]),
        ("feature of the wrong type", {"customers": [{"customer_id": "c-g",
          "features": {"recency_days": "yesterday"}}]}, ["customer 'c-g'", "recency_days"]),
        ("features outside what the builders make",
         {"customers": [{"customer_id": "c-b", "features": {"r_score": 9, "frequency": -5}}]},
         ["customer 'c-b'", "features.r_score: 9 is above 5",
          "features.frequency: -5 is below 1"]),
        ("fractions of counts, days and quintiles",  # were scored as given
         {"customers": [{"customer_id": "c-w", "features": {
             "r_score": 2.5, "orders_90d": 1.5, "recency_days": 3.25, "spend_90d": 12.5}}]},
         ["customer 'c-w'", "features.r_score: 2.5 is not a whole number",
          "features.orders_90d: 1.5 is not a whole number",
          "features.recency_days: 3.25 is not a whole number"]),
        ("categories the builders never make",
         {"customers": [{"customer_id": "c-s", "features": {
             "rfm_segment": "Heroes", "lifecycle_stage": "dormant"}}]},
         ["customer 'c-s'", "features.rfm_segment: 'Heroes' is not one of",
          "features.lifecycle_stage: 'dormant' is not one of"]),
        ("features past what the models can score",  # were a 200 with infinite value
         {"customers": [{"customer_id": "c-x", "features": {
             "monetary_total": 1.7e308, "recency_days": 1e15, "spend_90d": -2e15}}]},
         ["customer 'c-x'", "features.monetary_total: 1.7e+308 is above 1e+15",
          "features.recency_days: 1e+15 is above 109800",
          "features.spend_90d: -2e+15 is below -1e+15"]),
        ("transaction after as_of", customer(transactions=[{**tx, "timestamp": "2025-07-02"}]),
         ["customer 'c-ok'", "transactions.0.timestamp", "after as_of"]),
        ("as_of missing", customer(as_of=None), ["customer 'c-ok'", "as_of"]),
        ("neither transactions nor features", {"customers": [{"customer_id": "c-n"}]},
         ["customer 'c-n'", "exactly one of"]),
        ("empty list", {"customers": []}, ["empty"]),
        ("duplicated ids", {"customers": [tx_ok, tx_ok]},
         ["customer 'c-ok'", "duplicated"]),
        ("batch over the limit",
         {"customers": [{**tx_ok, "customer_id": f"c{i}"} for i in range(1001)]},
         ["1,001 customers", "at most 1,000"]),
        ("time zone at the end of the years (was a 500)",
         customer(transactions=[{**tx, "timestamp": "0001-01-01T00:30:00+01:00"}]),
         ["customer 'c-ok'", "transactions.0.timestamp", "year 1 is outside 1900..2199"]),
        ("as_of far ahead with a time zone (was a 500)",
         customer(as_of="9999-12-31T23:30:00-01:00"), ["customer 'c-ok'", "as_of", "year 9999"]),
        ("amounts whose sum overflows (was an infinite value)",
         customer(transactions=[{**tx, "amount": 1e308}, {**tx, "amount": 1e308}]),
         ["customer 'c-ok'", "transactions.0.amount", "less than or equal to 1000000000000"]),
        ("lines adding up past a feature row's bounds (were scored, the row refused)",
         customer(transactions=[{**tx, "amount": 1e12}] * 1001),
         ["customer 'c-ok'",
          "transactions: add up to features.monetary_total 1.001e+15, above 1e+15"]),
        ("more lines than a customer may send",
         customer(transactions=[tx] * 10_001),
         ["customer 'c-ok'", "10,001 transactions; at most 10,000 (send its feature row "
                             "instead: `crm-ltv features --champions`"]),
        ("misspelt contact action (escaped the contact cap)",
         customer(contacts=[{"action": "recomendation", "sent_at": "2025-06-01"}]),
         ["customer 'c-ok'", "contacts.0.action", "did you mean 'recommendation'?"]),
        ("not an object", b"[1, 2]", ["object"]),
        ("blank customer id (was taken)", customer(customer_id="   "),
         ["customer '   '", "customer_id", "blank"]),
        ("ids equal once trimmed, as the loader reads them (were two customers)",
         {"customers": [tx_ok, {**tx_ok, "customer_id": " c-ok "}]},
         ["customer 'c-ok'", "duplicated (also at index 0)"]),
        ("a boolean amount (was scored as 1.0)",
         customer(transactions=[{**tx, "amount": True}]),
         ["customer 'c-ok'", "transactions.0.amount", "valid number"]),
        ("a boolean feature value (was 1.0)",
         {"customers": [{"customer_id": "c-t", "features": {"recency_days": True}}]},
         ["customer 'c-t'", "features.recency_days", "a boolean: give a number"]),
        ("an order id over 256 characters", customer(transactions=[{**tx, "order_id": "o" * 257}]),
         ["customer 'c-ok'", "transactions.0.order_id", "at most 256 characters"]),
        ("unknown top-level field", {"customers": [tx_ok], "customer": []},
         ["customer", "Extra inputs are not permitted"]),
    ]  # fmt: skip


BAD = _bad_requests(
    {
        "customer_id": "c-ok",
        "as_of": AS_OF,
        "transactions": [{"timestamp": "2025-06-01T10:00:00", "amount": 40.0, "category": "a"}],
    }
)


@pytest.mark.parametrize(("label", "body", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_400_naming_field_and_customer(http, label, body, words):
    mine = {"X-Request-ID": f"call-{abs(hash(label))}"}  # echoed on refusals too
    if isinstance(body, bytes):
        response = http.post("/score", content=body,
                             headers={"Content-Type": "application/json", **mine})  # fmt: skip
    else:
        response = http.post("/score", json=body, headers=mine)
    assert response.status_code == 400, (label, response.status_code, response.text)
    assert response.headers.get("x-request-id") == mine["X-Request-ID"], response.headers
    text = response.text
    for word in words:
        assert word in text, (label, word, text)
    assert "IODescriptor" not in text, text
    # ... and the server keeps serving.
    assert http.get("/readyz").status_code == 200


def test_a_misspelt_customers_key_is_not_told_of_empty_bodies_and_a_repeated_key_reads_last(
    http, sample
):
    """The empty body's hint went to every body without `customers`; and the README says a
    key given twice reads as its last value (JSON leaves it to the reader)."""
    response = http.post("/score", json={"customer": []})
    assert response.status_code == 400 and "Field required" in response.text
    assert "empty body" not in response.text
    tx, customers = sample
    one = json.dumps(_customer_payload(_buyers(tx, AS_OF, 1)[0], tx, customers, AS_OF))
    body = '{"customers": [], "customers": [' + one + "]}"
    response = http.post("/score", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert len(response.json()["customers"]) == 1


def test_the_readme_call_to_copy_is_answered_with_scores(http):
    """The README's curl example, its JSON as written there: a user's first call."""
    text = (ROOT / "README.md").read_text()
    block = text.split("curl -s -X POST http://127.0.0.1:3000/score", 1)[1].split("```", 1)[0]
    body = block.split("-d '", 1)[1].rsplit("'", 1)[0]
    response = http.post("/score", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    (answer,) = response.json()["customers"]
    assert answer["customer_id"] == "c1" and not answer["cold_start"]
    assert 0 < answer["churn_probability"] < 1 and answer["predicted_value"] > 0
    assert answer["next_best_action"]["action"] == "recommendation"  # a repeat buyer of books
    assert answer["next_best_action"]["category"] == "books"


def test_ids_are_read_as_the_loader_reads_them(http, sample, home):
    """Stripped (and '13085.0' is '13085'), so that decisions join to the transactions
    `crm-ltv outcomes` loads: ' 00000042 ' was answered and logged with its spaces."""
    tx, customers = sample
    cid = _buyers(tx, AS_OF, 1)[0]
    body = {
        "customers": [{**_customer_payload(cid, tx, customers, AS_OF), "customer_id": f" {cid} "}]
    }
    response = http.post("/score", json=body, headers={"X-Request-ID": "req-trimmed-id"})
    assert response.status_code == 200, response.text
    assert response.json()["customers"][0]["customer_id"] == cid
    logged = [json.loads(line) for line in (home / "logs/decisions.jsonl").read_text().splitlines()]
    assert [r["customer_id"] for r in logged if r["request_id"] == "req-trimmed-id"] == [cid]


def test_lines_alike_in_every_field_sent_all_count(http, sample):
    """A request carries no product column: two lines of one order, time and price are two
    products (36% of Online Retail II's lines look alike so), not a repeat to drop."""
    tx, customers = sample
    once = _customer_payload(_buyers(tx, AS_OF, 1)[0], tx, customers, AS_OF)
    lines = once["transactions"]
    twice = {**once, "customer_id": "twice", "transactions": [lines[-1], *lines]}
    response = http.post("/score", json={"customers": [once, twice]})
    assert response.status_code == 200, response.text
    first, both = response.json()["customers"]
    assert both["predicted_value"] > first["predicted_value"]


def test_long_texts_are_refused_not_echoed(http):
    """A 1 MB customer id and a 20 KB X-Request-ID were taken, echoed and logged."""
    body = {"customers": [{"customer_id": "x" * 1_000_000, "as_of": AS_OF, "transactions": []}]}
    response = http.post("/score", json=body)
    assert response.status_code == 400
    assert "customer_id: String should have at most 256 characters" in response.text
    assert "(1,000,000 characters)" in response.text and len(response.content) < 2_000
    fine = {"customers": [{"customer_id": "x", "as_of": AS_OF, "transactions": []}]}
    response = http.post("/score", json=fine, headers={"X-Request-ID": "r" * 20_000})
    assert response.status_code == 400
    assert "header X-Request-ID: 20,000 characters; at most 128" in response.text
    assert len(response.content) < 2_000
    response = http.post("/score", json=fine, headers={"X-Request-ID": "r" * 128})
    assert response.status_code == 200 and response.json()["request_id"] == "r" * 128
    # UTF-8 read as latin-1 came back and was logged as 'hÃ©llo': no join on the caller's id
    response = http.post("/score", json=fine, headers={"X-Request-ID": "héllo".encode()})
    assert response.status_code == 400 and "printable ASCII characters only" in response.text
    # a form went to BentoML's form parser, and a malformed one was a 500
    form = {"content-type": "multipart/form-data; boundary=xyz"}
    response = http.post("/score", content=json.dumps(fine), headers=form)
    assert response.status_code == 415 and "takes a JSON body" in response.text


def test_a_bad_request_is_one_line_in_the_server_log(server, http):
    """BentoML logged every 400 with a traceback; the service's filter makes it one line."""
    _, _, log = server
    response = http.post(
        "/score",
        json={"customers": [{"customer_id": "c-log-line"}]},
        headers={"X-Request-ID": "call-c-log-line"},
    )
    assert response.status_code == 400
    assert response.headers["x-request-id"] == "call-c-log-line"
    deadline = time.monotonic() + 10
    while "c-log-line" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = log.read_text().splitlines()
    [at] = [i for i, line in enumerate(lines) if "c-log-line" in line and "client error" in line]
    assert "Exception on /score [POST]: client error:" in lines[at]
    assert not any(line.startswith("Traceback") for line in lines[at + 1 : at + 3])
    # the answer's id is in its log line (tester H: none of 2,215 refused calls' was)
    assert lines[at].endswith("(X-Request-ID call-c-log-line)"), lines[at]


def test_unknown_paths_add_no_metrics_series(http):
    """Tester H: every path a scanner tried added about 20 /metrics series for as long as the
    workers ran (200 random paths: 101 series to 4,101; without a token, or with one)."""
    page = http.get("/")  # the OpenAPI page and the files it loads are served paths
    assert page.status_code == 200
    assets = re.findall(r'(?:href|src)="(/[^"]+)"', page.text)
    for asset in assets:
        assert http.get(asset).status_code == 200, asset
    for k in range(30):
        assert http.get(f"/scan-{k}/admin.php").status_code == 404
    mounted = {asset.split("/")[1] for asset in assets}  # e.g. static_content
    for folder in mounted:  # under a mount: any path is taken, and 404 where no file is
        assert http.get(f"/{folder}/scan-{folder}.php").status_code == 404
    assert http.get("/score").status_code == 405  # a served path, another method
    # the call goes on with its own path: BentoML's redirect of a trailing slash, as before
    slash = http.post("/score/", json={"customers": []})
    assert slash.status_code == 307 and slash.headers["location"].endswith("/score")
    text = http.get("/metrics").text
    assert "scan-" not in text
    assert 'endpoint="/<unknown path>"' in text and 'endpoint="/score"' in text
    assert all(f'endpoint="/{folder}/*"' in text for folder in mounted), text


def test_the_log_filter_keeps_tracebacks_of_server_errors_only():
    from pydantic import BaseModel, ValidationError

    from crm_ltv.serving.service import ClientErrorsInOneLine

    class Body(BaseModel):
        n: int

    def record(error: BaseException) -> logging.LogRecord:
        made = logging.LogRecord("x", logging.ERROR, "f", 1, "Exception on %s [%s]",
                                 ("/score", "POST"), (type(error), error, None))  # fmt: skip
        assert ClientErrorsInOneLine().filter(made)
        return made

    try:
        Body.model_validate({"n": "many"})
    except ValidationError as exc:
        bad = record(exc)
    assert bad.exc_info is None and bad.levelno == logging.INFO
    assert bad.getMessage().startswith("Exception on /score [POST]: client error: Input should")
    crash = record(RuntimeError("boom"))
    assert crash.exc_info is not None and crash.levelno == logging.ERROR


def test_many_bad_customers_get_a_short_answer(http):
    """Each of 1,500 customers wrong once answered 1,500 problems; 100,000 answered 68 MB."""
    bad = [{"customer_id": f"c{i}"} for i in range(1_500)]  # neither transactions nor features
    response = http.post("/score", json={"customers": bad[:900]})
    assert response.status_code == 400
    assert "for ScoreRequest (900 problems, the first 50 shown)" in response.text
    assert len(response.content) < 20_000
    over = [{"customer_id": f"c{i}", "features": {}} for i in range(1_500)]  # each misses all
    response = http.post("/score", json={"customers": over})
    assert response.status_code == 400
    assert "1,500 customers; at most 1,000 per request" in response.text
    assert "shown" not in response.text and len(response.content) < 2_000
    assert http.get("/readyz").status_code == 200


def test_the_openapi_page_declares_the_answers_the_service_gives(server, http):
    """Tester M: the page said a 400's detail was text (it is a list of problems) and named
    no 401, 413, 415 or 503; a client generated from it broke on them. Ids may be numbers."""
    base, _, _ = server
    spec = httpx.get(f"{base}/docs.json").json()
    responses = spec["paths"]["/score"]["post"]["responses"]
    assert {"200", "400", "401", "413", "415", "503"} <= set(responses)
    assert "Retry-After" in responses["503"]["headers"]
    detail = spec["components"]["schemas"]["InvalidArgument"]["properties"]["detail"]
    assert detail["type"] == "array"
    schemas = spec["components"]["schemas"]
    for table, field in (("Transaction", "order_id"), ("CustomerIn", "customer_id")):
        variants = schemas[table]["properties"][field]["anyOf"]
        assert any(v.get("type") == "integer" for v in variants), field
    # OpenAPI 3.0 words, as the page says it is: optional fields are nullable, not a union with
    # {"type": "null"}, and there is no propertyNames (JSON Schema 2020-12's, from pydantic)
    text = json.dumps(spec)
    assert spec["openapi"].startswith("3.0") and "propertyNames" not in text
    assert '{"type": "null"}' not in text and '"type": ["' not in text
    as_of = schemas["CustomerIn"]["properties"]["as_of"]
    assert as_of["type"] == "string" and as_of["nullable"] is True
    source = schemas["NextBestAction"]["properties"]["effect_source"]  # a nullable enum: null in it
    assert source["nullable"] is True and None in source["enum"]
    # the answers have the shapes declared, and the headline counts in words
    two = {"customers": [{"customer_id": "a"}, {"customer_id": "b"}]}  # neither kind of input
    bad = http.post("/score", json=two)
    assert bad.status_code == 400 and bad.json()["error"] == "2 validation errors for ScoreRequest"
    for problem in bad.json()["detail"]:
        assert set(detail["items"]["required"]) <= set(problem), problem
    assert int(bad.headers["content-length"]) == len(bad.content)
    one = http.post("/score", json={"customers": two["customers"][:1]})
    assert one.json()["error"] == "1 validation error for ScoreRequest"
    gzip = http.post("/score", content=b"\x1f\x8b", headers={"Content-Encoding": "gzip"})
    assert gzip.status_code == 415 and list(gzip.json()) == ["error"], gzip.text
    assert "content-encoding 'gzip' is not read" in gzip.json()["error"]


def test_a_large_body_is_parsed_beside_the_event_loop_and_answered_alike(http, sample):
    """A body over PARSE_ON_LOOP_BYTES is parsed in a thread (tester M: 27 MB held the health
    probes for seconds): its scores and its errors are those of small calls."""
    from crm_ltv.serving.service import PARSE_ON_LOOP_BYTES

    tx, customers = sample
    batch = [_customer_payload(c, tx, customers, AS_OF) for c in _buyers(tx, AS_OF, 400)]
    assert len(json.dumps({"customers": batch})) > PARSE_ON_LOOP_BYTES
    large = http.post("/score", json={"customers": batch})
    assert large.status_code == 200, large.text[:500]
    small = http.post("/score", json={"customers": batch[:3]})
    keys = ("customer_id", "churn_probability", "predicted_value", "rfm_segment")
    scored = [{k: c[k] for k in keys} for c in large.json()["customers"][:3]]
    assert scored == [{k: c[k] for k in keys} for c in small.json()["customers"]]
    wrong = [*batch[:-1], {**batch[-1], "as_of": "2025-13-01"}]
    refused = http.post("/score", json={"customers": wrong})
    assert refused.status_code == 400
    assert f"customer {batch[-1]['customer_id']!r}: as_of" in refused.text, refused.text


def test_a_batch_of_exactly_the_limit_is_scored(http):
    """At most 1,000 customers per request: 1,000 are scored (1,001 are refused, above)."""
    body = {"customers": [{"customer_id": f"c{i}", "as_of": AS_OF, "transactions": []}
                          for i in range(1000)]}  # fmt: skip
    response = http.post("/score", json=body)
    assert response.status_code == 200, response.text[:500]
    assert len(response.json()["customers"]) == 1000


def test_auth_needs_the_bearer_token_but_probes_stay_open(server):
    base, _, _ = server
    body = {"customers": [{"customer_id": "x", "as_of": AS_OF, "transactions": []}]}
    assert httpx.post(f"{base}/score", json=body).status_code == 401
    wrong = httpx.post(f"{base}/score", json=body, headers=_auth("nope") | {"X-Request-ID": "r1"})
    assert wrong.status_code == 401 and "bearer token" in wrong.text
    assert wrong.headers["x-request-id"] == "r1"
    assert httpx.post(f"{base}/score", json=body, headers=_auth()).status_code == 200
    token = TOKEN
    for given, status in (
        (f"bearer {token}", 200),  # the scheme's case is free (RFC 7235)
        (f"BEARER  {token}", 200),
        (f"Basic {token}", 401),
        (f"Bearer {token[:-1]}", 401),
        (f"Bearer {token.upper()}", 401),
    ):
        answer = httpx.post(f"{base}/score", json=body, headers={"Authorization": given})
        assert answer.status_code == status, given
    for path in ("/readyz", "/livez", "/metrics"):
        assert httpx.get(f"{base}{path}").status_code == 200


def _worker_pids(server: subprocess.Popen) -> list[int]:
    """BentoML worker processes of a server (`crm-ltv serve` execs `bentoml serve`, whose
    children they are)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (proc / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent == server.pid and b"_bentoml_impl.worker.service" in command:
            pids.append(int(proc.name))
    return pids


def _workers(server: subprocess.Popen) -> int:
    return len(_worker_pids(server))


def _running(pid: int) -> bool:
    """Not ended, nor a zombie no one has reaped yet (a container's PID 1 may not reap)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_workers_stop_when_their_server_process_is_killed(server, home, tmp_path):
    """Tester A: a SIGKILL of the server process (the OOM killer's choice, say) left its
    workers running for good, each in a session of its own: ready to probes, scoring and
    holding the port, so a restarted `serve` was refused."""
    own = tmp_path / "home"
    own.mkdir()
    log = tmp_path / "serve.log"
    process, base = _serve_by_hand(home, own, log)
    workers: list[int] = []
    try:
        wait_ready(f"{base}/readyz", process, log)
        workers = _worker_pids(process)
        assert workers, log.read_text()[-2000:]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        deadline = time.monotonic() + 60
        while any(map(_running, workers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(map(_running, workers)), log.read_text()[-2000:]
        said = log.read_text()
        assert f"the server process (pid {process.pid}) that started this worker (pid " in said
        with pytest.raises(httpx.ConnectError):  # the port is free for the next start
            httpx.get(f"{base}/livez", timeout=5)
    finally:
        for pid in filter(_running, workers):
            os.kill(pid, signal.SIGKILL)
        stop_server(process)


def test_unreachable_registry_serves_the_store_copies_with_a_warning(
    server, home, sample, tmp_path
):
    """Runs after the main server copied the champions into the store. Its home has its own
    serving.yaml: one worker, one scoring call in flight, which `crm-ltv serve` applies. The
    store copies served are this home's registry's (a server that ran at that address): not
    whichever home's the store got last (tester S), nor another registry's."""
    own = tmp_path / "home"
    (own / "configs").mkdir(parents=True)
    (own / "configs/serving.yaml").write_text("workers: 1\nmax_in_flight: 1\n")
    port = free_port()
    log = home / "serve_offline.log"
    env = _env(home, MLFLOW_TRACKING_URI="http://127.0.0.1:9", CRM_LTV_HOME=str(own))
    refused = subprocess.run([CLI, "serve", "--port", str(port)], env=env, capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "the BentoML model store holds no copy of this home's churn and ltv" in refused.stderr
    _copy_in_store(env, ("churn", "ltv"), tracking_uri="http://127.0.0.1:9")
    # a newer LTV copy of another run of that registry (another horizon, say): the fallback
    # serves the churn copy's own partner of one training run, not the newest of each
    _copy_in_store(env, ("ltv",), tracking_uri="http://127.0.0.1:9", run_id="another-run")
    process = start_server([CLI, "serve", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}/score"
    try:
        # Called as soon as the socket answers: a worker still loading its models waits for
        # them (serving.yaml: model_load_wait_seconds) rather than failing the call.
        wait_ready(f"http://127.0.0.1:{port}/readyz", process, log, until=frozenset({200, 503}))
        body = {"customers": [{"customer_id": "x", "as_of": AS_OF, "transactions": []}]}
        for _ in range(4):
            answer = httpx.post(url, json=body, timeout=60)
            assert answer.status_code == 200, answer.text
            assert answer.json()["customers"][0]["model_versions"] == {"churn": "1", "ltv": "1"}
        said = log.read_text()  # unreachable, not "no versions"
        assert "warning: registry at http://127.0.0.1:9: cannot be read (API request to" in said
        assert "serving this home's newest copies in the BentoML store: churn v1 (" in said
        served = said.split("serving this home's newest copies in the BentoML store: ")[1]
        ltv_tag = served.split("ltv v1 (")[1].split(")")[0]
        [newest] = _copy_tags(env, "ltv", run_id="another-run")
        assert ltv_tag != newest, served
        assert _workers(process) == 1  # serving.yaml's workers, not the default 2
        # Past max_in_flight, 503 with Retry-After at once; the calls let in are answered.
        tx, customers = sample
        heavy = {"customers": [_customer_payload(c, tx, customers, AS_OF)
                               for c in _buyers(tx, AS_OF, 1000)]}  # fmt: skip
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: httpx.post(url, json=heavy, timeout=120), range(8)))
        statuses = sorted(a.status_code for a in answers)
        assert set(statuses) == {200, 503} and statuses.count(200) >= 1, statuses
        shed = next(a for a in answers if a.status_code == 503)
        assert shed.headers["retry-after"] == "1" and "max_in_flight" in shed.json()["error"]
    finally:
        stop_server(process)


def test_champions_reading_features_the_config_does_not_build_are_not_served(
    server, home, tmp_path
):
    """features.yaml with other windows than the champions learnt from: every /score was a 500
    (ValueError: missing features). Now the workers never get ready and say why, once."""
    own = tmp_path / "home"
    (own / "configs").mkdir(parents=True)
    (own / "configs/serving.yaml").write_text("workers: 1\n")
    features = (ROOT / "configs/features.yaml").read_text()
    (own / "configs/features.yaml").write_text(
        features.replace("windows_days: [30, 90, 180, 365]", "windows_days: [30, 60, 180, 365]")
    )
    port = free_port()
    log = home / "serve_unbuilt.log"
    env = _env(home, MLFLOW_TRACKING_URI="http://127.0.0.1:9", CRM_LTV_HOME=str(own))
    process = start_server([CLI, "serve", "--port", str(port)], env, log)
    try:
        wait_ready(f"http://127.0.0.1:{port}/livez", process, log)
        body = {"customers": [{"customer_id": "x", "as_of": AS_OF, "transactions": []}]}
        answer = httpx.post(f"http://127.0.0.1:{port}/score", json=body, timeout=60)
        assert answer.status_code == 503, answer.text  # BentoML words every 5xx alike
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 503
        said = "configs/features.yaml does not build spend_90d, orders_90d, which churn v1 and"
        assert said in log.read_text() and "restore that one, or retrain" in log.read_text()
        assert "missing features" not in log.read_text()
    finally:
        stop_server(process)


def test_the_configs_a_service_reads_are_said_with_where_they_come_from(tmp_path, monkeypatch):
    """The line a worker logs as it loads its models: the home's files, the packaged rest."""
    from crm_ltv.serving.config import configs_said

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "configs").mkdir()
    for name in ("nba.yaml", "serving.yml", "train.yaml"):
        (tmp_path / "configs" / name).write_text("{}\n")
    assert configs_said(Paths(tmp_path)) == (
        f"home {tmp_path}; configs: nba.yaml, serving.yml from {tmp_path}/configs; "
        "features.yaml packaged"
    )


def _serve_by_hand(home: Path, own: Path, log: Path, **extra: str) -> tuple[subprocess.Popen, str]:
    """`bentoml serve` of the service, one worker, as a Bento is served by hand: no `crm-ltv
    serve` checks the project home (`own`) first. The models of `home`'s store."""
    from crm_ltv.serving.config import BENTOML_OVERRIDES_ENV, ServingConfig, bentoml_overrides

    port = free_port()
    overrides, _ = bentoml_overrides(ServingConfig(workers=1))
    env = _env(home, CRM_LTV_HOME=str(own), **{BENTOML_OVERRIDES_ENV: overrides}, **extra)
    bentoml_cli = str(Path(CLI).parent / "bentoml")
    command = [bentoml_cli, "serve", "crm_ltv.serving.service:CrmLtv", "--port", str(port)]
    return start_server(command, env, log), f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("where", "serving_yaml", "said"),
    [
        # every /score hung 60 s, then a plain-text 500: the admission limit read the file
        ("tmp", "max_in_flight: 0\n",
         "not serving: ConfigError: {own}/configs/serving.yaml: max_in_flight: Input should be "
         "greater than or equal to 1"),
        # the workers crashed as they started, again and again (making logs/), port silent
        ("proc", None,
         "not serving: ConfigError: decision log: {own}/logs/decisions.jsonl cannot be made: "
         "/proc is not writable (No such file or directory)"),
        # a Bento served so read it from its own src folder (BentoML changes into it): ready,
        # the packaged configs, the decision log inside the Bento. Refused wherever it serves.
        ("relative", "max_in_flight: 0\n",
         "not serving: ConfigError: CRM_LTV_HOME='{own}' is a relative path, which would be "
         "read from the folder BentoML serves from (a Bento's own src folder), not where you "
         'started it: give the project home as an absolute path (e.g. CRM_LTV_HOME="$PWD/'
         '{own}")'),
    ],
    ids=["invalid serving.yaml", "unwritable home", "relative home"],
)  # fmt: skip
def test_a_home_served_by_hand_that_cannot_be_served_from_is_a_503_saying_why(
    server, home, tmp_path, where, serving_yaml, said
):
    """`crm-ltv serve` refuses such a home before it starts; `bentoml serve` of a Bento does
    not: its workers stay up, not ready, and every scoring call answers 503 with the reason
    at once, as for a Bento served without CRM_LTV_HOME; the server log says it too."""
    own = Path("/proc/crm-ltv-home") if where == "proc" else tmp_path / "home"
    if serving_yaml is not None:
        (own / "configs").mkdir(parents=True)
        (own / "configs/serving.yaml").write_text(serving_yaml)
    if where == "relative":  # the same home, named from the folder the server starts in
        own = Path(os.path.relpath(own, ROOT))
    log = home / "serve_by_hand.log"
    process, base = _serve_by_hand(home, own, log)
    try:
        wait_ready(f"{base}/readyz", process, log, timeout=90, until=frozenset({503}))
        body = {"customers": [{"customer_id": "x", "as_of": AS_OF, "transactions": []}]}
        answer = httpx.post(f"{base}/score", json=body, timeout=10)
        ready = httpx.get(f"{base}/readyz", timeout=10).status_code
    finally:
        stop_server(process)
    assert answer.status_code == 503, answer.text
    assert answer.json() == {"error": said.format(own=own)}
    assert ready == 503
    assert f"[ERROR] [entry_service:crm-ltv:1] {said.format(own=own)}" in log.read_text()
    assert "Application startup failed" not in log.read_text()


def test_a_decision_log_that_cannot_be_written_is_a_503_saying_why_and_not_ready(
    server, home, sample, tmp_path
):
    """A log that fails while the server runs (a full disk; here a folder where the file was):
    the scores are not answered, as their decisions would not be on record for outcomes and
    policy-eval. The answer says why (it said BentoML's "please check the server log", which
    logged a traceback for each call), and the worker is not ready until the log can be
    written again (/readyz stayed 200). A removed logs/ folder is made again (every call was
    refused). One worker: /readyz is answered by the one whose write failed."""
    own = tmp_path / "home"
    own.mkdir()
    log = home / "serve_log_fails.log"
    decisions = own / "logs/decisions.jsonl"
    tx, customers = sample
    body = {"customers": [_customer_payload(_buyers(tx, AS_OF, 1)[0], tx, customers, AS_OF)]}
    from crm_ltv.serving.service import CUSTOMER_WEIGHT, THREAD_FROM_WEIGHT

    # scored in a thread, whose OSError crosses back to the answer
    assert 60 * CUSTOMER_WEIGHT > THREAD_FROM_WEIGHT
    batch = {
        "customers": [_customer_payload(c, tx, customers, AS_OF) for c in _buyers(tx, AS_OF, 60)]
    }
    process, base = _serve_by_hand(home, own, log)
    try:
        wait_ready(f"{base}/readyz", process, log)
        with httpx.Client(base_url=base, timeout=60) as http:
            assert http.post("/score", json=body).status_code == 200
            shutil.rmtree(decisions.parent)
            again = http.post("/score", json=body, headers={"X-Request-ID": "after-rm"})
            assert again.status_code == 200, again.text
            assert '"request_id":"after-rm"' in decisions.read_text()
            decisions.unlink()
            decisions.mkdir()
            refused = http.post("/score", json=body, headers={"X-Request-ID": "refused"})
            refused_batch = http.post("/score", json=batch)
            not_ready = http.get("/readyz").status_code
            decisions.rmdir()
            ready = http.get("/readyz").status_code
            answered = http.post("/score", json=body).status_code
    finally:
        stop_server(process)
    assert refused.status_code == 503, refused.text
    assert refused.json() == {
        "error": "the decision log could not be written (Is a directory): decisions are not "
        "answered unless they are on record (outcomes and policy-eval read it)"
    }
    assert refused.headers["x-request-id"] == "refused"
    assert (refused_batch.status_code, refused_batch.json()) == (503, refused.json())
    assert (not_ready, ready, answered) == (503, 200, 200)
    said = log.read_text()
    assert f"decision log not written: [Errno 21] Is a directory: '{decisions}'" in said
    assert "Traceback" not in said


@pytest.mark.parametrize(
    ("given", "bearer", "auth_said"),
    [
        # every call got 401, and nothing said why
        ("tok123\n", "tok123", "[INFO] [entry_service:crm-ltv:1] bearer auth on: API calls "
         "need the token of CRM_LTV_API_TOKEN"),
        # an empty secret: refused, not taken for an API without auth
        (" \n", None, "[ERROR] [entry_service:crm-ltv:1] not serving: CRM_LTV_API_TOKEN is set "
         "but blank: set the token, or unset it; every API call is refused"),
    ],
    ids=["trailing newline", "blank"],
)  # fmt: skip
def test_the_token_is_read_without_surrounding_whitespace_and_auth_is_said_at_start(
    server, home, tmp_path, given, bearer, auth_said
):
    """A token mounted from a secret file ends in a newline; the server log says once per
    worker whether API calls need a token."""
    own = tmp_path / "home"
    own.mkdir()
    log = home / "serve_token.log"
    process, base = _serve_by_hand(home, own, log, CRM_LTV_API_TOKEN=given)
    body = {"customers": [{"customer_id": "x", "as_of": AS_OF, "transactions": []}]}
    try:
        wait_ready(f"{base}/{'readyz' if bearer else 'livez'}", process, log)
        with_token = httpx.post(f"{base}/score", json=body, headers=_auth(bearer or "x"))
        without = httpx.post(f"{base}/score", json=body)
        ready = httpx.get(f"{base}/readyz").status_code  # out of rotation when it refuses all
    finally:
        stop_server(process)
    assert log.read_text().count(auth_said) == 1, log.read_text()
    assert ready == (200 if bearer else 503)
    if bearer:  # an empty home: the log said only "ready: churn v1, ltv v1"
        said = f"[INFO] [entry_service:crm-ltv:1] home {own}; configs: nba.yaml, serving.yaml, "
        assert said + "features.yaml packaged" in log.read_text(), log.read_text()
        assert with_token.status_code == 200, with_token.text
        assert without.status_code == 401
    else:
        for answer in (with_token, without):
            assert answer.status_code == 503 and answer.json() == {
                "error": "not serving: CRM_LTV_API_TOKEN is set but blank: set the token, or "
                "unset it"
            }


def test_serve_in_a_mistyped_home_does_not_serve_the_stores_copies(server, home, tmp_path):
    """With the BentoML store holding another home's champions, `serve` in a home without
    mlflow.db (a mistyped --home) served them and made the home to log decisions in."""
    typo = tmp_path / "hoem"
    done = subprocess.run(
        [CLI, "serve", "--port", str(free_port())], capture_output=True, text=True,
        env=_env(home, CRM_LTV_HOME=str(typo)), timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"error: no mlflow.db in {typo}: nothing was trained in this home" in done.stderr
    assert "serving the models already in the BentoML store" not in done.stderr
    assert not typo.exists()


def test_serve_without_champion_or_store_is_a_clear_error(tmp_path):
    home = new_home(tmp_path)
    done = subprocess.run(
        [CLI, "serve", "--port", str(free_port())],
        capture_output=True, text=True, env=_env(home), timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    # a home without mlflow.db (a mistyped --home): said so, and no empty store is made there;
    # the BentoML store's copies (another home's models) are not served from it, as they were
    # (its decisions logged where that home's `outcomes` never looks)
    assert f"error: no mlflow.db in {home}: nothing was trained in this home" in done.stderr
    assert "`crm-ltv train` (`make train` in the checkout) there first" in done.stderr
    assert not (home / "mlflow.db").exists() and not (home / "logs").exists()
    (home / "mlflow.db").touch()  # a store without versions
    done = subprocess.run(
        [CLI, "serve", "--port", str(free_port())],
        capture_output=True, text=True, env=_env(home), timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "model 'churn' has no versions" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("area", "text", "said"),
    [
        # workers logged it and were never ready; every /score answered 503
        ("nba", ("lifecycle_stages: [new]", "lifecycle_stages: [loyl]"),
         "actions.welcome_offer.eligible: lifecycle_stages: unknown ['loyl']"),
        # ready, and every /score with transactions answered 500 (found as stages were built)
        ("features", ("when: {recency_days: {gt: 365}}", "when: {recency_dayz: {gt: 365}}"),
         "lifecycle.rules.0.when.recency_dayz: no feature of that name "
         "(did you mean 'recency_days'?)"),
        # ready, and every /score answered 500: root may write where the file system may not
        ("serving", "decision_log: /sys/decisions.jsonl\n",
         "decision_log: /sys/decisions.jsonl cannot be made: /sys is not writable"),
        # workers crashed as they started, again and again (FileExistsError)
        ("serving", "decision_log: configs/data.yaml/decisions.jsonl\n",
         "decision_log: {home}/configs/data.yaml is a file, so "
         "{home}/configs/data.yaml/decisions.jsonl cannot be made"),
        # the project home itself: every /score answered 500 (IsADirectoryError)
        ("serving", 'decision_log: ""\n',
         "decision_log: empty: give a file, such as logs/decisions.jsonl"),
        ("serving", "decision_log: configs\n",
         "decision_log: {home}/configs is a folder, not a file"),
    ],
    ids=["nba lifecycle stage", "lifecycle rule feature", "decision log in /sys",
         "decision log under a file", "empty decision log", "decision log a folder"],
)  # fmt: skip
def test_serve_checks_the_configs_the_service_reads_before_it_starts(tmp_path, area, text, said):
    """One error line naming the file and the field, exit 2, no server: these came to light
    only in the workers' log (or as 500s), while `serve` had said it was serving."""
    home = new_home(tmp_path)
    config = home / f"configs/{area}.yaml"
    if isinstance(text, tuple):  # one setting changed
        before, after = text
        assert before in config.read_text()
        config.write_text(config.read_text().replace(before, after, 1))
    else:
        config.write_text(text)
    done = subprocess.run(
        [CLI, "serve", "--port", str(free_port())],
        capture_output=True, text=True, env=_env(home), timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: {config}: {said.format(home=home)}"), line


def _in_a_store_of_its_own(tmp_path: Path, script: str) -> None:
    """Run `script` in a Python process whose BentoML store is a new one under tmp_path."""
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_a_store_copy_is_found_only_for_its_own_registry_name_and_version(tmp_path):
    """Version 1 of another home's registry, or of another model name in the same registry,
    is another model: `crm-ltv serve` there copies its champion into the store rather than
    serve this home's (tester S: a home of churn_c served churn v1); and the newest copy of
    a home is found whatever another home stored after it."""
    _in_a_store_of_its_own(
        tmp_path,
        """
import tempfile
from pathlib import Path
from crm_ltv.serving.store import newest_copy, store_bundle
import json
from crm_ltv.training.bundle import FORMAT, MANIFEST, READS
bundle = Path(tempfile.mkdtemp()) / "b"
bundle.mkdir()
(bundle / "x.txt").write_text("x")
(bundle / MANIFEST).write_text(json.dumps({"format": FORMAT}))
a = {"registry_name": "churn", "registry_version": "1", "tracking_uri": "sqlite:///a/mlflow.db"}
mine = store_bundle("churn", bundle, a)
theirs = store_bundle("churn", bundle, {**a, "tracking_uri": "sqlite:///b/mlflow.db"})
assert newest_copy("crm-ltv-churn", READS, **a).tag == mine.tag
for other in ({"tracking_uri": "sqlite:///c/mlflow.db"}, {"registry_version": "2"},
              {"registry_name": "churn_c"}):
    assert newest_copy("crm-ltv-churn", READS, **{**a, **other}) is None, other
assert newest_copy("crm-ltv-ltv", READS, **a) is None
assert newest_copy("crm-ltv-churn", READS, **a, run_id="another") is None  # made again
home = {k: a[k] for k in ("registry_name", "tracking_uri")}  # its newest, any version
again = store_bundle("churn", bundle, {**a, "registry_version": "2"})
assert newest_copy("crm-ltv-churn", READS, **home).tag == again.tag != theirs.tag
# a copy is labelled with its bundle's own format: one of before the LTV unit (tester K) is
# found by this crm-ltv, which reads it; a /2 copy is passed over by an older crm-ltv's search
old = Path(tempfile.mkdtemp()) / "old"
old.mkdir()
(old / MANIFEST).write_text(json.dumps({"format": "crm-ltv-bundle/1"}))
first = store_bundle("churn", old, {**a, "registry_version": "9"})
assert first.info.metadata["bundle_format"] == "crm-ltv-bundle/1" != FORMAT
assert newest_copy("crm-ltv-churn", READS, **{**a, "registry_version": "9"}).tag == first.tag
assert newest_copy("crm-ltv-churn", ("crm-ltv-bundle/1",), **a) is None
# what a worker declares: the exact copy `crm-ltv serve` synced, not the store's latest
import json, os
from crm_ltv.serving.store import SERVED_MODELS_ENV, served_tag
assert served_tag("crm-ltv-churn") == "crm-ltv-churn:latest"
os.environ[SERVED_MODELS_ENV] = json.dumps({"crm-ltv-churn": str(mine.tag)})
assert served_tag("crm-ltv-churn") == str(mine.tag) and served_tag("x") == "x:latest"
# an inherited value that is not a tag map is an error naming the variable, not a JSON trace
for bad in ('{"crm-ltv-churn": ', '["crm-ltv-churn:x"]', '{"crm-ltv-churn": 1}'):
    os.environ[SERVED_MODELS_ENV] = bad
    try:
        served_tag("crm-ltv-churn")
    except ValueError as exc:
        assert str(exc).startswith(SERVED_MODELS_ENV + " is not a JSON object"), exc
    else:
        raise AssertionError(bad)
print("ok")
""",
    )


def test_retiring_the_uplift_champion_again_adds_no_second_placeholder(tmp_path):
    """Every `crm-ltv serve` without an uplift champion retires it: one placeholder is enough,
    not a new store version at each start."""
    _in_a_store_of_its_own(
        tmp_path,
        """
import bentoml
from crm_ltv.serving.store import UPLIFT_STORE_NAME, retire_uplift, stored_uplift
assert retire_uplift("no uplift champion") is not None
assert retire_uplift("no uplift champion") is None
assert stored_uplift() is None
assert len(bentoml.models.list(UPLIFT_STORE_NAME)) == 1
print("ok")
""",
    )


def _copy_in_store(env: dict[str, str], kinds: tuple[str, ...], **metadata: str) -> list[str]:
    """New store versions of the latest copies of `kinds`, their metadata changed (another
    home's copy, a later version): their tags."""
    script = (
        "import json, shutil, sys, tempfile; from pathlib import Path\n"
        "import bentoml; from crm_ltv.serving.store import STORE_NAMES, store_bundle\n"
        "for kind in sys.argv[2:]:\n"
        "    m = bentoml.models.get(f'{STORE_NAMES[kind]}:latest')\n"
        "    d = Path(tempfile.mkdtemp()) / 'b'\n"
        "    shutil.copytree(m.path, d, ignore=shutil.ignore_patterns('model.yaml'))\n"
        "    print(store_bundle(kind, d, {**m.info.metadata, **json.loads(sys.argv[1])}).tag)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(metadata), *kinds], env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _copy_tags(env: dict[str, str], kind: str, **metadata: str) -> list[str]:
    """The tags of the store copies of `kind` whose metadata has these values."""
    script = (
        "import json, sys; import bentoml; from crm_ltv.serving.store import STORE_NAMES\n"
        "want = json.loads(sys.argv[2])\n"
        "for m in bentoml.models.list(STORE_NAMES[sys.argv[1]]):\n"
        "    if all(m.info.metadata.get(k) == v for k, v in want.items()): print(m.tag)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, kind, json.dumps(metadata)], env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _build_folder_state() -> list[tuple[str, int]]:
    """The checkout's build/ folder: each path in it and its modification time."""
    found = sorted((ROOT / "build").rglob("*")) if (ROOT / "build").exists() else []
    return [(str(p), p.stat().st_mtime_ns) for p in [ROOT / "build", *found] if p.exists()]


def test_make_bento_builds_a_bento_that_serves_without_the_registry(server, home, sample):
    env = _env(home)
    before = _build_folder_state()
    built = subprocess.run(
        ["make", "-s", "bento"], cwd=ROOT, capture_output=True, text=True,
        env={k: v for k, v in env.items() if not k.startswith("MAKE")}, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr + built.stdout
    assert (
        "the Bento carries the models, not the configs: serve it with CRM_LTV_HOME set to the "
        "project home as an absolute path, whose configs/ it reads (nba.yaml, serving.yaml, "
        "features.yaml; packaged defaults where a file is missing)"
    ) in built.stderr, built.stderr
    # the bentoml beside the project's python: not on PATH without an activated venv (tester L)
    beside = Path(sys.executable).parent / "bentoml"  # this venv's, as make's crm-ltv runs
    # this home and store, ready to paste (tester M: a placeholder home, and no BENTOML_HOME)
    store = env["BENTOML_HOME"]
    bento = next((home / "bentoml/bentos/crm-ltv").glob("*/bento.yaml")).parent
    said = f"here: CRM_LTV_HOME={home.resolve()} BENTOML_HOME={store} {beside} serve crm-ltv:"
    assert f"{said}{bento.name}\n" in built.stderr, built.stderr  # its own tag, not latest
    # the wheel is built from a copy: pip wrote its build/ into the checkout (read-only ones fail)
    assert _build_folder_state() == before
    manifest = (bento / "bento.yaml").read_text()
    assert "crm-ltv-churn:" in manifest and "crm-ltv-ltv:" in manifest
    # The project's wheel and the runtime lock, nothing of training or development.
    assert [w.name for w in (bento / "env/python/wheels").glob("crm_ltv-*.whl")]
    packages = (bento / "env/python/requirements.txt").read_text().lower()
    assert "lightgbm==" in packages and "bentoml==" in packages
    for left_out in ("mlflow", "optuna", "pytest", "ruff", "hypothesis", "matplotlib"):
        assert f"\n{left_out}==" not in packages, left_out
    # The Bento pins the copies it was built with: a newer copy in the store (another home's
    # `crm-ltv serve`, a later champion) is not what it serves (it served the store's latest).
    [newer] = _copy_in_store(env, ("churn",), registry_version="99")
    port = free_port()
    log = home / "serve_bento.log"
    offline = _env(home, MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    bentoml_cli = str(Path(CLI).parent / "bentoml")
    process = start_server(
        [bentoml_cli, "serve", "crm-ltv:latest", "--port", str(port)], offline, log
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", process, log)
        tx, customers = sample
        cid = _buyers(tx, AS_OF, 1)[0]
        body = {"customers": [_customer_payload(cid, tx, customers, AS_OF)]}
        answer = httpx.post(f"http://127.0.0.1:{port}/score", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["customers"][0]["model_versions"] == {"churn": "1", "ltv": "1"}
        # Served by hand without CRM_LTV_HOME, its decision log would lie inside the Bento: not
        # ready, and every call says why (BentoML's own 503 body said "check the server log")
        homeless = {k: v for k, v in offline.items() if k != "CRM_LTV_HOME"}
        port, log = free_port(), home / "serve_bento_homeless.log"
        lost = start_server(
            [bentoml_cli, "serve", "crm-ltv:latest", "--port", str(port)], homeless, log
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", lost, log, until=frozenset({503}))
            refused = httpx.post(f"http://127.0.0.1:{port}/score", json=body, timeout=60)
        finally:
            stop_server(lost)
        assert refused.status_code == 503, refused.text
        error = refused.json()["error"]
        assert (
            error.startswith("not serving: ConfigError: decision log ") and "CRM_LTV_HOME" in error
        )
    finally:
        stop_server(process)
        subprocess.run([bentoml_cli, "models", "delete", "-y", newer], env=env, timeout=120)


def test_a_relative_home_is_told_the_absolute_path_the_shell_gives():
    """'~/shop' quoted reached the service unexpanded, and was told "$PWD/~/shop"."""
    from crm_ltv.serving.service import _absolute_hint

    assert _absolute_hint("~/shop") == '"$HOME/shop"' and _absolute_hint("~") == '"$HOME"'
    assert _absolute_hint("shop") == '"$PWD/shop"' and _absolute_hint(".") == '"$PWD/."'


def test_crm_ltv_serve_pins_this_homes_copies_whatever_the_store_got_since(server, home):
    """Tester S: workers declared `crm-ltv-churn:latest`, so one started after another home's
    `serve` (a restart, a crashed worker) scored with that home's models. `crm-ltv serve`
    passes the exact copies it synced; here another home's copy is the store's latest."""
    env = _env(home)
    [foreign] = _copy_in_store(env, ("churn",), tracking_uri="sqlite:////elsewhere/mlflow.db")
    # the command up to the moment it would become `bentoml serve`: what it hands the workers
    started = (
        "import os, sys; from crm_ltv.cli import app; "
        "os.execv = lambda path, argv: (print(os.environ['CRM_LTV_SERVED_MODELS']), "
        "sys.exit(0)); app(['serve', '--port', sys.argv[1]])"
    )
    done = subprocess.run(
        [sys.executable, "-c", started, str(free_port())], env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    pinned = json.loads(done.stdout.strip().splitlines()[-1])
    assert foreign not in pinned.values()  # the store's latest, another home's
    found = subprocess.run(
        [sys.executable, "-c", "import bentoml, sys; print(bentoml.models.get(sys.argv[1])"
         ".info.metadata['tracking_uri'])", pinned["crm-ltv-churn"]],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert found.stdout.strip() == f"sqlite:///{home / 'mlflow.db'}", found.stderr
    assert set(pinned) == {"crm-ltv-churn", "crm-ltv-ltv", "crm-ltv-uplift"}


def test_a_home_whose_registry_is_empty_is_refused_not_served_the_stores_copies(
    server, home, tmp_path
):
    """Tester S: a home whose first train was interrupted (its mlflow.db made, no versions)
    served another home's copies from the store, and logged their decisions; `score` there
    said to train first. So does `serve` now."""
    own = tmp_path / "home"
    own.mkdir()
    (own / "mlflow.db").touch()  # an empty SQLite file: MLflow makes its tables there
    env = _env(home, CRM_LTV_HOME=str(own))
    done = subprocess.run([CLI, "serve", "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "model 'churn' has no versions in the registry at sqlite:///" in done.stderr
    assert "run `crm-ltv train`" in done.stderr and "serving" not in done.stderr
