"""From ranked candidates to the list a reader sees: no copies of the article itself, one of
each group of duplicates (the earliest published), then the newsroom's optional preferences:
freshness (`recency`), variety (`diversity`, maximal marginal relevance) and `max_per_source`.

Each chosen item comes with the value it was chosen by, its `score`, so the list is in
descending score: the relevance as a gain in (0, 1), minus the recency penalty, and with
diversity minus its resemblance to the items above it (greedy MMR picks never increase).

Recency, for news: the distance in time from the story asked about (a stored article's own
``published_at``; now for a draft), with the half-life ``recency`` days, costs at most
RECENCY_WEIGHT of the gain:

    score = gain - RECENCY_WEIGHT * (1 - 0.5 ** (|published_at - reference| / recency))

so however short the half-life, an article reorders among those of about its relevance and
never rises above the story's own coverage (a gain that much higher) for being newer.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from app.related.rerank import zscore
from app.related.terms import TermBatch, Terms, jaccard

# Two articles are the same text (a wire copy, syndication, a story republished under a new
# headline) when their embeddings are this close AND they share this much of their vocabulary
# (Jaccard of their lexeme sets). Cosine alone cannot tell a copy from a templated report of the
# same kind ("weekly grain export inspections") whose names and figures differ: 0.99 already
# misses a copy with a rewritten headline, while on Reuters-21578 18.6% of articles have a
# neighbour at 0.95, mostly such reports. Measured with `related eval` (docs/relevance.md).
NEAR_DUPLICATE = 0.95
SAME_WORDS = 0.9
# The most recency can take from a gain in (0, 1): enough to order a story's coverage by
# nearness in time (its articles' gains lie within a few hundredths of each other), too little
# to lift an unrelated article (gains 0.3 and more below) over it.
RECENCY_WEIGHT = 0.15


def is_duplicate(cosine: float, terms: Terms | None, other_terms: Terms | None) -> bool:
    """Terms unknown (None): cosine decides alone."""
    if cosine < NEAR_DUPLICATE:
        return False
    return terms is None or other_terms is None or jaccard(terms, other_terms) >= SAME_WORDS


@dataclass(frozen=True)
class Preferences:
    limit: int
    dedupe: bool = True
    diversity: float = 0.0  # 0: pure relevance; 1: as different from each other as possible
    recency_days: float | None = None  # half-life on published_at; None: age does not matter
    max_per_source: int | None = None


def freshness(
    published: Sequence[datetime], reference: datetime, half_life_days: float
) -> NDArray[np.float64]:
    """The recency factor of each candidate: 1 at ``reference``, halving every
    ``half_life_days`` away from it."""
    # A row stored by other means may hold PostgreSQL's +-infinity, which the driver reads as a
    # datetime without a zone: taken as UTC, it only makes that row very new or old.
    apart_days = (
        np.array(
            [
                abs((reference - (p if p.tzinfo else p.replace(tzinfo=UTC))).total_seconds())
                for p in published
            ]
        )
        / 86400
    )
    factor: NDArray[np.float64] = np.power(0.5, apart_days / half_life_days)
    return factor


def select(
    relevance: NDArray[np.float32],
    query_vector: NDArray[np.float32],
    vectors: NDArray[np.float32],
    published: Sequence[datetime],
    sources: Sequence[str | None],
    reference: datetime,
    prefs: Preferences,
    query_terms: Terms | None = None,
    terms: Sequence[Terms] | TermBatch | None = None,
) -> list[tuple[int, float]]:
    """(index, score) of the chosen candidates, in the order to show them: descending score.

    ``reference`` is the moment recency counts from (see the module docstring); ``query_terms``
    and the candidates' ``terms`` refine duplicate detection when given.
    """
    if len(relevance) == 0:
        return []
    # Relevance as a gain in (0, 1), comparable across rankings: z-scored over the candidates,
    # then squashed. (Min-max scaling would give the last candidate no worth at all.)
    gain = 1 / (1 + np.exp(-zscore(relevance)))
    if prefs.recency_days is not None:
        fresh = freshness(published, reference, prefs.recency_days)
        gain = gain - RECENCY_WEIGHT * (1 - fresh)

    keep = np.ones(len(gain), dtype=bool)
    if prefs.dedupe:
        cosines = vectors @ query_vector
        for i in map(int, np.flatnonzero(cosines >= NEAR_DUPLICATE)):  # the only possible copies
            keep[i] = not is_duplicate(float(cosines[i]), query_terms, terms[i] if terms else None)

    chosen: list[int] = []
    scores: list[float] = []
    per_source: Counter[str | None] = Counter()
    weight = 1.0 - prefs.diversity
    # Without diversity each pick is the best remaining gain: one sort instead of a search per
    # pick (ties to the earlier candidate, as argmax takes them).
    by_gain = None if prefs.diversity > 0 else iter(np.argsort(-gain, kind="stable").tolist())
    while len(chosen) < prefs.limit and keep.any():
        if by_gain is not None:
            best = next(i for i in by_gain if keep[i])
            score = float(gain[best])
        else:
            value = gain  # the first pick: the most relevant
            if chosen:
                redundancy = (vectors @ vectors[chosen].T).max(axis=1)
                value = weight * gain - (1 - weight) * redundancy
            best = int(np.argmax(np.where(keep, value, -np.inf)))
            score = float(value[best] if chosen else weight * gain[best])
            if scores:  # a pick below a negative cosine could edge above the one before
                score = min(score, scores[-1])
        keep[best] = False
        source = sources[best]
        cap = prefs.max_per_source
        if cap is not None and source is not None and per_source[source] >= cap:
            continue
        if prefs.dedupe and chosen:
            cosines = vectors[chosen] @ vectors[best]
            twins = [
                chosen[k]
                for k in map(int, np.flatnonzero(cosines >= NEAR_DUPLICATE))
                if is_duplicate(
                    float(cosines[k]),
                    terms[chosen[k]] if terms else None,
                    terms[best] if terms else None,
                )
            ]
            if twins:
                # One of a group of duplicates is shown, at the group's best place (and score):
                # the first published, where the story broke.
                slot = chosen.index(twins[0])
                if published[best] < published[chosen[slot]]:
                    per_source[sources[chosen[slot]]] -= 1
                    per_source[source] += 1
                    chosen[slot] = best
                continue
        chosen.append(best)
        scores.append(score)
        per_source[source] += 1
    return list(zip(chosen, scores, strict=True))
