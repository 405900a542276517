from app.core.config import Settings
from app.db.embedded import EmbeddedPostgres


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
    server = EmbeddedPostgres(settings.data_dir).join()
    return to_async_url(server.url()), server
