"""A deterministic stand-in for the model, for unit tests of plumbing (never of relevance)."""

import hashlib
import threading

import numpy as np

from app.embedding.model import Vectors


class HashEmbedder:
    """Unit vectors from a hash of each text; counts its calls."""

    def __init__(self, name: str = "fake-hash", dimension: int = 384) -> None:
        self.name = name
        self.dimension = dimension
        self.calls: list[list[str]] = []
        self.thread_names: set[str] = set()
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> Vectors:
        with self._lock:
            self.calls.append(list(texts))
            self.thread_names.add(threading.current_thread().name)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dimension)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32)
