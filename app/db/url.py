import logging
from pathlib import Path

from app.core.config import Settings
from app.db.embedded import EmbeddedPostgres

logger = logging.getLogger(__name__)
# Where earlier versions kept the embedded database: relative to the current directory.
LEGACY_DATA_DIR = Path(".related-data")


def to_async_url(url: str) -> str:
    """Any PostgreSQL URL as the asyncpg dialect URL SQLAlchemy needs."""
    for prefix in (
        "postgresql+asyncpg://",
        "postgresql+psycopg://",
        "postgresql://",
        "postgres://",
    ):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url.split('://')[0]}://...")


def resolve_database_url(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """The database to use, and the embedded server joined for it (``None`` with DATABASE_URL).
    The caller leaves the server when done (EmbeddedPostgres.leave)."""
    if settings.database_url is not None:
        return to_async_url(str(settings.database_url)), None
    legacy = LEGACY_DATA_DIR.resolve()
    if (legacy / "PG_VERSION").exists() and legacy != settings.data_dir.expanduser().resolve():
        logger.warning(
            "%s holds an embedded database of an earlier version of Related, which is not used: "
            "the database is now in %s (RELATED_DATA_DIR). docs/operations.md, 'Embedded data "
            "from PostgreSQL 16', shows how to carry its articles over.",
            legacy,
            settings.data_dir,
        )
    server = EmbeddedPostgres(settings.data_dir).join()
    return to_async_url(server.url()), server
