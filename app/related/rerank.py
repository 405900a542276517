"""Second-stage ranking of the nearest-neighbour candidates: semantic + lexical evidence,
then pseudo-relevance feedback. Pure numpy over at most a few hundred candidates.

Measured on the labelled corpora in ../shared/data (`related eval`): embeddings win on headlines
and short abstracts, keywords on long texts about named events, so

* lexical similarity is tf-idf cosine over PostgreSQL's own lexemes (the stored tsvector),
  with idf over the corpus from PostgreSQL's own statistics (app.related.statistics; over the
  query and its candidates until the corpus is analyzed): it rewards the rare words a candidate
  shares with the article (names, places, the topic), and the article's headline words count
  1.5 times;
* each signal is z-normalised over the candidates and mixed with a weight that grows with the
  length of the text asked about (headlines carry few words worth matching);
* the query is then expanded with its best few candidates (Rocchio pseudo-relevance feedback),
  in both spaces, and the candidates are scored again: articles about the same story or topic
  reinforce each other, one-off coincidences fade;
* a candidate in the same category (the publisher's section) as the article gets a prior of
  `category_weight` z-units: a nudge, not a filter, so a better match from another section
  still wins. Where categories are absent it changes nothing.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from app.related.statistics import CorpusIdf
from app.related.terms import TermBatch, Terms

Floats = NDArray[np.float32]


@dataclass(frozen=True)
class RerankParams:
    long_text_words: int = 120  # a body this long makes the text "long"
    lexical_weight_short: float = 0.35
    lexical_weight_long: float = 0.5
    feedback_docs: int = 3
    feedback_weight: float = 1.0
    category_weight: float = 0.5
    # The article's own headline words count this many times in its tf-idf vector: a headline
    # names the story (measured on Reuters, docs/relevance.md; only with corpus idf).
    title_boost: float = 1.5


DEFAULT_PARAMS = RerankParams()


def zscore(x: Floats) -> Floats:
    centred = x - x.mean()
    # The standard deviation as a dot product: ndarray.std() costs twice as much on the few
    # dozen values of a request, and a request computes five of them.
    std = math.sqrt(float(centred @ centred) / len(x)) if len(x) else 0.0
    return centred / np.float32(std) if std > 1e-9 else np.zeros_like(x)


@dataclass(frozen=True)
class TfIdf:
    """Unit tf-idf vectors (sublinear tf; idf over the corpus when its statistics are known,
    else over the query and its candidates) over the distinct words of one request: the query's
    dense, the candidates' as (row, column, weight) entries, which is all a sparse matrix would
    hold; dot products are bincounts."""

    query: NDArray[np.float64]
    hashes: NDArray[np.int64]  # the word of each column
    rows: NDArray[np.intp]
    columns: NDArray[np.intp]
    weights: NDArray[np.float64]
    candidates: int

    @classmethod
    def of(
        cls,
        query: Terms,
        candidates: Sequence[Terms] | TermBatch,
        corpus_idf: CorpusIdf | None = None,
        boosted: NDArray[np.int64] | None = None,
        boost: float = 1.0,
    ) -> "TfIdf":
        """``boosted``: hashes of the query's words that weigh ``boost`` times as much."""
        batch = TermBatch.of(candidates)
        # The query is document 0, the candidates 1 to n.
        n_documents = len(batch) + 1
        lengths = np.concatenate([[len(query)], batch.lengths])
        distinct, column_of = np.unique(
            np.concatenate([query.hashes, batch.hashes]), return_inverse=True
        )
        counts = np.concatenate([query.counts, batch.counts]).astype(np.float64)
        row_of = np.repeat(np.arange(n_documents), lengths)
        n_terms = max(len(distinct), 1)
        if corpus_idf is None:
            df = np.bincount(column_of, minlength=n_terms)
            idf = np.log((1 + n_documents) / (1 + df)) + 1
        else:
            idf = corpus_idf(distinct)
        weights = (1 + np.log(counts)) * idf[column_of]
        first = lengths[0]
        if boosted is not None and boost != 1.0:
            weights[:first] *= np.where(np.isin(query.hashes, boosted), boost, 1.0)
        norms = np.sqrt(np.bincount(row_of, weights=weights**2, minlength=n_documents))
        weights /= np.where(norms > 0, norms, 1)[row_of]
        query_row = np.zeros(n_terms)
        query_row[column_of[:first]] = weights[:first]
        return cls(
            query_row, distinct, row_of[first:] - 1, column_of[first:], weights[first:], len(batch)
        )

    def scores(self, query: NDArray[np.float64]) -> Floats:
        """Each candidate's dot product with ``query`` (a dense row over the words)."""
        products = self.weights * query[self.columns]
        return np.bincount(self.rows, weights=products, minlength=self.candidates).astype(
            np.float32
        )

    def mean_of(self, chosen: NDArray[np.intp]) -> NDArray[np.float64]:
        """The mean of the ``chosen`` candidates' vectors, dense."""
        keep = np.isin(self.rows, chosen)
        total = np.bincount(
            self.columns[keep], weights=self.weights[keep], minlength=len(self.query)
        )
        return total / max(len(chosen), 1)


def category_prior(
    candidates: int, same_category: Floats | None, params: RerankParams = DEFAULT_PARAMS
) -> Floats:
    """The z-units each candidate gets for sharing the article's category."""
    prior = np.zeros(candidates, dtype=np.float32)
    if same_category is not None:
        prior += np.float32(params.category_weight) * same_category
    return prior


def lexicon_of(
    query_terms: Terms,
    terms: Sequence[Terms] | TermBatch,
    corpus_idf: CorpusIdf | None,
    title_terms: Terms | None,
    params: RerankParams = DEFAULT_PARAMS,
) -> TfIdf:
    """The tf-idf space of one request, the query's headline words boosted (with corpus idf)."""
    boosted = None if title_terms is None or corpus_idf is None else title_terms.hashes
    return TfIdf.of(query_terms, terms, corpus_idf, boosted, params.title_boost)


@dataclass(frozen=True)
class Evidence:
    """The lexical side of the ranking, per candidate, as `explain=true` shows it."""

    lexical: Floats  # tf-idf cosine with the text asked about (before feedback)
    shared: list[NDArray[np.int64]]  # hashes of the shared words, heaviest first


def evidence(lexicon: TfIdf, words: int = 5) -> Evidence:
    """Each candidate's lexical score and its ``words`` shared words of most weight (the
    word's share of the tf-idf cosine)."""
    products = lexicon.weights * lexicon.query[lexicon.columns]
    shared: list[NDArray[np.int64]] = []
    for row in range(lexicon.candidates):
        mine = np.flatnonzero((lexicon.rows == row) & (products > 0))
        heaviest = mine[np.argsort(-products[mine], kind="stable")[:words]]
        shared.append(lexicon.hashes[lexicon.columns[heaviest]])
    return Evidence(lexicon.scores(lexicon.query), shared)


def rerank(
    query_vector: Floats,
    query_terms: Terms,
    long_text: bool,
    vectors: Floats,
    terms: Sequence[Terms] | TermBatch,
    same_category: Floats | None = None,
    params: RerankParams = DEFAULT_PARAMS,
    corpus_idf: CorpusIdf | None = None,
    title_terms: Terms | None = None,
) -> Floats:
    """A relevance score per candidate (z-units over the candidates; higher is better).

    ``same_category`` is 1 for candidates in the article's category, else 0. ``title_terms``:
    the words of the article's headline, boosted when ``corpus_idf`` is known.
    """
    if len(vectors) < 2:
        return np.zeros(len(vectors), dtype=np.float32)
    prior = category_prior(len(vectors), same_category, params)
    weight = params.lexical_weight_long if long_text else params.lexical_weight_short
    lexicon = lexicon_of(query_terms, terms, corpus_idf, title_terms, params)

    def fused(q_vec: Floats, q_lex: NDArray[np.float64]) -> Floats:
        semantic, lexical = zscore(vectors @ q_vec), zscore(lexicon.scores(q_lex))
        mixed: Floats = (1 - weight) * semantic + weight * lexical + prior
        return mixed

    first = fused(query_vector, lexicon.query)
    best = np.argsort(-first, kind="stable")[: params.feedback_docs]
    beta = params.feedback_weight
    expanded = fused(
        query_vector + beta * vectors[best].mean(axis=0),
        lexicon.query + beta * lexicon.mean_of(best),
    )
    return expanded
