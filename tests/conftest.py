"""One real PostgreSQL + pgvector (embedded) per test session, migrated once; each test starts
from empty tables. Requests go through the real app over ASGI; the real model is loaded once."""

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.core.config import Settings
from app.db import migrate
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


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="delete")
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def database_url(pg_server: Any) -> str:
    pg_server.psql(f"DROP DATABASE IF EXISTS {TEST_DATABASE}; CREATE DATABASE {TEST_DATABASE};")
    url = to_async_url(pg_server.get_uri(TEST_DATABASE))
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        database_url=database_url,
        migrate_on_start=False,
        data_dir=tmp_path_factory.mktemp("unused"),
        max_batch_articles=50,
        max_request_bytes=2 * 1024 * 1024,
    )


@pytest.fixture(scope="session")
def embedder(settings: Settings) -> CountingEmbedder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return CountingEmbedder(load_embedder(settings))


@pytest.fixture(scope="session")
async def app(settings: Settings, embedder: CountingEmbedder) -> AsyncIterator[Any]:
    application = create_app(settings, embedder=embedder)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app.state.database.engine.begin() as conn:
        await conn.execute(text("TRUNCATE articles"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture(scope="session")
def api_headers() -> dict[str, str]:
    """Headers of a trusted client (writes, admin): none are needed until API keys land."""
    return {}


@pytest.fixture(scope="session")
def live_server(settings: Settings, embedder: CountingEmbedder) -> Iterator[LiveServer]:
    """The real app on a loopback port (uvicorn in a thread), on the test database."""
    # Reads open to anonymous callers, as for a public frontend: the demo page sends no key.
    # (Settings ignore names they do not know, so this is inert until that setting exists.)
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
        response = await http.post("/v1/articles/batch", json={"articles": articles}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["counts"]["created"] == len(articles)
    return live_server


def article(external_id: str, title: str, body: str = "", **fields: Any) -> dict[str, Any]:
    return {"external_id": external_id, "title": title, "body": body, **fields}
