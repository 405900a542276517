"""The second-stage ranking as a function (synthetic inputs: this is arithmetic, not relevance)."""

import numpy as np
import pytest

from app.related.rerank import RerankParams, rerank
from app.related.statistics import CorpusIdf
from app.related.terms import NO_TERMS, Terms
from tests.fakes import terms_of


def order_of(scores: np.ndarray) -> list[int]:  # type: ignore[type-arg]
    return list(np.argsort(-scores, kind="stable"))


def unit(v: list[float]) -> np.ndarray:  # type: ignore[type-arg]
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def terms(*counts: dict[str, int]) -> list[Terms]:
    return [terms_of(c) for c in counts]


def test_shared_rare_words_lift_a_candidate_on_long_texts() -> None:
    query = unit([1, 0, 0])
    vectors = np.vstack([unit([0.9, 0.1, 0]), unit([0.88, 0.12, 0]), unit([0, 1, 0])])
    candidates = terms({"market": 2}, {"etna": 3, "catania": 2}, {"football": 1})
    [query_terms] = terms({"etna": 2, "catania": 1, "market": 1})

    by_vector = np.argsort(-(vectors @ query))
    order = order_of(
        rerank(query, query_terms, True, vectors, candidates, params=RerankParams(feedback_docs=1))
    )

    assert list(by_vector[:2]) == [0, 1]
    assert order[:2] == [1, 0]  # the candidate sharing the rare words goes first
    assert order[-1] == 2


def test_without_lexical_evidence_the_vector_order_stands() -> None:
    rng = np.random.default_rng(3)
    query = unit(list(rng.standard_normal(8)))
    vectors = np.vstack([unit(list(rng.standard_normal(8))) for _ in range(6)])
    scores = rerank(
        query, NO_TERMS, False, vectors, [NO_TERMS] * 6, params=RerankParams(feedback_weight=0.0)
    )
    assert order_of(scores) == list(np.argsort(-(vectors @ query), kind="stable"))
    assert len(rerank(query, NO_TERMS, False, vectors[:1], [NO_TERMS])) == 1


def test_same_category_is_a_nudge_not_a_filter() -> None:
    query = unit([1, 0, 0])
    # Two near ties, a weak match in the same section, and unrelated articles.
    close = [unit([0.95, 0.05, 0]), unit([0.93, 0.07, 0]), unit([0.1, 0.9, 0])]
    vectors = np.vstack(close + [unit([0.02 * i, 0, 1]) for i in range(8)])
    no_terms = [NO_TERMS] * len(vectors)
    same = np.zeros(len(vectors), dtype=np.float32)
    same[[1, 2]] = 1
    params = RerankParams(feedback_weight=0.0)

    plain = order_of(rerank(query, NO_TERMS, False, vectors, no_terms, params=params))
    nudged = order_of(rerank(query, NO_TERMS, False, vectors, no_terms, same, params))

    assert plain[:2] == [0, 1]
    assert nudged[:2] == [1, 0]  # a near tie goes to the article's own section
    assert nudged.index(0) < nudged.index(2)  # a far weaker match does not jump the queue


def corpus_idf(shares: dict[str, float], articles: int = 1000) -> CorpusIdf:
    [listed] = terms({word: 1 for word in shares})
    order = np.argsort(listed.hashes)
    frequencies = np.array(list(shares.values()))[order]
    return CorpusIdf(listed.hashes[order], frequencies, 0.0005, float(articles))


def test_corpus_idf_knows_the_topic_word_the_candidates_share() -> None:
    # Candidate 0 shares "cocoa" with the article, candidate 1 shares "brazil"; four more cocoa
    # reports make "cocoa" look common among the candidates, though it is rare in the corpus.
    query = unit([1, 0, 0])
    vectors = np.vstack([unit([1, 0, 0])] * 6)
    candidates = terms(
        {"cocoa": 1, "harvest": 1},
        {"brazil": 1, "election": 1},
        *({"cocoa": 1, f"other{i}": 1} for i in range(4)),
    )
    [query_terms] = terms({"cocoa": 1, "brazil": 1})
    params = RerankParams(feedback_weight=0.0)

    local = rerank(query, query_terms, True, vectors, candidates, params=params)
    idf = corpus_idf({"cocoa": 0.002, "brazil": 0.2})
    corpus = rerank(query, query_terms, True, vectors, candidates, params=params, corpus_idf=idf)

    assert local[1] > local[0]  # locally "brazil" is the rare word
    assert corpus[0] > corpus[1]  # in the corpus "cocoa" is


def test_the_headline_words_weigh_more_with_corpus_idf() -> None:
    query = unit([1, 0, 0])
    vectors = np.vstack([unit([1, 0, 0])] * 3)
    candidates = terms({"cocoa": 1}, {"brazil": 1}, {"weather": 1})
    [query_terms, headline] = terms({"cocoa": 1, "brazil": 1}, {"brazil": 1})
    idf = corpus_idf({"cocoa": 0.01, "brazil": 0.01, "weather": 0.01})
    params = RerankParams(feedback_weight=0.0)

    plain = rerank(query, query_terms, True, vectors, candidates, params=params, corpus_idf=idf)
    boosted = rerank(
        query,
        query_terms,
        True,
        vectors,
        candidates,
        params=params,
        corpus_idf=idf,
        title_terms=headline,
    )

    assert plain[0] == pytest.approx(plain[1])
    assert boosted[1] > boosted[0] > boosted[2]
