"""Migrations on a populated table, under load: nobody waits for them.

A database with 20,000 articles is migrated from 0001 to head, back down to 0001 and up again,
one revision at a time, while other connections read (by id, the nearest 10 by embedding, a
list page) and write (insert, update the title). Every request's time is recorded; the slowest
of each step is reported. What must stay under a second is the time any of them spends blocked:
waiting for a lock (sampled from pg_stat_activity). A request slowed by a build sharing the two
cores is not blocked, and is only held to a looser bound. No row may be lost or left with
derived columns that differ from what the triggers compute. Also: two `related db upgrade`
processes started at once both succeed, one after the other (the advisory lock in
migrations/env.py).

`pytest -s tests/test_online_migrations.py` prints the timing table of docs/operations.md.
"""

import asyncio
import logging
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from app.db import migrate
from app.db.embedded import EmbeddedPostgres
from app.db.online import MIGRATION_LOCK
from tests.conftest import fresh_database

ARTICLES = 20_000
BLOCKED_LIMIT_S = 1.0
# A request's whole time, lock waits or not: catches a stall the lock sampler cannot see, with
# room for CPU contention (an index build takes both cores of a test machine).
SLOWEST_LIMIT_S = 5.0
# How often the load connections' lock waits are sampled.
SAMPLE_S = 0.02
LOAD_APPLICATION = "migration-load"
# Each load connection sends one request, then pauses this long: a steady load (about 100
# requests a second in all) that leaves the 2 test cores to the migration too.
PAUSE_S = 0.05
WORDS = [
    "election",
    "minister",
    "budget",
    "storm",
    "flood",
    "court",
    "ruling",
    "market",
    "shares",
    "energy",
    "prices",
    "climate",
    "summit",
    "football",
    "league",
    "transfer",
    "vaccine",
    "hospital",
    "school",
    "teachers",
    "strike",
    "police",
    "inquiry",
    "border",
    "trade",
    "tariff",
    "bank",
    "interest",
    "rates",
    "housing",
    "rents",
    "drought",
    "harvest",
    "wildfire",
    "rescue",
    "museum",
    "festival",
    "film",
    "award",
    "science",
    "space",
    "telescope",
    "rocket",
    "launch",
    "research",
    "university",
]

POPULATE = f"""
INSERT INTO articles (id, external_id, title, body, summary, source, category, language,
                      published_at, content_hash, embedding, embedding_model, embedding_hash)
SELECT gen_random_uuid(), 'seed-' || g,
       initcap(array_to_string(ARRAY(SELECT w[1 + floor(random() * cardinality(w))::int]
                                     FROM generate_series(1, 8) WHERE g > 0), ' ')),
       -- One article in ten is a headline with a summary only (the document takes the summary).
       CASE WHEN g % 10 = 0 THEN '' ELSE
           array_to_string(ARRAY(SELECT w[1 + floor(random() * cardinality(w))::int]
                                 FROM generate_series(1, 120) WHERE g > 0), ' ') || '.' END,
       array_to_string(ARRAY(SELECT w[1 + floor(random() * cardinality(w))::int]
                             FROM generate_series(1, 25) WHERE g > 0), ' '),
       'source-' || (g % 50), 'category-' || (g % 12), 'en',
       timestamptz '2026-01-01' + g * interval '7 minutes',
       md5(g::text) || md5(g::text),
       -- A unit vector, as the model writes them (normalized embeddings).
       l2_normalize(ARRAY(SELECT random() - 0.5 FROM generate_series(1, 384) WHERE g > 0)::vector),
       'all-MiniLM-L6-v2', md5(g::text) || md5(g::text)
FROM generate_series(1, {ARTICLES}) AS g,
     (SELECT '{{{",".join(WORDS)}}}'::text[] AS w) AS words
"""

# What each backfilled column must hold: recomputed by the migrations' own trigger functions on
# a copy of every row (a temporary table with the same triggers).
TRIGGERED = ["search_vector", "term_hashes", "term_counts", "title_hashes", "body_words"]
RECOMPUTE = f"""
CREATE TEMP TABLE probe (LIKE articles);
CREATE TRIGGER articles_fill_search_vector BEFORE INSERT ON probe
    FOR EACH ROW EXECUTE FUNCTION articles_fill_search_vector();
CREATE TRIGGER articles_fill_lexemes BEFORE INSERT ON probe
    FOR EACH ROW EXECUTE FUNCTION articles_fill_lexemes();
INSERT INTO probe SELECT * FROM articles;
SELECT count(*) FROM articles a JOIN probe p USING (id)
WHERE ({", ".join(f"a.{c}" for c in TRIGGERED)}) IS DISTINCT FROM
      ({", ".join(f"p.{c}" for c in TRIGGERED)})
   OR a.search_vector IS NULL OR a.title_hashes IS NULL
"""


def random_vector() -> str:
    values = [random.gauss(0, 1) for _ in range(384)]
    norm = sum(v * v for v in values) ** 0.5
    return "[" + ",".join(f"{v / norm:.6f}" for v in values) + "]"


@dataclass
class Load:
    """Readers and writers on their own connections; every request's start and duration."""

    url: str
    ids: list[uuid.UUID]
    inserted: list[uuid.UUID] = field(default_factory=list)
    requests: list[tuple[str, str, float, float]] = field(default_factory=list)  # kind, op
    errors: list[str] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # (pid, query_start) of each lock wait of a load connection -> (start, duration) sampled.
    lock_waits: dict[tuple[int, Any], tuple[float, float]] = field(default_factory=dict)

    async def run(self, kind: str, name: str, request: Any) -> None:
        # A request blocked for good fails (and fails the test) instead of hanging it.
        connection = await asyncpg.connect(
            self.url, command_timeout=60, server_settings={"application_name": LOAD_APPLICATION}
        )
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                try:
                    await request(connection)
                except Exception as exc:  # recorded: the test requires none
                    self.errors.append(f"{name}: {exc!r}")
                self.requests.append((kind, name, started, time.monotonic() - started))
                await asyncio.sleep(PAUSE_S)
        finally:
            await connection.close()

    async def by_id(self, connection: asyncpg.Connection) -> None:
        row = await connection.fetchrow(
            "SELECT id, external_id, title, published_at FROM articles WHERE id = $1",
            random.choice(self.ids),
        )
        assert row is not None

    async def nearest(self, connection: asyncpg.Connection) -> None:
        rows = await connection.fetch(
            "SELECT id FROM articles ORDER BY embedding <=> $1::vector LIMIT 10", random_vector()
        )
        assert len(rows) == 10

    async def page(self, connection: asyncpg.Connection) -> None:
        rows = await connection.fetch(
            "SELECT id, external_id, title FROM articles WHERE published_at < $1 "
            "ORDER BY published_at DESC, id DESC LIMIT 20",
            datetime(2026, 3, 1, tzinfo=UTC) + timedelta(hours=random.randrange(1000)),
        )
        assert len(rows) == 20

    async def insert(self, connection: asyncpg.Connection) -> None:
        # The columns of 0001, which every revision has (a writer of any release).
        new_id = uuid.uuid4()
        await connection.execute(
            "INSERT INTO articles (id, external_id, title, body, summary, published_at, "
            "content_hash, embedding, embedding_model) "
            "VALUES ($1, $2, $3, $4, $5, now(), $6, $7::vector, 'all-MiniLM-L6-v2')",
            new_id,
            f"live-{new_id}",
            " ".join(random.choices(WORDS, k=8)).title(),
            " ".join(random.choices(WORDS, k=120)),
            " ".join(random.choices(WORDS, k=25)),
            "0" * 64,
            random_vector(),
        )
        self.inserted.append(new_id)

    async def update(self, connection: asyncpg.Connection) -> None:
        await connection.execute(
            "UPDATE articles SET title = $2, updated_at = now() WHERE id = $1",
            random.choice(self.ids),
            " ".join(random.choices(WORDS, k=8)).title(),
        )

    async def sample_lock_waits(self) -> None:
        """Every load backend waiting for a heavyweight lock, and for how long: the server's
        clock since its query started (these queries take milliseconds when not waiting), at
        the last sample that saw it waiting. Server time, so that a sampler that is itself
        slow to run misses no part of a wait but its very end."""
        connection = await asyncpg.connect(self.url)
        try:
            while not self.stopping.is_set():
                rows = await connection.fetch(
                    "SELECT pid, query_start, "
                    "extract(epoch FROM clock_timestamp() - query_start)::float8 AS waited "
                    "FROM pg_stat_activity "
                    "WHERE application_name = $1 AND wait_event_type = 'Lock'",
                    LOAD_APPLICATION,
                )
                now = time.monotonic()
                for row in rows:
                    wait = (now - row["waited"], row["waited"])
                    self.lock_waits[row["pid"], row["query_start"]] = wait
                await asyncio.sleep(SAMPLE_S)
        finally:
            await connection.close()

    def longest_lock_wait(self, since: float, until: float) -> float:
        return max(
            (
                waited
                for started, waited in self.lock_waits.values()
                if started <= until and started + waited >= since
            ),
            default=0.0,
        )

    def start(self) -> list[asyncio.Task[None]]:
        workers = [
            ("read", "by id", self.by_id),
            ("read", "by id", self.by_id),
            ("read", "nearest 10", self.nearest),
            ("read", "list page", self.page),
            ("write", "insert", self.insert),
            ("write", "update", self.update),
        ]
        tasks = [asyncio.create_task(self.run(*worker)) for worker in workers]
        return [*tasks, asyncio.create_task(self.sample_lock_waits())]

    def slowest(self, kind: str, since: float, until: float) -> tuple[float, str, int]:
        """The longest request of ``kind`` that was running at some point in [since, until]."""
        during = [
            (duration, name)
            for k, name, started, duration in self.requests
            if k == kind and started <= until and started + duration >= since
        ]
        longest = max(during, default=(0.0, "-"))
        return longest[0], longest[1], len(during)


def plain_url(pg_server: EmbeddedPostgres, name: str) -> str:
    return pg_server.url(name)


async def migrate_stepwise(
    url: str, steps: list[tuple[str, str]], windows: list[tuple[str, str, float, float]]
) -> None:
    """One revision at a time; when each ran (its requests are counted once the load stops,
    so that one still blocked when its step ended is counted too)."""
    for direction, target in steps:
        started = time.monotonic()
        if direction == "up":
            await asyncio.to_thread(migrate.upgrade, url, target)
        else:
            await asyncio.to_thread(migrate.downgrade, url, f"{target}-1")
        windows.append((direction, target, started, time.monotonic()))


async def wait_for_requests_after(load: Load, moment: float) -> None:
    """Until every load connection has finished a request that started after ``moment``."""
    async with asyncio.timeout(30):
        while True:
            names = {name for _, name, started, _ in load.requests if started > moment}
            if names >= {"by id", "nearest 10", "list page", "insert", "update"}:
                return
            await asyncio.sleep(0.05)


async def sampler_sees_a_lock_held(url: str, load: Load) -> None:
    """The sampler's own check: a lock held for 0.4 s shows as a wait of about that long."""
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            await connection.execute("LOCK TABLE articles IN ACCESS EXCLUSIVE MODE")
            held_since = time.monotonic()
            await asyncio.sleep(0.4)
        released = time.monotonic()
    finally:
        await connection.close()
    await wait_for_requests_after(load, released)
    assert 0.2 <= load.longest_lock_wait(held_since, released) <= 1.0


async def snapshot(url: str) -> tuple[set[uuid.UUID], int]:
    connection = await asyncpg.connect(url)
    try:
        ids = {r["id"] for r in await connection.fetch("SELECT id FROM articles")}
        count = await connection.fetchval("SELECT count(*) FROM articles")
        return ids, count
    finally:
        await connection.close()


async def check_derived_columns(url: str, seed_ids: list[uuid.UUID]) -> None:
    connection = await asyncpg.connect(url)
    try:
        *setup, query = [s for s in RECOMPUTE.split(";\n") if s.strip()]
        async with connection.transaction():
            for statement in setup:
                await connection.execute(statement)
            assert await connection.fetchval(query) == 0
        # Rows embedded before the pipeline (0003) are ready, not queued again.
        assert (
            await connection.fetchval(
                "SELECT count(*) FROM articles WHERE id = ANY($1) AND embedding_status <> 'ready'",
                seed_ids,
            )
            == 0
        )
    finally:
        await connection.close()


def print_table(table: list[tuple[Any, ...]]) -> None:
    print(f"\n{ARTICLES:,} articles, load average {os.getloadavg()[0]:.2f} at the end")
    print(
        f"{'step':<14}{'duration':>10}{'slowest read':>22}{'slowest write':>22}"
        f"{'longest lock wait':>19}"
    )
    for direction, target, duration, read, write, blocked in table:
        print(
            f"{direction + ' ' + target:<14}{duration:>9.2f}s"
            f"{read[0] * 1000:>9.0f} ms {read[1]:<11}{write[0] * 1000:>9.0f} ms {write[1]:<11}"
            f"{blocked * 1000:>10.0f} ms"
        )


async def test_migrations_under_load_block_nobody_and_keep_every_row(
    pg_server: EmbeddedPostgres,
) -> None:
    url = fresh_database(pg_server, "related_online")
    raw = plain_url(pg_server, "related_online")
    await asyncio.to_thread(migrate.upgrade, url, "0001")

    connection = await asyncpg.connect(raw)
    try:
        # Loaded without the HNSW index, then indexed as 0001 does: a build is many times
        # faster than 20,000 inserts into the graph.
        definition = await connection.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_articles_embedding_hnsw'"
        )
        await connection.execute("DROP INDEX ix_articles_embedding_hnsw")
        # One row per page, room for its new versions: the backfills are then HOT updates (no
        # new entry in the HNSW graph per row), which keeps this test to minutes on 2 cores.
        # Whether anybody waits does not depend on it: each chunk's time is measured and its
        # size adjusted (app.db.online.backfill), however slow a row is to update.
        await connection.execute("ALTER TABLE articles SET (fillfactor = 20)")
        await connection.execute(POPULATE)
        await connection.execute(definition)
        await connection.execute("VACUUM ANALYZE articles")
        seed_ids = [r["id"] for r in await connection.fetch("SELECT id FROM articles")]
    finally:
        await connection.close()
    assert len(seed_ids) == ARTICLES

    script = ScriptDirectory.from_config(migrate.alembic_config(url))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert revisions[0] == "0001"
    up = [("up", r) for r in revisions[1:]]
    # Down to the revision below each one (labelled by the revision undone).
    down = [("down", r) for r in reversed(revisions[1:])]

    load = Load(raw, seed_ids)
    tasks = load.start()
    windows: list[tuple[str, str, float, float]] = []
    try:
        await wait_for_requests_after(load, time.monotonic())
        await sampler_sees_a_lock_held(raw, load)
        await migrate_stepwise(url, up, windows)
        after_up = await snapshot(raw)
        await migrate_stepwise(url, down, windows)
        after_down = await snapshot(raw)
        await migrate_stepwise(url, up, windows)
        await wait_for_requests_after(load, time.monotonic())
    finally:
        load.stopping.set()
        await asyncio.gather(*tasks)
    table = [
        (
            direction,
            target,
            ended - started,
            load.slowest("read", started, ended),
            load.slowest("write", started, ended),
            load.longest_lock_wait(started, ended),
        )
        for direction, target, started, ended in windows
    ]
    print_table(table)

    assert load.errors == []
    # Load ran through every step longer than a pause between requests (a request blocked by a
    # shorter one would have been running during it, and so be counted).
    assert all(
        read[2] > 0 and write[2] > 0 for _, _, duration, read, write, _ in table if duration > 1
    )

    # Every row kept: the seed, and every insert acknowledged during the migrations.
    ids, count = await snapshot(raw)
    expected = set(seed_ids) | set(load.inserted)
    assert count == len(expected) and ids == expected
    assert after_up[0] <= expected and set(seed_ids) <= after_up[0]
    assert after_down[0] <= expected and set(seed_ids) <= after_down[0]
    await check_derived_columns(raw, seed_ids)
    blocked = [
        (direction, target, round(wait, 3))
        for direction, target, _, _, _, wait in table
        if wait >= BLOCKED_LIMIT_S
    ]
    assert blocked == []
    slow = [
        (direction, target, kind, round(slowest[0], 3), slowest[1])
        for direction, target, _, read, write, _ in table
        for kind, slowest in (("read", read), ("write", write))
        if slowest[0] >= SLOWEST_LIMIT_S
    ]
    assert slow == []


async def test_ddl_behind_a_long_transaction_gives_way_to_readers(
    pg_server: EmbeddedPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    url = fresh_database(pg_server, "related_lock_timeout")
    raw = pg_server.url("related_lock_timeout")
    await asyncio.to_thread(migrate.upgrade, url, "0007")
    long = await asyncpg.connect(raw)
    reader = await asyncpg.connect(raw)
    try:
        # A long transaction that has read articles holds its ACCESS SHARE lock until it ends:
        # 0008's ADD COLUMN cannot have its ACCESS EXCLUSIVE lock meanwhile.
        transaction = long.transaction()
        await transaction.start()
        await long.fetchval("SELECT count(*) FROM articles")
        caplog.set_level(logging.WARNING, logger="related.migrations")
        migration = asyncio.create_task(asyncio.to_thread(migrate.upgrade, url, "0008"))
        # Readers get through while the migration waits (each wait ends at the lock timeout
        # and the next try comes after a pause), for as long as we look: 3 s here.
        slowest = 0.0
        looked_since = time.monotonic()
        while time.monotonic() - looked_since < 3:
            started = time.monotonic()
            await reader.fetchval("SELECT count(*) FROM articles")
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.02)
        assert not migration.done()  # still waiting for the long transaction
        assert slowest < BLOCKED_LIMIT_S
        assert "migration gave up on a lock" in caplog.text
        await transaction.rollback()
        async with asyncio.timeout(120):
            await migration
        assert await reader.fetchval("SELECT version_num FROM alembic_version") == "0008"
    finally:
        await long.close()
        await reader.close()


async def test_two_migrators_run_one_after_the_other(pg_server: EmbeddedPostgres) -> None:
    url = fresh_database(pg_server, "related_two_migrators")
    env = {**os.environ, "DATABASE_URL": url, "HF_HUB_OFFLINE": "1"}
    holder = await asyncpg.connect(pg_server.url("related_two_migrators"))
    try:
        # Held here first, so that both processes are surely started before either migrates.
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "app.cli",
                "db",
                "upgrade",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
            )
            for _ in range(2)
        ]
        # Both say they wait for the other migrator, and nothing is migrated meanwhile.
        before = ["", ""]
        async with asyncio.timeout(120):
            for i, process in enumerate(processes):
                assert process.stdout is not None
                while "another process is migrating" not in before[i]:
                    line = (await process.stdout.readline()).decode()
                    assert line, before[i]  # it exited without waiting
                    before[i] += line
        assert await holder.fetchval("SELECT to_regclass('alembic_version')") is None
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await holder.close()

    async with asyncio.timeout(300):
        outputs = [
            before[i] + (await process.communicate())[0].decode()
            for i, process in enumerate(processes)
        ]
    assert [process.returncode for process in processes] == [0, 0], "\n".join(outputs)
    # One ran every revision; the other, let in after it, found the database at head.
    ran = sorted(output.count("Running upgrade") for output in outputs)
    assert ran[0] == 0 and ran[1] >= 14, outputs
    assert all("database at head" in output for output in outputs)
    assert "".join(outputs).count("another process is migrating") == 2


def test_migrations_are_a_release_step_in_the_image_and_compose() -> None:
    # pyyaml comes with the model's libraries (huggingface-hub).
    import yaml

    root = Path(__file__).resolve().parents[1]
    dockerfile = (root / "Dockerfile").read_text()
    assert [line for line in dockerfile.splitlines() if line.startswith("CMD")] == [
        'CMD ["related", "serve"]'
    ]
    assert "RELATED_MIGRATE_ON_START=false" in dockerfile
    services = yaml.safe_load((root / "docker-compose.yml").read_text())["services"]
    assert services["migrate"]["command"] == ["related", "db", "upgrade"]
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
        assert services[name]["environment"]["RELATED_MIGRATE_ON_START"] == "false"
