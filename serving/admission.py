"""Admission control for the scoring route: past a limit of calls in flight, 503 at once.

A worker scores one request at a time (the scoring runs on its event loop), so calls beyond a
few in flight only wait in line. Without a limit, past capacity every call is still answered
200, seconds late (measured on 2 cores: p50 2.2 s and p99 24 s at about twice capacity): everyone
late, no one told. Refusing the excess with 503 and `Retry-After` keeps the calls
that are accepted fast and tells clients and load balancers to back off or go elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection

from anyio.lowlevel import checkpoint
from starlette.types import ASGIApp, Receive, Scope, Send

# An int, or a zero-argument callable returning one, called on the first request: BentoML builds
# the middleware from options given at import time, before the config needs to be read.
IntOption = int | Callable[[], int]
SCORING_PATHS = ("/score",)


class ConcurrencyLimit:
    """Counts the HTTP requests to `paths` in flight in this worker process and answers 503 with
    `Retry-After` (without calling the app) to one that would exceed `limit`. Every other path
    (probes, /metrics, the OpenAPI page) passes uncounted, so an overloaded worker still reports
    itself alive and its metrics can be scraped. Each worker has its own instance and count."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: IntOption,
        retry_after: IntOption = 1,
        paths: Collection[str] = SCORING_PATHS,
    ) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.in_flight = 0
        self._options = (limit, retry_after)
        self._limit: int | None = None
        self._refusal: tuple[list[tuple[bytes, bytes]], bytes] = ([], b"")

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
        message = (
            f"over capacity: this worker already has {limit} scoring calls in flight "
            f"(max_in_flight); retry after {retry_after} s"
        )
        body = json.dumps({"error": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"retry-after", str(retry_after).encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        self._refusal = (headers, body)
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        # One event loop per worker and no await between the check and the increment: no lock.
        if self.in_flight >= self.limit:
            await self._refuse(send)
            return
        self.in_flight += 1
        try:
            # Scoring runs on the event loop without a pause, so a call would otherwise finish
            # before the next ready one is even counted (the queue sits in the loop's ready tasks,
            # in_flight never passes 1). One yield lets the calls that arrived together claim
            # their slots, or be refused, before any of them is served.
            await checkpoint()
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, send: Send) -> None:
        # The body is left unread: uvicorn discards it and keeps the connection usable.
        headers, body = self._refusal
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _int(name: str, option: IntOption) -> int:
    value = option() if callable(option) else option
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"ConcurrencyLimit {name}: expected an int >= 1, got {value!r}")
    return value
