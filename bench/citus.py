"""Related search on a Citus cluster against one PostgreSQL, on the same synthetic corpus.

    .venv/bin/python bench/citus.py [--articles 20000] [--sites 20] [--queries 150]

A coordinator and two workers (app.db.citus_cluster, Citus built from ../shared/vendor and
cached) and one embedded PostgreSQL, in scratch directories under .bench-cache/citus; both
databases migrated to head (0016 distributes `articles` on the cluster) and loaded with the same
--articles synthetic articles (COPY): unit vectors around 1,000 story centres, article i in
site-(i mod --sites).

For --queries stored articles, RelatedRepository.nearest (10 rows, by our id: the statements of
GET related with ranking=vector) is timed on each database for a key of the article's site and
for an aggregator (every site), interleaved article by article. Printed and written to
bench/results/citus-<UTC timestamp>.json: median and mean client-side milliseconds, recall@10
of each walk against the exact ranking of the same rows, how often the cluster's and the single
node's lists agree, the time to start the cluster, and the load average.
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.articles.filters import ArticleFilters  # noqa: E402
from app.core.config import Settings  # noqa: E402
from app.db import migrate  # noqa: E402
from app.db.citus_cluster import CitusCluster  # noqa: E402
from app.db.embedded import EmbeddedPostgres  # noqa: E402
from app.db.reads import create_read_pool, encode_vector  # noqa: E402
from app.db.url import to_async_url  # noqa: E402
from app.related.repository import RelatedRepository, StoredVector  # noqa: E402

MODEL = "bench"
DIMENSION = 384


def corpus(articles: int, sites: int, seed: int = 7) -> list[tuple[Any, ...]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, DIMENSION)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    story = rng.integers(0, len(centres), size=articles)
    vectors = centres[story] * 2 + rng.normal(size=(articles, DIMENSION)).astype(np.float32) * 0.06
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        (
            uuid.UUID(int=int(rng.integers(1, 2**62)) << 64 | i),
            f"b-{i}",
            f"Story {story[i]} article {i}",
            start + timedelta(minutes=i),
            "h",
            f"site-{i % sites:02d}",
            encode_vector(vectors[i]),
            MODEL,
            "ready",
        )
        for i in range(articles)
    ]


COLUMNS = [
    "id",
    "external_id",
    "title",
    "published_at",
    "content_hash",
    "site",
    "embedding",
    "embedding_model",
    "embedding_status",
]


async def load(url: str, rows: list[tuple[Any, ...]]) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.set_type_codec(
            "vector", encoder=lambda v: v, decoder=lambda v: v, format="binary"
        )
        await conn.copy_records_to_table("articles", records=rows, columns=COLUMNS)
        await conn.execute("ANALYZE articles")
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    scratch = ROOT / ".bench-cache" / "citus"
    shutil.rmtree(scratch, ignore_errors=True)
    started = time.perf_counter()
    cluster = CitusCluster(scratch / "cluster").start()
    urls = {"citus": to_async_url(cluster.create_database("bench"))}
    cluster_start_s = time.perf_counter() - started
    single = EmbeddedPostgres(scratch / "single", {"fsync": "off"}).join()
    single.psql("CREATE DATABASE bench")
    urls["single"] = to_async_url(single.url("bench"))
    try:
        rows = corpus(args.articles, args.sites)
        for name, url in urls.items():
            await asyncio.to_thread(migrate.upgrade, url)
            t = time.perf_counter()
            await load(url, rows)
            print(f"{name}: loaded {len(rows)} in {time.perf_counter() - t:.1f} s", flush=True)
        settings = Settings(database_url=urls["single"])
        pools = {
            name: await create_read_pool(url, settings, distributed=name == "citus")
            for name, url in urls.items()
        }
        rng = np.random.default_rng(11)
        asked = [rows[int(i)] for i in rng.choice(len(rows), args.queries, replace=False)]
        timings: dict[str, list[float]] = {}
        found: dict[str, list[list[str]]] = {}
        exact: dict[str, list[list[str]]] = {}
        for row in asked:
            for caller, sites in (("one site", [row[5]]), ("aggregator", None)):
                filters = ArticleFilters(sites=sites, exclude_id=row[0])
                for name, pool in pools.items():
                    key = f"{name}, {caller}"
                    async with pool.acquire() as conn:
                        repository = RelatedRepository(
                            conn, distributed=name == "citus", ef_search=51
                        )
                        t = time.perf_counter()
                        walked = await repository.nearest(StoredVector(row[0]), MODEL, filters, 10)
                        timings.setdefault(key, []).append((time.perf_counter() - t) * 1000)
                        truth = await repository.nearest(
                            StoredVector(row[0]), MODEL, filters, 10, exact=True
                        )
                    found.setdefault(key, []).append([r["external_id"] for r in walked])
                    exact.setdefault(key, []).append([r["external_id"] for r in truth])
        for pool in pools.values():
            await pool.close()
    finally:
        cluster.stop()
        single.leave()

    def recall(a: list[list[str]], b: list[list[str]]) -> float:
        return sum(len(set(x) & set(y)) for x, y in zip(a, b, strict=True)) / sum(map(len, b))

    result: dict[str, Any] = {
        "command": "bench/citus.py " + " ".join(sys.argv[1:]),
        "articles": args.articles,
        "sites": args.sites,
        "queries": args.queries,
        "cluster_start_s": round(cluster_start_s, 2),
        "load_average": os.getloadavg(),
        "results": {},
    }
    for key, ms in timings.items():
        result["results"][key] = {
            "median_ms": round(statistics.median(ms), 2),
            "mean_ms": round(statistics.mean(ms), 2),
            "recall_at_10": round(recall(found[key], exact[key]), 4),
        }
    for caller in ("one site", "aggregator"):
        result["results"][f"agreement, {caller}"] = round(
            recall(found[f"citus, {caller}"], found[f"single, {caller}"]), 4
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=20000)
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--queries", type=int, default=150)
    result = asyncio.run(run(parser.parse_args()))
    print(json.dumps(result, indent=2))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (ROOT / "bench" / "results" / f"citus-{stamp}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
