"""Faults and abuse: the database going away under traffic, racing writers, hostile input."""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from httpx import AsyncClient
from sqlalchemy import text

from app.auth.models import Scope
from app.core.config import Settings
from app.db import migrate
from app.db.embedded import EmbeddedPostgres
from app.db.url import to_async_url
from tests.conftest import TEST_SERVER_SETTINGS, article, create_key, http_client, running_app

CONNECT_TIMEOUT_S = 1.0


@pytest.fixture
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL only this test uses, so stopping it disturbs no other test."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("faultdata"), TEST_SERVER_SETTINGS).join()
    server.create_database("related_faults")
    yield server
    server.leave()


@pytest.fixture
async def fault_app(own_server: Any, settings: Settings, embedder: Any) -> AsyncIterator[Any]:
    url = to_async_url(own_server.url("related_faults"))
    await asyncio.to_thread(migrate.upgrade, url)
    async with running_app(
        settings, embedder, database_url=url, db_connect_timeout_s=CONNECT_TIMEOUT_S
    ) as app:
        yield app


async def test_database_down_fails_fast_with_503_recovers_and_loses_nothing(
    fault_app: Any, own_server: Any
) -> None:
    token = await create_key(fault_app, Scope.ADMIN)
    acknowledged: set[str] = set()
    answers: list[tuple[int, str, float]] = []
    sent = 0

    async def post_one(http: AsyncClient) -> None:
        nonlocal sent
        sent += 1
        item = article(f"fault-{sent}", f"Storm warning number {sent} for the coast")
        started = time.perf_counter()
        response = await http.post("/v1/articles", json=item)
        elapsed = time.perf_counter() - started
        code = response.json().get("error", {}).get("code", "") if response.content else ""
        answers.append((response.status_code, code, elapsed))
        if response.is_success:
            acknowledged.add(item["external_id"])

    async with http_client(fault_app, token) as http:
        for _ in range(5):
            await post_one(http)
        assert len(acknowledged) == 5

        # Traffic keeps coming while the server stops ("fast": connections cut at once, as in a
        # crash or a restart).
        writers = asyncio.gather(*(post_one(http) for _ in range(8)))
        await asyncio.gather(writers, asyncio.to_thread(own_server.stop))
        for _ in range(4):
            await post_one(http)
        during, after = answers[5:13], answers[13:]
        # Cut mid-request: stored and acknowledged, or refused as unavailable; never a 500.
        for status, code, _ in during:
            assert status < 300 or (status, code) == (503, "database_unavailable"), answers
        # Once it is down: refused at once, bounded by the connect timeout, not TCP's minutes.
        for status, code, elapsed in after:
            assert (status, code) == (503, "database_unavailable"), answers
            assert elapsed < CONNECT_TIMEOUT_S + 1, answers
        reads = await http.get("/v1/articles/fault-1")
        assert (reads.status_code, reads.json()["error"]["code"]) == (503, "database_unavailable")
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"]["status"] == "fail"

        await asyncio.to_thread(own_server.ensure_running)
        # Recovery needs no restart of the service: the pool drops dead connections itself.
        deadline = time.monotonic() + 30
        while True:
            before = len(acknowledged)
            await post_one(http)
            if len(acknowledged) > before:
                break
            assert time.monotonic() < deadline, answers[-3:]
            await asyncio.sleep(0.2)
        assert (await http.get("/readyz")).status_code == 200

        # Every article that got a 2xx is there.
        listed = await http.get("/v1/articles", params={"limit": 100})
        assert listed.status_code == 200
        stored = {a["external_id"] for a in listed.json()["items"]}
        assert acknowledged <= stored, acknowledged - stored


async def test_many_concurrent_upserts_of_one_external_id_leave_one_article(
    client: AsyncClient,
) -> None:
    singles = [client.post("/v1/articles", json=article("race", f"Version {i}")) for i in range(16)]
    batches = [
        client.post(
            "/v1/articles/batch",
            json={"articles": [article("race", f"Batch version {i}"), article(f"o-{i}", "Other")]},
        )
        for i in range(4)
    ]
    responses = await asyncio.gather(*singles, *batches)
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    statuses = [r.headers["related-upsert"] for r in responses[:16]] + [
        r.json()["items"][0]["status"] for r in responses[16:]
    ]
    assert statuses.count("created") == 1
    ids = {r.json()["id"] for r in responses[:16]}
    ids |= {r.json()["items"][0]["id"] for r in responses[16:]}
    assert len(ids) == 1
    listed = (await client.get("/v1/articles", params={"limit": 100})).json()["items"]
    assert sorted(a["external_id"] for a in listed) == sorted(["race", "o-0", "o-1", "o-2", "o-3"])


async def test_batch_keeps_valid_items_and_reports_each_invalid_one(client: AsyncClient) -> None:
    batch = [
        article("ok-1", "Valid first"),
        article("bad-nul", "NUL \x00 inside"),
        42,
        article("ok-2", "Valid second", source="'; DROP TABLE articles; --"),
        {"external_id": "bad-url", "title": "t", "url": "javascript:alert(1)"},
        article("bad\nid", "Control character in the id"),
        article("ok-3", "Valid third"),
    ]
    response = await client.post("/v1/articles/batch", json={"articles": batch})
    assert response.status_code == 200
    items = response.json()["items"]
    assert [i["status"] for i in items] == [
        "created",
        "error",
        "error",
        "created",
        "error",
        "error",
        "created",
    ]
    paths = {i["index"]: [d["path"] for d in i["error"]["details"]] for i in items if i["error"]}
    assert paths[1] == ["articles.1.title"]
    assert paths[2] == ["articles.2"]
    assert paths[4] == ["articles.4.url"]
    assert paths[5] == ["articles.5.external_id"]
    assert response.json()["counts"]["error"] == 4
    for ref in ("ok-1", "ok-2", "ok-3"):
        assert (await client.get(f"/v1/articles/{ref}")).status_code == 200


HOSTILE = [
    "'; DROP TABLE articles; --",
    "Robert'); DROP TABLE api_keys; --",
    "%",
    "_",
    "\\",
    "'",
    '"',
    "a%b",
    "50_50",
    "back\\slash",
    "1' OR '1'='1",
    "$1",
    "\x00",
    "é%_",
]

LIST_FILTERS = ("source", "exclude_source", "category", "language", "exclude_ids")

# Stored with these labels, to prove the filters match literally (no LIKE, no escaping bugs).
LITERAL = {"pct": "%", "under": "50_50", "slash": "back\\slash", "quote": "O'Brien"}


async def _row_counts(app: Any) -> tuple[int, int]:
    async with app.state.database.engine.connect() as conn:
        articles = await conn.scalar(text("SELECT count(*) FROM articles"))
        keys = await conn.scalar(text("SELECT count(*) FROM api_keys"))
    return int(articles or 0), int(keys or 0)


async def test_injection_shaped_input_to_every_filter_and_ref(
    client: AsyncClient, app: Any
) -> None:
    for name, label in LITERAL.items():
        item = article(name, f"Harbour storm report {name}", source=label, category=label)
        assert (await client.post("/v1/articles", json=item)).status_code == 201
    counts = await _row_counts(app)

    statuses: set[int] = set()
    for value in HOSTILE:
        list_params: list[dict[str, Any]] = [
            {name: value} for name in ("source", "category", "language", "cursor", "since")
        ]
        for params in list_params:
            statuses.add((await client.get("/v1/articles", params=params)).status_code)
        for name in LIST_FILTERS:
            related = await client.get("/v1/articles/pct/related", params={name: value})
            statuses.add(related.status_code)
        statuses.add(
            (await client.get("/v1/articles/pct/related", params={"ranking": value})).status_code
        )
        # A draft is encoded once per request: every filter in one request keeps this fast.
        draft: dict[str, Any] = {"title": "Harbour storm"} | {f: [value] for f in LIST_FILTERS}
        statuses.add((await client.post("/v1/related", json=draft)).status_code)
        draft = {"title": "Harbour storm", "ranking": value}
        statuses.add((await client.post("/v1/related", json=draft)).status_code)
        ref = quote(value, safe="")
        for path in (f"/v1/articles/{ref}", f"/v1/articles/{ref}/related"):
            statuses.add((await client.get(path)).status_code)
        statuses.add((await client.delete(f"/v1/articles/{ref}")).status_code)
    assert statuses <= {200, 404, 422}, statuses
    assert 200 in statuses and 422 in statuses
    assert await _row_counts(app) == counts  # nothing dropped, nothing deleted

    for name, label in LITERAL.items():
        for field in ("source", "category"):
            page = await client.get("/v1/articles", params={field: label})
            assert [a["external_id"] for a in page.json()["items"]] == [name], (field, label)
        other = "under" if name != "under" else "pct"
        related = await client.get(f"/v1/articles/{other}/related", params={"source": label})
        assert [a["external_id"] for a in related.json()["items"]] == [name], label
    for pattern in ("_", "%%", "back%", "O'%"):
        assert (await client.get("/v1/articles", params={"source": pattern})).json()["items"] == []


async def test_every_list_valued_filter_is_capped_with_a_422_naming_it(client: AsyncClient) -> None:
    await client.post("/v1/articles", json=article("capped", "Harbour storm report"))
    caps = {"source": 100, "exclude_source": 100, "category": 100, "language": 100}
    caps["exclude_ids"] = 1000
    for name, cap in caps.items():
        at_cap = [f"v{i}" for i in range(cap)]
        over = [*at_cap, "one-more"]
        requests = [
            ("related", lambda values, n=name: client.get(
                "/v1/articles/capped/related", params={n: values})),
            ("draft", lambda values, n=name: client.post(
                "/v1/related", json={"title": "Harbour storm", n: values})),
        ]  # fmt: skip
        if name in ("source", "category", "language"):
            requests.append(
                ("list", lambda values, n=name: client.get("/v1/articles", params={n: values}))
            )
        for where, send in requests:
            assert (await send(at_cap)).status_code == 200, (name, where)
            refused = await send(over)
            assert refused.status_code == 422, (name, where)
            [detail] = refused.json()["error"]["details"]
            assert detail["path"].endswith(name) and detail["type"] == "too_long", detail
