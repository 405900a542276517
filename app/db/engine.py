"""The database connection of a running service: engine, session factory, pgvector capabilities."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.core.config import Settings
from app.db import migrate
from app.db.reads import create_read_pool
from app.db.url import resolve_database_url, to_async_url

logger = logging.getLogger(__name__)


class DatabaseStartupError(RuntimeError):
    """The service cannot use the configured database; the message says why and what to do."""


@dataclass(frozen=True)
class PgvectorVersion:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, version: str) -> "PgvectorVersion":
        parts = [int(p) for p in version.split(".")[:3]]
        parts += [0] * (3 - len(parts))
        return cls(*parts)

    @property
    def has_iterative_scan(self) -> bool:
        # hnsw.iterative_scan arrived in pgvector 0.8.0; before it, filters apply after the scan.
        return (self.major, self.minor) >= (0, 8)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


@dataclass
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    pgvector: PgvectorVersion
    # Reads (related, get, list): read-only transactions on the replica when one is configured,
    # otherwise on the primary, so a read path that tries to write fails in tests too.
    read_sessions: async_sessionmaker[AsyncSession]
    # Related search's own driver connections, read-only, same server as read_sessions
    # (see app.db.reads).
    read_pool: asyncpg.Pool
    replica_engine: AsyncEngine | None = None
    embedded_server: Any | None = None

    @property
    def description(self) -> str:
        url = self.engine.url
        where = "embedded" if self.embedded_server is not None else f"{url.host}:{url.port or 5432}"
        replica = ""
        if self.replica_engine is not None:
            r = self.replica_engine.url
            replica = f", reads from the replica {r.host}:{r.port or 5432}/{r.database}"
        return f"PostgreSQL {where}/{url.database}, pgvector {self.pgvector}{replica}"


def create_engine(database_url: str, settings: Settings) -> AsyncEngine:
    return create_async_engine(
        database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        pool_timeout=settings.db_connect_timeout_s,
        connect_args={"timeout": settings.db_connect_timeout_s},
    )


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def check_server(engine: AsyncEngine, url: str) -> None:
    """Reachable and with pgvector available, or a DatabaseStartupError saying what to fix."""
    try:
        async with engine.connect() as conn:
            available = await conn.scalar(
                text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
            )
    except Exception as exc:
        raise DatabaseStartupError(
            f"Cannot connect to PostgreSQL at {_safe(url)}: {exc.__class__.__name__}: {exc}. "
            "Check DATABASE_URL (host, port, user, password, database) and that the server is up."
        ) from exc
    if available is None:
        raise DatabaseStartupError(
            f"PostgreSQL at {_safe(url)} has no pgvector extension. Install pgvector 0.6 or newer "
            "(for example the pgvector/pgvector:pg17 image), or unset DATABASE_URL to use the "
            "embedded server."
        )


async def _installed_pgvector(engine: AsyncEngine, url: str) -> PgvectorVersion:
    async with engine.connect() as conn:
        version = await conn.scalar(
            text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        )
    if version is None:
        raise DatabaseStartupError(
            f"The database {_safe(url)} is not migrated: run `related db upgrade` "
            "(or set RELATED_MIGRATE_ON_START=true)."
        )
    return PgvectorVersion.parse(version)


async def check_url(database_url: str, settings: Settings) -> None:
    engine = create_engine(database_url, settings)
    try:
        await check_server(engine, database_url)
    finally:
        await engine.dispose()


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """Start the embedded server if needed, check pgvector, migrate, and hand out the engine."""
    url, server = await asyncio.to_thread(resolve_database_url, settings)
    engine = create_engine(url, settings)
    replica: AsyncEngine | None = None
    read_pool: asyncpg.Pool | None = None
    try:
        await check_server(engine, url)
        if settings.migrate_on_start:
            await asyncio.to_thread(migrate.upgrade, url)
        pgvector = await _installed_pgvector(engine, url)
        read_url = url
        if settings.database_replica_url is not None:
            read_url = to_async_url(settings.database_replica_url)
            replica = create_engine(read_url, settings)
            await check_server(replica, read_url)
        read_pool = await create_read_pool(read_url, settings, pgvector.has_iterative_scan)
        # asyncpg opens these transactions READ ONLY: a write on the read path is an error.
        readers = (replica or engine).execution_options(postgresql_readonly=True)
        database = Database(
            engine,
            async_sessionmaker(engine, expire_on_commit=False),
            pgvector,
            read_sessions=async_sessionmaker(readers, expire_on_commit=False),
            read_pool=read_pool,
            replica_engine=replica,
            embedded_server=server,
        )
        logger.info("using %s", database.description)
        yield database
    finally:
        if read_pool is not None:
            await read_pool.close()
        if replica is not None:
            await replica.dispose()
        await engine.dispose()
        if server is not None:
            await asyncio.to_thread(server.cleanup)
