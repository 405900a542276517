"""POST /v1/recommend through HTTP with the real model: validation, the history never returned,
filters, refs by id and external_id, what a negative does; and the combination, unit by unit."""

import json
import re
from typing import Any

import httpx
import numpy as np
import pytest
from httpx import AsyncClient

from app.recommend.service import combined, mean_vector, merged_text, steered
from app.related.terms import Terms
from tests.live import LiveServer
from tests.test_readme import README, SCORE_TOLERANCE, block_after, make_run
from tests.test_related_api import add_pending_article, examples, story

API_DOC = README.parent / "docs" / "api.md"

__all__ = ["examples", "make_run"]  # the fixtures, used by name


async def recommend(client: AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/recommend", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def ids(answer: dict[str, Any]) -> list[str]:
    return [item["external_id"] for item in answer["items"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"positive": []}, "positive"),
        ({"positive": [f"a-{i}" for i in range(51)]}, "positive"),
        ({"positive": ["a-1"], "negative": [f"a-{i}" for i in range(51)]}, "negative"),
        ({}, "positive"),
        ({"positive": ["a-1"], "limit": 0}, "limit"),
        ({"positive": ["a-1"], "unknown": 1}, "unknown"),
    ],
)
async def test_invalid_history_is_422_in_the_error_shape(
    client: AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/recommend", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert any(detail["path"].endswith(field) for detail in error["details"]), error


async def test_the_history_is_never_returned_by_id_or_external_id(
    client: AsyncClient, examples: list[dict[str, Any]]
) -> None:
    by_external = {a["external_id"]: a for a in examples}
    listed = (await client.get("/v1/articles", params={"limit": 100})).json()["items"]
    our_id = {a["external_id"]: a["id"] for a in listed}
    assert set(our_id) == set(by_external)
    positive = [our_id["demo-marathon-1"], "demo-marathon-2"]  # one by id, one by external_id
    negative = ["demo-ratecut-1", our_id["demo-ratecut-2"]]
    answer = await recommend(client, positive=positive, negative=negative, limit=100)
    returned = ids(answer)
    history = {"demo-marathon-1", "demo-marathon-2", "demo-ratecut-1", "demo-ratecut-2"}
    assert not history & set(returned)
    assert len(returned) == len(examples) - len(history)
    # The story read leads: its other two articles first.
    assert {story(e) for e in returned[:2]} == {"demo-marathon"}
    assert answer["ignored"] == []


async def test_filters_apply(client: AsyncClient, examples: list[dict[str, Any]]) -> None:
    answer = await recommend(
        client,
        positive=["demo-wildfire-1"],
        source=["Harbor Daily", "Metro Wire"],
        exclude_ids=["demo-wildfire-3"],
        limit=100,
    )
    items = answer["items"]
    assert items and {item["source"] for item in items} <= {"Harbor Daily", "Metro Wire"}
    assert "demo-wildfire-3" not in ids(answer)
    window = await recommend(
        client,
        positive=["demo-wildfire-1"],
        since="2026-11-13T00:00:00Z",
        until="2026-11-16T00:00:00Z",
        category=["world", "local", "science"],
        limit=100,
    )
    assert set(ids(window)) == {"demo-wildfire-2", "demo-wildfire-3", "demo-wildfire-4"}


async def test_unknown_refs_are_ignored_and_listed_and_no_known_positive_is_404(
    client: AsyncClient, examples: list[dict[str, Any]]
) -> None:
    answer = await recommend(
        client, positive=["no-such-article", "demo-breach-1"], negative=["gone"], limit=3
    )
    assert {story(e) for e in ids(answer)} == {"demo-breach"}
    assert answer["ignored"] == [
        {"ref": "no-such-article", "reason": "not_found"},
        {"ref": "gone", "reason": "not_found"},
    ]
    response = await client.post(
        "/v1/recommend", json={"positive": ["no-such-article"], "negative": ["demo-breach-1"]}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_a_positive_not_embedded_yet_is_ignored_and_alone_is_409(
    client: AsyncClient, examples: list[dict[str, Any]], app: Any
) -> None:
    await add_pending_article(app, "pending")
    answer = await recommend(client, positive=["pending", "demo-breach-2"], limit=2)
    assert answer["ignored"] == [{"ref": "pending", "reason": "not_embedded"}]
    assert {story(e) for e in ids(answer)} == {"demo-breach"}
    response = await client.post("/v1/recommend", json={"positive": ["pending"]})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "embedding_pending"


async def test_a_negative_pushes_its_story_down(
    client: AsyncClient, examples: list[dict[str, Any]]
) -> None:
    # A sports reader who read the marathon and a transfer story: both stories lead. Dismissing
    # another transfer article pushes the transfer story's remaining articles down the list.
    positive = ["demo-marathon-1", "demo-transfer-1"]
    before = ids(await recommend(client, positive=positive, limit=100))
    after = ids(await recommend(client, positive=positive, negative=["demo-transfer-2"], limit=100))
    moved = ["demo-transfer-3", "demo-transfer-4"]
    ranks_before = [before.index(e) for e in moved]
    ranks_after = [after.index(e) for e in moved]
    assert max(ranks_before) < 6, before  # among the two stories' articles at first
    assert all(a > b for a, b in zip(ranks_after, ranks_before, strict=True)), (before, after)
    # Below every remaining article of the story that was not dismissed.
    marathon = [after.index(e) for e in ("demo-marathon-2", "demo-marathon-3", "demo-marathon-4")]
    assert min(ranks_after) > max(marathon), after


async def test_explain_on_recommend(client: AsyncClient, examples: list[dict[str, Any]]) -> None:
    answer = await recommend(
        client, positive=["demo-retailer-1", "demo-retailer-2"], limit=3, explain=True
    )
    for item in answer["items"]:
        explain = item["explain"]
        assert explain["similarity"] == pytest.approx(item["similarity"], abs=1e-5)
        assert explain["shared_words"], item
    plain = await recommend(client, positive=["demo-retailer-1", "demo-retailer-2"], limit=3)
    assert all("explain" not in item for item in plain["items"])


# The combination, unit by unit.


def terms(pairs: dict[int, int]) -> Terms:
    return Terms(np.array(list(pairs), dtype=np.int64), np.array(list(pairs.values()), np.int16))


def row(hashes: dict[int, int], headline: list[int], body_words: int) -> dict[str, Any]:
    words = terms(hashes)
    return {
        "term_hashes": words.hashes.astype(">i8").tobytes(),
        "term_counts": words.counts.astype(">i2").tobytes(),
        "title_hashes": np.array(headline, dtype=">i8").tobytes(),
        "body_words": body_words,
    }


def test_the_history_as_one_text_sums_its_words() -> None:
    merged = merged_text(
        [row({1: 2, 2: 1}, [1], 300), row({2: 3, 3: 1}, [3], 10), row({1: 1}, [], 500)]
    )
    assert dict(zip(merged.terms.hashes.tolist(), merged.terms.counts.tolist(), strict=True)) == {
        1: 3,
        2: 4,
        3: 1,
    }
    assert merged.headline.hashes.tolist() == [1, 3]
    assert merged.long  # two of three bodies are long


def test_mean_vector_is_the_unit_mean() -> None:
    vectors = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)
    assert mean_vector(vectors) == pytest.approx(np.array([1, 1, 0]) / np.sqrt(2))


def test_best_takes_each_candidates_best_positive_on_a_common_scale() -> None:
    # The second positive's scores are ten times larger: z-scored, neither dominates.
    first = np.array([3.0, 1.0, 0.0, 0.0], dtype=np.float32)
    second = np.array([0.0, 0.0, 10.0, 30.0], dtype=np.float32)
    best = combined([first, second])
    assert best == pytest.approx(np.maximum(zs(first), zs(second)))


def zs(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std()


def test_a_negative_lowers_the_candidates_like_it() -> None:
    vectors = np.eye(4, dtype=np.float32)
    relevance = np.array([4.0, 3.0, 2.0, 1.0], dtype=np.float32)
    negative = np.array([[1.0, 0, 0, 0]], dtype=np.float32)  # like the best candidate
    lowered = steered(relevance, vectors, negative)
    assert np.argsort(-lowered).tolist() == [1, 2, 0, 3]
    assert np.argsort(-steered(relevance, vectors, np.zeros((1, 4), np.float32))).tolist() == [
        0,
        1,
        2,
        3,
    ]


# The examples of docs/api.md (Recommendations, Why this item) are the service's answers.


def doc_block(marker: str, in_block: bool = True) -> str:
    text = API_DOC.read_text()
    start, end = block_after(text, marker, in_block)
    return text[start:end]


async def test_docs_recommend_example_is_the_services(make_run: LiveServer) -> None:
    command = doc_block("`POST /v1/recommend` recommends", in_block=False)
    body = json.loads(command.split("-d '", 1)[1].rsplit("'", 1)[0])
    async with httpx.AsyncClient(base_url=make_run.url) as http:
        answer = (await http.post("/v1/recommend", json=body)).json()
    shown = doc_block("http://127.0.0.1:8000/v1/recommend")
    assert re.findall(r'"external_id": "([^"]+)"', shown) == ids(answer)
    shown_ignored = json.loads(shown.split('"ignored": ', 1)[1].rsplit("}", 1)[0])
    assert shown_ignored == answer["ignored"]
    score, similarity = map(float, re.findall(r'"(?:score|similarity)": ([\d.]+)', shown))
    first = answer["items"][0]
    assert abs(score - first["score"]) <= SCORE_TOLERANCE, first
    assert abs(similarity - first["similarity"]) <= SCORE_TOLERANCE, first


async def test_docs_explain_example_is_the_services(make_run: LiveServer) -> None:
    path = "/v1/articles/demo-marathon-1/related?limit=2&recency=2&explain=true"
    async with httpx.AsyncClient(base_url=make_run.url) as http:
        first = (await http.get(path)).json()["items"][0]
    shown = doc_block(f"curl -s 'http://127.0.0.1:8000{path}'")
    explain = json.loads(shown.split('"explain": ', 1)[1].rsplit("}", 1)[0])
    assert f'"external_id": "{first["external_id"]}"' in shown
    served = first["explain"]
    assert explain["shared_words"] == served["shared_words"]
    assert explain["rank_before_rerank"] == served["rank_before_rerank"]
    for key in ("similarity", "lexical", "category_prior", "recency_factor"):
        assert abs(explain[key] - served[key]) <= SCORE_TOLERANCE, (key, served)
