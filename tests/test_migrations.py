"""Alembic is the only way the schema is made: up, down, up again, and no drift from the models."""

import asyncio
import re
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.articles.models import COVERED_BY_FILTER_INDEXES, SEARCH_DOCUMENT
from app.db import migrate
from app.db.base import Base
from tests.conftest import fresh_database

DATABASE = "related_migrations"


@pytest.fixture
def scratch_url(pg_server: Any) -> str:
    return fresh_database(pg_server, DATABASE)


async def _state(url: str) -> dict[str, Any]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:

            def read(sync_conn: Any) -> dict[str, Any]:
                inspector = inspect(sync_conn)
                tables = set(inspector.get_table_names())
                found = inspector.get_indexes("articles") if "articles" in tables else []
                diff = compare_metadata(MigrationContext.configure(sync_conn), Base.metadata)
                return {
                    "tables": tables,
                    "indexes": {i["name"] for i in found},
                    "included": {
                        i["name"]: i.get("dialect_options", {}).get("postgresql_include", [])
                        for i in found
                    },
                    "diff": diff,
                }

            state = await conn.run_sync(read)
            state["vector"] = await conn.scalar(
                text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            )
            # compare_metadata only warns when a column is generated in one and not the other.
            state["search_vector_generated"] = await conn.scalar(
                text(
                    "SELECT attgenerated = 's' FROM pg_attribute WHERE attrelid = "
                    "to_regclass('articles') AND attname = 'search_vector'"
                )
            )
            state["triggers"] = set(
                (
                    await conn.execute(
                        text(
                            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
                            "AND tgrelid = to_regclass('articles')"
                        )
                    )
                ).scalars()
            )
            state["hnsw"] = await conn.scalar(
                text(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_articles_embedding_hnsw'"
                )
            )
            return state
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade_without_drift(scratch_url: str) -> None:
    await asyncio.to_thread(migrate.upgrade, scratch_url)
    state = await _state(scratch_url)
    assert "articles" in state["tables"]
    assert state["vector"] is not None
    assert "hnsw" in state["hnsw"] and "vector_cosine_ops" in state["hnsw"]
    assert {"ix_articles_published_at_id", "ix_articles_source_published_at"} <= state["indexes"]
    assert state["diff"] == []  # what `alembic check` verifies
    # search_vector is a plain column the trigger keeps (0002, 0014), as the model says.
    assert state["search_vector_generated"] is False
    assert {"articles_fill_search_vector", "articles_fill_lexemes"} <= state["triggers"]
    # ...which does not compare an index's INCLUDE columns.
    declared = {
        index.name: list(index.dialect_options["postgresql"]["include"] or [])
        for index in Base.metadata.tables["articles"].indexes
    }
    assert {name: state["included"][name] for name in declared} == declared
    assert declared["ix_articles_source_published_at"] == COVERED_BY_FILTER_INDEXES
    # ...nor the HNSW graph's build options (m, ef_construction: migration 0010).
    hnsw = next(i for i in Base.metadata.tables["articles"].indexes if "hnsw" in i.name)
    built = dict(re.findall(r"(\w+)='(\d+)'", state["hnsw"]))
    assert built == {k: str(v) for k, v in hnsw.dialect_options["postgresql"]["with"].items()}
    assert built["ef_construction"] == "200"

    await asyncio.to_thread(migrate.downgrade, scratch_url, "base")
    assert "articles" not in (await _state(scratch_url))["tables"]

    await asyncio.to_thread(migrate.upgrade, scratch_url)
    assert (await _state(scratch_url))["diff"] == []


async def test_0014_turns_an_old_generated_search_vector_into_the_trigger_kept_column(
    scratch_url: str,
) -> None:
    await asyncio.to_thread(migrate.upgrade, scratch_url, "0013")
    engine = create_async_engine(scratch_url)
    try:
        async with engine.begin() as conn:
            # search_vector as the first 0002 made it: a STORED generated column, no trigger.
            await conn.execute(text("DROP TRIGGER articles_fill_search_vector ON articles"))
            await conn.execute(text("DROP FUNCTION articles_fill_search_vector()"))
            await conn.execute(text("ALTER TABLE articles DROP COLUMN search_vector"))
            await conn.execute(
                text(
                    "ALTER TABLE articles ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
                    f"({SEARCH_DOCUMENT}) STORED"
                )
            )
            await conn.execute(text(INSERT.format(external_id="before")))
            filenode = await conn.scalar(text("SELECT pg_relation_filenode('articles')"))

        await asyncio.to_thread(migrate.upgrade, scratch_url)

        async with engine.begin() as conn:
            # Not rewritten: the same file, the stored values kept.
            assert await conn.scalar(text("SELECT pg_relation_filenode('articles')")) == filenode
            await conn.execute(text(INSERT.format(external_id="after")))
            await conn.execute(
                text("UPDATE articles SET summary = 'flooded harbour' WHERE external_id = 'before'")
            )
            rows = (
                await conn.execute(
                    text(
                        "SELECT external_id, search_vector::text FROM articles ORDER BY external_id"
                    )
                )
            ).all()
        assert rows == [
            ("after", "'rain':2 'storm':1"),
            ("before", "'flood':2 'harbour':3 'storm':1"),  # the trigger, on update
        ]
        state = await _state(scratch_url)
        assert state["search_vector_generated"] is False
        assert state["diff"] == []
    finally:
        await engine.dispose()


INSERT = (
    "INSERT INTO articles (id, external_id, title, body, summary, published_at, content_hash) "
    "VALUES (gen_random_uuid(), '{external_id}', 'Storm', '', 'rain', now(), 'x')"
)


async def test_0015_leaves_the_planner_knowing_the_site_column(scratch_url: str) -> None:
    """Without statistics for `site`, `site = 'default'` is taken for 0.5% of the table and a
    single publisher's related request reads the whole table instead of walking the index."""
    await asyncio.to_thread(migrate.upgrade, scratch_url, "0014")
    engine = create_async_engine(scratch_url)
    try:
        async with engine.begin() as conn:
            for n in range(20):
                await conn.execute(text(INSERT.format(external_id=f"before-{n}")))
        await asyncio.to_thread(migrate.upgrade, scratch_url, "0015")
        async with engine.begin() as conn:
            frequent = await conn.scalar(
                text(
                    "SELECT most_common_freqs[1] FROM pg_stats "
                    "WHERE tablename = 'articles' AND attname = 'site'"
                )
            )
        assert frequent == 1.0
    finally:
        await engine.dispose()
