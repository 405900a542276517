"""API keys through HTTP: who may read, who may write, and what everyone else is told."""

import re
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient

from app.auth.models import Scope
from app.auth.ratelimit import RateLimiter
from app.auth.repository import ApiKeyRepository
from app.auth.service import ApiKeyService
from app.core.config import Settings
from tests.conftest import article, bearer, create_key, http_client, running_app
from tests.test_errors import assert_error

DRAFT = {"title": "Night buses to run on six new routes"}


def assert_401(response: Any) -> None:
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


async def reads(http: AsyncClient) -> list[Any]:
    return [
        await http.get("/v1/articles"),
        await http.get("/v1/articles/seed"),
        await http.get("/v1/articles/seed/related"),
        await http.post("/v1/related", json=DRAFT),
    ]


async def writes(http: AsyncClient) -> list[Any]:
    return [
        await http.post("/v1/articles", json=article("new", "A new story")),
        await http.post("/v1/articles/batch", json={"articles": [article("b", "Batch")]}),
        await http.delete("/v1/articles/seed"),
    ]


@pytest.fixture
async def seeded(client: AsyncClient) -> AsyncClient:
    assert (await client.post("/v1/articles", json=article("seed", "Bus routes"))).status_code
    return client


async def test_without_a_key_reads_and_writes_are_401(seeded: Any, app: Any) -> None:
    async with http_client(app) as anonymous:
        for response in [*await reads(anonymous), *await writes(anonymous)]:
            assert_401(response)
    assert (await seeded.get("/v1/articles/seed")).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer nonsense",
        "Bearer rk_0123456789abcdef_" + "x" * 43,  # well formed, unknown id
        "Basic dXNlcjpwYXNz",
        "Bearer ",
        "rk_only_a_token",
    ],
)
async def test_invalid_keys_are_401(seeded: Any, app: Any, authorization: str) -> None:
    async with http_client(app) as http:
        for path in ("/v1/articles", "/v1/articles/seed/related"):
            assert_401(await http.get(path, headers={"Authorization": authorization}))


async def test_a_known_key_id_with_the_wrong_secret_is_401(seeded: Any, app: Any) -> None:
    token = await create_key(app, Scope.READ)
    forged = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    async with http_client(app, forged) as http:
        assert_401(await http.get("/v1/articles"))
    async with http_client(app, token) as http:
        assert (await http.get("/v1/articles")).status_code == 200


async def test_scopes_read_write_and_admin(seeded: Any, app: Any) -> None:
    read = await create_key(app, Scope.READ)
    write = await create_key(app, Scope.WRITE)
    both = await create_key(app, Scope.READ, Scope.WRITE)
    async with http_client(app, read) as http:
        assert [r.status_code for r in await reads(http)] == [200] * 4
        for response in await writes(http):
            error = assert_error(response, 403, "forbidden")
            assert error["details"] == {"required": "write", "granted": ["read"]}
    async with http_client(app, write) as http:
        for response in await reads(http):
            assert_error(response, 403, "forbidden")
    async with http_client(app, both) as http:
        assert [r.status_code for r in await reads(http)] == [200] * 4
        assert [r.status_code for r in await writes(http)] == [201, 200, 204]
    # The conftest client holds an admin key: everything, without read or write listed.
    assert (await seeded.post("/v1/articles", json=article("seed", "Back"))).status_code == 201
    assert [r.status_code for r in await reads(seeded)] == [200] * 4


async def test_a_revoked_key_is_401_from_the_next_request(seeded: Any, app: Any) -> None:
    token = await create_key(app, Scope.READ)
    async with http_client(app, token) as http:
        assert (await http.get("/v1/articles")).status_code == 200
        key_id = token.split("_")[1]
        async with app.state.database.sessions() as session, session.begin():
            await ApiKeyService(ApiKeyRepository(session)).revoke(key_id)
        assert_401(await http.get("/v1/articles"))


async def test_anonymous_reads_when_opened(seeded: Any, settings: Settings, embedder: Any) -> None:
    async with (
        running_app(settings, embedder, anonymous_reads=True) as open_app,
        http_client(open_app) as anonymous,
    ):
        assert [r.status_code for r in await reads(anonymous)] == [200] * 4
        for response in await writes(anonymous):
            assert_401(response)
        # A key that is sent is checked, even where none is needed.
        assert_401(await anonymous.get("/v1/articles", headers=bearer("rk_bad")))


async def test_public_endpoints_need_no_key(anonymous_client: AsyncClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
        assert (await anonymous_client.get(path)).status_code == 200, path


async def test_openapi_declares_the_bearer_scheme(anonymous_client: AsyncClient) -> None:
    spec = (await anonymous_client.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["ApiKey"]["description"],
    }
    for path, method in (
        ("/v1/articles", "post"),
        ("/v1/articles/{ref}", "get"),
        ("/v1/articles/{ref}/related", "get"),
        ("/v1/related", "post"),
    ):
        operation = spec["paths"][path][method]
        assert operation["security"] == [{"ApiKey": []}]
        assert {"401", "403", "429"} <= set(operation["responses"])
    assert "security" not in spec["paths"]["/healthz"]["get"]


async def test_rate_limit_answers_429_with_retry_after(
    seeded: Any, settings: Settings, embedder: Any
) -> None:
    async with running_app(
        settings, embedder, rate_limit_per_s=0.2, rate_limit_burst=3, anonymous_reads=True
    ) as limited:
        first, second = await create_key(limited, Scope.READ), await create_key(limited, Scope.READ)
        async with http_client(limited, first) as http:
            statuses = [(await http.get("/v1/articles")).status_code for _ in range(3)]
            assert statuses == [200, 200, 200]
            refused = await http.get("/v1/articles")
            error = assert_error(refused, 429, "rate_limited")
            # One token comes back every 5 s at 0.2/s.
            assert 1 <= int(refused.headers["retry-after"]) <= 5
            assert error["details"]["retry_after_s"] == int(refused.headers["retry-after"])
        async with http_client(limited, second) as http:  # each key has its own bucket
            assert (await http.get("/v1/articles")).status_code == 200
        async with http_client(limited) as anonymous:  # anonymous callers: by client address
            statuses = [(await anonymous.get("/v1/articles")).status_code for _ in range(4)]
            assert statuses == [200, 200, 200, 429]
        # Probes are never limited.
        async with http_client(limited) as anonymous:
            assert (await anonymous.get("/healthz")).status_code == 200


def test_token_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate_per_s=2, burst=2, clock=lambda: now[0])
    assert limiter.acquire("k") is None and limiter.acquire("k") is None
    assert limiter.acquire("k") == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.acquire("k") is None
    assert limiter.acquire("other") is None
    assert RateLimiter(rate_per_s=0, burst=1).acquire("k") is None  # 0 = off


async def test_cors_preflight_for_configured_origins_only(
    client: AsyncClient, settings: Settings, embedder: Any
) -> None:
    preflight = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    async with (
        running_app(settings, embedder, cors_origins=["https://news.example"]) as app,
        http_client(app) as browser,
    ):
        allowed = await browser.options(
            "/v1/articles", headers={**preflight, "Origin": "https://news.example"}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://news.example"
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        other = await browser.options(
            "/v1/articles", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
    # Default: no origin is allowed at all.
    default = await client.options(
        "/v1/articles", headers={**preflight, "Origin": "https://news.example"}
    )
    assert "access-control-allow-origin" not in default.headers


async def test_text_length_and_limit_maximums(
    client: AsyncClient, settings: Settings, embedder: Any
) -> None:
    async with running_app(
        settings, embedder, max_title_chars=20, max_summary_chars=30, max_body_chars=40
    ) as app:
        token = await create_key(app, Scope.ADMIN)
        async with http_client(app, token) as http:
            long = article("long", "t" * 21, "b" * 41, summary="s" * 31)
            error = assert_error(
                await http.post("/v1/articles", json=long), 422, "validation_error"
            )
            assert {d["path"] for d in error["details"]} == {
                "body.title",
                "body.summary",
                "body.body",
            }
            batch = await http.post(
                "/v1/articles/batch", json={"articles": [article("ok", "Short"), long]}
            )
            assert batch.status_code == 200
            assert [i["status"] for i in batch.json()["items"]] == ["created", "error"]
            assert batch.json()["items"][1]["error"]["details"][0]["path"] == "articles.1.title"
            draft = await http.post("/v1/related", json={"title": "x", "body": "b" * 41})
            assert assert_error(draft, 422, "validation_error")["details"][0]["path"] == "body.body"
            assert (await http.get("/v1/articles/long")).status_code == 404
    for path in ("/v1/articles", "/v1/articles/ok/related"):
        assert_error(await client.get(path, params={"limit": 101}), 422, "validation_error")
    too_many = {"articles": [article(f"a{i}", "t") for i in range(settings.max_batch_articles + 1)]}
    assert_error(await client.post("/v1/articles/batch", json=too_many), 413, "batch_too_large")


SITE = "https://news.example"


async def publishable(app: Any, *origins: str) -> str:
    async with app.state.database.sessions() as session, session.begin():
        _, token = await ApiKeyService(ApiKeyRepository(session)).create(
            "site", [Scope.READ], origins=list(origins)
        )
    return token


async def test_publishable_key_reads_only_from_its_origins(seeded: Any, app: Any) -> None:
    token = await publishable(app, "HTTPS://News.Example:443/", "http://127.0.0.1:8080")
    assert token.startswith("pk_")
    related = "/v1/articles/seed/related"
    async with http_client(app) as browser:
        # In the URL (the embeddable box's simple GET) or the header, from an allowed origin.
        ok = await browser.get(related, params={"key": token}, headers={"Origin": SITE})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == SITE
        assert "Origin" in ok.headers["vary"]
        assert "ETag" in ok.headers["access-control-expose-headers"]
        ok = await browser.get(
            "/v1/articles/seed", headers={**bearer(token), "Origin": "http://127.0.0.1:8080"}
        )
        assert ok.status_code == 200
        # A same-origin GET carries no Origin; the Referer's origin stands in.
        ok = await browser.get(
            related, params={"key": token}, headers={"Referer": f"{SITE}/2026/story.html"}
        )
        assert ok.status_code == 200

        for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {}):
            refused = await browser.get(related, params={"key": token}, headers=headers)
            error = assert_error(refused, 403, "origin_not_allowed")
            assert error["details"]["allowed"] == ["http://127.0.0.1:8080", SITE]
            assert "access-control-allow-origin" not in refused.headers
        # Read only: drafts are reads, writes are not.
        assert (
            await browser.post(
                "/v1/related", params={"key": token}, json=DRAFT, headers={"Origin": SITE}
            )
        ).status_code == 200
        write = await browser.post(
            "/v1/articles",
            json=article("pub", "Not allowed"),
            headers={**bearer(token), "Origin": SITE},
        )
        assert assert_error(write, 403, "forbidden")["details"]["granted"] == ["read"]

        # A secret key is refused in a URL, where logs and Referer headers would keep it.
        secret = await create_key(app, Scope.READ)
        leaked = await browser.get(related, params={"key": secret})
        assert_401(leaked)
        assert "never in a URL" in leaked.json()["error"]["message"]
        # The prefix must match the key's kind.
        assert_401(await browser.get(related, params={"key": "pk_" + secret[3:]}))
        assert_401(await browser.get(related, headers=bearer("rk_" + token[3:])))
        assert_401(await browser.get(related, params={"key": "pk_nonsense"}))


async def test_publishable_key_is_rate_limited_per_reader(
    seeded: Any, settings: Settings, embedder: Any
) -> None:
    # Whatever the general rate (off here), a publishable key has its own, per reader.
    async with running_app(
        settings, embedder, publishable_rate_limit_per_s=0.2, rate_limit_burst=2
    ) as limited:
        token = await publishable(limited, SITE)
        readers = [
            AsyncClient(
                transport=ASGITransport(app=limited, client=(address, 4000)),
                base_url="http://test",
                params={"key": token},
                headers={"Origin": SITE},
            )
            for address in ("192.0.2.1", "192.0.2.2")
        ]
        first, second = readers
        try:
            statuses = [(await first.get("/v1/articles/seed")).status_code for _ in range(3)]
            assert statuses == [200, 200, 429]
            refused = await first.get("/v1/articles/seed")
            assert_error(refused, 429, "rate_limited")
            # The site's page can read why (and when to retry).
            assert refused.headers["access-control-allow-origin"] == SITE
            assert "Retry-After" in refused.headers["access-control-expose-headers"]
            assert (await second.get("/v1/articles/seed")).status_code == 200
        finally:
            for reader in readers:
                await reader.aclose()


@pytest.mark.parametrize(
    "origins, message",
    [
        ([], "at least one origin"),
        (["news.example"], "not an origin"),
        (["https://news.example/path"], "scheme://host[:port] only"),
        (["ftp://news.example"], "not an origin"),
    ],
)
async def test_publishable_key_needs_http_origins(
    app: Any, origins: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        await publishable(app, *origins)
    async with app.state.database.sessions() as session, session.begin():
        with pytest.raises(ValueError, match="can only read"):
            await ApiKeyService(ApiKeyRepository(session)).create(
                "site", [Scope.WRITE], origins=[SITE]
            )


async def test_behind_trusted_proxies_anonymous_callers_are_limited_by_their_own_address(
    seeded: Any, settings: Settings, embedder: Any
) -> None:
    limits = {"rate_limit_per_s": 0.2, "rate_limit_burst": 2, "anonymous_reads": True}

    async def statuses(app: Any, forwarded_for: str, count: int) -> list[int]:
        async with http_client(app) as http:
            headers = {"X-Forwarded-For": forwarded_for}
            return [
                (await http.get("/v1/articles", headers=headers)).status_code for _ in range(count)
            ]

    # The test client connects from 127.0.0.1, here the proxy.
    async with running_app(settings, embedder, trusted_proxies=["127.0.0.0/8"], **limits) as app:
        assert await statuses(app, "203.0.113.7", 3) == [200, 200, 429]
        assert await statuses(app, "198.51.100.9", 2) == [200, 200]  # another reader
        # The proxy appends the address it saw: a client's own X-Forwarded-For is not trusted.
        assert await statuses(app, "203.0.113.7, 198.51.100.20", 2) == [200, 200]
    # Without trusted proxies the header is anyone's to forge: the socket's address counts.
    async with running_app(settings, embedder, **limits) as app:
        assert await statuses(app, "203.0.113.7", 2) == [200, 200]
        assert await statuses(app, "198.51.100.9", 1) == [429]


def test_the_rate_limiter_memory_is_bounded_and_keeps_the_active_callers() -> None:
    now = [0.0]
    limiter = RateLimiter(rate_per_s=0.001, burst=1, clock=lambda: now[0], max_keys=100)
    assert limiter.acquire("busy") is None
    for i in range(10_000):  # a flood of one-off addresses
        limiter.acquire(f"ip:{i}")
        if i % 50 == 0:
            assert limiter.acquire("busy") is not None  # still limited: it stays recent
    assert limiter.size == 100
