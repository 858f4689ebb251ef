"""The admission middleware for real: concurrent calls through httpx's ASGI transport into a
tiny app whose /score calls wait until the test lets them go."""

from __future__ import annotations

import json
import time

import anyio
import httpx
import pytest
from starlette.types import Receive, Scope, Send

from crm_ltv.features.config import load_config
from crm_ltv.serving.admission import ConcurrencyLimit
from crm_ltv.serving.config import ServingConfig
from tests.conftest import CONFIGS

pytestmark = pytest.mark.anyio
PROBES = ("/livez", "/readyz", "/metrics", "/docs.json", "/")
BODY = {"customers": [{"customer_id": "c1", "features": {}}]}


class Gate:
    """/score waits for `release` (and raises if `fail`); every other path answers at once."""

    def __init__(self, fail: bool = False) -> None:
        self.release = anyio.Event()
        self.waiting = 0
        self.fail = fail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        if scope["path"] == "/score":
            self.waiting += 1
            try:
                await self.release.wait()
            finally:
                self.waiting -= 1
            if self.fail:
                raise RuntimeError("scoring failed")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def _client(app: ConcurrencyLimit) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def _until(condition, seconds: float = 1.0) -> None:
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.001)


async def test_past_the_limit_a_call_gets_503_with_retry_after_at_once_and_probes_pass():
    gate = Gate()
    limit = ConcurrencyLimit(gate, limit=3, retry_after=2)
    statuses: list[int] = []
    async with _client(limit) as client, anyio.create_task_group() as tasks:

        async def call() -> None:
            statuses.append((await client.post("/score", json=BODY)).status_code)

        for _ in range(3):
            tasks.start_soon(call)
        await _until(lambda: gate.waiting == 3)
        assert limit.in_flight == 3  # below the limit: all three admitted, none answered yet

        with anyio.fail_after(0.5):  # at once, while the three still wait
            refused = await client.post("/score", json=BODY)
            probes = [(await client.get(path)).status_code for path in PROBES]
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "2"
        assert refused.headers["content-type"] == "application/json"
        error = refused.json()["error"]
        assert "3 scoring calls in flight" in error and "max_in_flight" in error
        assert gate.waiting == 3  # the refused call never reached the app
        assert probes == [200] * len(PROBES)  # never shed, never counted
        assert limit.in_flight == 3

        gate.release.set()
    assert statuses == [200, 200, 200]
    assert limit.in_flight == 0


async def scoring(scope: Scope, receive: Receive, send: Send) -> None:
    """Like the service's scoring: reads the body, then works on the event loop, no await."""
    await receive()
    time.sleep(0.002)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def test_calls_that_arrive_together_are_counted_before_any_is_served():
    # Without a pause between entry and answer, each call would end before the next is counted
    # and all ten would queue on the event loop: the overload the limit is there to stop.
    limit = ConcurrencyLimit(scoring, limit=3)
    statuses: list[int] = []
    async with _client(limit) as client, anyio.create_task_group() as tasks:

        async def call() -> None:
            statuses.append((await client.post("/score", json=BODY)).status_code)

        for _ in range(10):
            tasks.start_soon(call)
    assert sorted(statuses) == [200] * 3 + [503] * 7
    assert limit.in_flight == 0


async def test_the_count_goes_back_down_so_calls_in_sequence_all_pass():
    gate = Gate()
    gate.release.set()
    limit = ConcurrencyLimit(gate, limit=1)
    async with _client(limit) as client:
        statuses = [(await client.post("/score", json=BODY)).status_code for _ in range(5)]
    assert statuses == [200] * 5
    assert limit.in_flight == 0


async def test_the_count_goes_back_down_when_the_app_raises_or_the_call_is_cancelled():
    failing = Gate(fail=True)
    limit = ConcurrencyLimit(failing, limit=1)
    async with _client(limit) as client:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(client.post, "/score")
            await _until(lambda: failing.waiting == 1)
            assert (await client.post("/score")).status_code == 503
            failing.release.set()
        assert limit.in_flight == 0
        failing.fail = False
        assert (await client.post("/score")).status_code == 200  # admitted again

    gate = Gate()
    limit = ConcurrencyLimit(gate, limit=1)
    async with _client(limit) as client, anyio.create_task_group() as tasks:
        tasks.start_soon(client.post, "/score")  # e.g. the client went away mid-call
        await _until(lambda: limit.in_flight == 1)
        tasks.cancel_scope.cancel()
    assert limit.in_flight == 0


async def test_callable_options_are_resolved_on_the_first_scoring_call_only():
    calls: list[str] = []

    def option(name: str, value: int):
        def read() -> int:
            calls.append(name)
            return value

        return read

    gate = Gate()
    gate.release.set()
    limit = ConcurrencyLimit(gate, limit=option("limit", 2), retry_after=option("retry", 5))
    assert calls == []  # not at construction (BentoML builds it when the service is imported)
    async with _client(limit) as client:
        assert (await client.get("/readyz")).status_code == 200
        assert calls == []
        for _ in range(3):
            assert (await client.post("/score", json=BODY)).status_code == 200
    assert calls == ["limit", "retry"]
    assert limit.limit == 2


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "4"])
async def test_a_limit_that_is_not_a_positive_int_is_an_error(bad):
    limit = ConcurrencyLimit(Gate(), limit=lambda: bad)
    scope = {"type": "http", "path": "/score", "method": "POST", "headers": []}

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        raise AssertionError(f"nothing should be sent: {message}")

    with pytest.raises(ValueError, match="limit: expected an int >= 1"):
        await limit(scope, receive, send)
    with pytest.raises(ValueError, match="retry_after"):
        ConcurrencyLimit(Gate(), limit=1, retry_after=0).limit  # noqa: B018


def test_the_shipped_config_sets_the_defaults_and_a_limit_below_1_is_rejected():
    shipped = load_config(ServingConfig, CONFIGS / "serving.yaml")
    defaults = ServingConfig()
    assert (shipped.max_in_flight, shipped.retry_after_seconds) == (
        defaults.max_in_flight,
        defaults.retry_after_seconds,
    )
    for field in ("max_in_flight", "retry_after_seconds"):
        with pytest.raises(ValueError, match=field):
            ServingConfig(**{field: 0})


async def test_a_call_whose_body_stalls_gives_its_slot_back_and_the_app_reads_its_body(
    monkeypatch,
):
    """A client that sent headers and stalled its upload held a slot until the server's
    timeout: a few such clients made the worker refuse all scoring for a minute."""
    from crm_ltv.serving import admission

    monkeypatch.setattr(admission, "BODY_GRACE_SECONDS", 0.2)
    bodies: list[bytes] = []

    async def echo(scope: Scope, receive: Receive, send: Send) -> None:
        parts = [await receive()]
        while parts[-1].get("more_body"):
            parts.append(await receive())
        bodies.append(b"".join(p.get("body", b"") for p in parts))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    limit = ConcurrencyLimit(echo, limit=1)
    scope = {"type": "http", "path": "/score", "method": "POST", "headers": []}
    rest = anyio.Event()
    sent: list[int] = []

    async def stalling() -> dict:
        if not sent:
            sent.append(1)
            return {"type": "http.request", "body": b'{"customers":', "more_body": True}
        await rest.wait()
        return {"type": "http.request", "body": b" []}", "more_body": False}

    async def answered(message: dict) -> None:
        if message["type"] == "http.response.start":
            sent.append(message["status"])

    async with _client(limit) as client, anyio.create_task_group() as tasks:
        tasks.start_soon(limit, scope, stalling, answered)
        await _until(lambda: limit.in_flight == 1)
        assert (await client.post("/score", content=b"{}")).status_code == 503  # in its grace
        await _until(lambda: limit.in_flight == 0, seconds=2)  # given back
        answer = await client.post("/score", content=b'{"customers": []}')
        assert answer.status_code == 200 and bodies == [b'{"customers": []}']
        rest.set()  # its body comes at last: admitted, and the app reads it whole
    assert sent == [1, 200] and bodies[1] == b'{"customers": []}'
    assert limit.in_flight == 0


@pytest.mark.parametrize("kind", ["multipart/form-data; boundary=xyz",
                                  "application/x-www-form-urlencoded",
                                  # media types are case-insensitive (RFC 9110)
                                  "Multipart/Form-Data; boundary=xyz",
                                  "APPLICATION/X-WWW-FORM-URLENCODED"])  # fmt: skip
async def test_a_form_body_is_a_415_naming_json_not_a_500(kind):
    gate = Gate()
    gate.release.set()
    async with _client(ConcurrencyLimit(gate, limit=1)) as client:
        answer = await client.post(
            "/score", content=b"--xyz garbage", headers={"content-type": kind}
        )
        assert answer.status_code == 415 and "takes a JSON body" in answer.json()["error"]
        assert gate.waiting == 0
        assert (await client.post("/score", json=BODY)).status_code == 200


@pytest.mark.parametrize(
    ("headers", "said"),
    [
        ({"content-encoding": "gzip"}, "content-encoding 'gzip' is not read"),
        ({"content-encoding": "br"}, "content-encoding 'br' is not read"),
        ({"content-type": "text/plain"}, "content-type 'text/plain': POST /score takes a JSON"),
        ({"content-type": "application/xml"}, "content-type 'application/xml'"),
        ({"content-type": "application/json; charset=latin-1"}, "charset 'latin-1'"),
        # repeated: BentoML read the first, the check the last (tester Q: a form's 500)
        (
            [
                ("content-type", "multipart/form-data; boundary=z"),
                ("content-type", "application/json"),
            ],
            "content-type given 2 times",
        ),
        (
            [("content-encoding", "gzip"), ("content-encoding", "identity")],
            "content-encoding 'gzip' is not read",
        ),
    ],
)
async def test_a_body_its_headers_say_is_not_json_is_a_415_naming_them(headers, said):
    """Tester M: a gzip body was read as JSON text ("not valid JSON"), a bogus encoding, text
    or a latin-1 charset answered 200, hiding the caller's bug."""
    gate = Gate()
    gate.release.set()
    async with _client(ConcurrencyLimit(gate, limit=1)) as client:
        answer = await client.post("/score", content=json.dumps(BODY), headers=headers)
        assert answer.status_code == 415 and said in answer.json()["error"], answer.text
        assert gate.waiting == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no content type: JSON, as BentoML reads it (requests' data= sends none)
        {"content-type": "application/json"},
        {"content-type": "Application/JSON; charset=UTF-8"},
        {"content-type": "application/vnd.shop+json"},
        {"content-encoding": "identity", "content-type": "application/json; charset=utf8"},
        {"content-type": 'application/json;charset="us-ascii"'},  # ASCII is UTF-8
    ],
)
async def test_json_bodies_pass_whatever_their_headers_spelling(headers):
    gate = Gate()
    gate.release.set()
    async with _client(ConcurrencyLimit(gate, limit=1)) as client:
        answer = await client.post("/score", content=json.dumps(BODY), headers=headers)
        assert answer.status_code == 200, answer.text


async def test_a_body_over_the_cap_is_a_413_before_it_is_held():
    gate = Gate()
    gate.release.set()
    limit = ConcurrencyLimit(gate, limit=2, max_body_bytes=1000)
    async with _client(limit) as client:
        declared = await client.post("/score", content=b"x" * 1001)  # its content-length
        assert declared.status_code == 413, declared.text
        assert "request body over 0.000953674 MB (max_request_mb)" in declared.json()["error"]

        async def chunks():  # no length declared: counted as it comes
            for _ in range(5):
                yield b"y" * 400

        assert (await client.post("/score", content=chunks())).status_code == 413
        assert (await client.post("/score", content=b"z" * 1000)).status_code == 200
    assert limit.in_flight == 0 and gate.waiting == 0


async def test_slow_uploads_are_bounded_and_a_cancelled_one_leaves_the_count_right(monkeypatch):
    """A call cancelled while it read its body without a slot (BentoML's timeout does that)
    gave back a slot it did not hold: the count went below 0 and the limit grew for good."""
    from crm_ltv.serving import admission

    monkeypatch.setattr(admission, "BODY_GRACE_SECONDS", 0.05)
    gate = Gate()
    gate.release.set()
    limit = ConcurrencyLimit(gate, limit=1)
    scope = {"type": "http", "path": "/score", "method": "POST", "headers": []}
    statuses: list[int] = []

    async def stalling() -> dict:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def answered(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    # a second slow call let through would wait for its body for ever: a failure, not a hang
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(limit, scope, stalling, answered)
            await _until(lambda: limit.uploading == 1)
            assert limit.in_flight == 0
            await limit(scope, stalling, answered)  # a second slow one: past the bound, 503
            assert statuses == [503]
            tasks.cancel_scope.cancel()  # the first, cancelled while uploading
        assert (limit.in_flight, limit.uploading) == (0, 0)
        async with _client(limit) as client:
            replies = []
            async with anyio.create_task_group() as tasks:

                async def call() -> None:
                    replies.append((await client.post("/score", json=BODY)).status_code)

                gate.release = anyio.Event()
                tasks.start_soon(call)
                tasks.start_soon(call)
                await _until(lambda: len(replies) == 1)
                gate.release.set()
        assert sorted(replies) == [200, 503]  # the limit is still 1


def _request(body: bytes):
    from starlette.requests import Request

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/score", "headers": [], "query_string": b""}
    return Request(scope, receive)


async def test_a_large_body_is_parsed_in_a_thread_a_small_one_on_the_loop(monkeypatch):
    """BentoML parses every body on the event loop (tester M: 27 MB held the health probes
    for seconds); a body over PARSE_ON_LOOP_BYTES goes to a thread, read alike."""
    from _bentoml_impl.serde import JSONSerde

    from crm_ltv.serving import service

    threaded = []
    real = anyio.to_thread.run_sync

    async def spy(func, *args, **kwargs):
        threaded.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", spy)
    parse = service.ScoreRequestIODescriptor.from_http_request
    small = json.dumps(BODY).encode()
    assert (await parse(_request(small), JSONSerde())).customers[0].customer_id == "c1"
    assert threaded == []
    line = {"timestamp": "2024-01-01T10:00:00", "amount": 1.5}
    customer = {"customer_id": "c2", "as_of": "2024-02-01", "transactions": [line] * 8000}
    large = json.dumps({"customers": [customer]}).encode()
    assert len(large) > service.PARSE_ON_LOOP_BYTES
    parsed = await parse(_request(large), JSONSerde())
    assert len(threaded) == 1 and len(parsed.customers[0].transactions) == 8000
    assert parsed == service.ScoreRequestIODescriptor.model_validate_json(large)


def test_contacts_weigh_as_lines_in_choosing_the_thread():
    """Tester M: one customer with 300,000 contacts was scored on the event loop."""
    from crm_ltv.serving.schemas import CustomerIn
    from crm_ltv.serving.service import THREAD_FROM_WEIGHT, _small

    contact = {"action": "shop_own_action", "sent_at": "2024-01-01"}
    plain = CustomerIn(customer_id="c", features={})
    assert _small([plain])
    contacted = CustomerIn(customer_id="c", features={}, contacts=[contact] * THREAD_FROM_WEIGHT)
    assert not _small([contacted])
