"""Exporting the sentence-transformers model to ONNX, locally and once per model and version.

The graph is the whole embedding: transformer, mean pooling over real tokens and L2
normalisation, so ONNX Runtime alone (no torch) turns word pieces into the stored vectors. It is
exported from the same local model directory the torch backend loads (no model hub), then:

* optimised with ONNX Runtime's BERT fusions (attention, layer norm, GELU), which it cannot find
  in a graph traced through torch's SDPA attention, hence the export with eager attention;
* for ``onnx-int8``, dynamically quantized: int8 weights per output channel, activations
  quantized at run time. Per-tensor weights cost too much accuracy (cosine to torch about 0.95
  on BBC articles), and the fused attention stays float for the same reason.

Exports are cached under a key of the model's files and the export code's version, and written
to a temporary name then renamed, so concurrent processes never load half a file and the second
load of a model does not export again.
"""

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from app.embedding.onnx_model import (
    FLOAT_FILE,
    INT8_FILE,
    TOKENIZER_FILE,
    OnnxEmbedder,
    OnnxExport,
)

__all__ = ["FLOAT_FILE", "INT8_FILE", "TOKENIZER_FILE", "OnnxExport", "ensure_export"]

logger = logging.getLogger(__name__)

# Bump whenever the exported graph or its processing changes: old caches are then ignored.
EXPORT_VERSION = "1"
META_FILE = "related-onnx.json"
# Checked after every export: a traced graph that diverges from torch is never cached.
CHECK_SENTENCES = [
    "The council approved the night bus network after a long debate.",
    "Shares fell.",
    "A wildfire forced thousands to leave their homes as strong winds spread the flames "
    "across the valley overnight, officials said on Sunday.",
]
MIN_FLOAT_COSINE = 0.9999
MIN_INT8_COSINE = 0.97


def cache_key(source: Path) -> str:
    """Changes with any file of the model, the export code or ONNX Runtime's version."""
    import onnxruntime

    digest = hashlib.sha256(f"{EXPORT_VERSION}\n{onnxruntime.__version__}\n".encode())
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(source)).encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def ensure_export(name: str, source: Path, cache_dir: Path, quantized: bool) -> OnnxExport:
    """The cached export of the model in ``source``, exported (and quantized) if missing."""
    target = cache_dir / "onnx" / f"{name}-{cache_key(source)}"
    missing = not (target / META_FILE).exists()
    if missing or (quantized and not target.joinpath(INT8_FILE).exists()):
        require_export_tools()
    if missing:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".export-"))
        try:
            logger.info("exporting %s to ONNX in %s (once)", name, target)
            export_float(source, tmp)
            try:
                tmp.rename(target)
            except OSError:  # another process finished first: use its export
                if not (target / META_FILE).exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    export = read_export(target)
    if quantized and not export.model_file(True).exists():
        logger.info("quantizing %s to int8 (once)", name)
        quantize(export)
    return export


def require_export_tools() -> None:
    """Making an export needs the onnx package (the onnx extra); running one does not."""
    if importlib.util.find_spec("onnx") is None:
        raise RuntimeError(
            "making the ONNX export of the model needs the onnx package, the onnx extra "
            "(pip install -e '.[onnx]'); or set RELATED_EMBEDDING_BACKEND=torch"
        )


def read_export(directory: Path) -> OnnxExport:
    meta = json.loads((directory / META_FILE).read_text())
    return OnnxExport(
        directory, int(meta["max_seq_length"]), bool(meta["do_lower_case"]), int(meta["dimension"])
    )


def _check_pipeline(model: Any) -> None:
    """Only what the graph reproduces: a transformer, mean pooling, optionally normalisation."""
    kinds = [type(module).__name__ for module in model]
    if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
        raise ValueError(f"the ONNX backends support Transformer + Pooling models, not {kinds}")
    if model[1].pooling_mode != "mean":
        raise ValueError(f"the ONNX backends support mean pooling, not {model[1].pooling_mode}")


def export_float(source: Path, out: Path) -> None:
    """Exports, optimises and checks the float graph; writes it, the tokenizer and the meta."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    model: Any = SentenceTransformer(str(source), device="cpu")
    _check_pipeline(model)
    transformer: Any = model[0].auto_model
    # ONNX Runtime's attention fusion recognises the eager pattern, not torch's SDPA call.
    transformer.set_attn_implementation("eager")

    class Embedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            features = dict(zip(input_names, inputs, strict=True))
            tokens = self.transformer(**features).last_hidden_state
            mask = features["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    # Padded sample inputs: a batch without padding may trace a graph that ignores the mask.
    sample = model.tokenizer(CHECK_SENTENCES, padding=True, return_tensors="pt")
    input_names = list(sample.keys())
    raw = out / "raw.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow
        torch.onnx.export(
            Embedding().eval(),
            tuple(sample[n] for n in input_names),
            str(raw),
            input_names=input_names,
            output_names=["embedding"],
            dynamic_axes={
                **{n: {0: "batch", 1: "tokens"} for n in input_names},
                "embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    with _quiet_root_logger():
        _optimize(raw, out / FLOAT_FILE, transformer.config)
    raw.unlink()
    model.tokenizer.backend_tokenizer.save(str(out / TOKENIZER_FILE))
    dimension = int(model.get_embedding_dimension() or 0)
    meta = {
        "max_seq_length": int(model.max_seq_length),
        "do_lower_case": bool(getattr(model[0], "do_lower_case", False)),
        "dimension": dimension,
        "source": str(source),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    expected = model.encode(
        CHECK_SENTENCES, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    export = read_export(out)
    _verify(export, export.model_file(False), np.asarray(expected), MIN_FLOAT_COSINE)


def _optimize(raw: Path, out: Path, config: Any) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(raw),
        model_type="bert",
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
        opt_level=1,
    )
    optimized.save_model_to_file(str(out))


def quantize(export: OnnxExport) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = export.model_file(True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with _quiet_root_logger():
            quantize_dynamic(
                export.model_file(False),
                tmp,
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
                # The fused BERT ops hide some tensor types from shape inference; all are float.
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        floats = OnnxEmbedder("check", export, export.model_file(False), batch_size=8)
        _verify(export, tmp, floats.encode(CHECK_SENTENCES), MIN_INT8_COSINE)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's tools narrate every fusion and every quantized layer at INFO."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def _verify(export: OnnxExport, model_file: Path, expected: Any, minimum: float) -> None:
    got = OnnxEmbedder("check", export, model_file, batch_size=8).encode(CHECK_SENTENCES)
    cosine = float(np.min(np.sum(got * expected, axis=1)))
    if cosine < minimum:
        raise RuntimeError(
            f"the ONNX export {model_file.name} diverges from the model it was made from "
            f"(cosine {cosine:.5f} < {minimum}); not caching it"
        )
