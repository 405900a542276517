import asyncio
import logging
import time
from logging.config import fileConfig

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

# Imported to register their tables on Base.metadata.
import app.articles.models
import app.auth.models
import app.pipeline.models  # noqa: F401
from app.core.config import get_settings
from app.db.base import Base
from app.db.online import (
    LOCK_RETRIES,
    LOCK_TIMEOUT_MS,
    MIGRATION_LOCK,
    MIGRATION_LOCK_POLL_S,
    is_lock_timeout,
    retry_delay,
)
from app.db.url import resolve_database_url

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata
logger = logging.getLogger("related.migrations")


def database_url() -> str:
    # Set by app.db.migrate when the service migrates; from the settings for the alembic CLI.
    url = config.attributes.get("database_url")
    if url is None:
        url, _server = resolve_database_url(get_settings())
    return str(url)


def run_until_done(connection: Connection) -> None:
    """Every revision in its own short transaction (its autocommit blocks commit in between), so
    that no lock is held from one revision to the next. A DDL statement that waited longer than
    the lock timeout (behind a long transaction) fails its revision, which is rolled back; the
    run starts again from the revision reached, after a pause, so readers and writers that
    queued behind the waiting DDL go through meanwhile. Revisions are written to run again."""
    for attempt in range(LOCK_RETRIES + 1):
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            transaction_per_migration=True,
        )
        try:
            with context.begin_transaction():
                context.run_migrations()
            return
        except DBAPIError as exc:
            if not is_lock_timeout(exc) or attempt == LOCK_RETRIES:
                raise
            if connection.in_transaction():
                connection.rollback()
            delay = retry_delay(attempt)
            logger.warning("migration gave up on a lock (%s); again in %.1f s", exc.orig, delay)
            time.sleep(delay)


def do_run_migrations(connection: Connection) -> None:
    # One migrator at a time: a second `related db upgrade` (another container, a process
    # migrating on start) waits here, then finds the database at head. Session-level, so it
    # lasts across the revisions' commits, and is released if the process dies. Tried, not
    # waited for in pg_advisory_lock: a statement waiting there holds a snapshot, which the
    # running migrator's CREATE INDEX CONCURRENTLY would wait for in turn (a deadlock).
    told = False
    while not connection.execute(
        text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK}
    ).scalar():
        connection.commit()
        if not told:
            told = True
            logger.info("another process is migrating this database: waiting for it to finish")
        time.sleep(MIGRATION_LOCK_POLL_S)
    # Only after the advisory lock, whose wait must not time out.
    connection.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
    connection.commit()
    try:
        run_until_done(connection)
    finally:
        if connection.in_transaction():
            connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
        connection.commit()


async def run_async_migrations() -> None:
    engine = create_async_engine(database_url())
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_async_migrations())
