"""The embedding pipeline on a real PostgreSQL, with fake embedders (plumbing, not relevance):
pending until a worker embeds, wait=true, 409s, failures isolated, no clobbered edits, queue
counts, model changes, interactive work first, and a worker killed mid-batch."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import text

from app.auth.models import Scope
from app.core.config import Settings
from app.db import migrate
from app.embedding.model import Embedder
from app.embedding.text import embedding_text
from app.main import create_app
from app.pipeline.repository import Embedded, PipelineRepository
from app.pipeline.service import queue_counts
from app.pipeline.worker import EmbeddingWorker, requeue
from tests.conftest import article, bearer, create_key, fresh_database
from tests.fakes import HashEmbedder, PoisonEmbedder, SlowEmbedder
from tests.polling import until

DATABASE = "related_pipeline"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipeline_url(pg_server: Any) -> str:
    # Its own database: the session app's in-process worker must not embed these articles.
    url = fresh_database(pg_server, DATABASE)
    migrate.upgrade(url)
    return url


@pytest.fixture
def base_settings(pipeline_url: str, tmp_path: Path) -> Iterator[Settings]:
    yield Settings(
        database_url=pipeline_url,
        migrate_on_start=False,
        data_dir=tmp_path / "unused",
        embedding_poll_s=0.2,
    )


@asynccontextmanager
async def service(
    settings: Settings, embedder: Embedder, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(settings.model_copy(update=overrides), embedder=embedder)
    async with app.router.lifespan_context(app):
        token = await create_key(app, Scope.ADMIN, name="pipeline-test")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=bearer(token)
        ) as client:
            yield client, app


@pytest.fixture(autouse=True)
async def empty(pipeline_url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(pipeline_url)
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE articles"))
    await engine.dispose()


def stories(n: int, prefix: str = "s") -> list[dict[str, Any]]:
    return [
        article(f"{prefix}-{i}", f"Story {i} about the harbour", f"Body of story {i}.")
        for i in range(n)
    ]


def text_of(item: dict[str, Any]) -> str:
    return embedding_text(item["title"], item.get("summary"), item.get("body"))


async def rows(app: Any, sql: str) -> list[Any]:
    async with app.state.database.sessions() as session:
        return list((await session.execute(text(sql))).all())


async def test_ingest_answers_pending_and_a_worker_makes_it_ready(
    base_settings: Settings,
) -> None:
    embedder = HashEmbedder()
    async with service(base_settings, embedder, embedding_worker_in_process=False) as (c, app):
        items = stories(3)
        response = await c.post("/v1/articles/batch", json={"articles": items})
        assert [i["article"]["embedding_status"] for i in response.json()["items"]] == [
            "pending"
        ] * 3
        assert embedder.calls == []  # ingest encodes nothing itself

        related = await c.get("/v1/articles/s-0/related")
        assert related.status_code == 409
        assert related.json()["error"]["code"] == "embedding_pending"

        status = (await c.get("/v1/embedding/status")).json()
        assert status["counts"] == {"pending": 3, "ready": 0, "failed": 0}
        assert status["by_model"] == [{"model": None, "status": "pending", "count": 3}]
        assert status["oldest_pending_age_s"] >= 0

        worker = EmbeddingWorker(app.state.database, app.state.encoder)
        assert await worker.run_once()
        assert not await worker.run_once()  # nothing left to claim

        status = (await c.get("/v1/embedding/status")).json()
        assert status["counts"] == {"pending": 0, "ready": 3, "failed": 0}
        assert status["by_model"] == [{"model": "fake-hash", "status": "ready", "count": 3}]
        assert status["oldest_pending_age_s"] is None
        got = (await c.get("/v1/articles/s-0")).json()
        assert got["embedding_status"] == "ready" and got["embedding_model"] == "fake-hash"
        related = await c.get("/v1/articles/s-0/related", params={"ranking": "vector"})
        assert related.status_code == 200
        assert {r["external_id"] for r in related.json()["items"]} == {"s-1", "s-2"}


async def test_wait_true_answers_ready_and_times_out_as_pending(
    base_settings: Settings,
) -> None:
    async with service(base_settings, HashEmbedder()) as (c, _):
        response = await c.post("/v1/articles", params={"wait": "true"}, json=stories(1)[0])
        assert response.status_code == 201
        assert response.json()["embedding_status"] == "ready"
        assert response.json()["embedding_model"] == "fake-hash"
        batch = await c.post(
            "/v1/articles/batch", params={"wait": "true"}, json={"articles": stories(4, "b")}
        )
        assert {i["embedding_status"] for i in batch.json()["items"]} == {"ready"}

    # No worker anywhere: the wait ends at the timeout with the truth, not an error.
    async with service(
        base_settings,
        HashEmbedder(),
        embedding_worker_in_process=False,
        embedding_wait_timeout_s=0.3,
    ) as (c, _):
        started = time.monotonic()
        response = await c.post("/v1/articles", params={"wait": "true"}, json=stories(1, "w")[0])
        assert response.status_code == 201
        assert response.json()["embedding_status"] == "pending"
        assert 0.3 <= time.monotonic() - started < 5


async def test_a_text_the_model_rejects_is_failed_with_its_reason_and_the_rest_embedded(
    base_settings: Settings,
) -> None:
    embedder = PoisonEmbedder()
    items = stories(7)
    items[4] = article("bad", "POISON headline", "Unreadable.")
    async with service(base_settings, embedder, embedding_claim_size=8) as (c, _):
        response = await c.post(
            "/v1/articles/batch", params={"wait": "true"}, json={"articles": items}
        )
        by_id = {i["article"]["external_id"]: i["article"] for i in response.json()["items"]}

        assert by_id["bad"]["embedding_status"] == "failed"
        assert "ValueError: the tokenizer rejected this text" in by_id["bad"]["embedding_error"]
        assert {a["embedding_status"] for k, a in by_id.items() if k != "bad"} == {"ready"}
        related = await c.get("/v1/articles/bad/related")
        assert related.status_code == 409
        assert related.json()["error"]["code"] == "embedding_failed"
        assert "tokenizer" in related.json()["error"]["details"]["embedding_error"]
        status = (await c.get("/v1/embedding/status")).json()
        assert status["counts"] == {"pending": 0, "ready": 6, "failed": 1}

        # Not retried forever: it stays failed while the queue goes on to other work.
        after = await c.post(
            "/v1/articles", params={"wait": "true"}, json=article("after", "Another story")
        )
        assert after.json()["embedding_status"] == "ready"
        assert sum("POISON" in t for call in embedder.calls for t in call) <= 4  # bisection
        fixed = await c.post(
            "/v1/articles", params={"wait": "true"}, json={**items[4], "title": "Fine headline"}
        )
        assert fixed.json()["embedding_status"] == "ready"
        assert fixed.json()["embedding_error"] is None


async def test_an_article_whose_worker_keeps_dying_is_failed_after_max_attempts(
    base_settings: Settings,
) -> None:
    async with service(base_settings, HashEmbedder(), embedding_worker_in_process=False) as (
        c,
        app,
    ):
        await c.post("/v1/articles", json=stories(1)[0])
        worker = EmbeddingWorker(app.state.database, app.state.encoder, max_attempts=3)
        for _ in range(3):  # three workers claim it and die (their leases run out at once)
            async with app.state.database.sessions() as session, session.begin():
                assert len(await PipelineRepository(session).claim(10, 0.0)) == 1
        assert await worker.run_once()
        got = (await c.get("/v1/articles/s-0")).json()
        assert got["embedding_status"] == "failed"
        assert "gave up after 3 claims" in got["embedding_error"]


async def test_a_vector_of_an_older_text_never_overwrites_a_newer_edit(
    base_settings: Settings,
) -> None:
    embedder = HashEmbedder()
    async with service(base_settings, embedder, embedding_worker_in_process=False) as (c, app):
        item = stories(1)[0]
        await c.post("/v1/articles", json=item)
        async with app.state.database.sessions() as session, session.begin():
            [claimed] = await PipelineRepository(session).claim(10, 60.0)
        edited = {**item, "title": "Harbour story, corrected headline"}
        await c.post("/v1/articles", json=edited)  # while the old text is being embedded

        old_vector = embedder.encode([text_of(item)])[0].tolist()
        async with app.state.database.sessions() as session, session.begin():
            repository = PipelineRepository(session)
            await repository.write_back(
                "fake-hash", [Embedded(claimed.id, claimed.claimed_hash, old_vector, "x" * 64)]
            )
        assert (await c.get("/v1/articles/s-0")).json()["embedding_status"] == "pending"

        # The edit is claimable at once (the upsert dropped the stale lease) and embedded.
        assert await EmbeddingWorker(app.state.database, app.state.encoder).run_once()
        [(vector_text,)] = await rows(app, "SELECT embedding::text FROM articles")
        stored = np.array(vector_text[1:-1].split(","), dtype=np.float32)
        expected = embedder.encode([text_of(edited)])[0]
        assert float(stored @ expected) == pytest.approx(1.0, abs=1e-5)


async def test_drafts_are_encoded_before_queued_bulk_work(base_settings: Settings) -> None:
    embedder = SlowEmbedder(delay_s=0.25, log=None)
    async with service(base_settings, embedder, embedding_batch_size=2, embedding_claim_size=8) as (
        c,
        _,
    ):
        await c.post("/v1/articles/batch", params={"wait": "false"}, json={"articles": stories(16)})
        await until(lambda: bool(embedder.calls), "the model to start on the bulk work")
        draft = {"title": "Draft about the harbour ferry", "body": "Draft body."}
        response = await c.post("/v1/related", json=draft)
        assert response.status_code == 200
        batch = await c.post(
            "/v1/articles/batch", params={"wait": "true"}, json={"articles": stories(16)}
        )
        assert {i["embedding_status"] for i in batch.json()["items"]} == {"ready"}
        # All 16 were claimed (two lanes of 8) and queued before the draft came; in arrival
        # order it would have been encoded last. It overtook the queued bulk batches.
        position = next(i for i, call in enumerate(embedder.calls) if "Draft" in call[0])
        after = embedder.calls[position + 1 :]
        assert len(after) >= 2 and all("Story" in call[0] for call in after), embedder.calls


async def test_a_new_model_reembeds_in_the_background_and_never_mixes_models(
    base_settings: Settings,
) -> None:
    items = stories(3)
    async with service(base_settings, HashEmbedder("model-a")) as (c, _):
        await c.post("/v1/articles/batch", params={"wait": "true"}, json={"articles": items})

    async with service(
        base_settings, HashEmbedder("model-b"), embedding_worker_in_process=False
    ) as (c, app):
        status = (await c.get("/v1/embedding/status")).json()
        assert status["model"] == "model-b" and status["stale"] == 3
        related = await c.get("/v1/articles/s-0/related")
        assert related.status_code == 409  # its vector is model-a's: not comparable
        assert related.json()["error"]["code"] == "embedding_pending"

        assert await requeue(app.state.database, "model-b") == 3
        one = EmbeddingWorker(app.state.database, app.state.encoder, claim_size=1)
        assert await one.run_once()
        [(ready,)] = await rows(
            app, "SELECT external_id FROM articles WHERE embedding_model = 'model-b'"
        )
        related = await c.get(f"/v1/articles/{ready}/related", params={"ranking": "vector"})
        assert related.status_code == 200
        assert related.json()["items"] == []  # the others still hold model-a vectors

    # Started with the in-process worker, the service finishes the re-embedding by itself.
    async with service(base_settings, HashEmbedder("model-b")) as (c, _):
        deadline = time.monotonic() + 20
        while (await c.get("/v1/embedding/status")).json()["counts"]["ready"] < 3:
            assert time.monotonic() < deadline, "re-embedding did not finish"
            await asyncio.sleep(0.05)
        status = (await c.get("/v1/embedding/status")).json()
        assert status["by_model"] == [{"model": "model-b", "status": "ready", "count": 3}]
        related = await c.get("/v1/articles/s-0/related", params={"ranking": "vector"})
        assert {r["external_id"] for r in related.json()["items"]} == {"s-1", "s-2"}


def related_cli(*args: str, url: str, **env: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": url,
            "RELATED_MIGRATE_ON_START": "false",
            "RELATED_EMBEDDER_FACTORY": "tests.fakes:slow_from_env",
            "RELATED_LOG_LEVEL": "warning",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_related_reembed_requeues_other_models_with_progress(
    base_settings: Settings, pipeline_url: str
) -> None:
    async with service(base_settings, HashEmbedder("model-a")) as (c, _):
        await c.post("/v1/articles/batch", params={"wait": "true"}, json={"articles": stories(5)})

    # Once model-a's service is gone: two models' workers at once would undo each other.
    process = related_cli("reembed", url=pipeline_url, FAKE_EMBEDDER_NAME="model-b")
    out, err = await asyncio.to_thread(process.communicate, timeout=120)
    assert process.returncode == 0, err
    assert "queued 5 articles for model-b" in out
    assert "embedded 5, failed 0" in out
    assert "re-embed: 100%" in err  # the progress bar
    async with service(
        base_settings, HashEmbedder("model-b"), embedding_worker_in_process=False
    ) as (_, app):
        models = await rows(app, "SELECT embedding_model, embedding_status FROM articles")
    assert Counter(models) == {("model-b", "ready"): 5}


async def test_a_worker_killed_mid_batch_loses_nothing_and_nothing_is_embedded_twice(
    base_settings: Settings, pipeline_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "embedder.log"
    items = stories(12)
    async with service(base_settings, HashEmbedder(), embedding_worker_in_process=False) as (
        c,
        app,
    ):
        await c.post("/v1/articles/batch", json={"articles": items})
        env = {
            "FAKE_EMBEDDER_LOG": str(log),
            "RELATED_EMBEDDING_BATCH_SIZE": "4",
            "RELATED_EMBEDDING_CLAIM_SIZE": "4",
            "RELATED_EMBEDDING_LEASE_S": "2",
            "RELATED_EMBEDDING_POLL_S": "0.2",
        }
        first = related_cli("worker", url=pipeline_url, FAKE_EMBEDDER_DELAY_S="60", **env)
        try:
            deadline = time.monotonic() + 60
            # Killed while the model is busy with a claimed batch.
            while not (log.exists() and "start" in log.read_text()):
                assert first.poll() is None, first.communicate()[1]
                assert time.monotonic() < deadline, "the first worker never claimed"
                await asyncio.sleep(0.05)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
        # What the killed worker held: claimed (an attempt counted), never written back. Read
        # after the kill, so a batch it claimed while the model was busy counts too.
        held = {
            r[0]
            for r in await rows(
                app,
                "SELECT external_id FROM articles"
                " WHERE embedding_status = 'pending' AND embedding_attempts > 0",
            )
        }
        assert len(held) >= 4

        second = related_cli("worker", url=pipeline_url, FAKE_EMBEDDER_DELAY_S="0", **env)
        try:
            deadline = time.monotonic() + 60
            while (await c.get("/v1/embedding/status")).json()["counts"]["ready"] < 12:
                assert second.poll() is None, second.communicate()[1]
                assert time.monotonic() < deadline, "the second worker did not finish"
                await asyncio.sleep(0.1)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=30) == 0

        done = Counter(
            json.loads(line.split("\t", 1)[1])
            for line in log.read_text().splitlines()
            if line.startswith("done")
        )
        assert done == Counter(text_of(i) for i in items)  # every text embedded exactly once
        attempts = dict(await rows(app, "SELECT external_id, embedding_attempts FROM articles"))
        assert {k for k, n in attempts.items() if n == 2} == held  # claimed again after the kill
        assert {n for k, n in attempts.items() if k not in held} == {1}
        expected = HashEmbedder().encode([text_of(i) for i in items])
        stored = dict(await rows(app, "SELECT external_id, embedding::text FROM articles"))
        for item, vector in zip(items, expected, strict=True):
            got = np.array(stored[item["external_id"]][1:-1].split(","), dtype=np.float32)
            assert float(got @ vector) == pytest.approx(1.0, abs=1e-5)


async def test_a_worker_stopped_cleanly_hands_its_batch_back_at_once(
    base_settings: Settings,
) -> None:
    embedder = SlowEmbedder(delay_s=2, log=None)
    async with service(base_settings, embedder, embedding_worker_in_process=False) as (c, app):
        await c.post("/v1/articles/batch", json={"articles": stories(3)})
        worker = EmbeddingWorker(app.state.database, app.state.encoder)
        task = asyncio.create_task(worker.run_once())
        await until(lambda: bool(embedder.calls), "the worker to claim and start encoding")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        state = await rows(
            app, "SELECT embedding_status, embedding_attempts, embedding_lease_until FROM articles"
        )
        assert state == [("pending", 0, None)] * 3


async def test_queue_counts_follow_every_kind_of_write_without_reading_the_articles(
    base_settings: Settings,
) -> None:
    truth = (
        "SELECT embedding_status, embedding_model, count(*) FROM articles GROUP BY 1, 2 "
        "ORDER BY 1, 2"
    )

    async def counted(app: Any) -> list[tuple[Any, ...]]:
        async with app.state.database.sessions() as session:
            counts = await queue_counts(session)
        return sorted(
            ((status, model, n) for (status, model), n in counts.by_status_model.items()),
            key=lambda row: (row[0], row[1] or ""),
        )

    async def agree(app: Any) -> list[tuple[Any, ...]]:
        expected = sorted(
            (tuple(r) for r in await rows(app, truth)), key=lambda r: (r[0], r[1] or "")
        )
        assert await counted(app) == expected
        return expected

    # No worker in the process: nothing changes between the count and the truth but the test.
    async with service(
        base_settings, HashEmbedder("model-a"), embedding_worker_in_process=False
    ) as (c, app):
        worker = EmbeddingWorker(app.state.database, app.state.encoder)
        await c.post("/v1/articles/batch", params={"wait": "false"}, json={"articles": stories(6)})
        assert await agree(app) == [("pending", None, 6)]
        assert await worker.run_once()  # the write-back: an UPDATE per article
        assert await agree(app) == [("ready", "model-a", 6)]
        # Edits queue some again (an upsert: INSERT ... ON CONFLICT DO UPDATE), new ones arrive.
        edited = [article(f"s-{i}", f"Edited headline {i}") for i in range(2)]
        await c.post("/v1/articles/batch", params={"wait": "false"}, json={"articles": edited})
        await c.post("/v1/articles", params={"wait": "false"}, json=article("new", "New story"))
        await agree(app)
        await c.delete("/v1/articles/s-5")
        await agree(app)
        await app.state.pending_gauge.refresh()  # compacts: one row per (status, model)
        async with app.state.database.engine.connect() as conn:
            raw = await conn.scalar(text("SELECT count(*) FROM embedding_counts"))
        assert raw == len(await agree(app))
        assert await worker.run_once()
        assert await agree(app) == [("ready", "model-a", 6)]
        async with app.state.database.engine.begin() as conn:
            await conn.execute(text("TRUNCATE articles"))
        assert await agree(app) == []
