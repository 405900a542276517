"""All encoding of a process goes through one queue, a few worker threads and batches.

The model is CPU bound. It runs as ``streams`` batches at once, each on its own thread with the
cores shared out between them (app.embedding.model.compute_threads): on 2 cores, two batches
of one compute thread each rather than one batch on two. A forward pass is hundreds of small
operations, and one spread over two threads waits at each for the slower thread; when the
database or the event loop takes a core from one of them, every operation waits for it. Two
single-threaded streams lose only the time actually taken (`bench/ingest.py --streams 1,2`:
headlines 23 to 43% faster end to end with the database on the same cores).

Requests that arrive while the streams are busy are merged into the next batch, so a burst of
single-article upserts costs one forward pass, not one each. Interactive work (a draft to relate,
a single upsert) is served before bulk ingest, so a backfill does not hold up a CMS user.
"""

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from app.core.config import Settings
from app.core.errors import AppError
from app.embedding.model import Embedder, Vectors

logger = logging.getLogger(__name__)


class Priority(IntEnum):
    INTERACTIVE = 0
    BULK = 1


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    texts: list[str] = field(compare=False)
    result: "asyncio.Future[Vectors]" = field(compare=False)


def overloaded(message: str) -> AppError:
    return AppError(503, "overloaded", message, headers={"Retry-After": "1"})


class Encoder:
    """Supervised: whatever a batch or an observer raises, the streams go on and every caller
    gets an answer (its vectors, the batch's error, or a 503 after ``interactive_timeout_s``)."""

    def __init__(
        self,
        embedder: Embedder,
        batch_size: int,
        streams: int = 1,
        max_interactive_texts: int = 1024,
        interactive_timeout_s: float = 30.0,
    ) -> None:
        self.embedder = embedder
        self.batch_size = batch_size
        self.streams = streams
        # Interactive requests queue at most this many texts: past it a draft is refused at once
        # rather than answered after everything queued before it. (Bulk work is bounded by its
        # workers, which wait for each claim's vectors before claiming more.)
        self.max_interactive_texts = max_interactive_texts
        self.interactive_timeout_s = interactive_timeout_s
        self._interactive_texts = 0
        self._queue: asyncio.PriorityQueue[_Job] = asyncio.PriorityQueue()
        self._seq = itertools.count()
        self._executor = ThreadPoolExecutor(max_workers=streams, thread_name_prefix="encoder")
        self._workers: list[asyncio.Task[None]] = []
        # Called with (texts, seconds) after each batch the model encodes: the metrics hook.
        self.batch_observers: list[Callable[[int, float], None]] = []

    @classmethod
    def from_settings(cls, embedder: Embedder, settings: Settings) -> "Encoder":
        return cls(
            embedder,
            settings.embedding_batch_size,
            settings.embedding_streams,
            settings.embedding_queue_max_texts,
            settings.embedding_timeout_s,
        )

    @property
    def queue_depth(self) -> int:
        """Jobs waiting for the model, each at most ``batch_size`` texts."""
        return self._queue.qsize()

    @property
    def model_name(self) -> str:
        return self.embedder.name

    @property
    def running(self) -> bool:
        return bool(self._workers) and all(not worker.done() for worker in self._workers)

    def start(self) -> None:
        # One task per stream, each taking the next batch as soon as its last one is encoded.
        self._workers = [
            asyncio.create_task(self._run(), name=f"encoder-{stream}")
            for stream in range(self.streams)
        ]

    async def close(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def encode(self, texts: list[str], priority: Priority = Priority.INTERACTIVE) -> Vectors:
        """Unit vectors for ``texts``, in order, without blocking the event loop. Interactive
        work is refused (503) when its queue is full and given up (503) after
        ``interactive_timeout_s``."""
        if not texts:
            return np.empty((0, self.embedder.dimension), dtype=np.float32)
        interactive = priority == Priority.INTERACTIVE
        if interactive and self._interactive_texts + len(texts) > self.max_interactive_texts:
            raise overloaded("The model has too much work queued; retry shortly")
        loop = asyncio.get_running_loop()
        futures = []
        # Large requests go in batch-sized chunks so interactive work can slip in between.
        for start in range(0, len(texts), self.batch_size):
            future: asyncio.Future[Vectors] = loop.create_future()
            chunk = texts[start : start + self.batch_size]
            self._put(_Job(priority, next(self._seq), chunk, future))
            futures.append(future)
        if not interactive:
            return np.vstack(await asyncio.gather(*futures))
        try:
            done = await asyncio.wait_for(asyncio.gather(*futures), self.interactive_timeout_s)
        except TimeoutError:
            for future in futures:
                future.cancel()  # a stream that takes the job skips it
            raise overloaded(
                f"The model did not answer within {self.interactive_timeout_s:g} s"
            ) from None
        return np.vstack(done)

    def _put(self, job: _Job) -> None:
        if job.priority == Priority.INTERACTIVE:
            self._interactive_texts += len(job.texts)
        self._queue.put_nowait(job)

    def _taken(self, job: _Job) -> _Job:
        if job.priority == Priority.INTERACTIVE:
            self._interactive_texts -= len(job.texts)
        return job

    def _next_batch(self, first: _Job) -> list[_Job]:
        jobs, size = [self._taken(first)], len(first.texts)
        while size < self.batch_size and not self._queue.empty():
            job = self._taken(self._queue.get_nowait())
            if size + len(job.texts) > self.batch_size:
                self._put(job)
                break
            jobs.append(job)
            size += len(job.texts)
        return [job for job in jobs if not job.result.done()]  # cancelled by a gone client

    async def _run(self) -> None:
        while True:
            jobs = self._next_batch(await self._queue.get())
            try:
                await self._encode(jobs)
            except Exception as exc:  # a bug of ours: this batch's callers get it, not a hang
                logger.exception("encoding a batch failed unexpectedly")
                for job in jobs:
                    if not job.result.done():
                        job.result.set_exception(exc)

    async def _encode(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        if not jobs:
            return
        texts = [text for job in jobs for text in job.texts]
        started = time.perf_counter()
        try:
            vectors = await loop.run_in_executor(self._executor, self.embedder.encode, texts)
        except Exception as exc:
            if len(jobs) == 1:
                logger.warning("encoding %d texts failed: %s", len(texts), exc)
                if not jobs[0].result.done():
                    jobs[0].result.set_exception(exc)
                return
            # Merged jobs come from different callers: one caller's bad text must not fail
            # another's request, so each job is tried again on its own.
            for job in jobs:
                await self._run_alone(job)
            return
        offset = 0
        for job in jobs:
            if not job.result.done():
                job.result.set_result(vectors[offset : offset + len(job.texts)])
            offset += len(job.texts)
        # After the callers have their vectors: an observer that fails costs a log line.
        seconds = time.perf_counter() - started
        for observe in self.batch_observers:
            try:
                observe(len(texts), seconds)
            except Exception:
                logger.exception("a batch observer failed")

    async def _run_alone(self, job: _Job) -> None:
        loop = asyncio.get_running_loop()
        try:
            vectors = await loop.run_in_executor(self._executor, self.embedder.encode, job.texts)
        except Exception as exc:
            logger.warning("encoding %d texts failed: %s", len(job.texts), exc)
            if not job.result.done():
                job.result.set_exception(exc)
            return
        if not job.result.done():
            job.result.set_result(vectors)
