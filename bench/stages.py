"""Where the API's CPU goes in a default (hybrid) related request, stage by stage, in process.

    .venv/bin/python bench/stages.py [--queries 300] [--rounds 3] [--results bench/results]

Runs on the corpus bench/related.py builds (its embedded PostgreSQL in .bench-cache/related-pg;
run that first). For --queries random stored articles, each round measures this process's CPU
time (time.process_time, so waiting for PostgreSQL and other processes' use of the cores do not
count) of each stage of RelatedService for a stored article:

* fetch: the driver's side of the one search statement (sending, decoding 51 rows with their
  vectors and terms);
* decode: the candidates' vectors and terms as arrays;
* rerank: app.related.rerank (semantic + lexical scores, feedback);
* select: app.related.select (dedupe, the order and scores);
* items: the response items, and the JSON body.

What is not here is the HTTP server and the ASGI middleware: bench/related.py's "API CPU per
request" minus the sum of these. Prints ms per request per stage, writes
bench/results/stages-<UTC time>.json.
"""

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.config import Settings
from app.db.embedded import EmbeddedPostgres
from app.db.reads import create_read_pool, read_ef_search
from app.db.url import to_async_url
from app.related import service as related
from app.related.repository import RelatedRepository, candidate_terms, candidate_vectors
from app.related.rerank import rerank
from app.related.schemas import ArticleKey, RelatedOut, RelatedQuery
from app.related.select import Preferences, select
from app.related.statistics import load_corpus_idf

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("fetch", "decode", "rerank", "select", "items")


class StoredModel:
    """The encoder's one attribute the search reads: the model the corpus was embedded with."""

    def __init__(self, name: str) -> None:
        self.model_name = name


async def measure(url: str, queries: int, rounds: int) -> list[dict[str, float]]:
    # A connection set up as the service's read connections are (codecs, ef_search, scans).
    settings = Settings()
    pool = await create_read_pool(to_async_url(url), settings)
    connection: asyncpg.Connection = await pool.acquire()
    try:
        ef_search = read_ef_search(settings)
        ids = [
            r["id"]
            for r in await connection.fetch(
                "SELECT id FROM articles TABLESAMPLE SYSTEM (5) WHERE embedding IS NOT NULL "
                "LIMIT $1",
                queries,
            )
        ]
        model = await connection.fetchval("SELECT embedding_model FROM articles LIMIT 1")
        idf = await load_corpus_idf(connection)
        service = related.RelatedService(
            RelatedRepository(connection),
            StoredModel(model),  # type: ignore[arg-type]
            ef_search,
            idf,
        )
        query = RelatedQuery()
        results = []
        for _ in range(rounds):
            spent = dict.fromkeys(STAGES, 0.0)
            for article_id in ids:
                t0 = time.process_time()
                found = await service.candidates(article_id, query)
                t1 = time.process_time()
                assert found is not None and found.asked is not None
                rows, asked = found.rows, found.asked
                text = related.AskedText.of_row(asked)
                [vector] = candidate_vectors([asked])
                query_vector = np.asarray(vector, dtype=np.float32)
                vectors = candidate_vectors(rows)
                terms = candidate_terms(rows)
                t2 = time.process_time()
                relevance = rerank(
                    query_vector,
                    text.terms,
                    text.long,
                    vectors,
                    terms,
                    related.same_category(asked["category"], [r["category"] for r in rows]),
                    corpus_idf=idf,
                    title_terms=text.headline,
                )
                t3 = time.process_time()
                chosen = select(
                    relevance,
                    query_vector,
                    vectors,
                    [r["published_at"] for r in rows],
                    [r["source"] for r in rows],
                    asked["published_at"],
                    Preferences(query.limit, query.dedupe),
                    query_terms=text.terms,
                    terms=terms,
                )
                t4 = time.process_time()
                items = related.related_articles(
                    [rows[i] for i, _ in chosen], None, [score for _, score in chosen]
                )
                key = ArticleKey(id=article_id, external_id=asked["external_id"])
                RelatedOut(article=key, model=model, items=items).model_dump_json()
                t5 = time.process_time()
                for stage, seconds in zip(
                    STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True
                ):
                    spent[stage] += seconds
            per_request = {stage: round(s * 1000 / len(ids), 3) for stage, s in spent.items()}
            per_request["total"] = round(sum(per_request.values()), 3)
            per_request["load_average"] = round(os.getloadavg()[0], 2)
            print(" ".join(f"{k} {v}" for k, v in per_request.items()), "(ms per request)")
            results.append(per_request)
        return results
    finally:
        await pool.release(connection)
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".bench-cache" / "related-pg")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    if not (args.data_dir / "pg18").exists():
        sys.exit(f"no corpus in {args.data_dir}: run bench/related.py first")
    server = EmbeddedPostgres(args.data_dir.resolve()).join()
    try:
        rounds = asyncio.run(measure(server.url(), args.queries, args.rounds))
    finally:
        server.leave()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"stages-{stamp}.json"
    record = {
        "bench": "stages",
        "command": "bench/stages.py " + " ".join(sys.argv[1:]),
        "at": stamp,
        "cores": os.cpu_count(),
        "rounds": rounds,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
