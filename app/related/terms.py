"""A text's terms as the ranking reads them: PostgreSQL's lexemes of the text (the same
document as the stored tsvector), each as a 64-bit hash with the number of times it occurs.

The database writes them (migration 0007: `term_hashes` and `term_counts`, bytes kept by a
trigger; `tsvector_terms()` for a draft), so a request decodes fifty candidates' words with
`np.frombuffer` instead of making a Python string per word, and tf-idf columns, shared-word
counts and duplicate tests are integer arithmetic in numpy. Hashes are PostgreSQL's
`hashtextextended(lexeme, 0)`, the function behind hash partitioning: the same word hashes alike
on the primary and its replicas. A few thousand distinct words per request do not collide in 64
bits in practice.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

# As the trigger writes them: big-endian 8-byte hashes (int8send) and 2-byte counts (int2send).
HASH_DTYPE = np.dtype(">i8")
COUNT_DTYPE = np.dtype(">i2")


@dataclass(frozen=True)
class Terms:
    hashes: NDArray[np.int64]  # one per distinct lexeme
    counts: NDArray[np.int16]  # occurrences of each, at least 1

    @classmethod
    def from_bytes(cls, hashes: bytes | None, counts: bytes | None) -> "Terms":
        if not hashes or not counts:
            return NO_TERMS
        return cls(
            np.frombuffer(hashes, dtype=HASH_DTYPE).astype(np.int64),
            np.frombuffer(counts, dtype=COUNT_DTYPE).astype(np.int16),
        )

    @classmethod
    def headline(cls, hashes: bytes | None) -> "Terms":
        """A headline's words: only which words, so counts of one."""
        found = np.frombuffer(hashes or b"", dtype=HASH_DTYPE).astype(np.int64)
        return cls(found, np.ones(len(found), dtype=np.int16))

    def __len__(self) -> int:
        return len(self.hashes)


NO_TERMS = Terms(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int16))


@dataclass(frozen=True)
class TermBatch:
    """The terms of several texts end to end, as the ranking reads its candidates': decoded from
    their bytes with one np.frombuffer for all, not two (and a Terms) per candidate."""

    hashes: NDArray[np.int64]
    counts: NDArray[np.int16]
    lengths: NDArray[np.intp]  # how many of the hashes are each text's, in order

    @classmethod
    def from_bytes(
        cls, hashes: Sequence[bytes | None], counts: Sequence[bytes | None]
    ) -> "TermBatch":
        # As Terms.from_bytes: either missing means no terms.
        pairs = [(h, c) if h and c else (b"", b"") for h, c in zip(hashes, counts, strict=True)]
        return cls(
            np.frombuffer(b"".join(h for h, _ in pairs), dtype=HASH_DTYPE).astype(np.int64),
            np.frombuffer(b"".join(c for _, c in pairs), dtype=COUNT_DTYPE).astype(np.int16),
            np.array([len(h) // HASH_DTYPE.itemsize for h, _ in pairs], dtype=np.intp),
        )

    @classmethod
    def of(cls, texts: "Sequence[Terms] | TermBatch") -> "TermBatch":
        if isinstance(texts, TermBatch):
            return texts
        return cls(
            np.concatenate([NO_TERMS.hashes, *(t.hashes for t in texts)]),
            np.concatenate([NO_TERMS.counts, *(t.counts for t in texts)]),
            np.array([len(t) for t in texts], dtype=np.intp),
        )

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> Terms:
        end = int(self.lengths[: index + 1].sum())
        start = end - int(self.lengths[index])
        return Terms(self.hashes[start:end], self.counts[start:end])


def jaccard(a: Terms, b: Terms) -> float:
    """Shared distinct words over all distinct words of the two texts."""
    shared = np.intersect1d(a.hashes, b.hashes, assume_unique=True).size
    union = len(a) + len(b) - shared
    return shared / union if union else 1.0
