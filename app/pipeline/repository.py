"""Every SQL statement of the embedding queue: claim, write back, fail, requeue, count.

The queue is the articles table itself (status ``pending``), so an article and its place in
the queue are stored in one transaction and can never be lost between the two.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import REAL, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.citus import is_distributed
from app.embedding.vectors import EMBEDDING_DIMENSION


def _claim(in_site: bool) -> TextClause:
    """The claim, in every site or (``in_site``) in the site ``:site`` only.

    Oldest first. SKIP LOCKED lets any number of workers claim at once without waiting on each
    other; the lease makes a claim expire, so rows of a worker killed mid-batch are claimed
    again. MATERIALIZED keeps the planner from re-running the locking subquery per row."""
    site = "site = :site AND " if in_site else ""
    return text(
        f"""
        WITH picked AS MATERIALIZED (
            SELECT id FROM articles
            WHERE {site}embedding_status = 'pending'
              AND (embedding_lease_until IS NULL OR embedding_lease_until < now())
            ORDER BY embedding_queued_at
            LIMIT :limit
            FOR UPDATE SKIP LOCKED
        )
        UPDATE articles AS a
        SET embedding_lease_until = now() + make_interval(secs => :lease_s),
            embedding_attempts = a.embedding_attempts + 1
        FROM picked
        WHERE {"a." + site if site else ""}a.id = picked.id
        RETURNING a.id, a.title, a.summary, a.body, a.embedding_hash, a.embedding_attempts,
                  a.site
        """
    )


_CLAIM = _claim(in_site=False)

# On Citus (app.db.citus) the claim above is refused (FOR UPDATE across shards): the sites with
# claimable articles, oldest first, then the same claim within one site at a time, a statement
# that Citus sends whole to the one shard holding that site, where SKIP LOCKED works as on one
# PostgreSQL. The pending rows' partial index answers the first on every shard.
_CLAIMABLE_SITES = text(
    """
    SELECT site FROM articles
    WHERE embedding_status = 'pending'
      AND (embedding_lease_until IS NULL OR embedding_lease_until < now())
    GROUP BY site
    ORDER BY min(embedding_queued_at)
    """
)
_CLAIM_IN_SITE = _claim(in_site=True)

# Without the counting triggers of 0012, which cannot run on the shards: counted from the
# articles, a parallel count on every shard.
_COUNT_ARTICLES = text(
    "SELECT embedding_status, embedding_model, count(*) FROM articles GROUP BY 1, 2"
)

# Only if the text is still the one claimed (embedding_hash is rewritten by every upsert that
# changes the text): a newer edit is never overwritten by the vector of the older text.
# The vector travels as a binary float4[] and PostgreSQL casts it: pgvector's SQLAlchemy type
# formats it as text, 384 float-to-string conversions in Python per article on the event loop
# (py-spy: 6 s of CPU per 2,000 headlines in `related ingest`, beside the encoder thread).
_WRITE_BACK_SQL = f"""
    UPDATE articles
    SET embedding = CAST(:embedding AS real[])::vector({EMBEDDING_DIMENSION}),
        embedding_model = :model, embedding_hash = :new_hash,
        embedding_status = 'ready', embedding_error = NULL, embedding_lease_until = NULL
    WHERE id = :id AND embedding_status = 'pending'
      AND embedding_hash IS NOT DISTINCT FROM :claimed_hash
"""
_WRITE_BACK = text(_WRITE_BACK_SQL).bindparams(bindparam("embedding", type_=ARRAY(REAL)))

_FAIL_SQL = """
    UPDATE articles
    SET embedding_status = 'failed', embedding_error = :error, embedding_lease_until = NULL
    WHERE id = :id AND embedding_status = 'pending'
      AND embedding_hash IS NOT DISTINCT FROM :claimed_hash
"""
_FAIL = text(_FAIL_SQL)

# On Citus, with the article's site: the row's one shard, rather than every shard looked at
# for one id.
_IN_SITE = " AND site = :site"
_WRITE_BACK_IN_SITE = text(_WRITE_BACK_SQL + _IN_SITE).bindparams(
    bindparam("embedding", type_=ARRAY(REAL))
)
_FAIL_IN_SITE = text(_FAIL_SQL + _IN_SITE)

# Rows of a finished batch still pending were edited meanwhile: free them for the next claim
# rather than leave them leased until the lease runs out.
_RELEASE = text(
    """
    UPDATE articles SET embedding_lease_until = NULL
    WHERE id = ANY(:ids) AND embedding_status = 'pending'
    """
)

# A worker stopping cleanly gives its batch back: not a failed attempt, claimable at once.
_HAND_BACK = text(
    """
    UPDATE articles
    SET embedding_lease_until = NULL, embedding_attempts = greatest(embedding_attempts - 1, 0)
    WHERE id = ANY(:ids) AND embedding_status = 'pending'
    """
)

# In chunks, each its own transaction: a million-row requeue never holds locks for long.
_REQUEUE = text(
    """
    UPDATE articles
    SET embedding_status = 'pending', embedding_attempts = 0, embedding_error = NULL,
        embedding_lease_until = NULL, embedding_queued_at = now()
    WHERE id IN (
        SELECT id FROM articles
        WHERE (embedding_status = 'ready' AND embedding_model IS DISTINCT FROM :model)
           OR (:everything AND embedding_status = 'ready')
           OR (:failed AND embedding_status = 'failed')
        LIMIT :limit
    )
    """
)


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    title: str
    summary: str | None
    body: str
    claimed_hash: str | None
    attempts: int
    site: str | None = None


@dataclass(frozen=True)
class Embedded:
    id: uuid.UUID
    claimed_hash: str | None
    vector: list[float]
    new_hash: str
    site: str | None = None  # known: the write goes to the site's shard alone on Citus


@dataclass(frozen=True)
class Failed:
    id: uuid.UUID
    claimed_hash: str | None
    reason: str
    site: str | None = None


@dataclass
class QueueCounts:
    """What the queue holds: articles per (status, model of their stored vector)."""

    by_status_model: dict[tuple[str, str | None], int] = field(default_factory=dict)
    oldest_pending_at: datetime | None = None
    now: datetime | None = None

    def status(self, name: str) -> int:
        return sum(n for (status, _), n in self.by_status_model.items() if status == name)

    @property
    def oldest_pending_age_s(self) -> float | None:
        if self.oldest_pending_at is None or self.now is None:
            return None
        return max(0.0, (self.now - self.oldest_pending_at).total_seconds())


class PipelineRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.distributed = is_distributed(session)

    async def claim(self, limit: int, lease_s: float) -> list[Claimed]:
        if self.distributed:
            return await self._claim_by_site(limit, lease_s)
        result = await self.session.execute(_CLAIM, {"limit": limit, "lease_s": lease_s})
        return [Claimed(*row) for row in result.all()]

    async def _claim_by_site(self, limit: int, lease_s: float) -> list[Claimed]:
        claimed: list[Claimed] = []
        for site in (await self.session.scalars(_CLAIMABLE_SITES)).all():
            result = await self.session.execute(
                _CLAIM_IN_SITE, {"site": site, "limit": limit - len(claimed), "lease_s": lease_s}
            )
            claimed += [Claimed(*row) for row in result.all()]
            if len(claimed) >= limit:
                break
        return claimed

    async def write_back(self, model: str, rows: Sequence[Embedded]) -> None:
        if rows:
            in_site = self._in_site(rows)
            await self.session.execute(
                _WRITE_BACK_IN_SITE if in_site else _WRITE_BACK,
                [
                    {
                        "id": r.id,
                        "embedding": r.vector,
                        "model": model,
                        "new_hash": r.new_hash,
                        "claimed_hash": r.claimed_hash,
                        **({"site": r.site} if in_site else {}),
                    }
                    for r in rows
                ],
            )

    def _in_site(self, rows: Sequence[Embedded | Failed]) -> bool:
        return self.distributed and all(r.site is not None for r in rows)

    async def mark_failed(self, rows: Sequence[Failed]) -> None:
        if rows:
            in_site = self._in_site(rows)
            await self.session.execute(
                _FAIL_IN_SITE if in_site else _FAIL,
                [
                    {
                        "id": r.id,
                        "claimed_hash": r.claimed_hash,
                        "error": r.reason,
                        **({"site": r.site} if in_site else {}),
                    }
                    for r in rows
                ],
            )

    async def release(self, ids: Sequence[uuid.UUID]) -> None:
        if ids:
            await self.session.execute(_RELEASE, {"ids": list(ids)})

    async def hand_back(self, ids: Sequence[uuid.UUID]) -> None:
        if ids:
            await self.session.execute(_HAND_BACK, {"ids": list(ids)})

    async def requeue_chunk(
        self, model: str, limit: int, everything: bool = False, failed: bool = False
    ) -> int:
        """Queue up to ``limit`` articles whose vector is not from ``model`` (or, with
        ``everything``, every ready one; with ``failed``, failed ones too). Returns how many."""
        result = await self.session.execute(
            _REQUEUE,
            {"model": model, "limit": limit, "everything": everything, "failed": failed},
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def compact_counts(self) -> None:
        """embedding_counts summed into one row per (status, model). Writers only append to it,
        so it grows with every statement until a reader compacts it; rows appended meanwhile
        are outside this statement's snapshot and stay as they are."""
        if self.distributed:
            return  # no counts table there (see _COUNT_ARTICLES)
        await self.session.execute(
            text(
                "WITH changes AS (DELETE FROM embedding_counts RETURNING *) "
                "INSERT INTO embedding_counts SELECT embedding_status, embedding_model, "
                "sum(articles) FROM changes GROUP BY 1, 2 HAVING sum(articles) <> 0"
            )
        )

    async def pending_among(self, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not ids:
            return set()
        result = await self.session.scalars(
            text("SELECT id FROM articles WHERE id = ANY(:ids) AND embedding_status = 'pending'"),
            {"ids": list(ids)},
        )
        return set(result)

    async def queue_counts(self) -> QueueCounts:
        """From embedding_counts (app.pipeline.models), not from the articles themselves; the
        oldest pending article from the pending rows' partial index."""
        rows = await self.session.execute(
            _COUNT_ARTICLES
            if self.distributed
            else text(
                "SELECT embedding_status, embedding_model, sum(articles) FROM embedding_counts "
                "GROUP BY embedding_status, embedding_model HAVING sum(articles) <> 0"
            )
        )
        counts = QueueCounts({(status, model): int(n) for status, model, n in rows.all()})
        oldest = await self.session.execute(
            text(
                "SELECT min(embedding_queued_at), now() FROM articles "
                "WHERE embedding_status = 'pending'"
            )
        )
        counts.oldest_pending_at, counts.now = oldest.one()
        return counts
