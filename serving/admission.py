"""Admission control for the scoring route: past a limit of calls in flight, 503 at once; a
body over a size, 413; a body that is not JSON by its headers (a form, gzip), 415.

A worker scores one request at a time (a large one in a thread beside its event loop), so
calls beyond a few in flight only wait in line. Without a limit, past capacity every call is
still answered 200, seconds late (measured on 2 cores: p50 2.2 s and p99 24 s at about twice
capacity): everyone late, no one told. Refusing the excess with 503 and `Retry-After` keeps the
calls that are accepted fast and tells clients and load balancers to back off or go elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence

import anyio
from anyio.lowlevel import checkpoint
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# An int, or a zero-argument callable returning one, called on the first request: BentoML builds
# the middleware from options given at import time, before the config needs to be read.
IntOption = int | Callable[[], int]
SCORING_PATHS = ("/score",)
# Seconds a call may take to send its body while holding a slot (a request of 1,000 customers is
# about 1 MB: milliseconds on a network that can reach the service)
BODY_GRACE_SECONDS = 1.0


class ConcurrencyLimit:
    """Counts the HTTP requests to `paths` in flight in this worker process and answers 503 with
    `Retry-After` (without calling the app) to one that would exceed `limit`. Every other path
    (probes, /metrics, the OpenAPI page) passes uncounted, so an overloaded worker still reports
    itself alive and its metrics can be scraped. Each worker has its own instance and count.
    A body over `max_body_bytes` is refused with 413 before it is held in memory."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: IntOption,
        retry_after: IntOption = 1,
        max_body_bytes: IntOption = 32 * 2**20,
        paths: Collection[str] = SCORING_PATHS,
    ) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.in_flight = 0
        self.uploading = 0  # calls past their grace, reading their body without a slot
        self._options = (limit, retry_after, max_body_bytes)
        self._limit: int | None = None
        self.max_body_bytes = 0
        self._refusal: tuple[dict[str, str], list[tuple[bytes, bytes]]] = ({}, [])

    @property
    def limit(self) -> int:
        """The limit, resolved (and the 503 answer built) on first use."""
        if self._limit is None:
            self._resolve()
        assert self._limit is not None
        return self._limit

    def _resolve(self) -> None:
        limit = _int("limit", self._options[0])
        retry_after = _int("retry_after", self._options[1])
        self.max_body_bytes = _int("max_body_bytes", self._options[2])
        message = (
            f"over capacity: this worker already has {limit} scoring calls in flight "
            f"(max_in_flight); retry after {retry_after} s"
        )
        self._refusal = ({"error": message}, [(b"retry-after", str(retry_after).encode())])
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        unreadable = _unreadable(scope)
        if unreadable is not None:
            await answer(send, 415, {"error": unreadable}, [])
            return
        limit = self.limit  # the options, resolved on the first call
        if _declared_size(scope) > self.max_body_bytes:  # before any of it is read
            await self._too_large(send)
            return
        # One event loop per worker and no await between the check and the increment: no lock.
        if self.in_flight >= limit:
            await self._refuse(send)
            return
        self.in_flight += 1
        held = True
        try:
            # A call counts from its headers, so that calls arriving together are all counted;
            # but one whose body is not all here within BODY_GRACE_SECONDS gives its slot back
            # until it is: a few clients that sent headers and stalled held every slot, and the
            # worker refused all scoring until the server's timeout closed them. The calls so
            # waiting are bounded by the limit too (each may hold a body of up to the cap).
            body = _Body(self.max_body_bytes)
            with anyio.move_on_after(BODY_GRACE_SECONDS):
                await body.read(receive)
            if not body.done:
                self.in_flight -= 1
                held = False
                if self.uploading >= limit:
                    await self._refuse(send)
                    return
                self.uploading += 1
                try:
                    await body.read(receive)
                finally:
                    self.uploading -= 1
                if not body.too_large and not body.disconnected and self.in_flight >= limit:
                    await self._refuse(send)
                    return
                self.in_flight += 1
                held = True
            if body.disconnected:  # nobody to answer
                return
            if body.too_large:  # a body longer than its declared length, or of none declared
                await self._too_large(send)
                return
            # A small call is parsed and scored on the event loop without a pause, so it would
            # finish before the next ready one is even counted (the queue sits in the loop's
            # ready tasks, in_flight never passes 1). One yield lets the calls that arrived
            # together claim their slots, or be refused, before any of them is served.
            await checkpoint()
            await self.app(scope, _replay(body.messages, receive), send)
        finally:
            if held:  # not when cancelled while uploading without a slot
                self.in_flight -= 1

    async def _refuse(self, send: Send) -> None:
        await answer(send, 503, *self._refusal)

    async def _too_large(self, send: Send) -> None:
        size = f"{self.max_body_bytes / 2**20:g} MB"
        message = f"request body over {size} (max_request_mb): send fewer customers per call"
        await answer(send, 413, {"error": message}, [])


class NotServing:
    """Answers a scoring call 503 with the worker's reason not to serve (no home for its
    decision log, models that did not load), once it is known: BentoML words every 5xx alike
    ("please check the server log"), so raised in the endpoint the reason reached only the
    server log, with a traceback per call."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        reason: Callable[[], str | None],
        paths: Collection[str] = SCORING_PATHS,
    ) -> None:
        self.app, self.reason, self.paths = app, reason, frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reason = self.reason() if scope["type"] == "http" and scope["path"] in self.paths else None
        if reason is None:
            await self.app(scope, receive, send)
            return
        await answer(send, 503, {"error": f"not serving: {reason}"}, [])


TAKES_JSON = "POST /score takes a JSON body (content-type: application/json)"
_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")


def _unreadable(scope: Scope) -> str | None:
    """Why the body cannot be read as the JSON it should be, from its headers. A form went to
    BentoML's form parser (a malformed one was a 500); a gzip body was read as JSON text ("not
    valid JSON" for a body that may be fine); text/plain and a latin-1 charset were read as
    UTF-8 JSON, which answered 200 to a caller whose bug it hid. No content type is JSON, as
    BentoML reads it (`requests.post(url, data=...)` sends none)."""
    for encoding in _values(scope, b"content-encoding"):
        if encoding.strip().lower() not in ("", "identity"):
            return f"content-encoding {encoding.strip()!r} is not read: {TAKES_JSON}, uncompressed"
    types = _values(scope, b"content-type")
    if len(types) > 1:  # BentoML reads the first, a check the last (tester Q: a form's 500)
        return f"content-type given {len(types)} times: {TAKES_JSON}, once"
    media, *params = [part.strip().lower() for part in (types or [""])[0].split(";")]
    if media in _FORMS:
        return f"{TAKES_JSON}, not a form"
    if media and media != "application/json" and not media.endswith("+json"):
        return f"content-type {media!r}: {TAKES_JSON}"
    charset = next((p.split("=", 1)[1].strip('" ') for p in params if p.startswith("charset=")), "")
    if charset not in ("", "utf-8", "utf8", "us-ascii"):  # ASCII is UTF-8
        return f"charset {charset!r}: {TAKES_JSON} in UTF-8 (RFC 8259)"
    return None


def _values(scope: Scope, name: bytes) -> list[str]:
    """Every value of a header the request repeats (ASGI keeps each; a dict kept the last)."""
    return [v.decode("latin-1") for k, v in scope.get("headers") or () if k.lower() == name]


def _declared_size(scope: Scope) -> int:
    length = dict(scope.get("headers") or ()).get(b"content-length", b"0")
    return int(length) if length.isdigit() else 0


async def answer(
    send: Send, status: int, content: dict[str, str], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """A JSON answer sent from a middleware, before the app."""
    await answer_bytes(send, status, json.dumps(content).encode(), headers)


async def answer_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: Sequence[tuple[bytes, bytes]] = (),
    length: int | None = None,
) -> None:
    """JSON already encoded, as `answer` sends it; `length`: the one a HEAD answer declares."""
    size = len(body) if length is None else length
    head = [(b"content-type", b"application/json"), (b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*head, *headers]})
    await send({"type": "http.response.body", "body": body})


class _Body:
    """A request's messages read ahead: up to its body's last part, a disconnect, or past `cap`
    bytes (then no more is read: a body over it is refused, not held in memory)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.messages: list[Message] = []
        self.size = 0

    @property
    def too_large(self) -> bool:
        return self.size > self.cap

    @property
    def disconnected(self) -> bool:
        return bool(self.messages) and self.messages[-1]["type"] == "http.disconnect"

    @property
    def done(self) -> bool:
        if self.too_large:
            return True
        if not self.messages:
            return False
        last = self.messages[-1]
        return last["type"] != "http.request" or not last.get("more_body", False)

    async def read(self, receive: Receive) -> None:
        """What it read stays read when it is cancelled."""
        while not self.done:
            message = await receive()
            self.messages.append(message)
            self.size += len(message.get("body", b""))


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """`receive` that hands over the messages read ahead first, then the server's."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def _int(name: str, option: IntOption) -> int:
    value = option() if callable(option) else option
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"ConcurrencyLimit {name}: expected an int >= 1, got {value!r}")
    return value
