"""The database connection of a running service: engine, session factory, pgvector capabilities."""

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import unquote

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
from app.db import citus, migrate
from app.db.embedded import EmbeddedPostgres
from app.db.reads import create_read_pool
from app.db.url import resolve_database_url, to_async_url

logger = logging.getLogger(__name__)


class DatabaseStartupError(RuntimeError):
    """The service cannot use the configured database; the message says why and what to do."""


MINIMUM_SERVER = (15, 0)
MINIMUM_PGVECTOR = (0, 8, 0)


@dataclass(frozen=True)
class ServerVersions:
    """PostgreSQL's and pgvector's versions, as /readyz reports them."""

    server: str  # e.g. "18.6"
    pgvector: str  # the installed extension's, e.g. "0.8.6"


def version_tuple(version: str) -> tuple[int, ...]:
    """'18.6' -> (18, 6); '0.8.6' -> (0, 8, 6); '16beta1' -> (16,)."""
    parts = []
    for part in version.split(" ")[0].split("."):
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_versions(url: str, server: str, pgvector: str | None) -> None:
    """Refuse a server older than PostgreSQL 15 with pgvector 0.8, naming what was found."""
    found = f"PostgreSQL {server} with " + (f"pgvector {pgvector}" if pgvector else "no pgvector")
    if version_tuple(server) < MINIMUM_SERVER or version_tuple(pgvector or "0") < MINIMUM_PGVECTOR:
        raise DatabaseStartupError(
            f"{_safe(url)} runs {found}; Related needs PostgreSQL 15+ with pgvector 0.8+ "
            "(for example the pgvector/pgvector:pg18 image)."
        )


@dataclass
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    versions: ServerVersions
    # Reads (related, get, list): read-only transactions on the replica when one is configured,
    # otherwise on the primary, so a read path that tries to write fails in tests too.
    read_sessions: async_sessionmaker[AsyncSession]
    # Related search's own driver connections, read-only, same server as read_sessions
    # (see app.db.reads).
    read_pool: asyncpg.Pool
    replica_engine: AsyncEngine | None = None
    embedded_server: EmbeddedPostgres | None = None
    # `articles` is a Citus distributed table (app.db.citus): some statements take another form.
    distributed: bool = False

    @property
    def description(self) -> str:
        url = self.engine.url
        where = "embedded" if self.embedded_server is not None else f"{url.host}:{url.port or 5432}"
        replica = ""
        if self.replica_engine is not None:
            r = self.replica_engine.url
            replica = f", reads from the replica {r.host}:{r.port or 5432}/{r.database}"
        versions = f"PostgreSQL {self.versions.server}, pgvector {self.versions.pgvector}"
        if self.distributed:
            versions += ", articles distributed by Citus"
        return f"{versions} at {where}/{url.database}{replica}"


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
    """The URL as a user wrote it, password hidden (no driver name, no %-escapes)."""
    shown = make_url(url).set(drivername="postgresql").render_as_string(hide_password=True)
    return unquote(shown)


async def check_server(engine: AsyncEngine, url: str) -> None:
    """Reachable, PostgreSQL 15+ with pgvector 0.8+ available, or a DatabaseStartupError saying
    what to fix."""
    try:
        async with engine.connect() as conn:
            server = await conn.scalar(text("SHOW server_version"))
            available = await conn.scalar(
                text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
            )
    except Exception as exc:
        raise DatabaseStartupError(
            f"Cannot connect to PostgreSQL at {_safe(url)}: {exc.__class__.__name__}: {exc}. "
            "Check DATABASE_URL (host, port, user, password, database) and that the server is up."
        ) from exc
    check_versions(url, str(server), available)


async def installed_versions(engine: AsyncEngine, url: str) -> ServerVersions:
    """The versions in use once migrated: the extension's installed version may be older than
    the one the server offers (created before an upgrade of the package)."""
    async with engine.connect() as conn:
        server = await conn.scalar(text("SHOW server_version"))
        pgvector = await conn.scalar(
            text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        )
    if pgvector is None:
        raise DatabaseStartupError(
            f"The database {_safe(url)} is not migrated: run `related db upgrade` "
            "(or set RELATED_MIGRATE_ON_START=true)."
        )
    if version_tuple(pgvector) < MINIMUM_PGVECTOR:
        raise DatabaseStartupError(
            f"The database {_safe(url)} has pgvector {pgvector} installed; Related needs 0.8+. "
            "The server offers a newer one: run ALTER EXTENSION vector UPDATE as its owner."
        )
    versions = ServerVersions(str(server).split(" ")[0], str(pgvector))
    check_versions(url, versions.server, versions.pgvector)
    return versions


async def check_url(database_url: str, settings: Settings) -> None:
    engine = create_engine(database_url, settings)
    try:
        await check_server(engine, database_url)
    finally:
        await engine.dispose()


# How often a process checks that its embedded server is up: reading postmaster.pid and
# looking up one process, microseconds of work.
WATCH_INTERVAL_S = 1.0


@asynccontextmanager
async def keep_running(server: EmbeddedPostgres) -> AsyncIterator[None]:
    """While the body runs, start the embedded server again whenever it dies (killed, crashed):
    its users' pools reconnect, so requests fail for a moment instead of answering 503 until
    someone restarts the process."""

    async def watch() -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                if await asyncio.to_thread(server.ensure_running):
                    logger.warning("embedded PostgreSQL in %s started again", server.pgdata)
            except Exception:
                logger.exception("embedded PostgreSQL in %s cannot start: retrying", server.pgdata)

    watcher = asyncio.create_task(watch(), name="embedded-postgres-watch")
    try:
        yield
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


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
        versions = await installed_versions(engine, url)
        read_url = url
        if settings.database_replica_url is not None:
            read_url = to_async_url(settings.database_replica_url)
            replica = create_engine(read_url, settings)
            await check_server(replica, read_url)
        try:
            distributed = await citus.check_distribution(engine, settings.distribution)
        except citus.DistributionMismatch as exc:
            raise DatabaseStartupError(str(exc)) from exc
        read_pool = await create_read_pool(read_url, settings, distributed=distributed)
        # asyncpg opens these transactions READ ONLY: a write on the read path is an error.
        readers = (replica or engine).execution_options(postgresql_readonly=True)
        # Repositories on a session read it from session.info (app.db.citus.is_distributed).
        info = {citus.SESSION_FLAG: distributed}
        database = Database(
            engine,
            async_sessionmaker(engine, expire_on_commit=False, info=info),
            versions,
            read_sessions=async_sessionmaker(readers, expire_on_commit=False, info=info),
            read_pool=read_pool,
            replica_engine=replica,
            embedded_server=server,
            distributed=distributed,
        )
        logger.info("using %s", database.description)
        if server is None:
            yield database
        else:
            async with keep_running(server):
                yield database
    finally:
        if read_pool is not None:
            await read_pool.close()
        if replica is not None:
            await replica.dispose()
        await engine.dispose()
        if server is not None:
            await asyncio.to_thread(server.leave)
