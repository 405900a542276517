"""The embedding queue as clients see it: its counts, and the pending gauge of /metrics."""

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import Database
from app.pipeline.repository import PipelineRepository, QueueCounts
from app.pipeline.schemas import EmbeddingStatusOut, ModelCount

logger = logging.getLogger(__name__)

STATUSES = ("pending", "ready", "failed")


async def queue_counts(session: AsyncSession) -> QueueCounts:
    """Articles per status and model, and the oldest pending one's age (for /metrics too)."""
    return await PipelineRepository(session).queue_counts()


async def embedding_status(session: AsyncSession, model: str) -> EmbeddingStatusOut:
    counts = await queue_counts(session)
    stale = sum(
        n
        for (status, stored), n in counts.by_status_model.items()
        if status == "ready" and stored != model
    )
    return EmbeddingStatusOut(
        model=model,
        counts={status: counts.status(status) for status in STATUSES},
        by_model=[
            ModelCount(model=stored, status=status, count=n)
            for (status, stored), n in sorted(
                counts.by_status_model.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
            )
        ],
        stale=stale,
        oldest_pending_age_s=counts.oldest_pending_age_s,
    )


class PendingGauge:
    """How many articles wait for a vector, for /metrics: counted in the background every
    ``interval_s`` so that a scrape never waits on (or adds) a query."""

    def __init__(self, database: Database, interval_s: float = 15.0) -> None:
        self.database = database
        self.interval_s = interval_s
        self.value = 0.0
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        async with self.database.sessions() as session, session.begin():
            repository = PipelineRepository(session)
            # Each process compacts the counts after it reads them: a few rows to sum per read.
            # Read first: the read takes its lock on articles before the compaction locks rows
            # of embedding_counts, the order a TRUNCATE of articles takes them in (its trigger
            # empties the counts); the other order deadlocks with it.
            self.value = float((await repository.queue_counts()).status("pending"))
            await repository.compact_counts()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pending-gauge")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # the database may be down: keep the last value, try again
                logger.warning("counting pending articles failed", exc_info=True)
            await asyncio.sleep(self.interval_s)
