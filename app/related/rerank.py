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
  reinforce each other, one-off coincidences fade.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float32]

_LEXEME = re.compile(r"'((?:[^']|'')+)':([0-9A-D,]+)")


@dataclass(frozen=True)
class RerankParams:
    long_text_words: int = 120  # a body this long makes the text "long"
    lexical_weight_short: float = 0.35
    lexical_weight_long: float = 0.5
    feedback_docs: int = 3
    feedback_weight: float = 1.0


DEFAULT_PARAMS = RerankParams()


def lexeme_counts(tsvector: str | None) -> dict[str, int]:
    """Term frequencies from a tsvector's text form: `'word':1,7 'other':3`."""
    if not tsvector:
        return {}
    return {m.group(1): m.group(2).count(",") + 1 for m in _LEXEME.finditer(tsvector)}


def _zscore(x: Floats) -> Floats:
    std = float(x.std())
    return (x - x.mean()) / std if std > 1e-9 else np.zeros_like(x)


def _tfidf(query: dict[str, int], candidates: Sequence[dict[str, int]]) -> Floats:
    """Unit tf-idf rows (sublinear tf) for [query, *candidates], idf over those documents."""
    vocabulary: dict[str, int] = {}
    for doc in (query, *candidates):
        for term in doc:
            vocabulary.setdefault(term, len(vocabulary))
    matrix = np.zeros((len(candidates) + 1, max(len(vocabulary), 1)), dtype=np.float32)
    for row, doc in enumerate((query, *candidates)):
        for term, tf in doc.items():
            matrix[row, vocabulary[term]] = 1 + np.log(tf)
    df = (matrix > 0).sum(axis=0)
    matrix *= np.log((1 + len(matrix)) / (1 + df)) + 1
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1)).astype(np.float32)


def rerank(
    query_vector: Floats,
    query_terms: dict[str, int],
    long_text: bool,
    vectors: Floats,
    terms: Sequence[dict[str, int]],
    params: RerankParams = DEFAULT_PARAMS,
) -> Floats:
    """A relevance score per candidate (z-units over the candidates; higher is better)."""
    if len(vectors) < 2:
        return np.zeros(len(vectors), dtype=np.float32)
    weight = params.lexical_weight_long if long_text else params.lexical_weight_short
    lexical = _tfidf(query_terms, terms)
    query_lex, cand_lex = lexical[0], lexical[1:]

    def fused(q_vec: Floats, q_lex: Floats) -> Floats:
        return (1 - weight) * _zscore(vectors @ q_vec) + weight * _zscore(cand_lex @ q_lex)

    first = fused(query_vector, query_lex)
    best = np.argsort(-first, kind="stable")[: params.feedback_docs]
    beta = params.feedback_weight
    expanded = fused(
        query_vector + beta * vectors[best].mean(axis=0),
        query_lex + beta * cand_lex[best].mean(axis=0),
    )
    return expanded
