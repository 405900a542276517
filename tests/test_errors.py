"""Every error comes back in one JSON shape with a 4xx; no input produces a 500."""

import logging
from typing import Any
from urllib.parse import quote

import pytest
from httpx import AsyncClient

from app.core.config import Settings
from app.observability.logs import RequestIdFilter
from tests.conftest import article, http_client, running_app


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    error: dict[str, Any] = body["error"]
    return error


async def test_malformed_json_is_422(client: AsyncClient) -> None:
    response = await client.post(
        "/v1/articles",
        content=b'{"external_id": "x", "title": ',
        headers={"content-type": "application/json"},
    )
    assert_error(response, 422, "validation_error")


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"title": "no id"}, "body.external_id"),
        ({"external_id": "a", "title": ""}, "body.title"),
        ({"external_id": "a", "title": "t", "published_at": "soon"}, "body.published_at"),
        ({"external_id": "a", "title": "t", "tags": "not-a-list"}, "body.tags"),
        ({"external_id": "a", "title": "t", "url": "ftp://x"}, "body.url"),
        ({"external_id": "a", "title": "t", "language": "English!"}, "body.language"),
        ({"external_id": "a\nb", "title": "t"}, "body.external_id"),
        ({"external_id": "x" * 256, "title": "t"}, "body.external_id"),
        ({"external_id": "a", "title": "t", "body": "x" * 200_001}, "body.body"),
        ({"external_id": "a", "title": "t", "language": "en" + "-abcdefgh" * 5}, "body.language"),
    ],
)
async def test_invalid_article_is_422_with_field_path(
    client: AsyncClient, payload: dict[str, Any], path: str
) -> None:
    error = assert_error(await client.post("/v1/articles", json=payload), 422, "validation_error")
    assert path in [d["path"] for d in error["details"]]


@pytest.mark.parametrize("payload", [[], "text", 42, None, {"articles": "nope"}])
async def test_wrong_top_level_types_are_422(client: AsyncClient, payload: Any) -> None:
    assert_error(await client.post("/v1/articles", json=payload), 422, "validation_error")
    assert_error(await client.post("/v1/articles/batch", json=payload), 422, "validation_error")


async def test_body_over_the_byte_limit_is_413(client: AsyncClient) -> None:
    # The test settings cap bodies at 2 MiB.
    big = article("big", "Big", "word " * 600_000)
    assert_error(await client.post("/v1/articles", json=big), 413, "payload_too_large")


async def test_chunked_body_over_the_limit_is_413(client: AsyncClient) -> None:
    async def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 65536

    response = await client.post(
        "/v1/articles", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


async def test_unknown_route_and_wrong_method(client: AsyncClient) -> None:
    assert_error(await client.get("/v2/nothing"), 404, "not_found")
    assert_error(await client.put("/v1/articles"), 405, "method_not_allowed")


async def test_nul_characters_are_rejected_everywhere_and_odd_unicode_is_stored(
    client: AsyncClient,
) -> None:
    # PostgreSQL text cannot hold NUL; the API must answer 422, not fail in the driver.
    error = assert_error(
        await client.post("/v1/articles", json=article("nul", "a\u0000b")), 422, "validation_error"
    )
    assert error["details"][0]["path"] == "body.title"
    await client.post("/v1/articles", json=article("ok", "Fine"))
    for response in (
        await client.get("/v1/articles/ok/related", params={"source": "a\x00"}),
        await client.get("/v1/articles/a%00b"),
        await client.get("/v1/articles", params={"category": "\x00"}),
        await client.post("/v1/related", json={"title": "x", "exclude_ids": ["\x00"]}),
        await client.post("/v1/articles/batch", json={"articles": [article("n", "\x00")]}),
    ):
        assert response.status_code in (200, 422), response.text
        if response.status_code == 200:  # the batch: the item is reported, not stored
            assert response.json()["items"][0]["status"] == "error"
    ok = await client.post("/v1/articles", json=article("uni", "Zürich \U0001f600 ﷽ \u202e"))
    assert ok.status_code == 201


async def test_health_and_readiness(client: AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert checks["database"]["ok"] and checks["model"]["ok"]
    # The suite runs on the embedded PostgreSQL 18 with pgvector 0.8, which production runs.
    assert checks["database"]["server_version"].startswith("18.")
    assert checks["database"]["pgvector"].startswith("0.8.")


async def test_openapi_documents_the_api_with_examples(client: AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/v1/articles",
        "/v1/articles/batch",
        "/v1/articles/{ref}",
        "/v1/articles/{ref}/related",
        "/v1/related",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    assert spec["components"]["schemas"]["ArticleIn"]["examples"]
    assert (await client.get("/docs")).status_code == 200


async def test_body_that_is_not_utf8_is_422(client: AsyncClient) -> None:
    for path in ("/v1/articles", "/v1/articles/batch", "/v1/related"):
        response = await client.post(
            path, content=b"\xff\xfe\x12{", headers={"content-type": "application/json"}
        )
        assert_error(response, 422, "validation_error")


async def test_lone_surrogates_in_json_escapes_are_422(client: AsyncClient) -> None:
    # Valid JSON, but not text PostgreSQL can store.
    for raw, path in (
        (rb'{"external_id": "a", "title": "lone \ud800 surrogate"}', "body.title"),
        (rb'{"external_id": "a", "title": "t", "tags": ["\udfff"]}', "body.tags.0"),
    ):
        response = await client.post(
            "/v1/articles", content=raw, headers={"content-type": "application/json"}
        )
        error = assert_error(response, 422, "validation_error")
        assert path in [d["path"] for d in error["details"]]


@pytest.mark.parametrize(
    "bug",
    [FileNotFoundError(2, "No such file", "/etc/related/missing.json"), TimeoutError("too slow")],
    ids=["FileNotFoundError", "TimeoutError"],
)
async def test_an_oserror_of_our_own_code_is_a_500_with_its_traceback_not_a_database_outage(
    app: Any, client: AsyncClient, caplog: pytest.LogCaptureFixture, bug: OSError
) -> None:
    path = f"/test-only/raise-{type(bug).__name__}"

    async def endpoint() -> None:
        raise bug

    app.add_api_route(path, endpoint, include_in_schema=False)
    caplog.set_level(logging.ERROR)
    caplog.handler.addFilter(RequestIdFilter())  # as the service's own log handler has
    response = await client.get(path, headers={"X-Request-ID": "bug-1"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert response.headers["X-Request-ID"] == "bug-1"
    [logged] = [r for r in caplog.records if r.exc_info and r.exc_info[1] is bug]
    assert getattr(logged, "request_id", None) == "bug-1"
    assert not [r for r in caplog.records if "database unavailable" in r.getMessage()]


async def test_an_external_id_with_slashes_works_on_every_ref_route(client: AsyncClient) -> None:
    for external_id, title in (
        ("news/2026/11/harbour-storm", "Harbour storm closes the port"),
        ("news/2026/11/quay-flood", "Harbour storm floods the quay"),
    ):
        created = await client.post("/v1/articles", json=article(external_id, title))
        assert created.status_code == 201, created.text
    for ref in ("news/2026/11/harbour-storm", quote("news/2026/11/harbour-storm", safe="")):
        assert (await client.get(f"/v1/articles/{ref}")).json()["external_id"] == (
            "news/2026/11/harbour-storm"
        )
        related = await client.get(f"/v1/articles/{ref}/related")
        assert [i["external_id"] for i in related.json()["items"]] == ["news/2026/11/quay-flood"]
    assert (await client.delete("/v1/articles/news/2026/11/quay-flood")).status_code == 204
    assert (await client.get("/v1/articles/news/2026/11/quay-flood")).status_code == 404
    for unreachable in ("news/storm/related", "news/storm/related/", "news/"):
        refused = await client.post("/v1/articles", json=article(unreachable, "Harbour storm"))
        assert refused.status_code == 422, unreachable
        assert refused.json()["error"]["details"][0]["path"] == "body.external_id"


async def test_405_names_every_allowed_method_and_head_answers_on_get_routes(
    client: AsyncClient,
) -> None:
    await client.post("/v1/articles", json=article("heads", "Harbour storm"))
    refused = await client.put("/v1/articles")
    assert refused.status_code == 405
    assert refused.headers["Allow"] == "GET, HEAD, POST"
    assert refused.json()["error"]["code"] == "method_not_allowed"
    assert (await client.patch("/healthz")).headers["Allow"] == "GET, HEAD"
    for path in ("/healthz", "/v1/articles", "/v1/articles/heads", "/v1/articles/heads/related"):
        got, head = await client.get(path), await client.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-length"] == got.headers["content-length"], path
    assert (await client.head("/v1/articles/missing")).status_code == 404


async def test_a_refused_cors_preflight_is_in_the_error_shape(
    settings: Settings, embedder: Any
) -> None:
    origin = "https://www.example.com"
    async with (
        running_app(settings, embedder, cors_origins=[origin]) as app,
        http_client(app) as http,
    ):
        allowed = await http.options(
            "/v1/articles", headers={"Origin": origin, "Access-Control-Request-Method": "GET"}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == origin
        for headers in (
            {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
            {"Origin": origin, "Access-Control-Request-Method": "PUT"},
        ):
            refused = await http.options("/v1/articles", headers=headers)
            assert refused.status_code == 400
            assert refused.headers["content-type"] == "application/json"
            assert refused.json()["error"]["code"] == "cors_refused"
