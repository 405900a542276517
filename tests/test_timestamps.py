"""Timestamps at the edges of what Python and PostgreSQL represent: stored and compared
correctly, or a 422 that says why; never a 500, and no stored row breaks requests about others."""

from datetime import UTC, datetime
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text

from tests.conftest import article

# Accepted: inside 0001-01-02T00:00:00Z .. 9999-12-30T23:59:59Z once in UTC; offsets to +-14:00.
ACCEPTED = {
    "0001-01-02T00:00:00Z": "0001-01-02T00:00:00Z",
    "9999-12-30T09:59:59-14:00": "9999-12-30T23:59:59Z",
    "2026-03-08T01:30:00+05:45": "2026-03-07T19:45:00Z",
    "2026-11-20T08:15:00": "2026-11-20T08:15:00Z",  # no zone: UTC
}
REFUSED_TIMESTAMPS: list[Any] = [
    "0001-01-01T00:00:00Z",  # the driver would store PostgreSQL's -infinity
    "0001-01-01T00:00:00+14:00",  # before year 1 in UTC: Python cannot hold it
    "0001-01-02T13:59:59+14:00",  # 0001-01-01 in UTC: below the range
    "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
    "9999-12-31T23:59:59.999999Z",  # the driver would store infinity
    "infinity",
    "-infinity",
    "2026-01-01T00:00:00+24:00",
    1764000000,  # seconds or milliseconds? refused, with the form that is not ambiguous
    1.7e12,
    "1764000000",
]


async def test_published_at_at_the_edges_is_stored_exactly_or_refused_with_the_reason(
    client: AsyncClient,
) -> None:
    for sent, stored in ACCEPTED.items():
        response = await client.post(
            "/v1/articles", json=article(f"ts-{sent}", "Harbour storm", published_at=sent)
        )
        assert response.status_code == 201, (sent, response.text)
        assert response.json()["published_at"] == stored
    for value in REFUSED_TIMESTAMPS:
        response = await client.post(
            "/v1/articles", json=article("ts-refused", "Harbour storm", published_at=value)
        )
        assert response.status_code == 422, (value, response.text)
        [detail] = response.json()["error"]["details"]
        assert detail["path"] == "body.published_at"
        reasons = ("0001-01-02T00:00:00Z to 9999-12-30T23:59:59Z", "ISO 8601", "valid datetime")
        assert any(reason in detail["message"] for reason in reasons), (value, detail)
    listed = (await client.get("/v1/articles", params={"limit": 100})).json()["items"]
    assert sorted(a["published_at"] for a in listed) == sorted(ACCEPTED.values())


@pytest.mark.parametrize("name", ["since", "until"])
async def test_time_windows_at_the_edges_answer_or_refuse_on_every_route(
    client: AsyncClient, name: str
) -> None:
    await client.post("/v1/articles", json=article("asked", "Harbour storm closes the port"))
    await client.post("/v1/articles", json=article("other", "Harbour storm floods the quay"))
    edges = ["0001-01-02T00:00:00Z", "9999-12-30T23:59:59Z"]
    for value in [*edges, *REFUSED_TIMESTAMPS]:
        answers = [
            await client.get("/v1/articles", params={name: value}),
            await client.get("/v1/articles/asked/related", params={name: value}),
            await client.post("/v1/related", json={"title": "Harbour storm", name: value}),
        ]
        for response in answers:
            expected = 200 if value in edges else 422
            assert response.status_code == expected, (value, response.request.url, response.text)


async def test_a_forged_cursor_at_the_edges_is_a_422(client: AsyncClient) -> None:
    import base64
    import json

    for published in ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999", "infinity"]:
        raw = json.dumps([published, "6f1c0a55-0000-4000-8000-000000000000"]).encode()
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        response = await client.get("/v1/articles", params={"cursor": cursor})
        assert response.status_code == 422, (published, response.text)


async def test_no_row_can_hold_a_timestamp_python_cannot_read(
    client: AsyncClient, app: Any
) -> None:
    await client.post("/v1/articles", json=article("kept", "Harbour storm closes the port"))
    for value in ("infinity", "-infinity", "0001-01-01 00:00:00+00", "20000-01-01 00:00:00+00"):
        with pytest.raises(Exception, match="ck_articles_published_at_range"):
            async with app.state.database.engine.begin() as conn:
                await conn.execute(
                    text(f"UPDATE articles SET published_at = '{value}' WHERE external_id = 'kept'")
                )
    # What a reader sees is what was stored: in range, with its zone.
    stored = (await client.get("/v1/articles/kept")).json()["published_at"]
    assert datetime.fromisoformat(stored).tzinfo is not None
    assert datetime.fromisoformat(stored) <= datetime.now(UTC)


async def test_recency_and_drafts_work_beside_the_oldest_and_newest_articles(
    client: AsyncClient,
) -> None:
    for external_id, title, when in (
        ("oldest", "Harbour storm floods the quay and the fish market", "0001-01-02T00:00:00Z"),
        ("newest", "Ferries cancelled as the harbour storm strengthens", "9999-12-30T23:59:59Z"),
        ("today", "Harbour storm closes the port for a second day", None),
    ):
        fields = {"published_at": when} if when else {}
        item = article(external_id, title, **fields)
        assert (await client.post("/v1/articles", json=item)).status_code == 201
    related = await client.get("/v1/articles/today/related", params={"recency": 7})
    assert related.status_code == 200, related.text
    assert {i["external_id"] for i in related.json()["items"]} >= {"oldest", "newest"}
    draft = await client.post("/v1/related", json={"title": "Harbour storm", "recency": 1})
    assert draft.status_code == 200, draft.text
