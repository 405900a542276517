"""One real PostgreSQL + pgvector (embedded) per test session, migrated once; each test starts
from empty tables. Requests go through the real app over ASGI; the real model is loaded once."""

import json
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.auth.models import Scope
from app.auth.repository import ApiKeyRepository
from app.auth.service import ApiKeyService
from app.core.config import Settings
from app.db import migrate
from app.db.embedded import EmbeddedPostgres
from app.db.url import to_async_url
from app.embedding.model import Embedder, load_embedder
from app.main import create_app
from tests.live import LiveServer

TEST_DATABASE = "related_test"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "articles.jsonl"


class CountingEmbedder:
    """The real model, counting the texts it encodes (to prove what is not re-embedded)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.encoded: list[str] = []

    def encode(self, texts: list[str]) -> Any:
        self.encoded.extend(texts)
        return self.inner.encode(texts)


# Durability is not under test here: a crash loses the test database, not a user's articles.
TEST_SERVER_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pgdata"), TEST_SERVER_SETTINGS).join()
    yield server
    server.leave()


def fresh_database(pg_server: EmbeddedPostgres, name: str) -> str:
    """An empty database ``name`` on the test server (dropped first if it exists); its URL."""
    pg_server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    pg_server.psql(f"CREATE DATABASE {name}")
    return to_async_url(pg_server.url(name))


@pytest.fixture(scope="session")
def database_url(pg_server: EmbeddedPostgres) -> str:
    url = fresh_database(pg_server, TEST_DATABASE)
    migrate.upgrade(url)
    return url


def settings_for(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """The settings every test app runs with, on ``database_url``."""
    return Settings(
        database_url=database_url,
        migrate_on_start=False,
        data_dir=data_dir,
        max_batch_articles=50,
        max_request_bytes=2 * 1024 * 1024,
        # Rankings in the session stay on local idf: word statistics are read at start-up (none
        # yet), not again when autovacuum analyzes the tests' articles mid-session.
        term_statistics_refresh_seconds=3600,
        **overrides,
    )


def counting_embedder(settings: Settings) -> CountingEmbedder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return CountingEmbedder(load_embedder(settings))


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings_for(database_url, tmp_path_factory.mktemp("unused"))


@pytest.fixture(scope="session")
def embedder(settings: Settings) -> CountingEmbedder:
    return counting_embedder(settings)


@pytest.fixture(scope="session")
async def app(settings: Settings, embedder: CountingEmbedder) -> AsyncIterator[Any]:
    async with running_app(settings, embedder) as application:
        yield application


async def create_key(
    app: Any,
    *scopes: Scope,
    name: str = "test",
    sites: Sequence[str] | None = ("default",),
    origins: Sequence[str] | None = None,
) -> str:
    """A new API key in the app's database, for ``sites`` (None: every site); its token."""
    async with app.state.database.sessions() as session, session.begin():
        service = ApiKeyService(ApiKeyRepository(session))
        _, token = await service.create(name, scopes, origins, sites)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
async def admin_token(app: Any) -> str:
    # Made once: the per-test TRUNCATE empties articles only, so it lasts the session.
    return await create_key(app, Scope.ADMIN, name="test-admin")


def http_client(app: Any, token: str | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers=bearer(token) if token else None,
        event_hooks={"request": [wait_for_embeddings]},
    )


@pytest.fixture
async def client(app: Any, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app with an admin key: every endpoint is allowed."""
    async with app.state.database.engine.begin() as conn:
        await conn.execute(text("TRUNCATE articles"))
    async with http_client(app, admin_token) as http:
        yield http


@pytest.fixture
async def anonymous_client(app: Any, client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """The same app, no key (after ``client`` has emptied the tables)."""
    async with http_client(app) as http:
        yield http


@pytest.fixture(scope="session")
def api_headers(admin_token: str) -> dict[str, str]:
    """Headers of a trusted client (writes, admin) over real HTTP."""
    return bearer(admin_token)


@pytest.fixture(scope="session")
def live_server(settings: Settings, embedder: CountingEmbedder) -> Iterator[LiveServer]:
    """The real app on a loopback port (uvicorn in a thread), on the test database."""
    # Reads open to anonymous callers, as for a public frontend: the demo page sends no key.
    # (Settings ignore names they do not know, so this is inert until that setting exists.)
    # With a worker of its own: synchronous tests (schemathesis, the browser) block the session
    # loop, and with it the session app's worker, while they wait for embeddings here.
    live_settings = Settings(**{**settings.model_dump(), "anonymous_reads": True})
    server = LiveServer(create_app(live_settings, embedder=embedder))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def live_examples(
    app: Any, live_server: LiveServer, api_headers: dict[str, str]
) -> LiveServer:
    """The live server on a database holding exactly the example articles, all embedded.

    Loaded once per module (embedding them is most of the cost): a module's tests that use it
    must not change the articles, or must do it last."""
    async with app.state.database.engine.begin() as conn:
        await conn.execute(text("TRUNCATE articles"))
    articles = [json.loads(line) for line in EXAMPLES.read_text().splitlines() if line.strip()]
    async with httpx.AsyncClient(base_url=live_server.url, headers=api_headers) as http:
        response = await http.post(
            "/v1/articles/batch?wait=true", json={"articles": articles}, timeout=300
        )
    assert response.status_code == 200, response.text
    assert response.json()["counts"]["created"] == len(articles)
    return live_server


async def wait_for_embeddings(request: httpx.Request) -> None:
    """Ingest answers before embedding; tests that then ask for related articles need them
    ready, so ingest requests wait (`?wait=true`) unless a test sets `wait` itself."""
    ingest = request.url.path in ("/v1/articles", "/v1/articles/batch")
    if request.method == "POST" and ingest and "wait" not in request.url.params:
        request.url = request.url.copy_add_param("wait", "true")


def article(external_id: str, title: str, body: str = "", **fields: Any) -> dict[str, Any]:
    return {"external_id": external_id, "title": title, "body": body, **fields}


@asynccontextmanager
async def running_app(settings: Settings, embedder: Any, **overrides: Any) -> AsyncIterator[Any]:
    """An app with its lifespan entered (engine, pools, encoder), as uvicorn runs it; with
    ``overrides``, some settings changed."""
    application = create_app(settings.model_copy(update=overrides), embedder=embedder)
    async with application.router.lifespan_context(application):
        yield application
