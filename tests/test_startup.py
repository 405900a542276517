"""Start-up: the embedded default persists across restarts and stops cleanly; a bad
DATABASE_URL fails with a message that says what is wrong."""

from pathlib import Path

import pytest

from app.auth.models import Scope
from app.core.config import Settings
from app.db.engine import DatabaseStartupError, check_versions
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


@pytest.mark.parametrize(
    ("server", "pgvector", "found"),
    [
        ("14.11", "0.8.0", "PostgreSQL 14.11 with pgvector 0.8.0"),
        ("16.2", "0.6.2", "PostgreSQL 16.2 with pgvector 0.6.2"),
        (
            "17.4 (Debian 17.4-1.pgdg120+2)",
            "0.7.4",
            "PostgreSQL 17.4 (Debian 17.4-1.pgdg120+2) with pgvector 0.7.4",
        ),
        ("18.1", None, "PostgreSQL 18.1 with no pgvector"),
    ],
)
def test_a_server_older_than_postgresql_15_with_pgvector_0_8_is_refused_in_one_line(
    server: str, pgvector: str | None, found: str
) -> None:
    with pytest.raises(DatabaseStartupError) as refused:
        check_versions("postgresql+asyncpg://u:secret@db.internal:5432/related", server, pgvector)
    message = str(refused.value)
    assert message == (
        f"postgresql://u:***@db.internal:5432/related runs {found}; Related needs PostgreSQL 15+ "
        "with pgvector 0.8+ (for example the pgvector/pgvector:pg18 image)."
    )


@pytest.mark.parametrize(
    ("server", "pgvector"), [("15.0", "0.8.0"), ("18.6", "0.8.6"), ("19beta1", "0.9.0")]
)
def test_postgresql_15_with_pgvector_0_8_and_newer_are_accepted(server: str, pgvector: str) -> None:
    check_versions("postgresql://u@h/db", server, pgvector)
