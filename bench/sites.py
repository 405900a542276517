"""Related search with sites: the search statements of app/related/service.py on a corpus of 1 site
and of 20, for a single publisher, a key of one site among 20, and an aggregator.

    .venv/bin/python bench/sites.py [--articles 30000] [--queries 150] [--data-dir DIR]

Two databases on a scratch embedded PostgreSQL (--data-dir, default .bench-cache/sites-pg),
migrated to head, each loaded with the same --articles synthetic articles (COPY; the HNSW index
dropped for the load and rebuilt with its migration's definition): unit vectors around 2,000
story centres (cosine about 0.8 to the centre), 200 sources, dates over a year. In `sites-1`
every article is in `default`; in `sites-20` article i is in site-(i mod 20), 5% each.

For --queries stored articles, RelatedService.candidates (the statements of GET related by our
id, the planner's estimate included) is timed for each caller, interleaved article by article so
that the machine's load falls on every variant alike, for a plain request (10 rows) and a
hybrid one (50 candidates):

* sites-1, every site (None: no site clause, the statement as before sites) against `default`
  (the clause of a single publisher's key, which keeps every row);
* sites-20, every site (an aggregator) against one site's key (site-07, 5% of the rows), and,
  for that key, the two plans the service chooses between, forced: the walk of the HNSW index
  (iterative scan, the site as a filter) and the exact scan of the site's rows (found through
  ix_articles_site_published_at, the index that leads with the site).

Printed and written to bench/results/sites-<UTC timestamp>.json: median and mean client-side
milliseconds of each, the walk's recall@10 against the exact scan, and the load average.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.articles.filters import ArticleFilters
from app.core.config import Settings
from app.db import migrate
from app.db.embedded import EmbeddedPostgres
from app.db.reads import create_read_pool, read_ef_search
from app.db.url import to_async_url
from app.related.estimates import RowEstimates
from app.related.repository import RelatedRepository
from app.related.schemas import RelatedQuery
from app.related.service import RelatedService
from bench.related import git_commit, load_average

ROOT = Path(__file__).resolve().parents[1]
MODEL = "all-MiniLM-L6-v2+onnx-int8"
SITE = "site-07"
COLUMNS = [
    "id",
    "external_id",
    "site",
    "title",
    "body",
    "source",
    "category",
    "language",
    "published_at",
    "content_hash",
    "embedding",
    "embedding_model",
    "embedding_status",
]


def corpus(count: int, sites: int, seed: int = 7) -> list[tuple[Any, ...]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, 384)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    story = rng.integers(0, len(centres), count)
    vectors = centres[story] + rng.normal(scale=0.035, size=(count, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    start = datetime(2025, 12, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        rows.append(
            (
                uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i),
                f"bench-{i}",
                "default" if sites == 1 else f"site-{i % sites:02d}",
                f"Story {story[i]} report {i}",
                "",
                f"source-{i % 200:03d}",
                f"category-{story[i] % 12}",
                "en",
                start + timedelta(minutes=int(i * 525600 / count)),
                "0" * 64,
                vectors[i],
                MODEL,
                "ready",
            )
        )
    return rows


async def load(url: str, rows: list[tuple[Any, ...]]) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        from pgvector.asyncpg import register_vector

        await register_vector(conn)
        index = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_articles_embedding_hnsw'"
        )
        await conn.execute("TRUNCATE articles")
        await conn.execute("DROP INDEX IF EXISTS ix_articles_embedding_hnsw")
        started = time.perf_counter()
        for start in range(0, len(rows), 5000):
            await conn.copy_records_to_table(
                "articles", records=rows[start : start + 5000], columns=COLUMNS
            )
        await conn.execute("SET maintenance_work_mem = '512MB'")
        await conn.execute(index)
        await conn.execute("VACUUM ANALYZE articles")
        print(f"loaded {len(rows):,} in {time.perf_counter() - started:.0f} s; {load_average()}")
    finally:
        await conn.close()


def summary(times: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(times), "mean_ms": statistics.mean(times)}


async def measure(url: str, sites: int, queries: int, settings: Settings) -> list[dict[str, Any]]:
    pool = await create_read_pool(url, settings)
    results = []
    try:
        async with pool.acquire() as conn:
            where = "" if sites == 1 else f"WHERE site = '{SITE}'"
            picks = await conn.fetch(
                f"SELECT id, embedding FROM articles {where} ORDER BY md5(id::text) LIMIT $1",
                queries,
            )
            repository = RelatedRepository(conn)
            service = RelatedService(
                repository, _Model(), read_ef_search(settings), None, RowEstimates()
            )
            callers: dict[str, frozenset[str] | None] = {"every site": None}
            callers["default" if sites == 1 else SITE] = frozenset(
                {"default" if sites == 1 else SITE}
            )
            for name, query in (
                ("plain", RelatedQuery(limit=10, ranking="vector", dedupe=False)),
                ("hybrid", RelatedQuery(limit=10)),
            ):
                times: dict[str, list[float]] = {caller: [] for caller in callers}
                forced: dict[str, list[float]] = {"walk": [], "exact": []}
                recalls = []
                for row in picks:
                    for caller, visible in callers.items():
                        started = time.perf_counter()
                        found = await service.candidates(row["id"], query, visible)
                        times[caller].append((time.perf_counter() - started) * 1000)
                        assert found is not None and found.rows
                    if sites == 1:
                        continue
                    filters = ArticleFilters(sites=(SITE,), exclude_id=row["id"])
                    wanted = 10 if name == "plain" else 50
                    got = {}
                    for how in ("walk", "exact"):
                        started = time.perf_counter()
                        got[how] = await repository.nearest(
                            row["embedding"], MODEL, filters, wanted, exact=how == "exact"
                        )
                        forced[how].append((time.perf_counter() - started) * 1000)
                    exact = {r["id"] for r in got["exact"][:10]}
                    recalls.append(len(exact & {r["id"] for r in got["walk"][:10]}) / 10)
                result: dict[str, Any] = {
                    "sites": sites,
                    "ranking": name,
                    "queries": len(picks),
                    "callers": {caller: summary(t) for caller, t in times.items()},
                    "load": load_average(),
                }
                if sites > 1:
                    result["one_site_forced"] = {how: summary(t) for how, t in forced.items()}
                    result["walk_recall_at_10"] = float(np.mean(recalls))
                    result["estimated_rows"] = await repository.estimated_rows(
                        MODEL, ArticleFilters(sites=(SITE,))
                    )
                results.append(result)
                print(json.dumps(result), flush=True)
    finally:
        await pool.close()
    return results


class _Model:
    """What RelatedService reads of its encoder here: the model's name."""

    model_name = MODEL


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--articles", type=int, default=30_000)
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".bench-cache" / "sites-pg")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--reload", action="store_true")
    args = parser.parse_args()
    server = EmbeddedPostgres(args.data_dir).join()
    record: dict[str, Any] = {
        "bench": "sites",
        "commit": git_commit(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "articles": args.articles,
        "load_start": load_average(),
        "runs": [],
    }
    try:
        settings = Settings()
        for sites in (1, 20):
            name = f"sites_{sites}"
            exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip()
            url = to_async_url(server.url(name))
            if args.reload or not exists:
                server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                server.psql(f"CREATE DATABASE {name}")
                await asyncio.to_thread(migrate.upgrade, url)
                await load(server.url(name), corpus(args.articles, sites))
            record["runs"] += await measure(url, sites, args.queries, settings)
    finally:
        server.leave()
    record["load_end"] = load_average()
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.results / f"sites-{stamp}.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
