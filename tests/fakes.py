"""Deterministic stand-ins for unit tests of plumbing (never of relevance): the model, and a
text's terms."""

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import numpy as np

from app.embedding.model import Vectors
from app.related.terms import Terms


def terms_of(counts: dict[str, int]) -> Terms:
    """Terms from words and their counts, hashed with a stable hash of our own (not PostgreSQL's:
    both sides of a comparison in a test use this one)."""
    hashes = [
        int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big", signed=True)
        for word in counts
    ]
    return Terms(np.array(hashes, dtype=np.int64), np.array(list(counts.values()), np.int16))


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


class SlowEmbedder(HashEmbedder):
    """HashEmbedder that takes ``delay_s`` per call and logs to ``log``: a `start` line when a
    call begins and a `done<TAB>text as JSON` line per text once its vector exists."""

    def __init__(self, delay_s: float, log: Path | None, name: str = "fake-hash") -> None:
        super().__init__(name)
        self.delay_s = delay_s
        self.log = log

    def _write(self, lines: list[str]) -> None:
        if self.log is not None:
            with self.log.open("a", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines))

    def encode(self, texts: list[str]) -> Vectors:
        self._write([f"start\t{len(texts)}"])
        time.sleep(self.delay_s)
        vectors = super().encode(texts)
        self._write([f"done\t{json.dumps(text)}" for text in texts])
        return vectors


class PoisonEmbedder(HashEmbedder):
    """Fails on any batch holding a text with POISON in it, as a tokenizer might on bad input."""

    def encode(self, texts: list[str]) -> Vectors:
        vectors = super().encode(texts)  # records the call
        if any("POISON" in text for text in texts):
            raise ValueError("the tokenizer rejected this text")
        return vectors


def slow_from_env() -> SlowEmbedder:
    """For `RELATED_EMBEDDER_FACTORY=tests.fakes:slow_from_env` in worker subprocesses."""
    log = os.environ.get("FAKE_EMBEDDER_LOG")
    return SlowEmbedder(
        float(os.environ.get("FAKE_EMBEDDER_DELAY_S", "0")),
        Path(log) if log else None,
        os.environ.get("FAKE_EMBEDDER_NAME", "fake-hash"),
    )
