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
import logging
from dataclasses import dataclass

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


async def load_corpus_idf(connection: asyncpg.Connection) -> CorpusIdf | None:
    row = await connection.fetchrow(STATISTICS)
    if row is None or not row["hashes"] or row["rows"] <= 0:
        return None
    hashes = np.array(row["hashes"], dtype=np.int64)
    frequencies = np.array(row["frequencies"][: len(hashes)], dtype=np.float64)
    order = np.argsort(hashes)
    # PostgreSQL's own estimate for an unlisted element: half the lowest listed frequency.
    return CorpusIdf(
        hashes[order], frequencies[order], float(frequencies.min()) / 2, float(row["rows"])
    )


class TermStatistics:
    """The current CorpusIdf (None until the corpus has been analyzed), kept fresh."""

    def __init__(self, pool: asyncpg.Pool, refresh_seconds: float) -> None:
        self.pool = pool
        self.refresh_seconds = refresh_seconds
        self.idf: CorpusIdf | None = None
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        async with self.pool.acquire() as connection:
            self.idf = await load_corpus_idf(connection)

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
