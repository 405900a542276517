"""app.related.select on made-up candidates: the list is in descending score whatever the
preferences, and recency's penalty is bounded (see the module docstring's formula)."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from app.related.select import RECENCY_WEIGHT, Preferences, select

NOW = datetime(2026, 12, 4, tzinfo=UTC)


def candidates(seed: int, n: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[datetime]]:
    rng = np.random.default_rng(seed)
    query = rng.normal(size=16).astype(np.float32)
    query /= np.linalg.norm(query)
    vectors = rng.normal(size=(n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    relevance = (vectors @ query).astype(np.float32)
    published = [NOW - timedelta(days=float(d)) for d in rng.uniform(0, 400, size=n)]
    return relevance, query, vectors, published


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize(
    "prefs",
    [
        Preferences(10),
        Preferences(10, diversity=0.3),
        Preferences(10, diversity=1.0),
        Preferences(10, recency_days=0.01),
        Preferences(10, diversity=0.7, recency_days=3, max_per_source=2),
    ],
)
def test_scores_descend_whatever_the_preferences(seed: int, prefs: Preferences) -> None:
    relevance, query, vectors, published = candidates(seed)
    sources = [f"s{i % 4}" for i in range(len(relevance))]
    chosen = select(relevance, query, vectors, published, sources, NOW, prefs)
    scores = [score for _, score in chosen]
    cap = prefs.max_per_source
    assert len(chosen) == min(prefs.limit, 4 * cap if cap else prefs.limit)  # four sources
    assert scores == sorted(scores, reverse=True)


def test_recency_takes_at_most_its_weight_and_counts_from_the_reference() -> None:
    relevance, query, vectors, published = candidates(7)
    sources = [None] * len(relevance)
    plain = dict(select(relevance, query, vectors, published, sources, NOW, Preferences(50)))
    story_date = NOW - timedelta(days=200)
    dated = dict(
        select(
            relevance,
            query,
            vectors,
            published,
            sources,
            story_date,
            Preferences(50, recency_days=0.001),
        )
    )
    for i, score in plain.items():
        penalty = score - dated[i]
        assert -1e-6 <= penalty <= RECENCY_WEIGHT + 1e-6
        # An article published on the story's own day loses nothing.
        if abs((published[i] - story_date).total_seconds()) < 60:
            assert penalty == pytest.approx(0, abs=1e-3)
