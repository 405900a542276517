"""HNSW at a million vectors: build time, index size, latency and recall against exact search.

    .venv/bin/python bench/scale.py [--vectors 1000000] [--queries 200] [--ef 40,100,200,400]
        [--m 16] [--ef-construction 200] [--maintenance-work-mem 4GB] [--parallel-workers 1]
        [--database-url postgresql://...]

Its own database (never the service's): without --database-url, a fresh embedded PostgreSQL
(app/db/embedded.py) in a temporary directory, deleted at the end. The table holds what the
related query reads at this scale: a 384-d vector (cosine HNSW, the same opclass and, by
default, the same m and ef_construction as the articles index) and a ``source`` whose most
common value holds 2% of the rows, with a b-tree index, like ix_articles_source_published_at.

Vectors are synthetic and clustered: unit-norm cluster centres, each vector a centre plus
Gaussian noise (cosine about 0.8 to its centre, about 0.64 between two members of a cluster, the
spread of a story's articles under all-MiniLM-L6-v2), cluster sizes drawn from a Zipf-like law so
a few stories are large. Queries are fresh noisy copies of existing centres, not stored rows.
Exact top-10 comes from numpy over the same vectors in memory (float32 dot products, the same
cosine the database computes), so recall@10 is measured against the truth, not another index.

Per ef_search: one client, queries one after another, p50 and p99 of the round trip (asyncpg,
prepared statement) and mean recall@10. Filtered (source = the 2% value): the HNSW walk with
the filter applied after it (iterative scan off: about 2% of ef_search rows come back), the walk
with pgvector 0.8's iterative scan in strict order (what the service's read connections set:
it walks on until 10 rows pass the filter), and the exact scan of the filtered rows from a
covering index. At a million rows the 2% filter keeps 20,000: the service ranks it exactly
(app.related.service.exact_first: under 5% of the table), from these figures.
"""

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.record import Record

DIMENSION = 384
K = 10
NEAREST = f"SELECT id FROM items ORDER BY embedding <=> $1 LIMIT {K}"
NEAREST_FILTERED = f"SELECT id FROM items WHERE source = $2 ORDER BY embedding <=> $1 LIMIT {K}"
# The service's exact statement (app/related/repository.py): the fence keeps HNSW out of it.
EXACT_FILTERED = (
    "SELECT id FROM (SELECT id, embedding <=> $1 AS distance FROM items WHERE source = $2 "
    f"OFFSET 0) AS kept ORDER BY distance LIMIT {K}"
)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(
    rng: np.random.Generator, n: int, clusters: int, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors around ``clusters`` centres; the centres are returned for queries."""
    centres = unit(rng.standard_normal((clusters, DIMENSION), dtype=np.float32))
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.6
    membership = rng.choice(clusters, size=n, p=weights / weights.sum())
    vectors = np.empty((n, DIMENSION), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        members = membership[start : start + step]
        sigma = noise / np.sqrt(DIMENSION)
        noisy = centres[members] + sigma * rng.standard_normal(
            (len(members), DIMENSION), dtype=np.float32
        )
        vectors[start : start + step] = unit(noisy)
    return vectors, centres


def sources_for(rng: np.random.Generator, n: int) -> np.ndarray:
    """Source ids: 0 holds 2% of the rows, the rest spread over 400 others."""
    sources = rng.integers(1, 401, size=n).astype(np.int32)
    sources[rng.random(n) < 0.02] = 0
    return sources


def exact_top(vectors: np.ndarray, queries: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Row indexes of the K nearest by cosine (vectors are unit norm: dot product)."""
    tops = []
    for q in queries:
        scores = vectors @ q
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        best = np.argpartition(-scores, K)[:K]
        tops.append(best[np.argsort(-scores[best])])
    return np.array(tops)


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p))


async def load(conn: asyncpg.Connection, vectors: np.ndarray, sources: np.ndarray) -> float:
    await conn.execute("DROP TABLE IF EXISTS items")
    await conn.execute(
        f"CREATE TABLE items (id integer PRIMARY KEY, source integer NOT NULL, "
        f"embedding vector({DIMENSION}) NOT NULL)"
    )
    started = time.perf_counter()
    step = 50_000
    for start in range(0, len(vectors), step):
        records = [
            (start + i, int(sources[start + i]), vectors[start + i])
            for i in range(min(step, len(vectors) - start))
        ]
        await conn.copy_records_to_table(
            "items", records=records, columns=["id", "source", "embedding"]
        )
    await conn.execute("CREATE INDEX ON items (source)")
    await conn.execute("VACUUM ANALYZE items")
    return time.perf_counter() - started


async def timed_queries(
    conn: asyncpg.Connection, sql: str, queries: np.ndarray, *args: Any
) -> tuple[list[float], list[list[int]]]:
    statement = await conn.prepare(sql)
    for q in queries[:5]:  # warm-up: plan cache, first index pages
        await statement.fetch(q, *args)
    latencies, results = [], []
    for q in queries:
        started = time.perf_counter()
        rows = await statement.fetch(q, *args)
        latencies.append((time.perf_counter() - started) * 1000)
        results.append([r["id"] for r in rows])
    return latencies, results


async def plan_of(conn: asyncpg.Connection, query: np.ndarray) -> str:
    """Which index the planner picked for the filtered query: it decides, not this script."""
    lines = await conn.fetch("EXPLAIN (COSTS OFF) " + NEAREST_FILTERED, query, 0)
    plan = " ".join(r[0] for r in lines)
    if "items_embedding_hnsw" in plan:
        return "HNSW walk"
    return "exact (source index)" if "items_source_idx" in plan else "exact (seq scan)"


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return statistics.mean(
        len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)
    )


def row(query: str, ef: int | None, latencies: list[float], recall_10: float) -> dict[str, Any]:
    return {
        "query": query,
        "ef_search": ef,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "recall_at_10": round(recall_10, 3),
    }


async def run(args: argparse.Namespace, url: str) -> None:
    record = Record("scale")
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(args.seed)
    clusters = max(10, args.vectors // 50)
    started = time.perf_counter()
    vectors, centres = clustered(rng, args.vectors, clusters, args.noise)
    sources = sources_for(rng, args.vectors)
    picked = rng.choice(clusters, size=args.queries, replace=False)
    noise = (args.noise / np.sqrt(DIMENSION)) * rng.standard_normal(
        (args.queries, DIMENSION), dtype=np.float32
    )
    queries = unit(centres[picked] + noise)
    print(
        f"generated {args.vectors:,} vectors in {clusters:,} clusters "
        f"({time.perf_counter() - started:.1f} s); load average {load_average()}",
        flush=True,
    )
    truth = exact_top(vectors, queries, None)
    truth_filtered = exact_top(vectors, queries, sources == 0)

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        await register_vector(conn)
        pgvector = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname='vector'")
        server = await conn.fetchval("SHOW server_version")
        seconds = await load(conn, vectors, sources)
        print(f"loaded with COPY in {seconds:.1f} s; load average {load_average()}", flush=True)
        del vectors

        await conn.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
        await conn.execute(f"SET max_parallel_maintenance_workers = {args.parallel_workers}")
        load_before = load_average()
        started = time.perf_counter()
        await conn.execute(
            "CREATE INDEX items_embedding_hnsw ON items USING hnsw (embedding vector_cosine_ops) "
            f"WITH (m = {args.m}, ef_construction = {args.ef_construction})"
        )
        build = time.perf_counter() - started
        index_size = await conn.fetchval("SELECT pg_relation_size('items_embedding_hnsw')")
        table_size = await conn.fetchval("SELECT pg_table_size('items')")
        print(
            f"\nPostgreSQL {server}, pgvector {pgvector} (iterative scans: "
            f"{'available' if tuple(map(int, pgvector.split('.')[:2])) >= (0, 8) else 'no, 0.8+'})"
        )
        print(
            f"HNSW build: {build:.0f} s ({build / 60:.1f} min) for {args.vectors:,} vectors, "
            f"m={args.m}, ef_construction={args.ef_construction}, maintenance_work_mem="
            f"{args.maintenance_work_mem}, max_parallel_maintenance_workers="
            f"{args.parallel_workers}; load average before {load_before}, after {load_average()}"
        )
        print(
            f"index size {index_size / 2**20:,.0f} MiB; table (heap + TOAST) "
            f"{table_size / 2**20:,.0f} MiB"
        )

        print(f"\n{'query':<40} {'ef_search':>9} {'p50 ms':>8} {'p99 ms':>8} {'recall@10':>10}")
        for ef in args.ef:
            await conn.execute(f"SET hnsw.ef_search = {ef}")
            latencies, found = await timed_queries(conn, NEAREST, queries)
            print(
                f"{'unfiltered, HNSW':<40} {ef:>9} {percentile(latencies, 50):>8.2f} "
                f"{percentile(latencies, 99):>8.2f} {recall(found, truth):>10.3f}",
                flush=True,
            )
            rows.append(row("unfiltered, HNSW", ef, latencies, recall(found, truth)))
        for iterative in ("off", "strict_order"):
            await conn.execute(f"SET hnsw.iterative_scan = {iterative}")
            for ef in args.ef:
                await conn.execute(f"SET hnsw.ef_search = {ef}")
                latencies, found = await timed_queries(conn, NEAREST_FILTERED, queries, 0)
                short = statistics.mean(len(f) for f in found)
                plan = await plan_of(conn, queries[0])
                if iterative != "off" and plan.startswith("HNSW"):
                    plan += ", iterative"
                name = "2% filter, " + plan
                print(
                    f"{name:<40} {ef:>9} {percentile(latencies, 50):>8.2f} "
                    f"{percentile(latencies, 99):>8.2f} {recall(found, truth_filtered):>10.3f}"
                    f"  (mean {short:.1f} rows of {K})",
                    flush=True,
                )
                rows.append(row(name, ef, latencies, recall(found, truth_filtered)))
                rows[-1]["rows_back"] = round(short, 1)
        await conn.execute("RESET hnsw.iterative_scan")
        await conn.execute("RESET hnsw.ef_search")
        # The exact scan from an index that carries the vectors (as migration 0009's source and
        # category indexes do): an index-only scan instead of a heap page per filtered row.
        started = time.perf_counter()
        await conn.execute(
            "CREATE INDEX items_source_covering ON items (source) INCLUDE (id, embedding)"
        )
        await conn.execute("VACUUM items")  # the visibility map that index-only scans need
        covering_build = time.perf_counter() - started
        covering_size = await conn.fetchval("SELECT pg_relation_size('items_source_covering')")
        latencies, found = await timed_queries(conn, EXACT_FILTERED, queries, 0)
        plan = " ".join(r[0] for r in await conn.fetch("EXPLAIN " + EXACT_FILTERED, queries[0], 0))
        print(
            f"{'2% filter, exact, covering index':<40} {'-':>9} "
            f"{percentile(latencies, 50):>8.2f} {percentile(latencies, 99):>8.2f} "
            f"{recall(found, truth_filtered):>10.3f}  (index-only: "
            f"{'Index Only Scan using items_source_covering' in plan}; built in "
            f"{covering_build:.0f} s, {covering_size / 2**20:,.0f} MiB)"
        )
        rows.append(
            row("2% filter, exact, covering index", None, latencies, recall(found, truth_filtered))
        )
        await conn.execute("DROP INDEX items_source_covering")
        await conn.execute("SET enable_indexscan = off")
        latencies, found = await timed_queries(conn, NEAREST, queries[: args.exact_queries])
        print(
            f"{'unfiltered, exact (no index)':<40} {'-':>9} {percentile(latencies, 50):>8.2f} "
            f"{percentile(latencies, 99):>8.2f} "
            f"{recall(found, truth[: args.exact_queries]):>10.3f}"
        )
        rows.append(
            row("unfiltered, exact", None, latencies, recall(found, truth[: args.exact_queries]))
        )
        print(f"\nload average at the end {load_average()}")
        record.save(
            vectors=args.vectors,
            postgresql=server,
            pgvector=pgvector,
            m=args.m,
            ef_construction=args.ef_construction,
            maintenance_work_mem=args.maintenance_work_mem,
            copy_s=round(seconds, 1),
            hnsw_build_s=round(build),
            hnsw_load_average_before=load_before,
            index_mib=round(index_size / 2**20),
            table_mib=round(table_size / 2**20),
            covering_index_build_s=round(covering_build),
            covering_index_mib=round(covering_size / 2**20),
            queries=rows,
        )
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--exact-queries", type=int, default=20, help="exact scans timed")
    parser.add_argument(
        "--ef", type=lambda s: [int(x) for x in s.split(",")], default=[40, 100, 200, 400]
    )
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--maintenance-work-mem", default="4GB")
    parser.add_argument("--parallel-workers", type=int, default=1)
    parser.add_argument("--noise", type=float, default=0.75, help="noise norm around a centre")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--database-url", help="an empty database to use (default: embedded)")
    args = parser.parse_args()

    if args.database_url:
        asyncio.run(run(args, args.database_url))
        return
    from app.db.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="related-scale-") as tmp:
        server = EmbeddedPostgres(Path(tmp)).join()
        try:
            server.create_database("scale")
            print(f"embedded PostgreSQL in {tmp} (pid {os.getpid()})", file=sys.stderr)
            asyncio.run(run(args, server.url("scale")))
        finally:
            server.leave()


if __name__ == "__main__":
    main()
