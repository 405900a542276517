"""Embedding workers: claim pending articles in batches, embed them, write the vectors back.

The same worker runs inside the API process (``RELATED_EMBEDDING_WORKER_IN_PROCESS``), inside
`related ingest` / `related reembed`, and as `related worker` processes on other machines.

* Claims carry a lease (``embedding_lease_until``): a worker killed mid-batch writes nothing,
  and its rows become claimable again when the lease runs out. Nothing is lost, and a row is
  written at most once per text because the write-back checks the text has not changed.
* Encoding goes through the process's Encoder at BULK priority, so a draft (`POST /v1/related`)
  or anything else interactive overtakes the queue between two model batches.
* Several lanes run at once: while the model encodes one lane's batch, another lane writes its
  vectors back and claims its next batch, so the model never waits on the database.
* A batch the model fails on is bisected until the bad texts are alone; those are marked
  failed with the reason, the others are written. An article claimed ``max_attempts`` times
  without finishing (its worker died each time) is marked failed too: nothing loops forever.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence

import numpy as np

from app.core.config import Settings
from app.db.engine import Database
from app.embedding.encoder import Encoder, Priority
from app.embedding.model import Vectors
from app.embedding.text import embedding_hash, embedding_text
from app.pipeline.repository import Claimed, Embedded, Failed, PipelineRepository

logger = logging.getLogger(__name__)

# The first pause of an idle worker; it doubles up to poll_s while the queue stays empty.
MIN_POLL_S = 0.05
# Rows requeued per transaction when the model changed.
REQUEUE_CHUNK = 10_000
# Two lanes keep the model busy (one encodes while the other writes and claims); a third
# only holds more rows leased.
LANES = 2
# Waiting on ingested articles: ids checked per query, and the pause between looks when no
# in-process worker says a batch was written.
WAIT_CHUNK = 10_000
POLL_S = 0.25


async def requeue(
    database: Database, model: str, everything: bool = False, failed: bool = False
) -> int:
    """Queue every article whose vector is not from ``model``; returns how many were queued."""
    total = 0
    while True:
        async with database.sessions() as session, session.begin():
            count = await PipelineRepository(session).requeue_chunk(
                model, REQUEUE_CHUNK, everything, failed
            )
        total += count
        if count < REQUEUE_CHUNK:
            return total


class EmbeddingWorker:
    def __init__(
        self,
        database: Database,
        encoder: Encoder,
        claim_size: int = 128,
        lease_s: float = 120.0,
        max_attempts: int = 3,
        poll_s: float = 1.0,
        lanes: int = LANES,
    ) -> None:
        self.database = database
        self.encoder = encoder
        self.claim_size = claim_size
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.poll_s = poll_s
        self.lanes = lanes
        self.embedded = 0
        self.failed = 0
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_settings(
        cls, database: Database, encoder: Encoder, settings: Settings
    ) -> "EmbeddingWorker":
        return cls(
            database,
            encoder,
            claim_size=settings.embedding_claim_size,
            lease_s=settings.embedding_lease_s,
            max_attempts=settings.embedding_max_attempts,
            poll_s=settings.embedding_poll_s,
        )

    @property
    def running(self) -> bool:
        return any(not task.done() for task in self._tasks)

    def start(self, requeue_other_models: bool = False) -> None:
        """Run the lanes in the background; first queue articles of other models if asked."""
        self._tasks = [
            asyncio.create_task(self._run(requeue_other_models and lane == 0), name=f"embed-{lane}")
            for lane in range(self.lanes)
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def wake(self) -> None:
        """New pending articles are committed: look at the queue now, not at the next poll."""
        self._wake.set()

    async def changed(self, within_s: float) -> None:
        """Return when a batch has been written, or after ``within_s`` seconds."""
        event = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), within_s)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _run(self, requeue_first: bool) -> None:
        if requeue_first:
            try:
                count = await requeue(self.database, self.encoder.model_name)
                if count:
                    logger.info("queued %d articles for re-embedding with %s", count, self.model)
            except Exception:
                logger.exception("queueing articles of other models failed")
        pause = MIN_POLL_S
        while True:
            # Cleared before the claim: a wake that arrives during it is not lost.
            self._wake.clear()
            try:
                worked = await self.run_once()
            except Exception:
                # The database went away, say: keep the lane alive and try again later.
                logger.exception("embedding batch failed; retrying in %.1f s", self.poll_s)
                worked = False
                pause = self.poll_s
            if worked:
                pause = MIN_POLL_S
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
            pause = min(pause * 2, self.poll_s)

    @property
    def model(self) -> str:
        return self.encoder.model_name

    async def run_once(self) -> bool:
        """Claim, embed and write back one batch; False when nothing was claimable."""
        async with self.database.sessions() as session, session.begin():
            claimed = await PipelineRepository(session).claim(self.claim_size, self.lease_s)
        if not claimed:
            return False
        try:
            await self._embed(claimed)
        except asyncio.CancelledError:
            # Stopping (a restart, say): hand the batch back now rather than when the lease ends.
            await asyncio.shield(self._hand_back([c.id for c in claimed]))
            raise
        return True

    async def _hand_back(self, ids: list[uuid.UUID]) -> None:
        async with self.database.sessions() as session, session.begin():
            await PipelineRepository(session).hand_back(ids)

    async def _embed(self, claimed: list[Claimed]) -> None:
        started = time.perf_counter()
        failed = [
            Failed(
                c.id,
                c.claimed_hash,
                f"gave up after {c.attempts - 1} claims that never finished "
                "(the worker stopped while embedding it each time)",
                c.site,
            )
            for c in claimed
            if c.attempts > self.max_attempts
        ]
        todo = [c for c in claimed if c.attempts <= self.max_attempts]
        texts = [embedding_text(c.title, c.summary, c.body) for c in todo]
        outcomes = await self._encode_isolating(texts)
        embedded = []
        for item, text_, outcome in zip(todo, texts, outcomes, strict=True):
            if isinstance(outcome, str):
                failed.append(Failed(item.id, item.claimed_hash, outcome, item.site))
            else:
                new_hash = embedding_hash(self.model, text_)
                embedded.append(
                    Embedded(item.id, item.claimed_hash, outcome.tolist(), new_hash, item.site)
                )
        async with self.database.sessions() as session, session.begin():
            repository = PipelineRepository(session)
            await repository.write_back(self.model, embedded)
            await repository.mark_failed(failed)
            await repository.release([c.id for c in claimed])
        self.embedded += len(embedded)
        self.failed += len(failed)
        for failure in failed:
            logger.warning("article %s cannot be embedded: %s", failure.id, failure.reason)
        logger.debug(
            "embedded %d, failed %d in %.2f s", len(embedded), len(failed), _since(started)
        )
        self._notify()

    async def _encode_isolating(self, texts: Sequence[str]) -> list[Vectors | str]:
        """A vector per text, or the reason it could not be embedded."""
        if not texts:
            return []
        try:
            vectors = await self.encoder.encode(list(texts), Priority.BULK)
        except Exception as exc:
            if len(texts) == 1:
                return [f"{exc.__class__.__name__}: {exc}"[:1000]]
            middle = len(texts) // 2
            return [
                *await self._encode_isolating(texts[:middle]),
                *await self._encode_isolating(texts[middle:]),
            ]
        outcomes: list[Vectors | str] = []
        for vector in vectors:
            # PostgreSQL would reject the whole write-back for one NaN; fail just that article.
            if np.isfinite(vector).all() and np.any(vector):
                outcomes.append(vector)
            else:
                outcomes.append("the model returned a vector that is zero or not finite")
        return outcomes


def _since(started: float) -> float:
    return time.perf_counter() - started


async def wait_until_embedded(
    database: Database,
    ids: Sequence[uuid.UUID],
    timeout_s: float | None,
    worker: EmbeddingWorker | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> set[uuid.UUID]:
    """Block until none of ``ids`` is pending (or ``timeout_s``); returns those still pending.

    Woken by ``worker`` when it writes a batch; otherwise (separate worker processes) the
    database is asked every POLL_S seconds. Ids are checked in queue order, a chunk at a time,
    so waiting on a million articles does not send a million ids per look.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    remaining = list(dict.fromkeys(ids))
    total = len(remaining)
    while remaining:
        async with database.sessions() as session:
            repository = PipelineRepository(session)
            while remaining:
                chunk = remaining[:WAIT_CHUNK]
                pending = await repository.pending_among(chunk)
                remaining = [i for i in chunk if i in pending] + remaining[WAIT_CHUNK:]
                if pending:
                    break
        if on_progress is not None:
            on_progress(total - len(remaining))
        if not remaining:
            break
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        pause = POLL_S if left is None else min(POLL_S, left)
        if worker is not None:
            await worker.changed(pause)
        else:
            await asyncio.sleep(pause)
    return set(remaining)
