"""The service on a Citus cluster: what changes when `articles` is a distributed table.

Migration 0016 distributes `articles` by site wherever the `citus` extension is installed; the
service then finds it so at start-up (`distributed`) and changes the few statements that Citus
runs differently from one PostgreSQL (docs/operations.md, "Past one machine: Citus"):

* settings reach the workers only as SET LOCAL in a transaction, with
  `citus.propagate_set_commands = 'local'` on the coordinator's connection (READ_SETTINGS): the
  read path's hnsw.ef_search and iterative scan (app.related.repository);
* the embedding queue is claimed one site at a time, a statement that stays on one shard
  (FOR UPDATE SKIP LOCKED is refused across shards) (app.pipeline.repository);
* word statistics and row estimates are the shards' own: the coordinator keeps none for a
  distributed table (app.related.statistics, app.related.repository).
"""

from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

SESSION_FLAG = "distributed"

# On every connection to the coordinator of the read path: SET LOCAL is sent on to the workers
# that the transaction uses (Citus's default sends no SET at all).
# An EXPLAIN (the row estimates of app.related.repository) shows every shard's plan, not one.
READ_SETTINGS = {"citus.propagate_set_commands": "local", "citus.explain_all_tasks": "on"}

DISTRIBUTED = text(
    "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') "
    "AND EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
    "ON n.oid = c.relnamespace WHERE c.relname = 'pg_dist_partition' AND n.nspname = 'pg_catalog')"
)
ARTICLES_DISTRIBUTED = text(
    "SELECT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'articles'::regclass)"
)


class DistributionMismatch(RuntimeError):
    pass


async def detect(engine: AsyncEngine) -> bool:
    """Whether `articles` is a Citus distributed table in this database."""
    async with engine.connect() as conn:
        if not await conn.scalar(DISTRIBUTED):
            return False
        return bool(await conn.scalar(ARTICLES_DISTRIBUTED))


async def check_distribution(
    engine: AsyncEngine, expected: Literal["auto", "single", "citus"]
) -> bool:
    """The database's distribution, or DistributionMismatch when RELATED_DISTRIBUTION names the
    other one."""
    distributed = await detect(engine)
    if expected == "citus" and not distributed:
        raise DistributionMismatch(
            "RELATED_DISTRIBUTION=citus, but `articles` is not a Citus distributed table in this "
            "database: create the citus extension and register the workers, then run `related "
            "db upgrade` (migration 0016 distributes it) (docs/operations.md, 'Past one "
            "machine: Citus')."
        )
    if expected == "single" and distributed:
        raise DistributionMismatch(
            "RELATED_DISTRIBUTION=single, but `articles` is a Citus distributed table in this "
            "database: set RELATED_DISTRIBUTION=citus (or auto)."
        )
    return distributed


def is_distributed(session: AsyncSession) -> bool:
    """For repositories on a session of app.db.engine's session factories."""
    return bool(session.info.get(SESSION_FLAG, False))
