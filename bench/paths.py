"""The search decisions of app/related/service.py, measured on the bench corpus of bench/related.py.

    .venv/bin/python bench/paths.py [--queries 200] [--lost-queries 3000]

Needs the corpus bench/related.py builds (its embedded PostgreSQL in .bench-cache/related-pg,
or --database-url). For each of bench/related.py's filters (none, a 2% source, the newest 0.1%)
and each candidate count (10: plain, 50: hybrid), the same --queries stored articles are searched
both ways, interleaved article by article (so load on the machine falls on both alike):

* walk: RelatedRepository.nearest as the service walks the index (the read pool's settings:
  ef_search, iterative scan in strict order);
* exact: the same statement ranking every row the filters keep.

Printed: median and mean client-side milliseconds of each, how often the walk came back short of
the exact answer's length, and the walk's recall@10 against the exact scan (mean, min).

Lost walks (unfiltered): for --lost-queries articles, the walk at the read pool's ef_search with
the article let through (the probe), against exact top-10 from numpy; the articles whose walk
did not find the article itself, and, for those, which ef_search finds it (x4 steps to 1000).

A JSON record goes to bench/results/paths-<UTC timestamp>.json.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.config import Settings
from app.db.embedded import EmbeddedPostgres
from app.db.reads import create_read_pool, read_ef_search
from app.related.repository import Filters, RelatedRepository
from app.related.service import MAX_EF_SEARCH, WIDER_WALK
from bench.related import ROOT, BenchFilter, bench_filters, git_commit, load_average


def filters_of(bench_filter: BenchFilter, article_id: Any) -> Filters:
    if bench_filter.param == "source":
        return Filters(source=[bench_filter.value or ""], exclude_id=article_id)
    if bench_filter.param == "since":
        return Filters(since=bench_filter.sql_value, exclude_id=article_id)
    return Filters(exclude_id=article_id)


async def walk_or_exact(
    pool: asyncpg.Pool, model: str, queries: int, record: dict[str, Any]
) -> None:
    rows = await pool.fetch(
        "SELECT id, embedding FROM articles ORDER BY md5(id::text) LIMIT $1", queries
    )
    print(f"walk or exact, {len(rows)} articles; load average {load_average()}")
    for bench_filter in await bench_filters(pool):
        for wanted, features in ((10, False), (50, True)):
            times: dict[str, list[float]] = {"walk": [], "exact": []}
            short, recalls = 0, []
            async with pool.acquire() as conn:
                repository = RelatedRepository(conn)
                for row in rows:
                    filters = filters_of(bench_filter, row["id"])
                    found = {}
                    for how in ("walk", "exact"):
                        started = time.perf_counter()
                        found[how] = await repository.nearest(
                            row["embedding"],
                            model,
                            filters,
                            wanted,
                            with_features=features,
                            exact=how == "exact",
                        )
                        times[how].append((time.perf_counter() - started) * 1000)
                    exact = {r["id"] for r in found["exact"][:10]}
                    walk = {r["id"] for r in found["walk"][:10]}
                    short += len(found["walk"]) < len(found["exact"])
                    recalls.append(len(exact & walk) / len(exact) if exact else 1.0)
            result = {
                "filter": bench_filter.name,
                "share": bench_filter.share,
                "candidates": wanted,
                "walk_median_ms": statistics.median(times["walk"]),
                "walk_mean_ms": statistics.mean(times["walk"]),
                "exact_median_ms": statistics.median(times["exact"]),
                "exact_mean_ms": statistics.mean(times["exact"]),
                "walk_short": short,
                "walk_recall_mean": float(np.mean(recalls)),
                "walk_recall_min": float(min(recalls)),
                "load": load_average(),
            }
            record["walk_or_exact"].append(result)
            print(
                f"  filter {bench_filter.name:<5} {wanted} rows: walk median "
                f"{result['walk_median_ms']:.2f} ms (mean {result['walk_mean_ms']:.2f}), exact "
                f"median {result['exact_median_ms']:.2f} ms (mean {result['exact_mean_ms']:.2f}); "
                f"walk short {short} of {len(rows)}, walk recall@10 "
                f"{result['walk_recall_mean']:.3f} (min {result['walk_recall_min']:.2f}); "
                f"load {result['load']}",
                flush=True,
            )


async def lost_walks(
    pool: asyncpg.Pool, model: str, ef_search: int, queries: int, record: dict[str, Any]
) -> None:
    rows = await pool.fetch("SELECT id, embedding FROM articles WHERE embedding_model = $1", model)
    ids = [r["id"] for r in rows]
    vectors = np.vstack([r["embedding"] for r in rows]).astype(np.float32)
    picks = np.random.default_rng(1).choice(len(ids), min(queries, len(ids)), replace=False)
    sql = (
        "SELECT id FROM articles WHERE (embedding_model = $2 AND id <> $3) OR id = $3 "
        "ORDER BY embedding <=> $1 LIMIT 11"
    )
    lost, wrong, recalls = [], 0, []
    async with pool.acquire() as conn:
        for i in picks:
            similar = vectors @ vectors[i]
            similar[i] = -2
            exact = {ids[j] for j in np.argpartition(-similar, 10)[:10]}
            got = [r["id"] for r in await conn.fetch(sql, vectors[i], model, ids[i])]
            others = {g for g in got if g != ids[i]}
            recall = len(others & exact) / 10
            recalls.append(recall)
            wrong += recall == 0
            if ids[i] not in got:
                lost.append((int(i), recall))
        found_at: dict[int, int] = {}
        for i, _ in lost:
            ef = ef_search
            async with conn.transaction():
                while True:
                    ef = min(ef * WIDER_WALK, MAX_EF_SEARCH)
                    await conn.execute("SELECT set_config('hnsw.ef_search', $1, true)", str(ef))
                    got = [r["id"] for r in await conn.fetch(sql, vectors[i], model, ids[i])]
                    if ids[i] in got or ef >= MAX_EF_SEARCH:
                        break
            key = ef if ids[i] in got else -1
            found_at[key] = found_at.get(key, 0) + 1
    result = {
        "queries": len(picks),
        "ef_search": ef_search,
        "recall_mean": float(np.mean(recalls)),
        "recall_min": float(min(recalls)),
        "recall_zero": wrong,
        "article_not_found": len(lost),
        "recall_zero_among_not_found": sum(r == 0 for _, r in lost),
        "recall_below_0_5_article_found": sum(r < 0.5 for r in recalls)
        - sum(r < 0.5 for _, r in lost),
        "found_again_at_ef_search": {str(k): v for k, v in sorted(found_at.items())},
        "load": load_average(),
    }
    record["lost_walks"] = result
    print(
        f"lost walks, {len(picks)} articles at ef_search {ef_search}, unfiltered: recall@10 "
        f"{result['recall_mean']:.3f} (min {result['recall_min']:.2f}, {wrong} at 0.00); the "
        f"article itself not found by {len(lost)} walks ({result['recall_zero_among_not_found']} "
        f"of them at recall 0.00); walked again x{WIDER_WALK}, found at ef_search "
        f"{result['found_again_at_ef_search']} (-1: not even at {MAX_EF_SEARCH}); recall < 0.5 "
        f"with the article found: {result['recall_below_0_5_article_found']}; "
        f"load {result['load']}"
    )


async def main(args: argparse.Namespace, url: str) -> None:
    settings = Settings()
    pool = await create_read_pool(url, settings)
    model = await pool.fetchval("SELECT embedding_model FROM articles LIMIT 1")
    started = datetime.now(UTC)
    record: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join(["bench/paths.py", *sys.argv[1:]]),
        "commit": git_commit(),
        "articles": await pool.fetchval("SELECT count(*) FROM articles"),
        "ef_search": read_ef_search(settings),
        "walk_or_exact": [],
    }
    try:
        await walk_or_exact(pool, model, args.queries, record)
        if args.lost_queries:
            await lost_walks(pool, model, read_ef_search(settings), args.lost_queries, record)
    finally:
        await pool.close()
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"paths-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"record: {path}")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--lost-queries", type=int, default=3000)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".bench-cache")
    parser.add_argument("--database-url", help="the bench corpus elsewhere")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    try:
        if args.database_url:
            runner.run(main(args, args.database_url))
            return
        server = EmbeddedPostgres(args.cache_dir / "related-pg", {"shared_buffers": "1GB"}).join()
        try:
            runner.run(main(args, server.url()))
        finally:
            server.leave()
    finally:
        runner.close()


if __name__ == "__main__":
    run()
