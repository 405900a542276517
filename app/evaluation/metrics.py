"""Ranking metrics with binary relevance (same label), over the top 10."""

import math
from collections.abc import Sequence
from dataclasses import dataclass

K = 10


@dataclass
class Scores:
    p_at_1: float = 0.0
    p_at_5: float = 0.0
    p_at_10: float = 0.0
    mrr_at_10: float = 0.0
    ndcg_at_10: float = 0.0
    duplicate_rate: float = 0.0  # result lists holding a (near) duplicate of the query article


def query_scores(relevant: Sequence[bool], relevant_total: int) -> Scores:
    """Scores of one ranked list; precision counts a short list's missing slots as misses."""
    top = list(relevant[:K])
    first = next((i for i, r in enumerate(top) if r), None)
    dcg = sum(1 / math.log2(i + 2) for i, r in enumerate(top) if r)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(relevant_total, K)))
    return Scores(
        p_at_1=float(bool(top[:1] and top[0])),
        p_at_5=sum(top[:5]) / 5,
        p_at_10=sum(top) / K,
        mrr_at_10=0.0 if first is None else 1 / (first + 1),
        ndcg_at_10=dcg / ideal if ideal else 0.0,
    )


def mean_scores(scores: Sequence[Scores], duplicates: int) -> Scores:
    n = max(len(scores), 1)
    return Scores(
        p_at_1=sum(s.p_at_1 for s in scores) / n,
        p_at_5=sum(s.p_at_5 for s in scores) / n,
        p_at_10=sum(s.p_at_10 for s in scores) / n,
        mrr_at_10=sum(s.mrr_at_10 for s in scores) / n,
        ndcg_at_10=sum(s.ndcg_at_10 for s in scores) / n,
        duplicate_rate=duplicates / n,
    )
