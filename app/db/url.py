from typing import Any

from app.core.config import Settings
from app.db.embedded import embedded_url, start_embedded_postgres


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


def resolve_database_url(settings: Settings) -> tuple[str, Any | None]:
    """The database to use, and the embedded server started for it (``None`` with DATABASE_URL)."""
    if settings.database_url is not None:
        return to_async_url(str(settings.database_url)), None
    server = start_embedded_postgres(settings.data_dir)
    return to_async_url(embedded_url(server)), server
