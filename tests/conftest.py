"""One real PostgreSQL + pgvector (embedded) per test session, migrated once; each test starts
from empty tables. Requests go through the real app over ASGI; the real model is loaded once."""

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
    hooks = {"request": [wait_for_embeddings]}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", event_hooks=hooks
    ) as http:
        yield http


async def wait_for_embeddings(request: httpx.Request) -> None:
    """Ingest answers before embedding; tests that then ask for related articles need them
    ready, so ingest requests wait (`?wait=true`) unless a test sets `wait` itself."""
    ingest = request.url.path in ("/v1/articles", "/v1/articles/batch")
    if request.method == "POST" and ingest and "wait" not in request.url.params:
        request.url = request.url.copy_add_param("wait", "true")


def article(external_id: str, title: str, body: str = "", **fields: Any) -> dict[str, Any]:
    return {"external_id": external_id, "title": title, "body": body, **fields}
