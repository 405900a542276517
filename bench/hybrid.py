"""What the hybrid ranking costs: related-by-article latency, `ranking=hybrid` (the default)
against the plain vector query, side by side in one run, on long news bodies.

    .venv/bin/python bench/hybrid.py [--copies 4] [--queries 300]

BBC's full articles (the longest texts of ../shared/data, the worst case for the lexical signal)
are loaded --copies times into a fresh embedded PostgreSQL, straight through SQL with synthetic
vectors clustered by section (latency does not depend on which vectors they are, only on how
many candidates come back and how long their texts are; relevance is `related eval`'s job).
Then, for the same random articles, in alternation so load on the machine hits all alike:

* vector: `?ranking=vector&dedupe=false`, the plain nearest-neighbour query (one SQL statement);
* vector+dedupe: `?ranking=vector` (spare candidates with their vectors and lexemes);
* hybrid: the default request (the same fetch, then rerank and selection in Python).

Each goes through the whole app (routing, article lookup, one transaction, JSON) in process over
ASGI, so only the socket, the same for all three, is left out. Prints p50/p90/p99 in ms and the
ratio of medians to the plain query. bench/related.py measures over real HTTP at 100k articles.
"""

import argparse
import asyncio
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.articles.models import Article
from app.core.config import Settings
from app.db.engine import Database, open_database
from app.main import create_app
from bench.corpora import BBC, DATA_DIR
from bench.record import Record

MODEL = "synthetic"
DIMENSION = 384


class NoModel:
    """Stands in for the embedder: these queries embed nothing."""

    name = MODEL
    dimension = DIMENSION

    def encode(self, texts: list[str]) -> np.ndarray:  # type: ignore[type-arg]
        raise AssertionError("related-by-article never encodes")


def clustered_vectors(labels: list[str], rng: np.random.Generator) -> np.ndarray:  # type: ignore[type-arg]
    centres = {label: rng.standard_normal(DIMENSION) for label in sorted(set(labels))}
    # Stories within sections: each article near its section's centre and a story's centre.
    stories = rng.standard_normal((len(labels) // 8 + 1, DIMENSION))
    rows = [
        centres[label] + 0.8 * stories[i // 8] + 0.6 * rng.standard_normal(DIMENSION)
        for i, label in enumerate(labels)
    ]
    matrix = np.asarray(rows, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


async def load(database: Database, path: Path, copies: int, seed: int) -> int:
    rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    articles = [(copy, row) for copy in range(copies) for row in rows]
    vectors = clustered_vectors([row["label"] for _, row in articles], np.random.default_rng(seed))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    async with database.engine.begin() as conn:
        columns = set(
            await conn.scalars(
                text(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = 'articles'"
                )
            )
        )
        extra = {"embedding_status": "ready"} if "embedding_status" in columns else {}
        batch = []
        for i, ((copy, row), vector) in enumerate(zip(articles, vectors, strict=True)):
            batch.append(
                {
                    "external_id": f"bench-{copy}-{row['external_id']}",
                    "title": row["title"],
                    "body": row.get("body") or "",
                    "summary": row.get("summary"),
                    "source": f"source-{i % 50}",
                    "category": row.get("category"),
                    "published_at": start + timedelta(minutes=i),
                    "content_hash": hashlib.sha256(str(i).encode()).hexdigest(),
                    "embedding": vector.tolist(),
                    "embedding_model": MODEL,
                    "embedding_hash": hashlib.sha256(f"v{i}".encode()).hexdigest(),
                    **extra,
                }
            )
            if len(batch) == 500 or i == len(articles) - 1:
                await conn.execute(Article.__table__.insert(), batch)
                batch = []
        await conn.execute(text("ANALYZE articles"))
    return len(articles)


VARIANTS = {
    "vector": {"ranking": "vector", "dedupe": "false"},
    "vector+dedupe": {"ranking": "vector"},
    "hybrid": {},
}


async def measure(database: Database, queries: int, seed: int) -> list[dict[str, Any]]:
    async with database.sessions() as session:
        ids = list(await session.scalars(select(Article.id)))
    chosen = random.Random(seed).sample(ids, queries)
    url = database.engine.url.render_as_string(hide_password=False)
    settings = Settings(database_url=url, migrate_on_start=False, anonymous_reads=True)
    app = create_app(settings, embedder=NoModel())
    timings: dict[str, list[float]] = {name: [] for name in VARIANTS}
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):
        for round_ in range(2):  # the first round warms caches and is not counted
            for article_id in chosen:
                for name, params in VARIANTS.items():
                    started = time.perf_counter()
                    response = await client.get(f"/v1/articles/{article_id}/related", params=params)
                    elapsed = (time.perf_counter() - started) * 1000
                    assert response.status_code == 200, response.text
                    assert len(response.json()["items"]) == 10, name
                    if round_:
                        timings[name].append(elapsed)
    base = float(np.median(timings["vector"]))
    print(f"\n{queries} articles asked about, each way; ms per request (in process, over ASGI)")
    print(f"{'ranking':16s} {'p50':>7s} {'p90':>7s} {'p99':>7s} {'p50 / vector':>13s}")
    rows = []
    for name, values in timings.items():
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        print(f"{name:16s} {p50:7.2f} {p90:7.2f} {p99:7.2f} {p50 / base:13.2f}")
        rows.append(
            {"ranking": name, "p50_ms": round(float(p50), 2), "p90_ms": round(float(p90), 2)}
            | {"p99_ms": round(float(p99), 2), "p50_over_vector": round(float(p50 / base), 2)}
        )
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA_DIR / BBC)
    parser.add_argument("--copies", type=int, default=4, help="times the corpus is loaded")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    record = Record("hybrid")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="related-bench-") as data_dir:
        settings = Settings(database_url=None, data_dir=Path(data_dir))
        async with open_database(settings) as database:
            started = time.perf_counter()
            count = await load(database, args.data, args.copies, args.seed)
            print(f"loaded {count} articles in {time.perf_counter() - started:.1f} s")
            rows = await measure(database, args.queries, args.seed)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    record.save(articles=count, queries=args.queries, rows=rows)


if __name__ == "__main__":
    asyncio.run(main())
