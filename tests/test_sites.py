"""Sites: every endpoint, asked with keys of other sites, by our id, by external_id, through
filters and cursors, shows and changes nothing of another site's articles."""

import base64
import json
from typing import Any

import pytest
from httpx import AsyncClient

from app.auth.models import Scope
from app.core.config import Settings
from tests.conftest import article, http_client, running_app
from tests.conftest import create_key as make_key
from tests.test_errors import assert_error

# Two newsrooms covering the same stories, each with its own ids; "shared-1" is both's.
STORIES = {
    "a": [
        article("a-1", "Harbour ferry strike halts all crossings", source="Harbor Daily",
                category="local", language="en", published_at="2026-11-20T08:00:00Z"),
        article("a-2", "Ferry workers walk out over pay and rosters", source="Harbor Daily",
                category="business", language="en", published_at="2026-11-21T08:00:00Z"),
        article("shared-1", "Ferry operator and union agree a deal", source="Harbor Daily",
                language="en", published_at="2026-11-22T08:00:00Z"),
    ],
    "b": [
        article("b-1", "Ferry strike leaves islanders stranded", source="Island Post",
                category="local", language="en", published_at="2026-11-20T09:00:00Z"),
        article("b-2", "Ferry crews strike over pay", source="Island Post",
                category="business", language="en", published_at="2026-11-21T09:00:00Z"),
        article("shared-1", "Ferry strike ends after talks", source="Island Post",
                language="en", published_at="2026-11-22T09:00:00Z"),
    ],
}  # fmt: skip
DRAFT = {"title": "Ferry strike", "limit": 100}
# Every /v1 route this file tries with other sites' keys; a new one fails
# test_every_route_is_tried until it is tried here too.
TRIED = {
    ("GET", "/v1/articles"),
    ("POST", "/v1/articles"),
    ("POST", "/v1/articles/batch"),
    ("GET", "/v1/articles/{ref}"),
    ("DELETE", "/v1/articles/{ref}"),
    ("GET", "/v1/articles/{ref}/related"),
    ("POST", "/v1/related"),
    ("POST", "/v1/recommend"),
}
# Counts of the embedding queue, of every site together: no article is shown.
NOT_ARTICLES = {("GET", "/v1/embedding/status")}


async def create_key(app: Any, *scopes: Scope, sites: list[str] | None) -> str:
    return await make_key(app, *scopes, name="site-test", sites=sites)


@pytest.fixture
async def keys(app: Any, client: AsyncClient) -> dict[str, str]:
    """Read-write keys of site a, of site b, and of every site (an aggregator)."""
    return {
        "a": await create_key(app, Scope.READ, Scope.WRITE, sites=["a"]),
        "b": await create_key(app, Scope.READ, Scope.WRITE, sites=["b"]),
        "all": await create_key(app, Scope.READ, Scope.WRITE, sites=None),
    }


@pytest.fixture
async def stored(app: Any, keys: dict[str, str]) -> dict[str, dict[str, str]]:
    """Each site's articles, sent with its own key (without naming the site): site -> external
    id -> our id."""
    ids: dict[str, dict[str, str]] = {}
    for site, items in STORIES.items():
        async with http_client(app, keys[site]) as http:
            response = await http.post("/v1/articles/batch", json={"articles": items})
        assert response.status_code == 200, response.text
        assert response.json()["counts"]["created"] == len(items)
        ids[site] = {i["external_id"]: i["id"] for i in response.json()["items"]}
    return ids


def external_ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["external_id"] for item in response.json()["items"]}


def sites_of(response: Any) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["site"] for item in response.json()["items"]}


async def test_every_route_is_tried(app: Any) -> None:
    paths = app.openapi()["paths"]
    routes = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/v1/")
        for method in operations
    }
    assert routes == TRIED | NOT_ARTICLES


async def test_writes_go_to_the_keys_sites_only(
    app: Any, keys: dict[str, str], stored: dict[str, dict[str, str]]
) -> None:
    async with http_client(app, keys["a"]) as a, http_client(app, keys["all"]) as every:
        # Named explicitly, another site is a 403 in the error shape; nothing is stored.
        refused = await a.post("/v1/articles", json={**article("x", "X"), "site": "b"})
        assert_error(refused, 403, "site_not_allowed")
        assert refused.json()["error"]["details"] == {"sites": ["b"], "allowed": ["a"]}
        batch = await a.post(
            "/v1/articles/batch",
            json={"articles": [article("y", "Y"), {**article("z", "Z"), "site": "b"}]},
        )
        assert batch.status_code == 200
        [ok, other] = batch.json()["items"]
        assert ok["status"] == "created" and other["status"] == "error"
        assert other["error"]["code"] == "site_not_allowed"
        assert external_ids(await every.get("/v1/articles", params={"site": "b"})) == {
            "b-1",
            "b-2",
            "shared-1",
        }
        # The same external_id in site a is site a's own article: b's is untouched.
        updated = await a.post("/v1/articles", json=article("b-1", "Site a's b-1"))
        assert updated.status_code == 201 and updated.json()["site"] == "a"
        b_1 = await every.get(f"/v1/articles/{stored['b']['b-1']}")
        assert b_1.json()["title"] == STORIES["b"][0]["title"]
        # An aggregator writes to any site it names; without one, to `default`.
        named = await every.post("/v1/articles", json={**article("n", "N"), "site": "c"})
        assert named.status_code == 201 and named.json()["site"] == "c"
        unnamed = await every.post("/v1/articles", json=article("n", "N"))
        assert unnamed.status_code == 201 and unnamed.json()["site"] == "default"


@pytest.mark.parametrize("reader", ["a", "b"])
async def test_nothing_of_another_site_by_id_or_external_id(
    app: Any, keys: dict[str, str], stored: dict[str, dict[str, str]], reader: str
) -> None:
    other = "b" if reader == "a" else "a"
    async with http_client(app, keys[reader]) as http:
        for external_id, article_id in stored[other].items():
            refs = [article_id] if external_id == "shared-1" else [article_id, external_id]
            for ref in refs:
                for response in (
                    await http.get(f"/v1/articles/{ref}"),
                    await http.get(f"/v1/articles/{ref}/related"),
                    await http.get(f"/v1/articles/{ref}/related", params={"ranking": "vector"}),
                    await http.delete(f"/v1/articles/{ref}"),
                    await http.post("/v1/recommend", json={"positive": [ref]}),
                ):
                    assert_error(response, 404, "not_found")
                # Another site's article as a negative is no article at all.
                answer = await http.post(
                    "/v1/recommend", json={"positive": [f"{reader}-1"], "negative": [ref]}
                )
                assert answer.json()["ignored"] == [{"ref": ref, "reason": "not_found"}]
        # Its own "shared-1" is its own, by external_id.
        own = await http.get("/v1/articles/shared-1")
        assert own.json()["id"] == stored[reader]["shared-1"]
        # Naming the other site is refused, not an empty answer.
        for response in (
            await http.get(f"/v1/articles/{stored[other]['shared-1']}", params={"site": other}),
            await http.get("/v1/articles", params={"site": other}),
            await http.get(f"/v1/articles/{reader}-1/related", params={"site": other}),
            await http.post("/v1/related", json={**DRAFT, "site": [other]}),
            await http.post("/v1/recommend", json={"positive": [f"{reader}-1"], "site": [other]}),
        ):
            assert_error(response, 403, "site_not_allowed")
    # Nothing was deleted.
    async with http_client(app, keys["all"]) as every:
        assert len((await every.get("/v1/articles")).json()["items"]) == 6


@pytest.mark.parametrize("reader", ["a", "b"])
async def test_lists_related_and_drafts_show_the_keys_sites_only(
    app: Any, keys: dict[str, str], stored: dict[str, dict[str, str]], reader: str
) -> None:
    own = set(stored[reader])
    other = "b" if reader == "a" else "a"
    other_source = STORIES[other][0]["source"]
    async with http_client(app, keys[reader]) as http:
        assert external_ids(await http.get("/v1/articles")) == own
        assert sites_of(await http.get("/v1/articles")) == {reader}
        # Filters that match only the other site's articles: nothing, not theirs.
        for params in (
            {"source": [other_source]},
            {"exclude_source": [STORIES[reader][0]["source"]]},
            {"exclude_ids": list(stored[reader])},
        ):
            assert external_ids(await http.get("/v1/articles", params=params)) == set()
            draft = await http.post("/v1/related", json={**DRAFT, **params})
            assert external_ids(draft) == set()
            history = {"positive": [f"{reader}-1"], "limit": 100}
            assert external_ids(await http.post("/v1/recommend", json=history | params)) == set()
            related = await http.get(
                f"/v1/articles/{reader}-1/related", params={**params, "limit": 100}
            )
            assert external_ids(related) == set()
        # Related and drafts, every ranking: the site's own articles only.
        for query in ({}, {"ranking": "vector", "dedupe": False}, {"diversity": 0.5}):
            for ref in (f"{reader}-1", stored[reader][f"{reader}-1"]):
                related = await http.get(
                    f"/v1/articles/{ref}/related", params={**query, "limit": 100}
                )
                assert external_ids(related) == own - {f"{reader}-1"}
            assert external_ids(await http.post("/v1/related", json={**DRAFT, **query})) == own
            history = {"positive": [f"{reader}-1"], "limit": 100, **query}
            recommended = await http.post("/v1/recommend", json=history)
            assert external_ids(recommended) == own - {f"{reader}-1"}


async def test_cursors_do_not_cross_sites(
    app: Any, keys: dict[str, str], stored: dict[str, dict[str, str]]
) -> None:
    async with http_client(app, keys["a"]) as a, http_client(app, keys["b"]) as b:
        page = await a.get("/v1/articles", params={"limit": 1})
        cursor = page.json()["next_cursor"]
        # Site a's cursor is a position in time, nothing more: with b's key, b's articles
        # older than it.
        assert external_ids(await b.get("/v1/articles", params={"cursor": cursor})) == {
            "b-1",
            "b-2",
        }
        # A cursor made up from another site's article (its time and id) shows nothing of it.
        forged_for = await a.get(f"/v1/articles/{stored['a']['a-2']}")
        raw = json.dumps([forged_for.json()["published_at"], stored["a"]["a-2"]])
        forged = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        assert external_ids(await b.get("/v1/articles", params={"cursor": forged})) == {"b-1"}
        # Walking every page of a's list with b's key finds only b's.
        seen: set[str] = set()
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            response = await b.get("/v1/articles", params=params)
            seen |= external_ids(response)
            cursor = response.json()["next_cursor"]
            if cursor is None:
                break
        assert seen == set(stored["b"])


async def test_an_aggregator_sees_its_sites_and_can_narrow_them(
    app: Any, keys: dict[str, str], stored: dict[str, dict[str, str]]
) -> None:
    async with http_client(app, keys["all"]) as every:
        assert sites_of(await every.get("/v1/articles")) == {"a", "b"}
        # An external_id of two sites: which one is asked for.
        ambiguous = await every.get("/v1/articles/shared-1")
        error = assert_error(ambiguous, 409, "ambiguous_ref")
        assert error["details"]["sites"] == ["a", "b"]
        assert_error(await every.get("/v1/articles/shared-1/related"), 409, "ambiguous_ref")
        assert_error(await every.delete("/v1/articles/shared-1"), 409, "ambiguous_ref")
        chosen = await every.get("/v1/articles/shared-1", params={"site": "b"})
        assert chosen.json()["id"] == stored["b"]["shared-1"]
        # `site` narrows the lookup and the results alike.
        related = await every.get("/v1/articles/shared-1/related", params={"site": "a"})
        assert external_ids(related) == {"a-1", "a-2"}
        # In a history, the ambiguous ref is skipped and said so; `site` makes it one article.
        history = {"positive": ["shared-1", "a-1"], "limit": 100}
        skipped = (await every.post("/v1/recommend", json=history)).json()
        assert skipped["ignored"] == [{"ref": "shared-1", "reason": "ambiguous"}]
        narrowed = await every.post("/v1/recommend", json={**history, "site": ["a"]})
        assert narrowed.json()["ignored"] == [] and external_ids(narrowed) == {"a-2"}
        # Across its sites by our id; a draft, narrowed or not.
        across = await every.get(f"/v1/articles/{stored['a']['a-1']}/related")
        assert {i["external_id"] for i in across.json()["items"]} >= {"b-1", "b-2"}
        assert external_ids(await every.post("/v1/related", json={**DRAFT, "site": ["b"]})) == set(
            stored["b"]
        )
        deleted = await every.delete("/v1/articles/shared-1", params={"site": "a"})
        assert deleted.status_code == 204
        assert (await every.get("/v1/articles/shared-1")).json()["site"] == "b"


async def test_a_key_of_two_sites(app: Any, stored: dict[str, dict[str, str]]) -> None:
    token = await create_key(app, Scope.READ, sites=["a", "c"])
    async with http_client(app, token) as http:
        assert sites_of(await http.get("/v1/articles")) == {"a"}
        assert (await http.get("/v1/articles/shared-1")).json()["site"] == "a"
        assert_error(await http.get("/v1/articles/b-1"), 404, "not_found")


async def test_anonymous_reads_see_their_configured_sites(
    settings: Settings, embedder: Any, stored: dict[str, dict[str, str]]
) -> None:
    # Default: `default` only, where none of these are.
    async with (
        running_app(settings, embedder, anonymous_reads=True) as app,
        http_client(app) as anonymous,
    ):
        assert external_ids(await anonymous.get("/v1/articles")) == set()
        assert_error(await anonymous.get("/v1/articles/a-1"), 404, "not_found")
    async with (
        running_app(settings, embedder, anonymous_reads=True, anonymous_read_sites=["b"]) as app,
        http_client(app) as anonymous,
    ):
        assert sites_of(await anonymous.get("/v1/articles")) == {"b"}
        assert_error(await anonymous.get("/v1/articles/a-1/related"), 404, "not_found")
        for ref in ("b-1", stored["b"]["b-1"]):
            assert external_ids(await anonymous.get(f"/v1/articles/{ref}/related")) == {
                "b-2",
                "shared-1",
            }
        assert external_ids(await anonymous.post("/v1/related", json=DRAFT)) == set(stored["b"])
        assert_error(
            await anonymous.get("/v1/articles", params={"site": "a"}), 403, "site_not_allowed"
        )


async def test_publishable_keys_are_bound_to_sites(
    app: Any, stored: dict[str, dict[str, str]]
) -> None:
    origin = "https://www.a.example"
    token = await make_key(app, Scope.READ, name="www-a", sites=["a"], origins=[origin])
    async with http_client(app) as page:
        page.headers["origin"] = origin
        related = await page.get("/v1/articles/a-1/related", params={"key": token})
        assert external_ids(related) == {"a-2", "shared-1"}
        assert_error(
            await page.get("/v1/articles/b-1/related", params={"key": token}), 404, "not_found"
        )
        listed = await page.get("/v1/articles", params={"key": token})
        assert sites_of(listed) == {"a"}


async def test_etags_of_two_sites_differ(
    app: Any, keys: dict[str, str], stored: dict[str, dict[str, str]]
) -> None:
    async with http_client(app, keys["a"]) as a, http_client(app, keys["b"]) as b:
        tag = (await a.get("/v1/articles")).headers["etag"]
        # b's key sending a's ETag gets b's list, not a 304 for a's.
        answer = await b.get("/v1/articles", headers={"if-none-match": tag})
        assert answer.status_code == 200 and sites_of(answer) == {"b"}
