"""dedupe, diversity, recency and max_per_source, through the HTTP API with the real model."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import AsyncClient

from tests.conftest import EXAMPLES, article

STORY = (
    "Firefighters contained the Pine Hollow blaze on Sunday after three days, the county fire "
    "service said. The fire burned 2,400 acres of forest east of Millbrook and destroyed two "
    "barns; no homes were lost. Evacuation orders for 900 residents were lifted at noon."
)


def ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


async def ids(client: AsyncClient, ref: str, **params: Any) -> list[str]:
    response = await client.get(f"/v1/articles/{ref}/related", params=params)
    assert response.status_code == 200, response.text
    return [r["external_id"] for r in response.json()["items"]]


async def post(client: AsyncClient, *items: dict[str, Any]) -> None:
    response = await client.post("/v1/articles/batch", json={"articles": list(items)})
    assert response.json()["counts"]["error"] == 0


async def test_dedupe_drops_copies_of_the_article_and_collapses_duplicates(
    client: AsyncClient,
) -> None:
    await post(
        client,
        article(
            "orig",
            "Pine Hollow fire contained after three days",
            STORY,
            source="County Herald",
            published_at=ago(3),
        ),
        article(
            "wire",
            "Pine Hollow fire is contained",
            STORY,
            source="Wire Service",
            published_at=ago(2),
        ),
        article(
            "later",
            "Crews contain Pine Hollow fire",
            STORY,
            source="Daily Post",
            published_at=ago(1),
        ),
        article(
            "angle",
            "Millbrook farmers count losses after Pine Hollow fire",
            "Two barns and winter hay were lost east of Millbrook as the forest fire "
            "burned for three days before crews contained it.",
            published_at=ago(1),
        ),
    )

    # Copies of the article asked about are not "related" to it.
    assert await ids(client, "orig") == ["angle"]
    assert set(await ids(client, "orig", dedupe="false")) == {"wire", "later", "angle"}
    # Among the results, three copies collapse to one: the first published.
    assert await ids(client, "angle") == ["orig"]
    assert set(await ids(client, "angle", dedupe="false")) == {"orig", "wire", "later"}


async def test_diversity_trades_redundant_results_for_other_stories(client: AsyncClient) -> None:
    items = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
    await post(client, *items)

    plain = await ids(client, "demo-ratecut-1", limit=3)
    varied = await ids(client, "demo-ratecut-1", limit=3, diversity=0.9)

    assert all(e.startswith("demo-ratecut") for e in plain)
    assert varied[0] == plain[0]  # the most relevant still leads
    assert any(not e.startswith("demo-ratecut") for e in varied)


async def test_recency_favours_fresh_articles(client: AsyncClient) -> None:
    # Among other stories, as related search always is: relevance is judged against them.
    others = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
    await post(
        client,
        *others,
        article("q", "Pine Hollow fire contained", STORY[:200], published_at=ago(0)),
        article(
            "old",
            "Pine Hollow fire contained after three days of work",
            STORY[:150],
            published_at=ago(60),
        ),
        article(
            "fresh",
            "Millbrook residents return home as fire is contained",
            "Residents east of Millbrook went home on Sunday after the forest fire was contained.",
            published_at=ago(1),
        ),
    )
    assert await ids(client, "q", limit=2) == ["old", "fresh"]
    # Counted from q's own date: "fresh" is a day from it, "old" two months.
    assert await ids(client, "q", limit=2, recency=7) == ["fresh", "old"]


async def test_max_per_source(client: AsyncClient) -> None:
    items = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
    await post(client, *items)
    response = await client.get(
        "/v1/articles/demo-wildfire-1/related", params={"limit": 10, "max_per_source": 1}
    )
    sources = [r["source"] for r in response.json()["items"]]
    assert len(sources) == len(set(sources)) == len({i["source"] for i in items})
    unlimited = await client.get("/v1/articles/demo-wildfire-1/related", params={"limit": 10})
    unlimited_sources = [r["source"] for r in unlimited.json()["items"]]
    assert len(unlimited_sources) > len(set(unlimited_sources))
