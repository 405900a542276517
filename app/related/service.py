"""Related articles: nearest neighbours by cosine similarity, correct under filters.

Every search is one statement (RelatedRepository.nearest), read from the HNSW index (a *walk*)
or by an exact scan of the rows the filters keep. Three decisions, each named below:

* **exact first** (``exact_first``): filters the planner expects to keep fewer than
  EXACT_SCAN_ROWS rows, or a small share of a large table (EXACT_SCAN_SHARE, up to
  MAX_EXACT_SCAN_ROWS rows; RowEstimates keeps its estimates for a minute) are ranked by an
  exact scan of those rows: it reads only them, while a walk would visit many rows the filters
  drop and can still miss some of the nearest. Otherwise the index is walked, with pgvector's
  iterative scan in strict order (app.db.reads): the walk goes on until ``limit`` rows pass
  the filters, in exact distance order.
* **a walk must find the article asked about** (``Found.lost``): the statement lets the
  stored article asked about (the *probe*) through its filters. An HNSW walk can end in a
  far part of the graph, every row it returns unrelated; finding the article itself (at
  distance 0) shows it reached the right part. A walk that did not is walked again
  WIDER_WALK times wider, up to MAX_EF_SEARCH, then replaced by the exact scan.
* **a walk short of ``limit``** (fewer rows passed the filters than the planner expected)
  is replaced by the exact scan: filters never make the answer short.

A stored article's vector is read by the search statement itself (StoredVector) and its own
row comes back with the candidates, with what the hybrid ranking needs of it: one round trip
for a page view, whatever its ranking. ``min_score`` is applied to the ranked list
afterwards: a threshold on a ranking cuts off its tail, so the result equals an exact search
with the threshold.

With ``ranking=hybrid`` (the default) the search fetches CANDIDATES rows with their vectors
and terms (app.related.terms), and app.related.rerank orders them; ``limit`` are returned.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np

from app.core.errors import AppError
from app.core.sites import Sites
from app.embedding.encoder import Encoder, Priority
from app.embedding.text import embedding_text
from app.related.estimates import RowEstimates
from app.related.repository import (
    Filters,
    RelatedRepository,
    SourceArticle,
    StoredVector,
    candidate_terms,
    candidate_vectors,
)
from app.related.rerank import category_prior, evidence, lexicon_of, rerank
from app.related.schemas import (
    ArticleKey,
    DraftIn,
    Explanation,
    RelatedArticle,
    RelatedFilters,
)
from app.related.select import Preferences, freshness, select
from app.related.statistics import CorpusIdf
from app.related.terms import TermBatch, Terms

# Candidates the hybrid ranking reorders: enough to hold the story's other articles and the
# feedback documents. 50 against 100, offline on the four labelled corpora: P@10 within 0.003
# on each (mean -0.001), P@1 within 0.004, at about half the cost (docs/relevance.md).
CANDIDATES = 50
# A body this long is "long text", where shared words weigh more (see rerank.py).
LONG_TEXT_WORDS = 120
# Filters the planner expects to keep fewer rows than this are ranked by an exact scan of
# those rows instead of a walk of the index (bench/related.py measures both)...
EXACT_SCAN_ROWS = 10_000
# ...and so are filters that keep less than this share of the model's rows, up to
# MAX_EXACT_SCAN_ROWS of them. A walk under a filter passes about (rows it needs) / share rows
# of a graph that knows nothing of the filter, and gives up after hnsw.max_scan_tuples: at a
# million vectors a 2% filter's walk (iterative, strict order) took 45 to 52 ms and found a
# third to a half of the true ten, where the exact scan of its 20,000 rows from the covering
# source index took 8 ms (bench/scale.py). The cap keeps the exact scan's cost, about linear in
# its rows, below a walk's.
EXACT_SCAN_SHARE = 0.05
MAX_EXACT_SCAN_ROWS = 100_000
# A walk that missed the article asked about walks again with this many times its ef_search...
WIDER_WALK = 4
# ...up to pgvector's largest hnsw.ef_search; one still lost there gives way to the exact scan.
MAX_EF_SEARCH = 1000


@dataclass(frozen=True)
class AskedText:
    """What the lexical side of the ranking knows of the text asked about."""

    terms: Terms
    headline: Terms  # its headline's words, which weigh more
    long: bool  # a body of LONG_TEXT_WORDS or more: shared words weigh more

    @classmethod
    def of_row(cls, row: asyncpg.Record) -> "AskedText":
        """A stored article's, from its row as fetched with FEATURE_COLUMNS."""
        return cls(
            Terms.from_bytes(row["term_hashes"], row["term_counts"]),
            Terms.headline(row["title_hashes"]),
            row["body_words"] >= LONG_TEXT_WORDS,
        )


@dataclass(frozen=True)
class Asked:
    """What the ranking compares the candidates with: the query's vector and words, its
    category (for the same-category prior) and the moment recency counts from."""

    vector: Any
    text: AskedText
    category: str | None
    reference: datetime


@dataclass(frozen=True)
class Candidates:
    """The rows a ranking orders (fetched with FEATURE_COLUMNS), their vectors and words
    decoded once."""

    rows: Sequence[Any]
    vectors: Any
    terms: TermBatch

    @classmethod
    def of(cls, rows: Sequence[Any]) -> "Candidates":
        return cls(rows, candidate_vectors(rows), candidate_terms(rows))


@dataclass(frozen=True)
class Found:
    """What one search statement returned: the candidates, nearest first, and the row of the
    article asked about (the probe) when the statement reached it."""

    rows: list[asyncpg.Record]
    asked: asyncpg.Record | None = None
    probed: bool = False  # a stored article was asked about

    @classmethod
    def of(cls, rows: list[asyncpg.Record], probe: uuid.UUID | None) -> "Found":
        if probe is None:
            return cls(rows)
        asked = next((row for row in rows if row["id"] == probe), None)
        return cls([row for row in rows if row["id"] != probe], asked, probed=True)

    @property
    def lost(self) -> bool:
        """A walk that returned rows but not the article asked about: it ended in another part
        of the graph, and its rows may all be unrelated."""
        return self.probed and self.asked is None and bool(self.rows)


def is_plain(query: RelatedFilters) -> bool:
    """Plain nearest neighbours: no spare candidates or features needed."""
    return (
        query.ranking == "vector"
        and not query.dedupe
        and query.diversity == 0
        and query.max_per_source is None
        and query.recency is None
    )


def needs_features(query: RelatedFilters) -> bool:
    """The candidates' vectors and words are fetched: to rank them, or to explain them."""
    return not is_plain(query) or query.explain


def candidates_wanted(query: RelatedFilters) -> int:
    """How many nearest rows a request ranks: ``limit`` for a plain one."""
    return query.limit if is_plain(query) else max(query.limit, CANDIDATES)


def same_category(
    category: str | None, categories: Sequence[str | None]
) -> "np.ndarray[tuple[int], np.dtype[np.float32]] | None":
    if category is None:
        return None
    return np.array([c == category for c in categories], dtype=np.float32)


def exact_first(rows: float, total: float) -> bool:
    """Whether filters the planner expects to keep ``rows`` of the model's ``total`` are ranked
    by an exact scan of those rows rather than a walk of the index."""
    if rows < EXACT_SCAN_ROWS:
        return True
    return rows <= MAX_EXACT_SCAN_ROWS and rows < EXACT_SCAN_SHARE * total


def check_embedded(article: SourceArticle, model: str) -> None:
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
        or not article.embedded
        or article.embedding_model != model
    ):
        raise embedding_pending(article.external_id, article.embedding_model, model)


def embedding_pending(external_id: str, embedding_model: str | None, model: str) -> AppError:
    return AppError(
        409,
        "embedding_pending",
        f"Article {external_id!r} has no embedding from model {model} yet; "
        "it is queued: try again shortly",
        {"embedding_status": "pending", "embedding_model": embedding_model},
    )


def resolve_filters(
    query: RelatedFilters, exclude_id: uuid.UUID | None = None, sites: Sites = None
) -> Filters:
    return query.resolve(sites, exclude_id)


def related_articles(
    rows: Sequence[asyncpg.Record],
    min_similarity: float | None,
    scores: Sequence[float] | None = None,
) -> list[RelatedArticle]:
    """The items, each with its ``score`` (what the list is ordered by: ``scores``, or the
    similarity for a plain search) and ``similarity``; ``min_similarity`` (the request's
    ``min_score``) cuts the tail by similarity."""
    # Validated, though built from the database's own typed columns: pydantic-core's validation
    # costs less than model_construct's Python.
    results = [
        RelatedArticle(
            id=row["id"],
            external_id=row["external_id"],
            title=row["title"],
            url=row["url"],
            source=row["source"],
            published_at=row["published_at"],
            summary=row["summary"],
            score=row["score"] if scores is None else round(scores[i], 6),
            similarity=row["score"],
        )
        for i, row in enumerate(rows)
    ]
    if min_similarity is not None:
        results = [r for r in results if r.similarity >= min_similarity]
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
        self, article: SourceArticle, query: RelatedFilters, sites: Sites = None
    ) -> list[RelatedArticle]:
        """409 unless the article is embedded with this model; else its related articles among
        ``sites``' (None: every site's)."""
        model = self.encoder.model_name
        check_embedded(article, model)
        answer = await self.for_article_id(article.id, query, sites)
        if answer is None:  # re-embedded since it was read
            raise embedding_pending(article.external_id, article.embedding_model, model)
        return answer[1]

    async def for_article_id(
        self, article_id: uuid.UUID, query: RelatedFilters, sites: Sites = None
    ) -> tuple[ArticleKey, list[RelatedArticle]] | None:
        """The article's key and its related articles, in one round trip in the common case;
        None when there is no article of ``sites`` (None: any site) with a ready vector of this
        model by that id (the caller answers 404 or 409). Results come from ``sites`` only."""
        found = await self.candidates(article_id, query, sites)
        if found is None or found.asked is None:
            return None
        row = found.asked
        key = ArticleKey(id=article_id, external_id=row["external_id"])
        if not needs_features(query):
            return key, related_articles(found.rows[: query.limit], query.min_score)
        [vector] = candidate_vectors([row])
        # Recency counts from the story's own date: its coverage clusters around it.
        asked = Asked(vector, AskedText.of_row(row), row["category"], row["published_at"])
        return key, await self.answer(Candidates.of(found.rows), query, asked)

    async def candidates(
        self, article_id: uuid.UUID, query: RelatedFilters, sites: Sites = None
    ) -> Found | None:
        """The search statements of a request for a stored article (bench/related.py sends
        exactly these), without the ranking."""
        return await self.nearest(
            StoredVector(article_id),
            resolve_filters(query, exclude_id=article_id, sites=sites),
            candidates_wanted(query),
            query.limit,
            features=needs_features(query),
            probe=article_id,
        )

    async def for_draft(self, draft: DraftIn, sites: Sites = None) -> list[RelatedArticle]:
        """Articles of ``sites`` (None: every site) related to a draft."""
        filters = resolve_filters(draft, sites=sites)  # a site not the caller's: 403 first
        text = embedding_text(draft.title, draft.summary, draft.body)
        [vector] = await self.encoder.encode([text], Priority.INTERACTIVE)
        limit = draft.limit
        features = needs_features(draft)
        wanted = candidates_wanted(draft)
        found = await self.nearest(vector, filters, wanted, limit, features)
        assert found is not None  # a vector of its own: never an unknown article
        if not features:
            return related_articles(found.rows[:limit], draft.min_score)
        terms, headline = await self.repository.draft_terms(draft.title, draft.summary, draft.body)
        words = AskedText(terms, headline, len(draft.body.split()) >= LONG_TEXT_WORDS)
        # A draft is about to be published: recency counts from now.
        asked = Asked(vector, words, draft.own_category, datetime.now(UTC))
        return await self.answer(Candidates.of(found.rows), draft, asked)

    async def nearest(
        self,
        vector: Any,
        filters: Filters,
        wanted: int,
        limit: int,
        features: bool,
        probe: uuid.UUID | None = None,
    ) -> Found | None:
        """The ``wanted`` nearest rows under ``filters`` (at least ``limit`` when that many
        match), by the decisions in the module docstring. ``vector``: an array, or the
        StoredVector of ``probe``, the stored article asked about; None when that article has
        no ready vector of this model."""
        model = self.encoder.model_name

        async def statement(**how: Any) -> Found | None:
            rows = await self.repository.nearest(
                vector, model, filters, wanted, with_features=features, probe=probe, **how
            )
            if rows and rows[0]["score"] is None:  # a StoredVector that found no vector
                return None
            return Found.of(rows, probe)

        if await self._exact_first(filters):
            return await statement(exact=True)
        # A walk whose candidate list holds the rows asked for and the probe: on the read
        # connections' own ef_search (app.db.reads.read_ef_search) unless `limit` asks for more.
        ef_search = max(self.ef_search, wanted + (probe is not None))
        while True:
            found = await statement(ef_search=None if ef_search == self.ef_search else ef_search)
            if found is None or not found.lost or ef_search >= MAX_EF_SEARCH:
                break
            ef_search = min(ef_search * WIDER_WALK, MAX_EF_SEARCH)
        if found is None:
            return None
        if found.lost or len(found.rows) < limit:
            return await statement(exact=True)
        return Found(found.rows[:wanted], found.asked, found.probed)

    async def _exact_first(self, filters: Filters) -> bool:
        """Filters the planner expects to keep few rows, or a small share of the table: an exact
        scan of them, no index walk. The caller's sites count: a small site among many is a
        small share of the table."""
        if not filters.restrictive and filters.sites is None:
            return False
        model = self.encoder.model_name
        estimate = self.repository.estimated_rows
        rows = await self.row_estimates.get(model, filters, estimate)
        if rows < EXACT_SCAN_ROWS or rows > MAX_EXACT_SCAN_ROWS:
            return exact_first(rows, total=0)  # the table's size cannot change the answer
        return exact_first(rows, await self.row_estimates.get(model, Filters(), estimate))

    async def answer(
        self,
        candidates: Candidates,
        query: RelatedFilters,
        asked: Asked,
        relevance: "np.ndarray[tuple[int], np.dtype[np.float32]] | None" = None,
    ) -> list[RelatedArticle]:
        """The candidates ranked and chosen for ``query``, explained if it asks.
        ``relevance``: the candidates' relevance when the caller has its own
        (recommendations), else the ranking's from ``asked``."""
        if relevance is None and is_plain(query):
            items = related_articles(candidates.rows[: query.limit], query.min_score)
        else:
            items = self._ranked(candidates, query, asked, relevance)
        if query.explain:
            items = await self.explained(items, candidates, query, asked)
        return items

    def relevance(
        self, candidates: Candidates, ranking: str, asked: Asked
    ) -> "np.ndarray[tuple[int], np.dtype[np.float32]]":
        """Each candidate's relevance to ``asked``: the hybrid ranking's (z-units), or the
        embedding cosine."""
        query_vector = np.asarray(asked.vector, dtype=np.float32)
        if ranking != "hybrid":
            cosines: np.ndarray[tuple[int], np.dtype[np.float32]] = (
                candidates.vectors @ query_vector
            )
            return cosines
        return rerank(
            query_vector,
            asked.text.terms,
            asked.text.long,
            candidates.vectors,
            candidates.terms,
            same_category(asked.category, [row["category"] for row in candidates.rows]),
            corpus_idf=self.corpus_idf,
            title_terms=asked.text.headline,
        )

    def _ranked(
        self,
        candidates: Candidates,
        query: RelatedFilters,
        asked: Asked,
        relevance: "np.ndarray[tuple[int], np.dtype[np.float32]] | None",
    ) -> list[RelatedArticle]:
        """The candidates reranked (hybrid) and chosen (dedupe, diversity, recency from
        ``asked.reference``, sources), with the scores they were chosen by."""
        rows = candidates.rows
        if not rows:
            return []
        if relevance is None:
            if query.ranking == "hybrid":
                relevance = self.relevance(candidates, query.ranking, asked)
            else:
                relevance = np.array([row["score"] for row in rows], dtype=np.float32)
        chosen = select(
            relevance,
            np.asarray(asked.vector, dtype=np.float32),
            candidates.vectors,
            [row["published_at"] for row in rows],
            [row["source"] for row in rows],
            asked.reference,
            Preferences(
                query.limit, query.dedupe, query.diversity, query.recency, query.max_per_source
            ),
            query_terms=asked.text.terms,
            terms=candidates.terms,
        )
        scores = [score for _, score in chosen[: query.limit]]
        kept = [rows[i] for i, _ in chosen[: query.limit]]
        return related_articles(kept, query.min_score, scores)

    async def explained(
        self,
        items: list[RelatedArticle],
        candidates: Candidates,
        query: RelatedFilters,
        asked: Asked,
    ) -> list[RelatedArticle]:
        """``items`` with their ``explain`` (schemas.Explanation), from the candidates in the
        order the search found them."""
        if not items:
            return items
        rows = candidates.rows
        place = {row["id"]: i for i, row in enumerate(rows)}
        lexicon = lexicon_of(
            asked.text.terms, candidates.terms, self.corpus_idf, asked.text.headline
        )
        found = evidence(lexicon)
        similarity = candidates.vectors @ np.asarray(asked.vector, dtype=np.float32)
        prior = None
        if query.ranking == "hybrid":
            categories = [row["category"] for row in rows]
            prior = category_prior(len(rows), same_category(asked.category, categories))
        fresh = None
        if query.recency is not None:
            published = [row["published_at"] for row in rows]
            fresh = freshness(published, asked.reference, query.recency)
        words = await self.repository.lexemes([item.id for item in items])
        explained = []
        for item in items:
            i = place[item.id]
            explain = Explanation(
                similarity=round(float(similarity[i]), 6),
                lexical=round(float(found.lexical[i]), 6),
                shared_words=[words[h] for h in found.shared[i].tolist() if h in words],
                category_prior=None if prior is None else round(float(prior[i]), 6),
                recency_factor=None if fresh is None else round(float(fresh[i]), 6),
                rank_before_rerank=i + 1,
            )
            explained.append(item.model_copy(update={"explain": explain}))
        return explained
