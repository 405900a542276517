"""Related articles: nearest neighbours by cosine similarity, correct under filters.

HNSW applies WHERE clauses to the candidates it found, so a filtered query can come back short
or miss the best matches. The strategy, which holds on pgvector 0.6 and 0.8 alike:

0. Filters that keep few rows (the planner's estimate from its statistics, below
   EXACT_SCAN_ROWS; app.related.estimates keeps it for a minute) go straight to an exact scan
   of those rows: the cost of a filtered search grows with the rows it keeps, not with the
   corpus.
1. Otherwise ask the index with ``ef_search`` at least ``limit`` (and, on 0.8+, an iterative
   scan that keeps walking the graph until enough rows pass the filters, in exact distance
   order).
   When that returns ``limit`` rows, they are the nearest matching rows: the index's candidate
   list holds the true global neighbours, and filtering a correct prefix keeps it correct.
2. When it returns fewer, the filters are selective: fall back to an exact scan of the rows the
   filters keep, which is cheap for the same reason (few rows match).

``min_score`` is applied to the ranked list afterwards: a threshold on a ranking cuts off its
tail, so the result equals an exact search with the threshold.

With ``ranking=hybrid`` (the default) the search above fetches CANDIDATES rows with their
vectors and terms (app.related.terms), and app.related.rerank orders them; ``limit`` are
returned.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from app.core.errors import AppError
from app.embedding.encoder import Encoder, Priority
from app.embedding.text import embedding_text
from app.related.estimates import RowEstimates
from app.related.repository import (
    Filters,
    RelatedRepository,
    SourceArticle,
    StoredVector,
    candidate_terms,
)
from app.related.rerank import rerank
from app.related.schemas import ArticleKey, DraftIn, RelatedArticle, RelatedFilters
from app.related.select import Preferences, select
from app.related.statistics import CorpusIdf
from app.related.terms import Terms

# Candidates the hybrid ranking reorders: enough to hold the story's other articles and the
# feedback documents. 50 against 100, offline on the four labelled corpora: P@10 within 0.003
# on each (mean -0.001), P@1 within 0.004, at about half the cost (docs/relevance.md).
CANDIDATES = 50
# A body this long is "long text", where shared words weigh more (see rerank.py).
LONG_TEXT_WORDS = 120
# Filters the planner expects to keep fewer rows than this go straight to an exact scan of
# those rows: cheaper than an index walk that would mostly find rows the filters drop
# (bench/related.py measures both at a 2% filter).
EXACT_SCAN_ROWS = 10_000
# An index walk that did not reach the article asked about walks again with this many times the
# candidates (at 2x the two lost walks found on the bench corpus were found).
LOST_WALK_EF_FACTOR = 4


@dataclass(frozen=True)
class AskedText:
    """What the lexical side of the ranking knows of the text asked about."""

    terms: Terms
    headline: Terms  # its headline's words, which weigh more
    long: bool  # a body of LONG_TEXT_WORDS or more: shared words weigh more


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


def check_embedded(article: SourceArticle, model: str) -> Any:
    """409 unless the article has a ready vector from ``model``: never an empty list instead."""
    if article.embedding_status == "failed":
        raise AppError(
            409,
            "embedding_failed",
            f"Article {article.external_id!r} could not be embedded: {article.embedding_error}. "
            "Send it again with a changed text.",
            {"embedding_status": "failed", "embedding_error": article.embedding_error},
        )
    if (
        article.embedding_status != "ready"
        or article.embedding is None
        or article.embedding_model != model
    ):
        raise AppError(
            409,
            "embedding_pending",
            f"Article {article.external_id!r} has no embedding from model {model} yet; "
            "it is queued: try again shortly",
            {"embedding_status": "pending", "embedding_model": article.embedding_model},
        )
    return article.embedding


def resolve_filters(query: RelatedFilters, exclude_id: uuid.UUID | None = None) -> Filters:
    since = query.since
    if query.max_age_days is not None:
        cutoff = datetime.now(UTC) - timedelta(days=query.max_age_days)
        since = max(since, cutoff) if since else cutoff
    return Filters(
        source=query.source,
        exclude_source=query.exclude_source,
        category=query.category,
        language=query.language,
        since=since,
        until=query.until,
        exclude_ids=query.exclude_ids,
        exclude_id=exclude_id,
    )


def related_articles(
    rows: Sequence[asyncpg.Record], min_score: float | None
) -> list[RelatedArticle]:
    results = [
        RelatedArticle(
            id=row["id"],
            external_id=row["external_id"],
            title=row["title"],
            url=row["url"],
            source=row["source"],
            published_at=row["published_at"],
            summary=row["summary"],
            score=row["score"],
        )
        for row in rows
    ]
    if min_score is not None:
        results = [r for r in results if r.score >= min_score]
    return results


class RelatedService:
    def __init__(
        self,
        repository: RelatedRepository,
        encoder: Encoder,
        ef_search: int,
        corpus_idf: CorpusIdf | None = None,
        row_estimates: RowEstimates | None = None,
    ) -> None:
        self.repository = repository
        # Shared by the process's requests (app.state); a new one asks the planner every time.
        self.row_estimates = row_estimates or RowEstimates(ttl_s=0)
        self.encoder = encoder
        # The read pool's connections start with it (app.db.reads).
        self.ef_search = ef_search
        self.corpus_idf = corpus_idf  # None until the corpus is analyzed (app.related.statistics)

    async def for_article(
        self, article: SourceArticle, query: RelatedFilters
    ) -> list[RelatedArticle]:
        vector = check_embedded(article, self.encoder.model_name)
        filters = resolve_filters(query, exclude_id=article.id)
        asked = AskedText(article.terms, article.title_terms, article.body_words >= LONG_TEXT_WORDS)
        return await self._search(vector, filters, query, asked, article.category, article.id)

    async def for_article_id(
        self, article_id: uuid.UUID, query: RelatedFilters
    ) -> tuple[ArticleKey, list[RelatedArticle]] | None:
        """The page view's request in one round trip: a plain search from a stored article by
        our id, its vector read by the search statement itself (StoredVector). Returns the
        article's key and the results; None whenever the general path must answer instead (no
        such id, no ready vector of this model: a 404 or 409 there; filters for an exact
        scan; a walk that missed the article or came back short)."""
        if not is_plain(query):
            return None
        filters = resolve_filters(query, exclude_id=article_id)
        if await self._exact_first(filters):
            return None
        limit = query.limit
        rows = await self.repository.nearest(
            StoredVector(article_id),
            self.encoder.model_name,
            filters,
            limit,
            ef_search=self._walk_ef_search(limit, probed=True),
            probe=article_id,
        )
        asked = next((row for row in rows if row["id"] == article_id), None)
        if asked is None or asked["score"] is None:
            return None
        rows = [row for row in rows if row["id"] != article_id][:limit]
        if len(rows) < limit:
            return None
        key = ArticleKey(id=article_id, external_id=asked["external_id"])
        return key, related_articles(rows, query.min_score)

    async def for_draft(self, draft: DraftIn) -> list[RelatedArticle]:
        text = embedding_text(draft.title, draft.summary, draft.body)
        [vector] = await self.encoder.encode([text], Priority.INTERACTIVE)
        asked = None
        if not is_plain(draft):
            terms, headline = await self.repository.draft_terms(
                draft.title, draft.summary, draft.body
            )
            asked = AskedText(terms, headline, len(draft.body.split()) >= LONG_TEXT_WORDS)
        return await self._search(vector, resolve_filters(draft), draft, asked, draft.own_category)

    async def nearest_rows(
        self,
        vector: Any,
        filters: Filters,
        wanted: int,
        limit: int,
        features: bool,
        probe: uuid.UUID | None = None,
    ) -> list[asyncpg.Record]:
        """The ``wanted`` nearest rows under ``filters`` by the strategy above (at least
        ``limit`` when that many match); bench/related.py sends these same statements.

        ``probe`` is the stored article asked about, whose own vector is ``vector``: the index
        walk lets it through the filters, and finding it (at distance 0) shows the walk reached
        the right part of the graph. HNSW sometimes ends its walk in a far region instead (on
        the 100k bench corpus, 2 of 400 articles at ef_search 100: similarity 0.35 for the
        best found against 0.83 for the true neighbours); then it walks again, wider."""
        model = self.encoder.model_name

        async def nearest(**how: Any) -> list[asyncpg.Record]:
            return await self.repository.nearest(
                vector, model, filters, wanted, with_features=features, **how
            )

        if await self._exact_first(filters):
            return await nearest(exact=True)
        rows = await nearest(
            ef_search=self._walk_ef_search(wanted, probed=probe is not None), probe=probe
        )
        if probe is not None:
            walk_reached_it = any(row["id"] == probe for row in rows)
            rows = [row for row in rows if row["id"] != probe][:wanted]
            if not walk_reached_it:
                wider = max(self.ef_search, wanted + 1) * LOST_WALK_EF_FACTOR
                rows = await nearest(ef_search=wider)
        # Short of `limit` means selective filters (see above); short of the extra candidates
        # alone is not worth an exact scan.
        if len(rows) < limit:
            rows = await nearest(exact=True)
        return rows

    async def _exact_first(self, filters: Filters) -> bool:
        """Filters the planner expects to keep few rows: an exact scan of them, no index walk."""
        if not filters.restrictive:
            return False
        model = self.encoder.model_name
        rows = await self.row_estimates.get(model, filters, self.repository.estimated_rows)
        return rows < EXACT_SCAN_ROWS

    def _walk_ef_search(self, wanted: int, probed: bool) -> int | None:
        """``ef_search`` for a walk that must hold ``wanted`` rows and the probe, or None when
        the connection's own is enough: a walk shorter than the rows asked for comes back
        short."""
        ef_search = max(self.ef_search, wanted + probed)
        return None if ef_search == self.ef_search else ef_search

    async def _search(
        self,
        vector: Any,
        filters: Filters,
        query: RelatedFilters,
        asked: AskedText | None,  # None for plain requests, which need no words
        category: str | None,
        probe: uuid.UUID | None = None,  # the stored article asked about (see nearest_rows)
    ) -> list[RelatedArticle]:
        limit = query.limit
        plain = is_plain(query)
        wanted = limit if plain else max(limit, CANDIDATES)
        rows = await self.nearest_rows(vector, filters, wanted, limit, not plain, probe)
        if not plain and rows:
            query_vector = np.asarray(vector, dtype=np.float32)
            vectors = np.vstack([row["vector"] for row in rows])
            relevance = np.array([row["score"] for row in rows], dtype=np.float32)
            row_terms = [candidate_terms(row) for row in rows]
            if query.ranking == "hybrid" and asked is not None:
                relevance = rerank(
                    query_vector,
                    asked.terms,
                    asked.long,
                    vectors,
                    row_terms,
                    same_category(category, [row["category"] for row in rows]),
                    corpus_idf=self.corpus_idf,
                    title_terms=asked.headline,
                )
            chosen = select(
                relevance,
                query_vector,
                vectors,
                [row["published_at"] for row in rows],
                [row["source"] for row in rows],
                datetime.now(UTC),
                Preferences(
                    limit, query.dedupe, query.diversity, query.recency, query.max_per_source
                ),
                query_terms=None if asked is None else asked.terms,
                terms=row_terms,
            )
            rows = [rows[i] for i in chosen]
        return related_articles(rows[:limit], query.min_score)
