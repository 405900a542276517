"""The encoding queue (with a fake model: this is plumbing, not relevance)."""

import asyncio
import threading

import numpy as np
import pytest

from app.core.errors import AppError
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


async def test_a_failing_batch_observer_neither_ends_a_stream_nor_strands_its_callers() -> None:
    def broken_observer(texts: int, seconds: float) -> None:
        raise ValueError("a metrics bug")

    encoder = Encoder(HashEmbedder(), batch_size=4, streams=1)
    encoder.batch_observers.append(broken_observer)
    encoder.start()
    try:
        first = await asyncio.wait_for(encoder.encode(["one", "two"]), timeout=5)
        again = await asyncio.wait_for(encoder.encode(["three"]), timeout=5)
        assert encoder.running
    finally:
        await encoder.close()
    assert first.shape == (2, 384) and again.shape == (1, 384)


class Gated(HashEmbedder):
    """Blocks every call until the test opens the gate: a model busy for as long as needed."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def encode(self, texts: list[str]) -> np.ndarray:  # type: ignore[type-arg]
        self.entered.set()
        assert self.gate.wait(timeout=30), "the test never opened the gate"
        return super().encode(texts)

    async def busy(self) -> None:
        """Until a call is held at the gate."""
        assert await asyncio.to_thread(self.entered.wait, 10), "the model was never called"


async def test_a_full_interactive_queue_is_refused_at_once_and_bulk_work_still_queues() -> None:
    model = Gated()
    encoder = Encoder(model, batch_size=2, streams=1, max_interactive_texts=3)
    encoder.start()
    try:
        busy = asyncio.ensure_future(encoder.encode(["on the model"]))
        await model.busy()  # the stream took it: the queue is empty again
        queued = asyncio.ensure_future(encoder.encode(["a", "b", "c"]))
        await asyncio.sleep(0)  # its texts are queued
        with pytest.raises(AppError) as refused:
            await encoder.encode(["one too many"])
        assert (refused.value.status, refused.value.code) == (503, "overloaded")
        assert refused.value.headers == {"Retry-After": "1"}
        bulk = asyncio.ensure_future(encoder.encode(["x"] * 10, Priority.BULK))
        model.gate.set()
        done = await asyncio.wait_for(asyncio.gather(busy, queued, bulk), timeout=10)
        assert [v.shape[0] for v in done] == [1, 3, 10]
        assert (await encoder.encode(["room again"])).shape == (1, 384)
    finally:
        model.gate.set()
        await encoder.close()


async def test_an_interactive_caller_gives_up_after_its_timeout_and_the_model_skips_its_text() -> (
    None
):
    model = Gated()
    encoder = Encoder(model, batch_size=1, streams=1, interactive_timeout_s=0.2)
    encoder.start()
    try:
        stuck = asyncio.ensure_future(encoder.encode(["holds the model"], Priority.BULK))
        await model.busy()
        with pytest.raises(AppError) as timed_out:
            await encoder.encode(["waits behind it"])
        assert (timed_out.value.status, timed_out.value.code) == (503, "overloaded")
        model.gate.set()
        await asyncio.wait_for(stuck, timeout=10)
        assert (await encoder.encode(["next"])).shape == (1, 384)
    finally:
        model.gate.set()
        await encoder.close()
    assert ["waits behind it"] not in model.calls  # given up: never encoded
