"""Filtered related queries return `limit` results ranked as exact search would rank them.

Synthetic clustered vectors stand in for embeddings here: this tests search correctness
against an exact scan, not relevance (which the real-model tests cover).
"""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from httpx import AsyncClient

from app.articles.models import Article
from app.related import service
from app.related.repository import Filters, StoredVector, nearest_sql

N_ARTICLES, N_CLUSTERS, DIM = 3000, 60, 384
SOURCES = [f"source-{i}" for i in range(10)]
SOURCE_WEIGHTS = [0.02] + [0.98 / 9] * 9  # source-0 is rare: 2% of the corpus
CATEGORIES = ["world", "business", "sports", "technology", "science"]
START = datetime(2026, 1, 1, tzinfo=UTC)


def corpus(rng: np.random.Generator) -> list[dict[str, Any]]:
    centers = rng.standard_normal((N_CLUSTERS, DIM))
    rows = []
    for i in range(N_ARTICLES):
        v = centers[rng.integers(N_CLUSTERS)] + 0.6 * rng.standard_normal(DIM)
        rows.append(
            {
                "id": uuid.uuid4(),
                "external_id": f"syn-{i}",
                "title": f"Synthetic {i}",
                "source": str(rng.choice(SOURCES, p=SOURCE_WEIGHTS)),
                "category": str(rng.choice(CATEGORIES)),
                "language": "en" if rng.random() < 0.8 else "de",
                "published_at": START + timedelta(hours=float(rng.uniform(0, 24 * 100))),
                "content_hash": "x" * 64,
                "embedding": (v / np.linalg.norm(v)).astype(np.float32),
            }
        )
    return rows


async def store(app: Any, rows: list[dict[str, Any]]) -> None:
    async with app.state.database.sessions() as session, session.begin():
        session.add_all(
            Article(
                **{**r, "embedding": r["embedding"].tolist()},
                embedding_model=app.state.encoder.model_name,
                embedding_status="ready",  # stored with its vector: nothing for workers to do
            )
            for r in rows
        )


def exact_top(rows: list[dict[str, Any]], query: dict[str, Any], keep: Any, k: int) -> list[str]:
    candidates = [r for r in rows if r is not query and keep(r)]
    scores = np.array([float(r["embedding"] @ query["embedding"]) for r in candidates])
    order = np.argsort(-scores, kind="stable")[:k]
    return [candidates[i]["external_id"] for i in order]


FILTERS: list[tuple[dict[str, Any], Any]] = [
    ({}, lambda r: True),
    ({"source": "source-0"}, lambda r: r["source"] == "source-0"),
    ({"category": "sports"}, lambda r: r["category"] == "sports"),
    ({"language": "de"}, lambda r: r["language"] == "de"),
    (
        {"exclude_source": ["source-1", "source-2", "source-3"]},
        lambda r: r["source"] not in {"source-1", "source-2", "source-3"},
    ),
    (
        {"since": "2026-02-01T00:00:00Z", "until": "2026-02-08T00:00:00Z", "category": "world"},
        lambda r: (
            datetime(2026, 2, 1, tzinfo=UTC) <= r["published_at"] < datetime(2026, 2, 8, tzinfo=UTC)
            and r["category"] == "world"
        ),
    ),
]


@pytest.mark.parametrize(
    "exact_scan_rows",
    [
        service.EXACT_SCAN_ROWS,  # this corpus is small: every restrictive filter scans exactly
        0,  # the index first, the exact scan only when it comes back short (large corpora)
    ],
    ids=["planner-estimate", "index-first"],
)
async def test_filtered_related_matches_exact_search(
    client: AsyncClient, app: Any, monkeypatch: pytest.MonkeyPatch, exact_scan_rows: int
) -> None:
    monkeypatch.setattr(service, "EXACT_SCAN_ROWS", exact_scan_rows)
    if exact_scan_rows == 0:  # nor for a small share of the table
        monkeypatch.setattr(service, "EXACT_SCAN_SHARE", 0.0)
    rng = np.random.default_rng(7)
    rows = corpus(rng)
    await store(app, rows)

    recalls = []
    for query in [rows[int(i)] for i in rng.choice(N_ARTICLES, 15, replace=False)]:
        for params, keep in FILTERS:
            expected = exact_top(rows, query, keep, 10)
            response = await client.get(
                f"/v1/articles/{query['external_id']}/related",
                params={**params, "limit": 10, "ranking": "vector", "dedupe": "false"},
            )
            # The hybrid ranking reads the same candidates, with their features, by either path.
            hybrid = await client.get(
                f"/v1/articles/{query['external_id']}/related", params={**params, "limit": 10}
            )
            assert hybrid.status_code == 200
            assert len(hybrid.json()["items"]) == min(10, len(expected))
            assert response.status_code == 200
            got = [r["external_id"] for r in response.json()["items"]]
            # Always `limit` results when that many articles match.
            assert len(got) == len(expected), (params, len(got), len(expected))
            if expected:
                recalls.append(len(set(got) & set(expected)) / len(expected))

    recall = float(np.mean(recalls))
    print(f"recall@10 over {len(recalls)} filtered queries: {recall:.4f}")
    assert recall >= 0.98, recall


async def test_the_exact_scan_never_walks_the_hnsw_index(client: AsyncClient, app: Any) -> None:
    """The exact statement ranks the rows its filters keep, whatever the planner prefers: even
    where the index statement walks the HNSW index."""
    rng = np.random.default_rng(11)
    rows = corpus(rng)[:600]
    model = app.state.encoder.model_name
    await store(app, rows)
    filters = Filters(exclude_id=rows[0]["id"])
    async with app.state.database.read_pool.acquire() as connection, connection.transaction():
        await connection.execute("ANALYZE articles")
        # Sequential scans penalised: the index statement then walks the HNSW index.
        await connection.execute("SET LOCAL enable_seqscan = off")

        async def plan(exact: bool) -> str:
            sql, args = nearest_sql(rows[0]["embedding"], model, filters, 10, False, exact)
            lines = await connection.fetch(f"EXPLAIN {sql}", *args)
            return "\n".join(line[0] for line in lines)

        assert "ix_articles_embedding_hnsw" in await plan(exact=False)
        assert "ix_articles_embedding_hnsw" not in await plan(exact=True)


@pytest.mark.parametrize("sites", [None, ("default",)], ids=["every site", "one site"])
async def test_the_unfiltered_walk_keeps_one_generic_plan(
    client: AsyncClient, app: Any, sites: tuple[str, ...] | None
) -> None:
    """Planned once, not on every page view: with its LIMIT written in, PostgreSQL keeps a
    generic plan for the unfiltered statement, and that plan walks the HNSW index; so does
    a single publisher's key, whose site clause keeps every row."""
    rng = np.random.default_rng(12)
    rows = corpus(rng)[:600]
    model = app.state.encoder.model_name
    await store(app, rows)
    unfiltered = [Filters(sites=sites, exclude_id=r["id"]) for r in rows[:12]]
    async with app.state.database.read_pool.acquire() as connection, connection.transaction():
        await connection.execute("ANALYZE articles")
        # A table this small is cheaper to read whole, or (with a site clause, through an index
        # that holds the site) to sort whole; a large one is not.
        await connection.execute("SET LOCAL enable_seqscan = off")
        await connection.execute("SET LOCAL enable_sort = off")
        for row, filters in zip(rows, unfiltered, strict=False):
            sql, args = nearest_sql(row["embedding"], model, filters, 10, False, False)
            await connection.fetch(sql, *args)
        plans = {
            record["statement"]: (record["generic_plans"], record["custom_plans"])
            for record in await connection.fetch(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
            )
        }
        unfiltered_sql, args = nearest_sql(
            rows[0]["embedding"], model, unfiltered[0], 10, False, False
        )
        generic, _ = plans[unfiltered_sql]
        assert generic >= 6, plans[unfiltered_sql]  # custom for the first five, then generic
        plan = await connection.fetch(f"EXPLAIN (GENERIC_PLAN) {unfiltered_sql}", *args)
        assert "ix_articles_embedding_hnsw" in "\n".join(line[0] for line in plan)


async def test_the_exact_scan_of_a_source_or_category_reads_only_its_index(
    client: AsyncClient, app: Any
) -> None:
    """Migration 0009's covering indexes hold everything the exact statement reads of the rows
    a source or category filter keeps, exclusions included: an index-only scan."""
    rng = np.random.default_rng(13)
    rows = corpus(rng)[:600]
    model = app.state.encoder.model_name
    await store(app, rows)
    async with app.state.database.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.exec_driver_sql("VACUUM ANALYZE articles")  # the visibility map
    excluded = dict(exclude_id=rows[0]["id"], exclude_ids=[rows[1]["external_id"]])
    async with app.state.database.read_pool.acquire() as connection, connection.transaction():
        # A table this small is cheaper to read whole; what is tested is that it need not be.
        await connection.execute("SET LOCAL enable_seqscan = off")
        await connection.execute("SET LOCAL enable_bitmapscan = off")
        for filters, index in (
            (Filters(source=["source-0"], **excluded), "ix_articles_source_published_at"),
            (Filters(category=["science"], **excluded), "ix_articles_category_published_at"),
        ):
            # A draft's vector; a stored article's, read by the statement, the article itself
            # let through (the probe): the filtered rows still come from their index alone.
            for vector, probe in (
                (rows[0]["embedding"], None),
                (StoredVector(rows[0]["id"]), rows[0]["id"]),
            ):
                sql, args = nearest_sql(vector, model, filters, 10, True, True, probe)
                lines = await connection.fetch(f"EXPLAIN {sql}", *args)
                plan = "\n".join(line[0] for line in lines)
                assert f"Index Only Scan using {index}" in plan, plan
