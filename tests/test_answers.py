"""The service's answers as BentoML words and describes them, corrected: through httpx's ASGI
transport into tiny apps that answer as BentoML does."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from crm_ltv.serving.answers import (
    ErrorCountInWords,
    SpecOfTheAnswers,
    answered_spec,
    openapi_30,
)

pytestmark = pytest.mark.anyio
SPEC = {
    "paths": {"/score": {"post": {"responses": {200: {}, 400: {}}}}},
    "components": {"schemas": {"InvalidArgument": {"properties": {"detail": {"type": "string"}}}}},
}


def _bentoml_400(count: int, chunks: int = 1):
    """An app answering /score as BentoML answers a ValidationError, in `chunks` parts."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        status = 400 if scope["path"] == "/score" else 200
        body = json.dumps(
            {"error": f"{count} validation error for ScoreRequest", "detail": []},
            separators=(",", ":"),
        ).encode()
        size = str(len(body)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", size)]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        step = -(-len(body) // chunks)
        for i in range(0, len(body), step):
            more = i + step < len(body)
            await send(
                {"type": "http.response.body", "body": body[i : i + step], "more_body": more}
            )

    return app


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.parametrize("chunks", [1, 3])
async def test_a_400_counts_its_errors_in_words(chunks):
    async with _client(ErrorCountInWords(_bentoml_400(2, chunks))) as client:
        answer = await client.post("/score")
        assert answer.json()["error"] == "2 validation errors for ScoreRequest"
        assert int(answer.headers["content-length"]) == len(answer.content)
        other = await client.post("/other")  # not a scoring route: as it was
        assert other.json()["error"] == "2 validation error for ScoreRequest"
    async with _client(ErrorCountInWords(_bentoml_400(1))) as client:
        assert (await client.post("/score")).json()[
            "error"
        ] == "1 validation error for ScoreRequest"
    async with _client(ErrorCountInWords(_bentoml_400(11))) as client:
        said = (await client.post("/score")).json()["error"]
        assert said == "11 validation errors for ScoreRequest"


async def test_the_openapi_page_is_the_answered_spec_and_bentomls_own_if_it_cannot_be():
    async def bentoml_page(scope: Scope, receive: Receive, send: Send) -> None:
        body = b'{"own": true}'
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    page = SpecOfTheAnswers(bentoml_page, spec=lambda: json.loads(json.dumps(SPEC)))
    async with _client(page) as client:
        spec = (await client.get("/docs.json")).json()
        assert spec == json.loads(json.dumps(answered_spec(json.loads(json.dumps(SPEC)))))
        assert {"401", "413", "415", "503"} <= set(spec["paths"]["/score"]["post"]["responses"])
        head = await client.head("/docs.json")  # the length of what a GET gets, no body
        assert head.content == b"" and int(head.headers["content-length"]) > 100
        assert (await client.get("/other")).json() == {"own": True}
    broken = SpecOfTheAnswers(bentoml_page, spec=lambda: {"paths": {}})  # another shape
    async with _client(broken) as client:
        assert (await client.get("/docs.json")).json() == {"own": True}


def test_json_schema_unions_with_null_become_openapi_30_nullable_fields():
    """pydantic's optional fields, in the words of the OpenAPI version the page declares:
    3.0.3 reads `nullable` only beside a `type`, and an enum must list null itself."""
    field = {"anyOf": [{"type": "string", "maxLength": 9}, {"type": "null"}], "title": "A"}
    assert openapi_30(field) == {"type": "string", "maxLength": 9, "title": "A", "nullable": True}
    union = {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}
    assert openapi_30(union) == {
        "anyOf": [{"type": "string", "nullable": True}, {"type": "integer", "nullable": True}]
    }
    ref = {"anyOf": [{"$ref": "#/components/schemas/X"}, {"type": "null"}], "title": "R"}
    assert openapi_30(ref) == {
        "allOf": [{"$ref": "#/components/schemas/X"}],
        "nullable": True,
        "title": "R",
    }
    choice = {"anyOf": [{"type": "string", "enum": ["a", "b"]}, {"type": "null"}]}
    assert openapi_30(choice) == {"type": "string", "enum": ["a", "b", None], "nullable": True}
    mapping = {
        "anyOf": [
            {"type": "object", "propertyNames": {"maxLength": 256}, "description": "Rows."},
            {"type": "null"},
        ],
        "description": "Features.",
    }
    assert openapi_30({"properties": {"f": mapping}}) == {
        "properties": {
            "f": {
                "type": "object",
                "description": "Features. Rows. Keys of at most 256 characters.",
                "nullable": True,
            }
        }
    }
    plain = {"type": "array", "items": {"type": "integer"}, "default": None}
    assert openapi_30(plain) == plain
