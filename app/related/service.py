"""Related articles: nearest neighbours by cosine similarity, correct under filters.

HNSW applies WHERE clauses to the candidates it found, so a filtered query can come back short
or miss the best matches. The strategy, which holds on pgvector 0.6 and 0.8 alike:

1. Ask the index with ``ef_search`` at least ``limit`` (and, on 0.8+, an iterative scan that
   keeps walking the graph until enough rows pass the filters, in exact distance order).
   When that returns ``limit`` rows, they are the nearest matching rows: the index's candidate
   list holds the true global neighbours, and filtering a correct prefix keeps it correct.
2. When it returns fewer, the filters are selective: fall back to an exact scan of the rows the
   filters keep, which is cheap for the same reason (few rows match).

``min_score`` is applied to the ranked list afterwards: a threshold on a ranking cuts off its
tail, so the result equals an exact search with the threshold.

With ``ranking=hybrid`` (the default) the search above fetches CANDIDATES rows with their
vectors and lexemes, and app.related.rerank orders them; ``limit`` are returned.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import ColumnElement

from app.articles.models import Article
from app.core.errors import AppError
from app.db.engine import PgvectorVersion
from app.embedding.encoder import Encoder, Priority
from app.embedding.text import embedding_text
from app.related.repository import (
    Lexemes,
    RelatedRepository,
    lexemes_of,
    parse_vector,
    related_filters,
)
from app.related.rerank import rerank
from app.related.schemas import DraftIn, RelatedArticle, RelatedFilters
from app.related.select import Preferences, select

# Candidates the hybrid ranking reorders: enough to hold the story's other articles and the
# feedback documents, few enough to stay within a couple of milliseconds.
CANDIDATES = 100
# A body this long is "long text", where shared words weigh more (see rerank.py).
LONG_TEXT_WORDS = 120


def is_plain(query: RelatedFilters) -> bool:
    """Plain nearest neighbours: no spare candidates or features needed."""
    return (
        query.ranking == "vector"
        and not query.dedupe
        and query.diversity == 0
        and query.max_per_source is None
        and query.recency is None
    )


def same_category(
    category: str | None, categories: Sequence[str | None]
) -> "np.ndarray[tuple[int], np.dtype[np.float32]] | None":
    if category is None:
        return None
    return np.array([c == category for c in categories], dtype=np.float32)


class RelatedService:
    def __init__(
        self,
        repository: RelatedRepository,
        encoder: Encoder,
        pgvector: PgvectorVersion,
        ef_search: int,
    ) -> None:
        self.repository = repository
        self.encoder = encoder
        self.pgvector = pgvector
        self.ef_search = ef_search

    async def for_article(self, article: Article, query: RelatedFilters) -> list[RelatedArticle]:
        if article.embedding is None or article.embedding_model != self.encoder.model_name:
            raise AppError(
                409,
                "embedding_not_ready",
                f"Article {article.external_id!r} has no embedding from model "
                f"{self.encoder.model_name} yet; try again shortly",
                {"embedding_model": article.embedding_model},
            )
        filters = self._filters(query)
        filters.append(Article.id != article.id)
        terms = None
        if not is_plain(query):
            terms = await self.repository.search_terms(article.id)
        return await self._search(
            article.embedding, filters, query, terms, article.body, article.category
        )

    async def for_draft(self, draft: DraftIn) -> list[RelatedArticle]:
        text = embedding_text(draft.title, draft.summary, draft.body)
        [vector] = await self.encoder.encode([text], Priority.INTERACTIVE)
        terms = None
        if not is_plain(draft):
            terms = await self.repository.draft_terms(draft.title, draft.summary, draft.body)
        return await self._search(
            vector.tolist(), self._filters(draft), draft, terms, draft.body, draft.own_category
        )

    @staticmethod
    def _filters(query: RelatedFilters) -> list[ColumnElement[bool]]:
        since = query.since
        if query.max_age_days is not None:
            cutoff = datetime.now(UTC) - timedelta(days=query.max_age_days)
            since = max(since, cutoff) if since else cutoff
        return related_filters(
            source=query.source,
            exclude_source=query.exclude_source,
            category=query.category,
            language=query.language,
            since=since,
            until=query.until,
            exclude_ids=query.exclude_ids,
        )

    async def _search(
        self,
        vector: Sequence[float],
        filters: list[ColumnElement[bool]],
        query: RelatedFilters,
        terms: Lexemes | None,
        body: str,
        category: str | None,
    ) -> list[RelatedArticle]:
        model, limit = self.encoder.model_name, query.limit
        plain = is_plain(query)
        wanted = limit if plain else max(limit, CANDIDATES)
        await self.repository.use_index(
            max(self.ef_search, wanted), self.pgvector.has_iterative_scan
        )
        rows = await self.repository.nearest(vector, model, filters, wanted, not plain)
        # Short of `limit` means selective filters (see above); short of the extra candidates
        # alone is not worth an exact scan.
        if len(rows) < limit:
            await self.repository.use_exact_scan()
            rows = await self.repository.nearest(vector, model, filters, wanted, not plain)
        if not plain and rows:
            query_vector = np.asarray(vector, dtype=np.float32)
            vectors = np.vstack([parse_vector(row.vector) for row in rows])
            relevance = np.array([row.score for row in rows], dtype=np.float32)
            query_terms = terms or {}
            row_terms = [lexemes_of(row) for row in rows]
            if query.ranking == "hybrid":
                relevance = rerank(
                    query_vector,
                    query_terms,
                    len(body.split()) >= LONG_TEXT_WORDS,
                    vectors,
                    row_terms,
                    same_category(category, [row.category for row in rows]),
                )
            chosen = select(
                relevance,
                query_vector,
                vectors,
                [row.published_at for row in rows],
                [row.source for row in rows],
                datetime.now(UTC),
                Preferences(
                    limit, query.dedupe, query.diversity, query.recency, query.max_per_source
                ),
                query_words=None if terms is None else query_terms.keys(),
                words=[t.keys() for t in row_terms],
            )
            rows = [rows[i] for i in chosen]
        results = [RelatedArticle.model_validate(row, from_attributes=True) for row in rows[:limit]]
        if query.min_score is not None:
            results = [r for r in results if r.score >= query.min_score]
        return results
