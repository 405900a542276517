"""Vectors of an evaluation's texts kept between runs: encoding a corpus is most of a run's
time on a CPU (full articles at a few dozen a second), and the same corpus under the same model
gives the same texts every time.

An Embedder in front of the real one: a text it has seen under the model (app.embedding.text's
``embedding_hash``) gets its stored vector; the others are encoded and stored. One file per
model in the cache folder, written when the run saves it. A cached vector is the one the first
run computed, so later runs are reproducible even where a backend's vectors depend a little on
the batch they were encoded in (int8, docs/relevance.md).
"""

from pathlib import Path

import numpy as np

from app.embedding.model import Embedder, Vectors
from app.embedding.text import embedding_hash


class CachedEmbedder:
    def __init__(self, inner: Embedder, folder: Path) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.path = folder / f"{self.name.replace('/', '_')}.npz"
        self._vectors: dict[str, Vectors] = {}
        self._added = False
        if self.path.exists():
            with np.load(self.path) as stored:
                keys, vectors = stored["keys"], stored["vectors"]
            self._vectors = {str(k): v for k, v in zip(keys, vectors, strict=True)}

    def encode(self, texts: list[str]) -> Vectors:
        keys = [embedding_hash(self.name, text) for text in texts]
        missing: dict[str, str] = {}  # each new text once
        for key, text in zip(keys, texts, strict=True):
            if key not in self._vectors:
                missing.setdefault(key, text)
        if missing:
            fresh = self.inner.encode(list(missing.values()))
            for key, vector in zip(missing, fresh, strict=True):
                self._vectors[key] = np.asarray(vector, dtype=np.float32)
            self._added = True
        if not keys:
            return np.empty((0, self.dimension), dtype=np.float32)
        return np.stack([self._vectors[k] for k in keys])

    def save(self) -> None:
        if not self._added:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self._vectors))
        vectors = np.stack(list(self._vectors.values()))
        partial = self.path.with_suffix(".partial.npz")
        np.savez(partial, keys=keys, vectors=vectors)
        partial.replace(self.path)
        self._added = False
