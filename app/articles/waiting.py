"""``?wait=true`` of ingest: the request's articles committed, then their embeddings awaited."""

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article
from app.db.engine import Database
from app.pipeline.worker import EmbeddingWorker, wait_until_embedded


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
