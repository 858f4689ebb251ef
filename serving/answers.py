"""POST /score's answers as BentoML words and describes them, corrected (tester M).

The OpenAPI page (/docs.json): BentoML's says a 400's `detail` is text and lists only 200,
400, 404 and 500, so a client generated from it broke on every 400 (a list of problems) and
knew nothing of the refusals the service gives. A 400's headline: BentoML writes "2
validation error for ScoreRequest" whatever the count.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_ltv.serving.admission import SCORING_PATHS, answer_bytes

SPEC_PATH = "/docs.json"
_READS = ("GET", "HEAD")
logger = logging.getLogger("bentoml.crm_ltv")
REFUSAL = "Refusal"
# What the service answers besides 200 and 400, and when (README: Serving).
REFUSALS = {
    401: "Missing or wrong bearer token (with CRM_LTV_API_TOKEN set).",
    413: "Request body over max_request_mb (configs/serving.yaml).",
    415: "Not a JSON body by its headers: a form, a content-encoding (gzip), another content "
    "type or charset.",
    503: "Over capacity (with Retry-After), not ready (models loading, no project home) or the "
    "decision log cannot be written; the error says which.",
}
PROBLEM = {
    "type": "object",
    "required": ["type", "loc", "msg"],
    "properties": {
        "type": {"type": "string"},
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string", "description": "The problem, naming the customer and field."},
    },
}


def answered_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """BentoML's spec with the 400's detail as the list it is and the refusals declared on
    each scoring route."""
    schemas = spec["components"]["schemas"]
    detail = {"title": "Problems", "type": "array", "items": PROBLEM}
    schemas["InvalidArgument"]["properties"]["detail"] = detail
    schemas[REFUSAL] = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    }
    ref = {"$ref": f"#/components/schemas/{REFUSAL}"}
    for path in SCORING_PATHS:
        responses = spec["paths"][path]["post"]["responses"]
        for status, said in REFUSALS.items():
            responses[status] = {  # BentoML's keys are numbers too (JSON makes them text)
                "description": said,
                "content": {"application/json": {"schema": ref}},
            }
        responses[503]["headers"] = {
            "Retry-After": {"description": "Seconds (over capacity)", "schema": {"type": "integer"}}
        }
    return openapi_30(spec)


def openapi_30(node: Any) -> Any:
    """The page says OpenAPI 3.0.2, but pydantic writes JSON Schema 2020-12: `{"type": "null"}`
    in an anyOf and `propertyNames`, which 3.0 has not (generators for 3.0 refused the page or
    typed every optional field as a union with an unknown type). In 3.0 words: `nullable`, and
    the key limit said in the description."""
    if isinstance(node, list):
        return [openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: openapi_30(value) for key, value in node.items() if key != "propertyNames"}
    names = node.get("propertyNames")
    if isinstance(names, dict) and "maxLength" in names:
        said = f"Keys of at most {names['maxLength']} characters."
        out["description"] = f"{out['description']} {said}" if "description" in out else said
    variants = out.get("anyOf")
    if isinstance(variants, list) and {"type": "null"} in variants:
        kept = [v for v in variants if v != {"type": "null"}]
        del out["anyOf"]
        if len(kept) == 1 and "$ref" not in kept[0]:
            said = " ".join(d for d in (out.get("description"), kept[0].get("description")) if d)
            out = _nullable({**kept[0], **out} | ({"description": said} if said else {}))
        elif len(kept) == 1:  # beside a $ref a keyword is ignored: the 3.0 idiom wraps it
            out = {"allOf": kept, "nullable": True, **out}
        else:  # 3.0 reads nullable only where a type is (3.0.3): on each typed variant
            out["anyOf"] = [v if "$ref" in v else _nullable(v) for v in kept]
    return out


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """A typed schema that also takes null: an enum lists it too, or a strict client refuses
    the null the service answers (OpenAPI 3.0.3's nullable)."""
    enum = schema.get("enum")
    return {**schema, "nullable": True} | ({"enum": [*enum, None]} if enum is not None else {})


class SpecOfTheAnswers:
    """Answers GET /docs.json with `answered_spec` of the service's own spec (made once)."""

    def __init__(self, app: ASGIApp, *, spec: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.spec = spec
        self.body: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        if scope["type"] != "http" or scope["path"] != SPEC_PATH or method not in _READS:
            await self.app(scope, receive, send)
            return
        if self.body is None:
            try:
                self.body = json.dumps(answered_spec(self.spec())).encode()
            except (KeyError, TypeError) as exc:  # BentoML's spec changed shape: its own, as is
                logger.warning("the OpenAPI page is BentoML's, uncorrected: %r", exc)
                self.body = b""
        if not self.body:
            await self.app(scope, receive, send)
            return
        await answer_bytes(send, 200, self.body if method == "GET" else b"", length=len(self.body))


_HEADLINE = re.compile(rb'^(\{"error":\s*"[0-9]+ validation error)( for )')


class ErrorCountInWords:
    """A 400 of a scoring route says "N validation errors" when N is not 1."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in SCORING_PATHS:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        held: list[bytes] = []

        async def worded(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] == 400:
                start = message  # sent with the body, whose length may change
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            held.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = _plural(b"".join(held))
            headers = [
                (k, v) for k, v in start.get("headers", ()) if k.lower() != b"content-length"
            ]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, worded)


def _plural(body: bytes) -> bytes:
    found = _HEADLINE.match(body)
    if found is None or found.group(1).endswith(b'"1 validation error'):
        return body
    return body[: found.end(1)] + b"s" + body[found.end(1) :]
