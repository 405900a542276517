"""GET related runs as a DirectRoute (app.core.routing): its own checks, in the usual order
and with the usual errors, and no dependency FastAPI would document but never run."""

import pytest
from fastapi import APIRouter, Depends
from httpx import AsyncClient

from app.core.routing import DirectRoute
from tests.conftest import article
from tests.test_errors import assert_error


async def test_a_bad_article_reference_is_422_under_path(client: AsyncClient) -> None:
    for ref in ("a" * 256, "a%00b"):
        error = assert_error(
            await client.get(f"/v1/articles/{ref}/related"), 422, "validation_error"
        )
        assert [d["path"] for d in error["details"]] == ["path.ref"]


async def test_an_unknown_article_is_404_before_its_filters_are_read(client: AsyncClient) -> None:
    response = await client.get("/v1/articles/nothing-here/related", params={"limit": "ten"})
    assert_error(response, 404, "not_found")
    await client.post("/v1/articles", json=article("known", "Anything"))
    response = await client.get("/v1/articles/known/related", params={"limit": "ten"})
    error = assert_error(response, 422, "validation_error")
    assert [d["path"] for d in error["details"]] == ["query.limit"]


async def test_the_answer_is_the_documented_model(client: AsyncClient) -> None:
    await client.post("/v1/articles", json=article("doc-1", "Harbour bridge to close for repairs"))
    await client.post("/v1/articles", json=article("doc-2", "Harbour bridge repairs start"))
    response = await client.get("/v1/articles/doc-1/related")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"article", "model", "items"}
    assert body["article"]["external_id"] == "doc-1"
    assert [item["external_id"] for item in body["items"]] == ["doc-2"]


def test_a_direct_route_refuses_dependencies() -> None:
    router = APIRouter()

    async def endpoint() -> None:
        return None

    with pytest.raises(TypeError, match="runs no dependencies"):
        router.add_api_route(
            "/x",
            endpoint,
            route_class_override=DirectRoute,
            dependencies=[Depends(endpoint)],
        )
