"""Recommendations from a reader's history: articles like the ones read (``positive``), unlike
the ones dismissed (``negative``), never any of them.

Everything but the combination is related search's (app.related.service): the request's
filters and options go through the same RelatedFilters and resolve_filters, the candidates
come from the same search (RelatedService.nearest), and the same ranking and selection order
them (RelatedService.answer). Only how the history becomes one query is this module's:

* **mean** (the default): the history as one article, its vector the mean of the positives'
  and its words theirs together (counts summed), its category the most common among them;
  one search from the mean vector, then the hybrid ranking as for a stored article.
* **best**: the mean's candidates and each positive's (the MAX_SEARCHES most recent, one search
  each), each positive ranking them on its own (Qdrant's best-score strategy), a candidate's
  relevance its best over the positives. Not the default: it lost from K = 3 on every corpus.

`related eval --history K` measured both, with either ranking, against the plain mean-vector
baseline (docs/relevance.md "Recommendations"). A negative lowers each candidate by its
similarity to the nearest negative, NEGATIVE_WEIGHT z-units per standard deviation over the
candidates. Recency counts from the first (most recently read) positive's publication date.
"""

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import numpy as np
from numpy.typing import NDArray

from app.articles.filters import visible_sites
from app.articles.repository import parse_uuid
from app.core.errors import AppError
from app.core.sites import Sites
from app.recommend.schemas import Ignored, IgnoredReason, RecommendIn, RecommendOut
from app.related.repository import Filters, candidate_vectors
from app.related.rerank import zscore
from app.related.service import (
    CANDIDATES,
    LONG_TEXT_WORDS,
    Asked,
    AskedText,
    Candidates,
    RelatedService,
    resolve_filters,
)
from app.related.terms import Terms

Combination = Literal["mean", "best"]
COMBINATION: Combination = "mean"
# How far a negative pushes: z-units of relevance per standard deviation of similarity to the
# nearest negative, the same scale as the relevance itself. Enough that dismissing one article
# of a story puts the story's other articles below a story the reader read (the example
# stories, tests/test_recommend.py); not tuned on the corpora, whose histories have no negatives.
NEGATIVE_WEIGHT = 1.0
# best: the most recent positives searched, one search each.
MAX_SEARCHES = 10

Floats = NDArray[np.float32]


@dataclass(frozen=True)
class History:
    """The refs resolved: the usable articles' rows, in the request's order, and the rest."""

    positive: list[asyncpg.Record]
    negative: list[asyncpg.Record]
    ignored: list[Ignored]
    known: list[uuid.UUID]  # every article the refs name, usable or not: never returned

    @classmethod
    def of(cls, request: RecommendIn, rows: Sequence[asyncpg.Record]) -> "History":
        by_id = {row["id"]: row for row in rows}
        by_external: dict[str, list[asyncpg.Record]] = {}
        for row in rows:
            by_external.setdefault(row["external_id"], []).append(row)
        ignored: list[Ignored] = []

        def resolve(refs: Sequence[str], taken: set[uuid.UUID]) -> list[asyncpg.Record]:
            usable = []
            for ref in refs:
                named = by_external.get(ref, [])
                row = by_id.get(parse_uuid(ref)) or (named[0] if len(named) == 1 else None)
                if row is None or not row["usable"]:
                    reason: IgnoredReason = "not_embedded"
                    if row is None:  # an external_id of several of the caller's sites: which?
                        reason = "ambiguous" if named else "not_found"
                    ignored.append(Ignored(ref=ref, reason=reason))
                elif row["id"] not in taken:
                    taken.add(row["id"])
                    usable.append(row)
            return usable

        taken: set[uuid.UUID] = set()
        positive = resolve(request.positive, taken)
        negative = resolve(request.negative, taken)  # a ref in both counts as positive
        return cls(positive, negative, ignored, [row["id"] for row in rows])


def merged_text(rows: Sequence[asyncpg.Record]) -> AskedText:
    """The positives' words as one text's: counts summed, headlines' words together, long when
    most of them are."""
    texts = [AskedText.of_row(row) for row in rows]
    hashes, where = np.unique(np.concatenate([t.terms.hashes for t in texts]), return_inverse=True)
    counts = np.bincount(where, weights=np.concatenate([t.terms.counts for t in texts]))
    headline = np.unique(np.concatenate([t.headline.hashes for t in texts]))
    return AskedText(
        Terms(hashes.astype(np.int64), np.minimum(counts, 32767).astype(np.int16)),
        Terms(headline.astype(np.int64), np.ones(len(headline), dtype=np.int16)),
        2 * sum(row["body_words"] >= LONG_TEXT_WORDS for row in rows) > len(rows),
    )


def mean_vector(vectors: Floats) -> Floats:
    mean = vectors.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    unit: Floats = mean / norm if norm > 0 else mean
    return unit


def combined(relevances: Sequence[Floats]) -> Floats:
    """best: each candidate's best relevance over the positives, each positive's relevance
    z-scored over the candidates first so that none dominates by its scale."""
    best: Floats = np.max(np.stack([zscore(r) for r in relevances]), axis=0)
    return best


def steered(relevance: Floats, vectors: Floats, negatives: Floats) -> Floats:
    """``relevance`` (z-scored) lowered by each candidate's similarity to its nearest
    negative (z-scored), NEGATIVE_WEIGHT to one."""
    nearest = (vectors @ negatives.T).max(axis=1)
    lowered: Floats = zscore(relevance) - np.float32(NEGATIVE_WEIGHT) * zscore(nearest)
    return lowered


class RecommendService:
    def __init__(self, related: RelatedService) -> None:
        self.related = related

    async def recommend(
        self, request: RecommendIn, sites: Sites = None, combination: Combination = COMBINATION
    ) -> RecommendOut:
        """Recommendations from articles of ``sites`` (None: every site), for a caller who sees
        those: the history is looked up among them too."""
        related = self.related
        model = related.encoder.model_name
        refs = [*request.positive, *request.negative]
        visible = visible_sites(sites, request.site)  # a site not the caller's: 403 first
        history = History.of(request, await related.repository.history(refs, model, visible))
        if not history.positive:
            raise _no_positive(request, history)
        # The history never comes back: excluded by the request's own filters, by both names.
        query = request.model_copy(
            update={
                "exclude_ids": [
                    *request.exclude_ids,
                    *refs,
                    *(str(i) for i in history.known),
                ]
            }
        )
        filters = resolve_filters(query, sites=sites)
        positives = candidate_vectors(history.positive)
        latest = history.positive[0]
        asked = Asked(
            mean_vector(positives),
            merged_text(history.positive),
            _most_common([row["category"] for row in history.positive]),
            latest["published_at"],  # recency from the most recently read
        )
        found = await related.nearest(asked.vector, filters, wanted(query), query.limit, True)
        assert found is not None  # a vector of its own
        if combination == "mean":
            candidates = Candidates.of(found.rows)
            relevance = related.relevance(candidates, query.ranking, asked)
        else:
            candidates, relevance = await self._best(found.rows, history, query, filters, asked)
        if history.negative and candidates.rows:
            negatives = candidate_vectors(history.negative)
            relevance = steered(relevance, candidates.vectors, negatives)
        items = await related.answer(candidates, query, asked, relevance)
        return RecommendOut(model=model, items=items, ignored=history.ignored)

    async def _best(
        self,
        rows: list[Any],
        history: History,
        query: RecommendIn,
        filters: Filters,
        asked: Asked,
    ) -> tuple[Candidates, Floats]:
        """best: the mean's candidates and each positive's (the MAX_SEARCHES most recent), a
        candidate's relevance its best over the positives."""
        related = self.related
        positives = history.positive[:MAX_SEARCHES]
        vectors = candidate_vectors(positives)
        for vector in vectors:
            more = await related.nearest(vector, filters, wanted(query), query.limit, True)
            assert more is not None
            rows = _union(rows, more.rows)
        # An item's similarity: to its nearest positive, as this combination sees it; the
        # candidates in that order (their rank before the rerank).
        similarity = (candidate_vectors(rows) @ vectors.T).max(axis=1)
        order = np.argsort(-similarity, kind="stable").tolist()
        candidates = Candidates.of([dict(rows[i]) | {"score": float(similarity[i])} for i in order])
        each = [
            Asked(vector, AskedText.of_row(row), row["category"], asked.reference)
            for vector, row in zip(vectors, positives, strict=True)
        ]
        return candidates, combined([related.relevance(candidates, query.ranking, a) for a in each])


def wanted(query: RecommendIn) -> int:
    return max(query.limit, CANDIDATES)


def _union(rows: list[Any], more: list[Any]) -> list[Any]:
    seen = {row["id"] for row in rows}
    return rows + [row for row in more if row["id"] not in seen]


def _most_common(values: Sequence[str | None]) -> str | None:
    """Ties to the most recent (the first)."""
    counts = Counter(v for v in values if v is not None)
    return counts.most_common(1)[0][0] if counts else None


def _no_positive(request: RecommendIn, history: History) -> AppError:
    pending = [i.ref for i in history.ignored if i.reason == "not_embedded"]
    pending = [ref for ref in pending if ref in request.positive]
    if pending:
        return AppError(
            409,
            "embedding_pending",
            f"None of the positive articles is embedded yet ({pending[0]!r} is queued or "
            "failed): try again shortly",
            {"refs": pending},
        )
    return AppError(
        404,
        "not_found",
        "None of the positive articles exists",
        {"refs": list(request.positive)},
    )
