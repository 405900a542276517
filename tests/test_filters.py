"""One filter definition (app.articles.filters): the list, related search by article and by
draft keep exactly the same articles under every filter, on the same stored articles."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient

from tests.conftest import article

NOW = datetime.now(UTC)
DAY = timedelta(days=1)

ARTICLES = [
    article("f-1", "Harbour ferry strike halts crossings", source="Harbor Daily",
            category="local", language="en", published_at=(NOW - 1 * DAY).isoformat()),
    article("f-2", "Ferry workers walk out over pay", source="Metro Wire",
            category="business", language="en", published_at=(NOW - 3 * DAY).isoformat()),
    # No source and no category: what exclusions must keep.
    article("f-3", "Crossings resume after the ferry dispute ends",
            language="de", published_at=(NOW - 10 * DAY).isoformat()),
    article("f-4", "Port authority plans new ferry terminal", source="Harbor Daily",
            category="business", language="en", published_at=(NOW - 40 * DAY).isoformat()),
    article("f-5", "Union and ferry operator agree deal", source="Coastline News",
            language="fr", published_at=(NOW - 2 * DAY).isoformat()),
    article("f-6", "Island shops feel the ferry strike", category="local",
            published_at=(NOW - 5 * DAY).isoformat()),
]  # fmt: skip

# Each filter, in query-parameter form (lists repeat the parameter).
CASES: list[dict[str, Any]] = [
    {},
    {"source": ["Harbor Daily"]},
    {"source": ["Harbor Daily", "Metro Wire"]},
    {"exclude_source": ["Harbor Daily"]},
    {"category": ["local"]},
    {"exclude_category": ["local"]},
    {"exclude_category": ["local", "business"]},
    {"language": ["EN"]},
    {"since": (NOW - 4 * DAY).isoformat()},
    {"until": (NOW - 4 * DAY).isoformat()},
    {"since": (NOW - 20 * DAY).isoformat(), "until": (NOW - 2.5 * DAY).isoformat()},
    {"max_age_days": 4.5},
    {"exclude_ids": ["f-2"]},
    {"exclude_source": ["Metro Wire"], "exclude_category": ["business"], "language": ["en"]},
    {"site": ["default"]},
]


@pytest.fixture
async def stored(client: AsyncClient) -> dict[str, str]:
    response = await client.post("/v1/articles/batch", json={"articles": ARTICLES})
    assert response.json()["counts"]["created"] == len(ARTICLES), response.text
    return {item["external_id"]: item["id"] for item in response.json()["items"]}


@pytest.mark.parametrize("params", CASES, ids=lambda p: ",".join(p) or "none")
async def test_list_and_related_keep_the_same_articles(
    client: AsyncClient, stored: dict[str, str], params: dict[str, Any]
) -> None:
    listed = await client.get("/v1/articles", params={**params, "limit": 100})
    assert listed.status_code == 200, listed.text
    kept = {item["external_id"] for item in listed.json()["items"]}

    plain = {"limit": 100, "ranking": "vector", "dedupe": False}
    draft = await client.post("/v1/related", json={"title": "Ferry strike", **plain, **params})
    assert draft.status_code == 200, draft.text
    assert {item["external_id"] for item in draft.json()["items"]} == kept

    # By a stored article (itself never among the results), by external_id and by our id.
    for ref in ("f-1", stored["f-1"]):
        response = await client.get(f"/v1/articles/{ref}/related", params={**plain, **params})
        assert response.status_code == 200, response.text
        assert {item["external_id"] for item in response.json()["items"]} == kept - {"f-1"}


async def test_exclusions_keep_articles_without_the_field(
    client: AsyncClient, stored: dict[str, str]
) -> None:
    listed = await client.get(
        "/v1/articles", params={"exclude_source": "Harbor Daily", "exclude_category": "local"}
    )
    kept = {item["external_id"] for item in listed.json()["items"]}
    # f-3 has neither, f-5 no category; f-6 is local; f-1, f-4 from Harbor Daily.
    assert kept == {"f-2", "f-3", "f-5"}


async def test_the_filters_are_documented_alike(client: AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()

    def described(path: str, method: str) -> dict[str, str]:
        parameters = spec["paths"][path][method].get("parameters", [])
        return {p["name"]: p.get("description", "") for p in parameters}

    listing = described("/v1/articles", "get")
    related = described("/v1/articles/{ref}/related", "get")
    for name in ("site", "source", "exclude_source", "category", "exclude_category",
                 "language", "since", "until", "max_age_days", "exclude_ids"):  # fmt: skip
        assert listing[name] and listing[name] == related[name], name
    assert "without a category are kept" in listing["exclude_category"]
    draft = spec["components"]["schemas"]["DraftIn"]["properties"]
    assert "exclude_category" in draft and "site" in draft
