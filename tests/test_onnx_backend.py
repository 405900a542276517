"""The ONNX Runtime backends: exported locally and offline, once, and faithful to the torch model.

Sentences are written here for the test. The float export must reproduce torch closely enough to
share its stored model name; int8 must stay close enough to rank the same stories together.
"""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.core.config import Settings
from app.embedding import onnx_export
from app.embedding.model import Embedder, load_embedder

SENTENCES = [
    "Harbor City council votes to fund six night bus routes from March.",
    "The central bank cut its benchmark rate by a quarter point on Thursday.",
    "Firefighters contained most of the Cedar Ridge wildfire after the wind dropped.",
    "Local bakery wins regional prize for its rye bread.",
    "Ferry timetable changes for winter",
    "Marathon record falls in Lakemont as Abera runs 2:03:11 on a cool, still morning; "
    "organisers say the new course, flatter than last year's, drew the fastest field yet.",
]
# Longer than the model's 256 word pieces, so truncation is exercised.
LONG_LEAD = " ".join(f"Paragraph {i} of the budget story describes spending." for i in range(60))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def onnx_embedders(cache_dir: Path, offline: None) -> dict[str, Embedder]:
    return {
        backend: load_embedder(Settings(embedding_backend=backend, model_cache_dir=cache_dir))
        for backend in ("onnx", "onnx-int8")
    }


@pytest.fixture(scope="module")
def torch_embedder(offline: None) -> Embedder:
    """The sentence-transformers model itself, whatever the default backend is."""
    return load_embedder(Settings(embedding_backend="torch"))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    return np.sum(a * b, axis=1)


@pytest.mark.parametrize(("backend", "minimum"), [("onnx", 0.9999), ("onnx-int8", 0.99)])
def test_onnx_vectors_are_unit_384_d_and_match_the_torch_model(
    onnx_embedders: dict[str, Embedder], torch_embedder: Embedder, backend: str, minimum: float
) -> None:
    texts = [*SENTENCES, LONG_LEAD + " The vote is on Friday."]
    vectors = onnx_embedders[backend].encode(texts)
    assert vectors.shape == (len(texts), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosines(vectors, torch_embedder.encode(texts)).min() >= minimum
    assert onnx_embedders[backend].encode([]).shape == (0, 384)


def test_onnx_reads_only_the_models_256_word_pieces(onnx_embedders: dict[str, Embedder]) -> None:
    # Past the window, a different ending must change nothing, as with the torch model.
    endings = [" The vote is on Friday.", " Snow closed every school in the north."]
    vectors = onnx_embedders["onnx"].encode([LONG_LEAD + e for e in endings])
    assert cosines(vectors[:1], vectors[1:])[0] > 0.99999


def test_int8_vectors_are_stored_under_their_own_model_name(
    onnx_embedders: dict[str, Embedder], torch_embedder: Embedder
) -> None:
    assert onnx_embedders["onnx"].name == torch_embedder.name == "all-MiniLM-L6-v2"
    assert onnx_embedders["onnx-int8"].name == "all-MiniLM-L6-v2+onnx-int8"


def test_the_export_is_cached_and_not_made_again(
    onnx_embedders: dict[str, Embedder], cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_export, "export_float", fail)
    monkeypatch.setattr(onnx_export, "quantize", fail)
    settings = Settings(embedding_backend="onnx-int8", model_cache_dir=cache_dir)
    again = load_embedder(settings)
    np.testing.assert_allclose(
        again.encode(SENTENCES), onnx_embedders["onnx-int8"].encode(SENTENCES), atol=1e-6
    )
    [export] = (cache_dir / "onnx").iterdir()  # one export, no leftover temporary files
    assert sorted(p.name for p in export.iterdir()) == sorted(
        [
            onnx_export.FLOAT_FILE,
            onnx_export.INT8_FILE,
            onnx_export.TOKENIZER_FILE,
            onnx_export.META_FILE,
        ]
    )
