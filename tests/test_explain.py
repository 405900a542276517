"""explain=true on related: what each item carries, and that it changes nothing else."""

from typing import Any

import pytest
from httpx import AsyncClient

from tests.test_related_api import examples

__all__ = ["examples"]  # the fixture, used by name

FIELDS = {
    "similarity",
    "lexical",
    "shared_words",
    "category_prior",
    "recency_factor",
    "rank_before_rerank",
}


async def related(client: AsyncClient, ref: str, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/articles/{ref}/related", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def without_explain(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "explain"} for item in items]


@pytest.mark.parametrize(
    "params",
    [{}, {"ranking": "vector", "dedupe": "false"}, {"recency": 3, "diversity": 0.3}],
    ids=["hybrid", "plain", "preferences"],
)
async def test_explain_adds_an_object_and_changes_nothing_else(
    client: AsyncClient, examples: list[dict[str, Any]], params: dict[str, Any]
) -> None:
    plain = await related(client, "demo-marathon-1", limit=8, **params)
    assert all("explain" not in item for item in plain)  # absent when off, not null
    explained = await related(client, "demo-marathon-1", limit=8, explain="true", **params)
    assert without_explain(explained) == plain
    for item in explained:
        explain = item["explain"]
        assert set(explain) == FIELDS
        assert explain["similarity"] == pytest.approx(item["similarity"], abs=1e-5)
        assert 0 <= explain["lexical"] <= 1
        assert len(explain["shared_words"]) <= 5
        assert explain["rank_before_rerank"] >= 1
        hybrid = params.get("ranking", "hybrid") == "hybrid"
        assert (explain["category_prior"] is None) == (not hybrid)
        assert (explain["recency_factor"] is None) == ("recency" not in params)
    ranks = [item["explain"]["rank_before_rerank"] for item in explained]
    assert len(set(ranks)) == len(ranks)
    if params.get("ranking") == "vector":  # nothing reorders a plain search
        assert ranks == list(range(1, len(ranks) + 1))


async def test_explain_shows_the_story_s_shared_words_and_the_priors(
    client: AsyncClient, examples: list[dict[str, Any]]
) -> None:
    items = await related(client, "demo-marathon-1", limit=4, explain="true", recency=2)
    by_id = {item["external_id"]: item["explain"] for item in items}
    story = by_id["demo-marathon-2"]
    # PostgreSQL's lexemes of words both articles use: the runner's name, the city.
    assert {"abera", "lakemont"} <= set(story["shared_words"]), story
    assert story["category_prior"] == 0.5  # sports, as the article
    # Published 6 h 20 min after the article: 0.5 ** (0.264 / 2).
    assert story["recency_factor"] == pytest.approx(0.5 ** ((6 + 20 / 60) / 24 / 2), abs=1e-4)
    other = next(e for i, e in by_id.items() if not i.startswith("demo-marathon"))
    assert other["lexical"] < story["lexical"]


async def test_explain_on_a_draft(client: AsyncClient, examples: list[dict[str, Any]]) -> None:
    draft = {"title": "Wildfire near Alder Springs: evacuations", "limit": 3}
    response = await client.post("/v1/related", json=draft | {"explain": True})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert items[0]["external_id"].startswith("demo-wildfire")
    assert "alder" in items[0]["explain"]["shared_words"]
    plain = (await client.post("/v1/related", json=draft)).json()["items"]
    assert all("explain" not in item for item in plain)


async def test_openapi_documents_explain(client: AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert set(schemas["Explanation"]["properties"]) >= FIELDS
    assert "explain" in schemas["RelatedArticle"]["properties"]
