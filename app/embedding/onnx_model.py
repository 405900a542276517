"""The model run by ONNX Runtime from a local export: no torch at encoding time."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.embedding.vectors import Vectors

# The files of an export (made by onnx_export.py, which checks them against this runtime).
FLOAT_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class OnnxExport:
    directory: Path
    max_seq_length: int
    do_lower_case: bool
    dimension: int

    def model_file(self, quantized: bool) -> Path:
        return self.directory / (INT8_FILE if quantized else FLOAT_FILE)


# Encoding attribute of `tokenizers` for each input the exported graph may take.
_FEEDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


class OnnxEmbedder:
    def __init__(
        self,
        name: str,
        export: OnnxExport,
        model_file: Path,
        batch_size: int,
        threads: int | None = None,
    ) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        self.name = name
        self.dimension = export.dimension
        self.batch_size = batch_size
        self._lower = export.do_lower_case
        # The torch model reads at most max_seq_length word pieces: so must this one.
        self._tokenizer = Tokenizer.from_file(str(export.directory / TOKENIZER_FILE))
        self._tokenizer.enable_truncation(export.max_seq_length)
        self._tokenizer.enable_padding()  # to the longest text of each batch
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            # Each encoding stream's run uses this many threads; runs may overlap (thread-safe).
            options.intra_op_num_threads = threads
        self._session = onnxruntime.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = [i.name for i in self._session.get_inputs()]

    def encode(self, texts: list[str]) -> Vectors:
        if self._lower:
            texts = [t.lower() for t in texts]
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        # Texts of similar length share a batch, so little compute goes on padding.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] for i in rows])
            feeds = {
                name: np.array([getattr(e, _FEEDS[name]) for e in encodings], dtype=np.int64)
                for name in self._inputs
            }
            vectors[rows] = self._session.run(["embedding"], feeds)[0]
        return vectors
