"""Online schema changes: what the migrations use so that `articles` stays readable and writable.

A migration on a large table must never hold, or queue for, a lock that stops reads or writes
for more than an instant. The rules the migrations follow (docs/operations.md, "Migrations"):

* DDL that takes an ACCESS EXCLUSIVE lock (ADD COLUMN without a rewrite, DROP COLUMN, a trigger,
  a NOT VALID constraint) runs in short transactions under ``LOCK_TIMEOUT_MS``: one waiting
  behind a long transaction gives up instead of queueing every reader behind it, and the whole
  run is tried again (migrations/env.py) from the revision reached.
* Backfills (``backfill``) update rows in committed chunks sized to take ``CHUNK_TARGET_S`` each,
  chosen by a condition that is true only of rows not yet filled: an interrupted run resumes
  where it stopped.
* Indexes are built and dropped CONCURRENTLY, constraints added NOT VALID then validated.
* One migrator at a time: migrations/env.py holds ``MIGRATION_LOCK`` (a session advisory lock)
  around the run.
"""

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

logger = logging.getLogger("related.migrations")

# pg_advisory_lock key of the migrators ("related" in ASCII): any other process that migrates
# this database waits for the one that holds it, then finds nothing left to do.
MIGRATION_LOCK = 0x72656C61746564
MIGRATION_LOCK_POLL_S = 0.5
# How long a DDL statement may wait for its lock. While it waits, every later request on the
# table queues behind it: this plus the statement's own (catalog-only) time stays far below 1 s.
LOCK_TIMEOUT_MS = 200
# How often, and how patiently, a run that gave up on a lock is tried again.
LOCK_RETRIES = 60
LOCK_RETRY_BACKOFF_S = (0.1, 5.0)
# A backfill chunk holds the row locks of its rows until it commits: a writer updating one of
# them waits up to this long. Chunks are resized after each one to take about this.
CHUNK_TARGET_S = 0.15
CHUNK_ROWS = (20, 5000)

LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired
DEADLOCK_DETECTED = "40P01"


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL giving up on a lock (lock_timeout, or a deadlock victim)."""
    if not isinstance(exc, DBAPIError):
        return False
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return state in (LOCK_NOT_AVAILABLE, DEADLOCK_DETECTED)


def retry_delay(attempt: int) -> float:
    low, high = LOCK_RETRY_BACKOFF_S
    return float(min(high, low * 2 ** min(attempt, 10)))


@contextmanager
def no_lock_timeout(connection: Connection) -> Iterator[None]:
    """For statements whose waits block nobody (CREATE/DROP INDEX CONCURRENTLY waiting for older
    transactions, VALIDATE CONSTRAINT under SHARE UPDATE EXCLUSIVE): wait as long as needed
    rather than fail and start again. Inside an autocommit block (session-level settings)."""
    connection.exec_driver_sql("SET lock_timeout = 0")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT_MS}ms'")


def index_is_valid(connection: Connection, name: str) -> bool | None:
    """True or False for an index of that name (False: a concurrent build that failed half way),
    None when there is none."""
    valid: bool | None = connection.execute(
        text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
        {"name": name},
    ).scalar()
    return valid


def create_index_concurrently(
    connection: Connection, name: str, definition: str, unique: bool = False
) -> None:
    """``CREATE [UNIQUE] INDEX CONCURRENTLY name ON definition`` unless a valid one exists; an
    invalid one (a build interrupted earlier) is dropped and built again. In an autocommit
    block."""
    with no_lock_timeout(connection):
        valid = index_is_valid(connection, name)
        if valid:
            return
        if valid is False:
            connection.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        kind = "UNIQUE INDEX" if unique else "INDEX"
        connection.exec_driver_sql(f"CREATE {kind} CONCURRENTLY {name} ON {definition}")


def rebuild_index_concurrently(connection: Connection, name: str, definition: str) -> None:
    """Index ``name`` replaced by ``CREATE INDEX ... ON definition`` with no moment without one:
    built beside it as ``name_next``, then the old one dropped and the new one renamed. In an
    autocommit block; a run interrupted at any point runs again."""
    with no_lock_timeout(connection):
        # A build interrupted earlier leaves an invalid index of this name behind.
        connection.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {name}_next")
        connection.exec_driver_sql(f"CREATE INDEX CONCURRENTLY {name}_next ON {definition}")
        # IF EXISTS: a run stopped between this drop and the rename runs again.
        connection.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    # Catalog only, under the lock timeout.
    connection.exec_driver_sql(f"ALTER INDEX {name}_next RENAME TO {name}")


def drop_index_concurrently(connection: Connection, name: str) -> None:
    with no_lock_timeout(connection):
        connection.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def validate_constraint(connection: Connection, table: str, name: str) -> None:
    """VALIDATE reads the whole table under SHARE UPDATE EXCLUSIVE: reads and writes go on."""
    with no_lock_timeout(connection):
        connection.exec_driver_sql(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")


def backfill(connection: Connection, assignments: str, unfilled: str, label: str) -> int:
    """``UPDATE articles SET assignments WHERE unfilled`` in committed chunks of consecutive ids.

    Must run in an autocommit block: each chunk is its own transaction, so its row locks last
    one chunk (about ``CHUNK_TARGET_S``) and an interrupted run keeps what it did; ``unfilled``
    must be false once a row is filled (e.g. ``title_hashes IS NULL``), so that a second run
    skips what the first did. Rows written meanwhile are filled by the trigger that the
    migration installed before backfilling. Returns the number of rows updated.
    """
    # Small first: how long a row takes is unknown (a row whose new version does not fit in its
    # page is a new entry in every index, the HNSW graph included: milliseconds).
    size = CHUNK_ROWS[0]
    after: Any = None
    updated = 0
    started = last_report = time.monotonic()
    while True:
        window = "" if after is None else "WHERE id > :after"
        upto = connection.execute(
            # The last of the next ``size`` ids (there is no max() of uuid).
            text(
                f"SELECT id FROM (SELECT id FROM articles {window} ORDER BY id LIMIT :n) s "
                "ORDER BY id DESC LIMIT 1"
            ),
            {"n": size} if after is None else {"after": after, "n": size},
        ).scalar()
        if upto is None:
            break
        low = "" if after is None else "id > :after AND "
        chunk_started = time.monotonic()
        try:
            result = connection.execute(
                text(f"UPDATE articles SET {assignments} WHERE {low}id <= :upto AND ({unfilled})"),
                {"upto": upto} if after is None else {"after": after, "upto": upto},
            )
        except DBAPIError as exc:
            # A writer held one of these rows longer than the lock timeout: smaller, again.
            if not is_lock_timeout(exc):
                raise
            size = max(CHUNK_ROWS[0], size // 4)
            time.sleep(retry_delay(0))
            continue
        elapsed = time.monotonic() - chunk_started
        updated += max(result.rowcount, 0)
        after = upto
        # Aim the next chunk at the target time: at once when it took too long, growing by at
        # most 2x a step (the rows of a table differ in length, and the load on the server
        # changes).
        scale = min(2.0, CHUNK_TARGET_S / max(elapsed, 1e-3))
        size = int(min(CHUNK_ROWS[1], max(CHUNK_ROWS[0], size * scale)))
        if time.monotonic() - last_report > 10:
            last_report = time.monotonic()
            logger.info("%s: %d rows filled so far", label, updated)
    logger.info("%s: %d rows filled in %.1f s", label, updated, time.monotonic() - started)
    return updated
