"""The embedding queue as clients see it: its counts, and waiting for articles to be embedded."""

import asyncio
import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article
from app.db.engine import Database
from app.pipeline.repository import PipelineRepository, QueueCounts
from app.pipeline.schemas import EmbeddingStatusOut, ModelCount
from app.pipeline.worker import EmbeddingWorker, wait_until_embedded

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


class EmbeddingWaiter:
    """``?wait=true``: commit the request's articles, then wait for their embeddings."""

    def __init__(
        self,
        session: AsyncSession,
        database: Database,
        worker: EmbeddingWorker | None,
        timeout_s: float,
    ) -> None:
        self.session = session
        self.database = database
        self.worker = worker
        self.timeout_s = timeout_s

    async def wait(self, articles: Sequence[Article]) -> dict[uuid.UUID, Article]:
        """The articles as they are after waiting, by id; still pending after the timeout.

        The one place a request commits before its end: a worker can only claim committed
        rows, so waiting inside the transaction would wait for ever.
        """
        ids = [a.id for a in articles]
        pending = [a.id for a in articles if a.embedding_status == "pending"]
        await self.session.commit()
        if self.worker is not None:
            self.worker.wake()
        await wait_until_embedded(self.database, pending, self.timeout_s, self.worker)
        async with self.database.sessions() as session:
            fresh = await session.scalars(select(Article).where(Article.id.in_(ids)))
            return {a.id: a for a in fresh}


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
            # Each process compacts the counts as it reads them: a few rows to sum per read.
            await repository.compact_counts()
            self.value = float((await repository.queue_counts()).status("pending"))

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
