"""A lexical baseline comparable to a search engine's more-like-this: BM25 over the corpus,
queried with the article's 25 most distinctive terms (Elasticsearch's default for MLT)."""

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable

# A compact English stop list; a few hundred words do the work of the big ones.
STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own said same says she should so some such than that the
    their theirs them themselves then there these they this those through to too under until
    up very was we were what when where which while who whom why will with would you your
    yours yourself yourselves mr mrs ms one two new year years""".split()  # noqa: SIM905
)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS and len(w) > 1]


class BM25:
    def __init__(self, documents: Iterable[tuple[str, str]], k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.ids: list[str] = []
        self.term_counts: list[Counter[str]] = []
        lengths = []
        for index, (doc_id, text) in enumerate(documents):
            counts = Counter(terms(text))
            self.ids.append(doc_id)
            self.term_counts.append(counts)
            lengths.append(sum(counts.values()))
            for term, tf in counts.items():
                self.postings[term].append((index, tf))
        self.lengths = lengths
        self.positions = {doc_id: i for i, doc_id in enumerate(self.ids)}
        self.avg_length = sum(lengths) / max(len(lengths), 1)
        n = len(self.ids)
        self.idf = {
            t: math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5)) for t, p in self.postings.items()
        }

    def more_like_this(self, doc_id: str, limit: int = 10, max_terms: int = 25) -> list[str]:
        index = self.positions[doc_id]
        counts = self.term_counts[index]
        query = sorted(counts, key=lambda t: counts[t] * self.idf[t], reverse=True)[:max_terms]
        scores: dict[int, float] = defaultdict(float)
        for term in query:
            idf = self.idf[term]
            for other, tf in self.postings[term]:
                norm = self.k1 * (1 - self.b + self.b * self.lengths[other] / self.avg_length)
                scores[other] += idf * tf * (self.k1 + 1) / (tf + norm)
        scores.pop(index, None)
        best = sorted(scores, key=lambda i: scores[i], reverse=True)[:limit]
        return [self.ids[i] for i in best]
