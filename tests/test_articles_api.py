"""Ingest, upsert idempotency, reads, listing with cursor pagination, deletion."""

import uuid

from httpx import AsyncClient

from tests.conftest import CountingEmbedder, article

STORY = article(
    "cms-1",
    "Harbour bridge to close for three weekends of repairs",
    "The harbour bridge will close to traffic for three weekends starting Saturday while crews "
    "replace worn expansion joints, the transport department said.",
    summary="Three weekend closures for joint replacement.",
    source="Harbor Daily",
    url="https://example.com/harbor-daily/bridge",
    language="en",
    category="local",
    tags=["transport"],
    authors=["Ana Ruiz"],
    published_at="2026-11-20T08:15:00Z",
)


async def test_create_then_get_by_id_and_by_external_id(
    client: AsyncClient, embedder: CountingEmbedder
) -> None:
    created = await client.post("/v1/articles", json=STORY)
    assert created.status_code == 201
    assert created.headers["Related-Upsert"] == "created"
    body = created.json()
    assert body["external_id"] == "cms-1"
    assert body["embedding_model"] == embedder.name  # all-MiniLM-L6-v2, +onnx-int8 with int8
    assert body["published_at"] == "2026-11-20T08:15:00Z"
    assert body["tags"] == ["transport"] and body["authors"] == ["Ana Ruiz"]

    by_id = await client.get(f"/v1/articles/{body['id']}")
    by_external_id = await client.get("/v1/articles/cms-1")
    assert by_id.status_code == by_external_id.status_code == 200
    assert by_id.json() == by_external_id.json() == body


async def test_identical_resend_changes_nothing_and_does_not_reembed(
    client: AsyncClient, embedder: CountingEmbedder
) -> None:
    first = (await client.post("/v1/articles", json=STORY)).json()
    encoded_before = len(embedder.encoded)

    again = await client.post("/v1/articles", json=STORY)

    assert again.status_code == 200
    assert again.headers["Related-Upsert"] == "unchanged"
    assert again.json() == first  # same id, same updated_at
    assert len(embedder.encoded) == encoded_before


async def test_metadata_change_updates_without_reembedding(
    client: AsyncClient, embedder: CountingEmbedder
) -> None:
    first = (await client.post("/v1/articles", json=STORY)).json()
    encoded_before = len(embedder.encoded)

    updated = await client.post("/v1/articles", json={**STORY, "tags": ["transport", "roads"]})

    assert updated.status_code == 200
    assert updated.headers["Related-Upsert"] == "updated"
    assert updated.json()["id"] == first["id"]
    assert updated.json()["tags"] == ["transport", "roads"]
    assert updated.json()["updated_at"] > first["updated_at"]
    assert len(embedder.encoded) == encoded_before


async def test_text_change_is_reembedded(client: AsyncClient, embedder: CountingEmbedder) -> None:
    await client.post("/v1/articles", json=STORY)
    encoded_before = len(embedder.encoded)

    new_title = "Harbour bridge repairs postponed until spring"
    updated = await client.post("/v1/articles", json={**STORY, "title": new_title})

    assert updated.headers["Related-Upsert"] == "updated"
    assert len(embedder.encoded) == encoded_before + 1
    assert embedder.encoded[-1].startswith(new_title)


async def test_published_at_defaults_to_receipt_and_survives_updates(client: AsyncClient) -> None:
    item = article("cms-2", "Council election results due tonight")
    created = (await client.post("/v1/articles", json=item)).json()
    assert created["published_at"] == created["created_at"]

    updated = (await client.post("/v1/articles", json={**item, "body": "Counting began."})).json()
    assert updated["published_at"] == created["published_at"]


async def test_external_ids_with_slashes_work_in_paths(client: AsyncClient) -> None:
    await client.post("/v1/articles", json=article("2026/11/bridge-story", "Bridge story"))
    got = await client.get("/v1/articles/2026/11/bridge-story")
    assert got.status_code == 200
    assert got.json()["external_id"] == "2026/11/bridge-story"
    related = await client.get("/v1/articles/2026/11/bridge-story/related")
    assert related.status_code == 200
    assert related.json()["article"]["external_id"] == "2026/11/bridge-story"


async def test_delete_removes_the_article(client: AsyncClient) -> None:
    created = (await client.post("/v1/articles", json=STORY)).json()

    deleted = await client.delete(f"/v1/articles/{created['id']}")

    assert deleted.status_code == 204
    assert (await client.get("/v1/articles/cms-1")).status_code == 404
    assert (await client.delete("/v1/articles/cms-1")).status_code == 404


async def test_unknown_article_is_404_in_the_error_shape(client: AsyncClient) -> None:
    for path in (f"/v1/articles/{uuid.uuid4()}", "/v1/articles/missing", "/v1/articles/x/related"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


COMPACT = {"index", "id", "external_id", "status", "embedding_status", "error"}


async def test_batch_reports_each_item_in_order_and_keeps_valid_ones(
    client: AsyncClient,
) -> None:
    await client.post("/v1/articles", json=STORY)
    batch = [
        STORY,  # unchanged
        article("b-1", "Ferry timetable changes for winter"),
        {"external_id": "b-2"},  # no title
        "not an object",
        {**STORY, "title": "Harbour bridge closure cut to two weekends"},  # update of cms-1
        article("b-3", "Ferry fares rise in January", published_at="yesterday"),
    ]

    response = await client.post("/v1/articles/batch", json={"articles": batch})

    assert response.status_code == 200
    items = response.json()["items"]
    assert [i["index"] for i in items] == list(range(len(batch)))
    assert [i["status"] for i in items] == [
        "unchanged",
        "created",
        "error",
        "error",
        "updated",
        "error",
    ]
    # Compact results: who, what happened, where its embedding is; never the article itself.
    assert all(set(item) == COMPACT for item in items)
    assert items[1]["external_id"] == "b-1" and items[1]["error"] is None
    assert items[1]["embedding_status"] == "ready"  # the test client waits for embeddings
    stored = (await client.get("/v1/articles/b-1")).json()
    assert items[1]["id"] == stored["id"]
    assert [i["external_id"] for i in items] == [
        "cms-1",
        "b-1",
        "b-2",  # invalid items keep the external_id they were sent with
        None,
        "cms-1",
        "b-3",
    ]
    assert items[2]["id"] is None and items[2]["embedding_status"] is None
    assert items[2]["error"]["code"] == "validation_error"
    assert items[2]["error"]["details"][0]["path"] == "articles.2.title"
    assert items[5]["error"]["details"][0]["path"] == "articles.5.published_at"
    assert response.json()["counts"] == {"created": 1, "updated": 1, "unchanged": 1, "error": 3}
    assert (await client.get("/v1/articles/b-1")).status_code == 200
    assert (await client.get("/v1/articles/b-3")).status_code == 404


async def test_batch_answers_whole_articles_only_when_asked(client: AsyncClient) -> None:
    body = ("A long body that a compact answer does not send back. " * 400).strip()
    items = [article(f"long-{n}", f"Long story {n}", body) for n in range(5)]
    compact = await client.post("/v1/articles/batch", json={"articles": items})
    full = await client.post(
        "/v1/articles/batch", params={"full": "true"}, json={"articles": [*items, {"x": 1}]}
    )
    assert compact.status_code == full.status_code == 200
    # Five bodies of 22 kB in; a few hundred bytes out.
    assert len(compact.content) < 1500 < len(body) * 5 < len(full.content)
    assert [i["status"] for i in full.json()["items"]] == ["unchanged"] * 5 + ["error"]
    for sent, result in zip(items, full.json()["items"], strict=False):
        assert set(result) == COMPACT | {"article"}
        assert result["article"]["body"] == sent["body"]
        assert result["article"]["id"] == result["id"]
    assert "article" not in full.json()["items"][5]  # nothing stored, nothing to show
    spec = (await client.get("/openapi.json")).json()
    parameters = spec["paths"]["/v1/articles/batch"]["post"]["parameters"]
    assert "full" in {parameter["name"] for parameter in parameters}


async def test_batch_with_the_same_external_id_twice_keeps_the_last(
    client: AsyncClient,
) -> None:
    first, second = article("dup", "First version"), article("dup", "Second version")
    response = await client.post("/v1/articles/batch", json={"articles": [first, second]})

    statuses = [i["status"] for i in response.json()["items"]]
    assert statuses == ["created", "updated"]
    assert (await client.get("/v1/articles/dup")).json()["title"] == "Second version"


async def test_batch_over_the_article_limit_is_413(client: AsyncClient) -> None:
    # The test settings allow 50 articles per batch.
    items = [article(f"n-{i}", f"Headline {i}") for i in range(51)]
    response = await client.post("/v1/articles/batch", json={"articles": items})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "batch_too_large"
    assert (await client.get("/v1/articles/n-0")).status_code == 404


async def test_list_filters(client: AsyncClient) -> None:
    items = [
        article(
            "l-1",
            "A",
            source="S1",
            category="sport",
            language="en",
            published_at="2026-11-01T00:00:00Z",
        ),
        article(
            "l-2",
            "B",
            source="S2",
            category="sport",
            language="fr",
            published_at="2026-11-02T00:00:00Z",
        ),
        article(
            "l-3",
            "C",
            source="S1",
            category="world",
            language="en",
            published_at="2026-11-03T00:00:00Z",
        ),
    ]
    await client.post("/v1/articles/batch", json={"articles": items})

    async def ids(query: str) -> list[str]:
        response = await client.get(f"/v1/articles?{query}")
        assert response.status_code == 200
        return [a["external_id"] for a in response.json()["items"]]

    assert await ids("") == ["l-3", "l-2", "l-1"]
    assert await ids("source=S1") == ["l-3", "l-1"]
    assert await ids("source=S1&source=S2&category=sport") == ["l-2", "l-1"]
    assert await ids("language=FR") == ["l-2"]
    assert await ids("since=2026-11-02T00:00:00Z") == ["l-3", "l-2"]
    assert await ids("until=2026-11-02T00:00:00Z") == ["l-1"]


async def test_cursor_pagination_visits_every_article_once(client: AsyncClient) -> None:
    same_time = "2026-11-05T12:00:00Z"  # ties on published_at are broken by id
    items = [article(f"p-{i}", f"Story {i}", published_at=same_time) for i in range(12)]
    items += [
        article(f"q-{i}", f"Other {i}", published_at=f"2026-11-0{i + 1}T00:00:00Z")
        for i in range(3)
    ]
    await client.post("/v1/articles/batch", json={"articles": items})

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/articles", params=params)).json()
        seen += [a["external_id"] for a in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == 4
    assert sorted(seen) == sorted(i["external_id"] for i in items)
    assert len(seen) == len(set(seen))


async def test_invalid_cursor_is_422(client: AsyncClient) -> None:
    response = await client.get("/v1/articles", params={"cursor": "garbage!"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["path"] == "cursor"


async def test_concurrent_upserts_of_one_external_id_leave_one_article(
    client: AsyncClient,
) -> None:
    import asyncio

    versions = [article("race", f"Version {i}") for i in range(6)]
    responses = await asyncio.gather(*(client.post("/v1/articles", json=v) for v in versions))

    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    assert [r.status_code for r in responses].count(201) == 1
    assert len({r.json()["id"] for r in responses}) == 1
    listed = (await client.get("/v1/articles")).json()["items"]
    assert [a["external_id"] for a in listed] == ["race"]


async def test_blank_optional_labels_mean_absent(client: AsyncClient) -> None:
    response = await client.post(
        "/v1/articles", json=article("blank", "Headline", source="", category="  ", language="")
    )
    assert response.status_code == 201
    body = response.json()
    assert body["source"] is None and body["category"] is None and body["language"] is None
