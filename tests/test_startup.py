"""Start-up: the embedded default persists across restarts and stops cleanly; a bad
DATABASE_URL fails with a message that says what is wrong."""

from pathlib import Path

import pytest

from app.auth.models import Scope
from app.core.config import Settings
from app.db.engine import DatabaseStartupError
from app.main import create_app
from tests.conftest import article, create_key, http_client
from tests.fakes import HashEmbedder


async def _post_and_list(settings: Settings, item: dict[str, str] | None) -> list[str]:
    app = create_app(settings, embedder=HashEmbedder(name="fake-hash"))
    async with app.router.lifespan_context(app):
        token = await create_key(app, Scope.ADMIN)
        async with http_client(app, token) as client:
            if item is not None:
                assert (await client.post("/v1/articles", json=item)).status_code == 201
            page = (await client.get("/v1/articles")).json()
    return [a["external_id"] for a in page["items"]]


async def test_embedded_postgres_persists_across_restarts_and_stops_on_exit(
    tmp_path: Path,
) -> None:
    settings = Settings(database_url=None, data_dir=tmp_path / "data")

    assert await _post_and_list(settings, article("kept", "Stored before a restart")) == ["kept"]
    # The server was stopped on shutdown: no postmaster is left running on the data directory.
    assert not (tmp_path / "data" / "postmaster.pid").exists()

    assert await _post_and_list(settings, None) == ["kept"]
    assert not (tmp_path / "data" / "postmaster.pid").exists()


async def test_unreachable_database_fails_start_up_with_a_clear_message() -> None:
    settings = Settings(database_url="postgresql://u:pw@127.0.0.1:1/db", db_connect_timeout_s=2)
    app = create_app(settings, embedder=HashEmbedder())
    with pytest.raises(
        DatabaseStartupError, match=r"Cannot connect to PostgreSQL at .*127\.0\.0\.1:1"
    ):
        async with app.router.lifespan_context(app):
            pass


def test_settings_fail_fast_on_a_bad_value() -> None:
    with pytest.raises(ValueError, match="postgresql"):
        Settings(database_url="mysql://x@y/z")
    with pytest.raises(ValueError, match="hnsw_ef_search"):
        Settings(hnsw_ef_search=0)
