"""What every embedding backend shares: its output type, its interface and the stored width.

Its own module so that the backends (model.py's torch one, onnx_model.py) and the loader that
picks between them depend on it rather than on each other.
"""

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

# The width of the stored vectors (the articles table's vector column, migration 0001).
EMBEDDING_DIMENSION = 384

Vectors = NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into unit-length vectors. Blocking: call it off the event loop."""

    name: str
    dimension: int

    def encode(self, texts: list[str]) -> Vectors: ...
