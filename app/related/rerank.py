"""Second-stage ranking of the nearest-neighbour candidates: semantic + lexical evidence,
then pseudo-relevance feedback. Pure numpy over at most a few hundred candidates.

Measured on the labelled corpora in ../shared/data (`related eval`): embeddings win on headlines
and short abstracts, keywords on long texts about named events, so

* lexical similarity is tf-idf cosine over PostgreSQL's own lexemes (the stored tsvector),
  with idf taken over the query and its candidates: it rewards the rare words a candidate
  shares with the article (names, places) without a corpus-wide statistics table;
* each signal is z-normalised over the candidates and mixed with a weight that grows with the
  length of the text asked about (headlines carry few words worth matching);
* the query is then expanded with its best few candidates (Rocchio pseudo-relevance feedback),
  in both spaces, and the candidates are scored again: articles about the same story or topic
  reinforce each other, one-off coincidences fade;
* a candidate in the same category (the publisher's section) as the article gets a prior of
  `category_weight` z-units: a nudge, not a filter, so a better match from another section
  still wins. Where categories are absent it changes nothing.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

Floats = NDArray[np.float32]

_LEXEME = re.compile(r"'((?:[^']|'')+)':([0-9A-D,]+)")


@dataclass(frozen=True)
class RerankParams:
    long_text_words: int = 120  # a body this long makes the text "long"
    lexical_weight_short: float = 0.35
    lexical_weight_long: float = 0.5
    feedback_docs: int = 3
    feedback_weight: float = 1.0
    category_weight: float = 0.5


DEFAULT_PARAMS = RerankParams()


def lexeme_counts(tsvector: str | None) -> dict[str, int]:
    """Term frequencies from a tsvector's text form: `'word':1,7 'other':3`."""
    if not tsvector:
        return {}
    return {m.group(1): m.group(2).count(",") + 1 for m in _LEXEME.finditer(tsvector)}


# A text's lexemes with their counts: a mapping, or the two parallel arrays as stored
# (Article.lexemes, Article.lexeme_counts), which the service passes without building dicts.
Terms = Mapping[str, int] | tuple[Sequence[str], Sequence[int]]


def as_pair(terms: Terms) -> tuple[Sequence[str], Sequence[int]]:
    if isinstance(terms, tuple):
        return terms
    return list(terms), list(terms.values())


def _zscore(x: Floats) -> Floats:
    std = float(x.std())
    return (x - x.mean()) / std if std > 1e-9 else np.zeros_like(x)


def _tfidf(query: Terms, candidates: Sequence[Terms]) -> tuple[Floats, "sparse.csr_array"]:
    """Unit tf-idf vectors (sublinear tf, idf over the query and its candidates): the query's
    dense, the candidates' as the rows of a sparse matrix (long texts share few words).

    A hundred long articles hold tens of thousands of words, and a Python statement per word
    costs milliseconds: words become columns through their hashes, in numpy (64-bit hashes of
    a few thousand distinct words do not collide in practice)."""
    documents = [as_pair(terms) for terms in (query, *candidates)]
    words: list[str] = []
    occurrences: list[int] = []
    for document_words, document_counts in documents:
        words += document_words
        occurrences += document_counts
    hashes = np.fromiter(map(hash, words), dtype=np.int64, count=len(words))
    distinct, column_of = np.unique(hashes, return_inverse=True)
    lengths = np.array([len(w) for w, _ in documents])
    row_of = np.repeat(np.arange(len(documents)), lengths)
    counts = np.array(occurrences, dtype=np.float64)
    n_docs, n_terms = len(documents), max(len(distinct), 1)
    df = np.bincount(column_of, minlength=n_terms)
    idf = np.log((1 + n_docs) / (1 + df)) + 1
    weights = (1 + np.log(counts)) * idf[column_of]
    norms = np.sqrt(np.bincount(row_of, weights=weights**2, minlength=n_docs))
    weights /= np.where(norms > 0, norms, 1)[row_of]
    query_row = np.zeros(n_terms, dtype=np.float32)
    query_row[column_of[: lengths[0]]] = weights[: lengths[0]]
    # The candidates' rows as CSR directly: each document's words are already contiguous.
    bounds = np.concatenate(([0], np.cumsum(lengths[1:])))
    matrix = sparse.csr_array(
        (weights[lengths[0] :].astype(np.float32), column_of[lengths[0] :], bounds),
        shape=(n_docs - 1, n_terms),
    )
    return query_row, matrix


def rerank(
    query_vector: Floats,
    query_terms: Terms,
    long_text: bool,
    vectors: Floats,
    terms: Sequence[Terms],
    same_category: Floats | None = None,
    params: RerankParams = DEFAULT_PARAMS,
) -> Floats:
    """A relevance score per candidate (z-units over the candidates; higher is better).

    ``same_category`` is 1 for candidates in the article's category, else 0.
    """
    if len(vectors) < 2:
        return np.zeros(len(vectors), dtype=np.float32)
    prior = np.zeros(len(vectors), dtype=np.float32)
    if same_category is not None:
        prior += np.float32(params.category_weight) * same_category
    weight = params.lexical_weight_long if long_text else params.lexical_weight_short
    query_lex, cand_lex = _tfidf(query_terms, terms)

    def fused(q_vec: Floats, q_lex: Floats) -> Floats:
        semantic, lexical = _zscore(vectors @ q_vec), _zscore(cand_lex @ q_lex)
        mixed: Floats = (1 - weight) * semantic + weight * lexical + prior
        return mixed

    first = fused(query_vector, query_lex)
    best = np.argsort(-first, kind="stable")[: params.feedback_docs]
    beta = params.feedback_weight
    expanded = fused(
        query_vector + beta * vectors[best].mean(axis=0),
        query_lex + beta * np.asarray(cand_lex[best].mean(axis=0), dtype=np.float32).ravel(),
    )
    return expanded
