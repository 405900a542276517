"""The encoding queue (with a fake model: this is plumbing, not relevance)."""

import asyncio
import threading

import numpy as np

from app.embedding.encoder import Encoder, Priority
from app.embedding.text import MAX_CHARS, embedding_text
from tests.fakes import HashEmbedder, PoisonEmbedder


async def test_results_come_back_in_order_and_match_single_encodes() -> None:
    embedder = HashEmbedder()
    encoder = Encoder(embedder, batch_size=4)
    encoder.start()
    try:
        texts = [f"text {i}" for i in range(10)]
        together = await encoder.encode(texts)
        alone = np.vstack([await encoder.encode([t]) for t in texts])
    finally:
        await encoder.close()
    assert together.shape == (10, 384)
    np.testing.assert_allclose(together, alone)
    assert max(len(call) for call in embedder.calls) <= 4


async def test_concurrent_requests_are_merged_into_batches_off_the_event_loop() -> None:
    embedder = HashEmbedder()
    encoder = Encoder(embedder, batch_size=32)
    encoder.start()
    try:
        results = await asyncio.gather(*(encoder.encode([f"q{i}"]) for i in range(20)))
    finally:
        await encoder.close()
    assert all(r.shape == (1, 384) for r in results)
    assert len(embedder.calls) < 20  # merged
    assert threading.main_thread().name not in embedder.thread_names


async def test_streams_encode_batches_at_the_same_time_and_keep_the_order() -> None:
    class Rendezvous(HashEmbedder):
        """Each call waits until another call is running too: one stream alone would hang."""

        def __init__(self) -> None:
            super().__init__()
            self.barrier = threading.Barrier(2, timeout=10)

        def encode(self, texts: list[str]) -> np.ndarray:  # type: ignore[type-arg]
            self.barrier.wait()
            return super().encode(texts)

    embedder = Rendezvous()
    encoder = Encoder(embedder, batch_size=2, streams=2)
    encoder.start()
    try:
        texts = [f"text {i}" for i in range(8)]
        together = await encoder.encode(texts)
    finally:
        await encoder.close()
    np.testing.assert_allclose(together, HashEmbedder().encode(texts))
    assert len(embedder.calls) == 4
    assert len(embedder.thread_names) == 2


async def test_interactive_work_goes_before_queued_bulk_work() -> None:
    embedder = HashEmbedder()
    encoder = Encoder(embedder, batch_size=2)
    bulk = asyncio.ensure_future(encoder.encode([f"bulk {i}" for i in range(6)], Priority.BULK))
    draft = asyncio.ensure_future(encoder.encode(["draft"], Priority.INTERACTIVE))
    await asyncio.sleep(0)  # both queued before the worker starts
    encoder.start()
    try:
        await asyncio.gather(bulk, draft)
    finally:
        await encoder.close()
    assert embedder.calls[0][0] == "draft"


async def test_a_failing_batch_fails_its_callers_and_the_queue_goes_on() -> None:
    class Flaky(HashEmbedder):
        def encode(self, texts: list[str]) -> np.ndarray:  # type: ignore[type-arg]
            if "boom" in texts:
                raise RuntimeError("model error")
            return super().encode(texts)

    encoder = Encoder(Flaky(), batch_size=1)
    encoder.start()
    try:
        failed = await asyncio.gather(encoder.encode(["boom"]), return_exceptions=True)
        ok = await encoder.encode(["fine"])
    finally:
        await encoder.close()
    assert isinstance(failed[0], RuntimeError)
    assert ok.shape == (1, 384)


def test_embedding_text_is_title_summary_and_lead_within_the_window() -> None:
    text = embedding_text("Headline", "A summary.", "Body " * 2000)
    assert text.startswith("Headline\nA summary.\nBody")
    assert len(text) == MAX_CHARS
    # A summary that merely repeats the body's opening is not embedded twice.
    body = "The council voted on Tuesday to fund night buses. More text follows."
    assert embedding_text("T", "The council voted on Tuesday to fund...", body) == f"T\n{body}"
    assert embedding_text("T", None, "") == "T"


async def test_a_bad_text_fails_only_its_own_callers_request_when_merged() -> None:
    embedder = PoisonEmbedder()
    encoder = Encoder(embedder, batch_size=32)
    encoder.start()
    try:
        results = await asyncio.gather(
            encoder.encode(["fine draft"], Priority.INTERACTIVE),
            encoder.encode(["POISON text", "good text"], Priority.BULK),
            encoder.encode(["another draft"], Priority.INTERACTIVE),
            return_exceptions=True,
        )
    finally:
        await encoder.close()
    assert isinstance(results[1], ValueError)
    assert [r.shape for r in (results[0], results[2])] == [(1, 384), (1, 384)]  # type: ignore[union-attr]
    assert any(len(call) == 4 for call in embedder.calls)  # they were merged at first
