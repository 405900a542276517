"""RELATED_DATABASE_REPLICA_URL: reads on a real streaming replica, writes on the primary.

The primary is the session's embedded PostgreSQL; the replica is a physical copy of it made with
the pg_basebackup that the embedded PostgreSQL ships (-R writes the standby configuration),
started with pg_ctl on its own socket directory. Pausing WAL replay on the replica makes the two
visibly differ, which shows which server each request used.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.auth.models import Scope
from app.core.config import Settings
from app.db.embedded import EmbeddedPostgres
from app.main import create_app
from tests.conftest import TEST_DATABASE, CountingEmbedder, article, create_key, http_client


@pytest.fixture(scope="module")
def replica_url(
    pg_server: EmbeddedPostgres, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    data = tmp_path_factory.mktemp("replica")
    # Its own socket directory: the copy holds the primary's socket lock file (the embedded
    # server keeps the socket in the data directory).
    sockets = tmp_path_factory.mktemp("replica-sockets")
    for directory in (data, sockets):
        pg_server.give_to_server(directory)
    assert pg_server.postmaster is not None
    primary_socket = pg_server.postmaster.socket_dir
    # -R: standby.signal and primary_conninfo; a fast checkpoint; WAL streamed with the copy.
    pg_server.run("pg_basebackup", "-h", primary_socket, "-U", "postgres", "-D", data,
                  "-R", "-X", "stream", "-c", "fast")  # fmt: skip
    started = False
    try:
        pg_server.run("pg_ctl", "-D", data, "-w", "-l", data / "replica.log", "-o",
                      f"-h '' -k {sockets}", "start")  # fmt: skip
        started = True
        yield f"postgresql://postgres:@/{TEST_DATABASE}?host={sockets}"
    finally:
        if started:
            pg_server.run("pg_ctl", "-D", data, "-w", "-m", "fast", "stop")


@pytest.fixture
async def replicated(
    settings: Settings, embedder: CountingEmbedder, replica_url: str
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    application = create_app(
        settings.model_copy(update={"database_replica_url": replica_url}), embedder=embedder
    )
    async with application.router.lifespan_context(application):
        async with application.state.database.engine.begin() as conn:
            await conn.execute(text("TRUNCATE articles"))
        token = await create_key(application, Scope.ADMIN, name=f"replica-{uuid.uuid4()}")
        async with http_client(application, token) as http:
            yield application.state.database, http


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 15) -> None:
    """Replication is asynchronous: wait (briefly) for the replica to catch up."""
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "the replica did not catch up"
        await asyncio.sleep(0.05)


async def set_replay(database: Any, paused: bool) -> None:
    async with database.replica_engine.connect() as conn:
        action = "pause" if paused else "resume"
        await conn.execute(text(f"SELECT pg_wal_replay_{action}()"))


async def test_reads_are_served_by_the_replica_and_writes_reach_it(
    replicated: tuple[Any, httpx.AsyncClient],
) -> None:
    database, http = replicated
    async with database.read_sessions() as session:
        assert await session.scalar(text("SELECT pg_is_in_recovery()")) is True
    async with database.sessions() as session:
        assert await session.scalar(text("SELECT pg_is_in_recovery()")) is False

    storm = article("harbour-1", "Storm closes the harbour", "Gales shut the harbour on Monday.")
    assert (await http.post("/v1/articles", json=storm)).status_code == 201

    async def storm_is_related_ready() -> bool:
        return (await http.get("/v1/articles/harbour-1/related")).status_code == 200

    await eventually(storm_is_related_ready)

    await set_replay(database, paused=True)
    try:
        follow_up = article(
            "harbour-2", "Harbour stays shut as storm rages", "The storm kept the harbour closed."
        )
        # A write: the primary takes it (the replica cannot, it is read-only).
        assert (await http.post("/v1/articles", json=follow_up)).status_code == 201
        async with database.sessions() as session:
            on_primary = await session.scalar(
                text("SELECT count(*) FROM articles WHERE external_id = 'harbour-2'")
            )
        assert on_primary == 1
        # Reads come from the replica, which has not replayed that write yet.
        assert (await http.get("/v1/articles/harbour-2")).status_code == 404
        listed = (await http.get("/v1/articles")).json()["items"]
        assert [a["external_id"] for a in listed] == ["harbour-1"]
        related = (await http.get("/v1/articles/harbour-1/related")).json()["items"]
        assert related == []
    finally:
        await set_replay(database, paused=False)

    async def follow_up_is_related() -> bool:
        answer = await http.get("/v1/articles/harbour-1/related")
        return answer.status_code == 200 and [
            item["external_id"] for item in answer.json()["items"]
        ] == ["harbour-2"]

    await eventually(follow_up_is_related)
    assert (await http.get("/v1/articles/harbour-2")).status_code == 200
    listed = (await http.get("/v1/articles")).json()["items"]
    assert {a["external_id"] for a in listed} == {"harbour-1", "harbour-2"}

    # Deleting is a write too: done on the primary, then gone from the replica's answers.
    assert (await http.delete("/v1/articles/harbour-2")).status_code == 204

    async def follow_up_is_gone() -> bool:
        return (await http.get("/v1/articles/harbour-2")).status_code == 404

    await eventually(follow_up_is_gone)


async def test_the_read_path_cannot_write_even_without_a_replica(app: Any) -> None:
    # Without a replica, reads use the primary, still in read-only transactions: a read path that
    # writes fails here rather than only in production on the replica.
    async with app.state.database.read_sessions() as session, session.begin():
        assert await session.scalar(text("SELECT pg_is_in_recovery()")) is False
        assert await session.scalar(text("SHOW transaction_read_only")) == "on"
