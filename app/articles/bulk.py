"""Bulk loading of JSONL files (one article per line) through the same upsert path as the API."""

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tqdm import tqdm

from app.articles.repository import ArticleRepository
from app.articles.schemas import ArticleIn
from app.articles.service import ArticleService
from app.db.engine import Database
from app.embedding.encoder import Encoder, Priority


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
) -> None:
    """Upsert ``items`` in batches, one transaction per batch, counting the outcomes."""
    for batch in _batches(iter(items), batch_size):
        async with database.sessions() as session, session.begin():
            service = ArticleService(ArticleRepository(session), encoder)
            results = await service.upsert_many(batch, Priority.BULK)
        report.counts.update(r.status for r in results)
        bar.update(len(batch))


async def ingest_file(
    path: Path, database: Database, encoder: Encoder, batch_size: int, progress: bool = True
) -> IngestReport:
    """Upsert every article of ``path``.

    Rerunning is cheap: unchanged articles are recognised by their content hash and neither
    rewritten nor re-embedded.
    """
    report = IngestReport()
    with path.open(encoding="utf-8") as f:
        total = sum(1 for line in f if line.strip())
    with tqdm(total=total, unit="article", disable=not progress, desc=path.name) as bar:
        await ingest_articles(
            read_articles(path, report), database, encoder, batch_size, bar, report
        )
        bar.update(total - bar.n)  # invalid lines
    return report
