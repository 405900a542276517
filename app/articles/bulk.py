"""Bulk loading of JSONL files (one article per line) through the same upsert path as the API."""

import json
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import text
from tqdm import tqdm

from app.articles.repository import ArticleRepository
from app.articles.schemas import ArticleIn
from app.articles.service import ArticleService
from app.core.config import Settings, get_settings
from app.db.engine import Database
from app.embedding.encoder import Encoder
from app.pipeline.worker import EmbeddingWorker, wait_until_embedded


@dataclass
class IngestReport:
    counts: Counter[str] = field(default_factory=Counter)
    invalid: list[str] = field(default_factory=list)  # "line N: reason"


def read_articles(path: Path, report: IngestReport) -> Iterator[ArticleIn]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield ArticleIn.model_validate(json.loads(line))
            except json.JSONDecodeError as exc:
                report.invalid.append(f"line {number}: not JSON ({exc.msg})")
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "article"
                report.invalid.append(f"line {number}: {where}: {first['msg']}")


def _batches(items: Iterator[ArticleIn], size: int) -> Iterator[list[ArticleIn]]:
    batch: list[ArticleIn] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def ingest_articles(
    items: Iterable[ArticleIn],
    database: Database,
    encoder: Encoder,
    batch_size: int,
    bar: "tqdm[Any]",
    report: IngestReport,
    wait: bool = True,
    embed_bar: "tqdm[Any] | None" = None,
    settings: Settings | None = None,
) -> None:
    """Upsert ``items`` in batches, one transaction per batch, counting the outcomes.

    With ``wait`` (the default) an embedding worker runs on ``encoder`` alongside, so the
    database work of one batch overlaps the encoding of the previous ones, and this returns
    once every queued article is embedded (or failed: counted in ``report.counts["failed"]``).
    Without it the articles stay pending for the service's or `related worker`'s workers.
    """
    settings = settings or get_settings()
    worker = EmbeddingWorker.from_settings(database, encoder, settings) if wait else None
    if worker is not None:
        worker.start()
    try:
        queued: list[uuid.UUID] = []
        for batch in _batches(iter(items), batch_size):
            async with database.sessions() as session, session.begin():
                service = ArticleService(
                    ArticleRepository(session),
                    encoder.model_name,
                    worker.wake if worker is not None else None,
                )
                results = await service.upsert_many(batch)
                queued += {r.article.id for r in results if r.article.embedding_status == "pending"}
            report.counts.update(r.status for r in results)
            bar.update(len(batch))
        if worker is None:
            return
        if embed_bar is not None:
            embed_bar.reset(total=len(queued))

        def progress(done: int) -> None:
            if embed_bar is not None:
                embed_bar.update(done - embed_bar.n)

        await wait_until_embedded(database, queued, None, worker, progress)
        report.counts["failed"] += await _count_failed(database, queued)
    finally:
        if worker is not None:
            await worker.close()


async def _count_failed(database: Database, ids: list[uuid.UUID]) -> int:
    async with database.sessions() as session:
        return await ArticleRepository(session).count_failed(ids)


async def ingest_file(
    path: Path,
    database: Database,
    encoder: Encoder,
    batch_size: int,
    progress: bool = True,
    wait: bool = True,
    settings: Settings | None = None,
) -> IngestReport:
    """Upsert every article of ``path``; with ``wait``, until each is embedded.

    Rerunning is cheap: unchanged articles are recognised by their content hash and neither
    rewritten nor re-embedded. A load that changed anything ends with ANALYZE.
    """
    report = IngestReport()
    with path.open(encoding="utf-8") as f:
        total = sum(1 for line in f if line.strip())
    with (
        tqdm(total=total, unit="article", disable=not progress, desc=f"store {path.name}") as bar,
        tqdm(total=0, unit="article", disable=not progress or not wait, desc="embed") as embed,
    ):
        await ingest_articles(
            read_articles(path, report),
            database,
            encoder,
            batch_size,
            bar,
            report,
            wait,
            embed,
            settings,
        )
        bar.update(total - bar.n)  # invalid lines
    if report.counts["created"] or report.counts["updated"]:
        # Fresh word statistics for related ranking (app.related.statistics) now, rather than
        # whenever autovacuum gets to a table a backfill has just grown.
        async with database.engine.begin() as conn:
            await conn.execute(text("ANALYZE articles"))
    return report
