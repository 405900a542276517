"""Metrics in Prometheus format, request ids and JSON request logs, readiness per dependency."""

import asyncio
import json
import logging
import re
from typing import Any

import pytest
from httpx import AsyncClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from app.auth.models import Scope
from app.core.config import Settings
from app.db import migrate
from app.main import create_app
from app.observability.logs import JsonFormatter, RequestIdFilter
from tests.conftest import article, create_key, fresh_database, http_client, running_app


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: dict[Any, float], name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_requests_per_route_template(
    client: AsyncClient, settings: Settings
) -> None:
    before = samples((await client.get("/metrics")).text)
    await client.post("/v1/articles", json=article("m-1", "Metrics story one"))
    await client.post("/v1/articles", json=article("m-2", "Metrics story two"))
    for ref in ("m-1", "m-2", "missing"):
        await client.get(f"/v1/articles/{ref}")
    await client.get("/v1/articles/m-1/related")
    await client.post("/v1/related", json={"title": "Metrics draft about a story"})
    await client.get("/no/such/path/123")

    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = samples(response.text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/v1/articles/{ref}"
    assert grew("related_http_requests_total", method="GET", route=route, status="200") == 2
    assert grew("related_http_requests_total", method="GET", route=route, status="404") == 1
    assert (
        grew("related_http_requests_total", method="POST", route="/v1/articles", status="201") == 2
    )
    related = {"method": "GET", "route": "/v1/articles/{ref}/related", "status": "200"}
    assert grew("related_http_request_duration_seconds_count", **related) == 1
    assert value(after, "related_http_request_duration_seconds_bucket", **related, le="+Inf") >= 1
    # Unknown paths share one series: no label per path a scanner tries.
    assert grew("related_http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    assert not any("/no/such" in str(labels) for _, labels in after)

    assert grew("related_embedding_batch_duration_seconds_count") >= 1
    # The draft and the two articles: this app's worker is the only one on its database.
    assert grew("related_embedding_texts_total") == 3
    assert ("related_embedding_queue_depth", frozenset({("queue", "encoder")})) in after
    assert ("related_embedding_queue_depth", frozenset({("queue", "database")})) in after
    assert value(after, "related_db_pool_size") == settings.db_pool_size
    assert 0 <= value(after, "related_db_pool_in_use") <= settings.db_pool_size


async def test_request_id_is_kept_when_sane_and_made_otherwise(client: AsyncClient) -> None:
    made = await client.get("/v1/articles")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert (
        made.headers["x-request-id"] != (await client.get("/v1/articles")).headers["x-request-id"]
    )

    kept = await client.get("/v1/articles", headers={"X-Request-ID": "edge-42.abc:1"})
    assert kept.headers["x-request-id"] == "edge-42.abc:1"
    for insane in (b"has spaces", b"x" * 129, b'quote"s', "é".encode()):
        replaced = await client.get("/v1/articles", headers={"X-Request-ID": insane})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])
    # Errors carry it too.
    for response in (
        await client.get("/v1/articles/missing", headers={"X-Request-ID": "err-1"}),
        await client.post("/v1/articles", json={}, headers={"X-Request-ID": "err-1"}),
        await client.get("/v1/articles", headers={"X-Request-ID": "err-1", "Authorization": "x"}),
    ):
        assert response.status_code >= 400
        assert response.headers["x-request-id"] == "err-1"


async def test_one_json_log_line_per_request(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="related.access")
    await client.get("/v1/articles/m-404", headers={"X-Request-ID": "log-me"})
    [record] = [r for r in caplog.records if getattr(r, "request_id", None) == "log-me"]
    line = json.loads(JsonFormatter().format(record))
    assert line["method"] == "GET"
    assert line["route"] == "/v1/articles/{ref}"
    assert line["path"] == "/v1/articles/m-404"
    assert line["status"] == 404
    assert line["duration_ms"] > 0
    assert line["request_id"] == "log-me"
    assert re.fullmatch(r"[0-9a-f]{16}", line["key_id"])  # the conftest admin key
    assert line["level"] == "info" and line["logger"] == "related.access"


async def test_unexpected_errors_are_500_in_the_shape_with_the_request_id_logged(
    settings: Settings, embedder: Any, caplog: pytest.LogCaptureFixture
) -> None:
    application = create_app(settings, embedder=embedder)

    async def boom() -> None:
        raise RuntimeError("a bug")

    application.add_api_route("/v1/boom", boom)
    caplog.handler.addFilter(RequestIdFilter())
    async with (
        application.router.lifespan_context(application),
        http_client(application) as http,
    ):
        response = await http.get("/v1/boom", headers={"X-Request-ID": "bug-1"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "Internal server error", "details": None}
    }
    assert response.headers["x-request-id"] == "bug-1"
    [logged] = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert logged.request_id == "bug-1"  # type: ignore[attr-defined]
    assert "a bug" in json.loads(JsonFormatter().format(logged))["exception"]


async def test_readyz_reports_each_dependency(client: AsyncClient) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "migrations": "ok",
        "model": "ok",
    }
    migrations = body["checks"]["migrations"]
    assert migrations["current"] == migrations["head"] is not None


async def test_readyz_is_503_when_migrations_are_behind(
    pg_server: Any, settings: Settings, embedder: Any
) -> None:
    url = fresh_database(pg_server, "related_behind")
    await asyncio.to_thread(migrate.upgrade, url, "0002")
    async with (
        running_app(settings, embedder, database_url=url) as app,
        http_client(app) as http,
    ):
        response = await http.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["migrations"]["status"] == "fail"
    assert checks["migrations"]["current"] == "0002"
    assert checks["migrations"]["schema"] == "behind"
    assert checks["model"]["status"] == "ok"


async def test_readyz_stays_ready_when_a_newer_release_migrated_the_database(
    pg_server: Any, settings: Settings, embedder: Any
) -> None:
    # A rolling deploy: the new release's first process migrated; this one is still serving.
    url = fresh_database(pg_server, "related_ahead")
    await asyncio.to_thread(migrate.upgrade, url)
    async with (
        running_app(settings, embedder, database_url=url) as app,
        http_client(app) as http,
    ):
        async with app.state.database.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0042_next_release'"))
        response = await http.get("/readyz")
    assert response.status_code == 200
    migrations = response.json()["checks"]["migrations"]
    assert migrations["status"] == "ok"
    assert (migrations["current"], migrations["schema"]) == ("0042_next_release", "ahead")


async def test_key_id_is_logged_for_each_key(
    client: AsyncClient, app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="related.access")
    token = await create_key(app, Scope.READ)
    async with http_client(app, token) as http:
        await http.get("/v1/articles", headers={"X-Request-ID": "by-key"})
    [record] = [r for r in caplog.records if getattr(r, "request_id", None) == "by-key"]
    assert record.key_id == token.split("_")[1]  # type: ignore[attr-defined]


async def test_articles_waiting_in_the_database_are_a_queue_on_metrics(
    client: AsyncClient, app: Any
) -> None:
    gauge = app.state.pending_gauge
    await client.post("/v1/articles", json=article("q-1", "Queued story"), params={"wait": "true"})
    async with app.state.database.engine.begin() as conn:
        # Pending, under a lease no worker here holds: it stays in the queue for this test.
        await conn.execute(
            text(
                "UPDATE articles SET embedding_status = 'pending',"
                " embedding_lease_until = now() + interval '1 hour'"
            )
        )
    await gauge.refresh()
    after = samples((await client.get("/metrics")).text)
    assert value(after, "related_embedding_queue_depth", queue="database") == 1
