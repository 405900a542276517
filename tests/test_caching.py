"""ETag and Cache-Control on reads: a frontend revalidates for free until the answer changes."""

from typing import Any

from httpx import AsyncClient

from app.core.config import Settings
from tests.conftest import article, http_client, running_app

STORIES = [
    article("bridge-1", "Harbour bridge to close for repairs in March", source="Daily"),
    article("bridge-2", "Harbour bridge repairs: what closes and when", source="Post"),
]


async def revalidate(http: AsyncClient, path: str, etag: str) -> Any:
    return await http.get(path, headers={"If-None-Match": etag})


async def test_article_reads_have_etag_and_revalidate_to_304(
    client: AsyncClient, settings: Settings
) -> None:
    for story in STORIES:
        await client.post("/v1/articles", json=story)
    for path in ("/v1/articles/bridge-1", "/v1/articles", "/v1/articles/bridge-1/related"):
        first = await client.get(path)
        etag = first.headers["etag"]
        assert first.status_code == 200 and etag.startswith('"') and etag.endswith('"')
        # The conftest client sends a key: not for shared caches.
        assert first.headers["cache-control"] == f"private, max-age={settings.cache_max_age_s}"
        assert (await client.get(path)).headers["etag"] == etag  # stable

        cached = await revalidate(client, path, etag)
        assert cached.status_code == 304, path
        assert cached.content == b""
        assert cached.headers["etag"] == etag
        for matching in (f'"other", {etag}', f"W/{etag}", "*"):
            assert (await revalidate(client, path, matching)).status_code == 304
        assert (await revalidate(client, path, '"stale"')).status_code == 200


async def test_etag_changes_when_the_answer_changes(client: AsyncClient) -> None:
    await client.post("/v1/articles", json=STORIES[0])
    before = {
        path: (await client.get(path)).headers["etag"]
        for path in ("/v1/articles/bridge-1", "/v1/articles", "/v1/articles/bridge-1/related")
    }
    # A new related article changes the list and the related answer, not the article itself.
    await client.post("/v1/articles", json=STORIES[1])
    assert (
        await revalidate(client, "/v1/articles/bridge-1", before["/v1/articles/bridge-1"])
    ).status_code == 304
    for path in ("/v1/articles", "/v1/articles/bridge-1/related"):
        changed = await revalidate(client, path, before[path])
        assert changed.status_code == 200 and changed.headers["etag"] != before[path], path
    # An edit changes the article.
    await client.post("/v1/articles", json={**STORIES[0], "title": "Bridge closure postponed"})
    edited = await revalidate(client, "/v1/articles/bridge-1", before["/v1/articles/bridge-1"])
    assert edited.status_code == 200
    assert edited.json()["title"] == "Bridge closure postponed"
    # Query parameters are part of the answer.
    assert (await client.get("/v1/articles", params={"source": "Daily"})).headers["etag"] != (
        await client.get("/v1/articles", params={"source": "Post"})
    ).headers["etag"]


async def test_anonymous_reads_are_public(
    client: AsyncClient, settings: Settings, embedder: Any
) -> None:
    await client.post("/v1/articles", json=STORIES[0])
    async with (
        running_app(settings, embedder, anonymous_reads=True, cache_max_age_s=300) as app,
        http_client(app) as anonymous,
    ):
        response = await anonymous.get("/v1/articles/bridge-1/related")
        assert response.headers["cache-control"] == "public, max-age=300"
        assert "Authorization" in response.headers["vary"]


async def test_errors_writes_and_drafts_are_not_cached(client: AsyncClient) -> None:
    missing = await client.get("/v1/articles/nope")
    created = await client.post("/v1/articles", json=STORIES[0])
    draft = await client.post("/v1/related", json={"title": "Harbour bridge"})
    for response in (missing, created, draft):
        assert "etag" not in response.headers
        assert "cache-control" not in response.headers
    assert (missing.status_code, created.status_code, draft.status_code) == (404, 201, 200)
