"""How rare each word is across the whole corpus, for the lexical half of the ranking.

Idf over the query and its 50 candidates alone calls a word common when the candidates share it,
which is exactly when it is the story's topic word ("cocoa" among cocoa reports); over the corpus
it tells names and topic words from filler. The figures are PostgreSQL's own: ANALYZE (and
autovacuum's auto-analyze) keeps the most common lexemes of the `search_vector` column with the
share of rows holding each (`pg_stats.most_common_elems`): 1,000 of them at the statistics target
of 100 that migration 0007 pins on that column. Rarer words all count as rarer than those, alike:
on Reuters that measured better than exact document frequencies (P@10 0.729 against 0.726,
docs/relevance.md). No table of ours to maintain on every write, and the figures follow the
corpus as autovacuum re-analyzes it.

A process reads them at start-up and again every `term_statistics_refresh_seconds`: a few
thousand numbers, read in one query. Before the first ANALYZE there are none, and the ranking
uses the query's and candidates' own idf (the behaviour that was measured before corpus idf).
"""

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

# The elements of a tsvector's statistics, hashed like app.related.terms; the frequencies array
# ends with the lowest and highest frequency (ts_typanalyze), hence the slice.
STATISTICS = """
SELECT ARRAY(SELECT hashtextextended(e, 0) FROM unnest(s.most_common_elems::text::text[]) AS e)
         AS hashes,
       s.most_common_elem_freqs AS frequencies,
       c.reltuples AS rows
FROM pg_stats AS s
JOIN pg_class AS c ON c.relname = s.tablename AND c.relnamespace = s.schemaname::regnamespace
WHERE s.schemaname = current_schema() AND s.tablename = 'articles'
  AND s.attname = 'search_vector'
"""


# On Citus (app.db.citus) the coordinator keeps no statistics of a distributed table: each
# shard's own, read on its worker, one JSON object per shard (or none before its first ANALYZE).
SHARD_STATISTICS = """
SELECT result FROM run_command_on_shards('articles', $shard$
    SELECT json_build_object(
        'hashes', ARRAY(SELECT hashtextextended(e, 0)
                        FROM unnest(s.most_common_elems::text::text[]) AS e),
        'frequencies', s.most_common_elem_freqs,
        'rows', c.reltuples)
    FROM pg_class AS c
    JOIN pg_stats AS s ON s.schemaname = c.relnamespace::regnamespace::text
                      AND s.tablename = c.relname
    WHERE c.oid = '%s'::regclass AND s.attname = 'search_vector'
$shard$)
WHERE success AND result <> ''
"""


@dataclass(frozen=True)
class CorpusIdf:
    hashes: NDArray[np.int64]  # sorted
    frequencies: NDArray[np.float64]  # share of articles holding each word
    unlisted: float  # share assumed for a word not listed: rarer than all that are
    articles: float

    def __call__(self, hashes: NDArray[np.int64]) -> NDArray[np.float64]:
        """Smoothed idf, as a search engine's: log((1 + N) / (1 + df)) + 1."""
        at = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        listed = self.hashes[at] == hashes
        share = np.where(listed, self.frequencies[at], self.unlisted)
        result: NDArray[np.float64] = np.log((1 + self.articles) / (1 + share * self.articles)) + 1
        return result


async def load_corpus_idf(
    connection: asyncpg.Connection, distributed: bool = False
) -> CorpusIdf | None:
    if distributed:
        shards = [json.loads(r) for r in await connection.fetchval(
            f"SELECT coalesce(array_agg(result), '{{}}') FROM ({SHARD_STATISTICS}) AS s"
        )]  # fmt: skip
        return merge_shards(shards)
    row = await connection.fetchrow(STATISTICS)
    if row is None:
        return None
    return one_table(row["hashes"], row["frequencies"], row["rows"])


def one_table(hashes: Any, frequencies: Any, rows: float) -> CorpusIdf | None:
    if not hashes or rows <= 0:
        return None
    keys = np.array(hashes, dtype=np.int64)
    shares = np.array(frequencies[: len(keys)], dtype=np.float64)
    order = np.argsort(keys)
    # PostgreSQL's own estimate for an unlisted element: half the lowest listed frequency.
    return CorpusIdf(keys[order], shares[order], float(shares.min()) / 2, float(rows))


def merge_shards(shards: list[dict[str, Any]]) -> CorpusIdf | None:
    """The corpus's figures from its shards' own: a word's share of all articles is its share in
    each shard weighted by the shard's rows; where a shard does not list it, that shard's
    estimate for an unlisted word."""
    tables = [
        t
        for shard in shards
        if (t := one_table(shard["hashes"], shard["frequencies"] or [], shard["rows"]))
    ]
    if not tables:
        return None
    total = sum(t.articles for t in tables)
    hashes = np.unique(np.concatenate([t.hashes for t in tables]))
    held = np.zeros(len(hashes))
    for t in tables:
        at = np.minimum(np.searchsorted(t.hashes, hashes), len(t.hashes) - 1)
        share = np.where(t.hashes[at] == hashes, t.frequencies[at], t.unlisted)
        held += share * t.articles
    unlisted = sum(t.unlisted * t.articles for t in tables) / total
    return CorpusIdf(hashes, held / total, float(unlisted), float(total))


class TermStatistics:
    """The current CorpusIdf (None until the corpus has been analyzed), kept fresh."""

    def __init__(
        self, pool: asyncpg.Pool, refresh_seconds: float, distributed: bool = False
    ) -> None:
        self.pool = pool
        self.distributed = distributed
        self.refresh_seconds = refresh_seconds
        self.idf: CorpusIdf | None = None
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        async with self.pool.acquire() as connection:
            self.idf = await load_corpus_idf(connection, self.distributed)

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._keep_fresh(), name="term-statistics")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh()
            except Exception:
                # Any failure (database down, pool closed, timeout): the last figures stay, as
                # word rarity moves slowly, and the loop tries again next time rather than die.
                logger.warning("term statistics not refreshed", exc_info=True)
