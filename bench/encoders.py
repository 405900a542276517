"""Throughput and fidelity of the encoder backends, side by side on the same texts.

    .venv/bin/python bench/encoders.py [--bbc 300] [--uci 2000] [--rounds 2]

For each corpus (BBC full articles, embedded as the service embeds them: title + summary + lead,
up to 256 word pieces; UCI headlines), every backend (torch, onnx, onnx-int8) encodes the same
texts in file order, in chunks of RELATED_EMBEDDING_BATCH_SIZE, RELATED_EMBEDDING_STREAMS of
them at once, which is how the service's encoding queue hands them to the model. Rounds
alternate the backends so a slow spell of the machine does not fall on one of them; the table
gives the median rate over rounds and its range.
Each backend is loaded (and, the first time, exported) and warmed up before timing. Fidelity is
the cosine of each ONNX vector to the torch vector of the same text, over all texts.
"""

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.config import Settings
from app.embedding.model import Embedder, Vectors, load_embedder
from bench.corpora import BBC, DATA_DIR, UCI, read_articles, texts_of
from bench.record import Record

BACKENDS = ("torch", "onnx", "onnx-int8")


def encode_like_the_service(
    embedder: Embedder, texts: list[str], batch_size: int, streams: int
) -> Vectors:
    """Chunks of ``batch_size``, ``streams`` of them encoded at once, as app.embedding.encoder."""
    chunks = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    with ThreadPoolExecutor(max_workers=streams) as pool:
        return np.vstack(list(pool.map(embedder.encode, chunks)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--bbc", type=int, default=300, help="BBC articles (full text)")
    parser.add_argument("--uci", type=int, default=2000, help="UCI headlines")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    record = Record("encoders")
    rows: list[dict[str, Any]] = []

    corpora = {
        f"BBC full articles ({args.bbc})": texts_of(read_articles(args.data_dir, BBC, args.bbc)),
        f"UCI headlines ({args.uci})": texts_of(read_articles(args.data_dir, UCI, args.uci)),
    }
    settings = {b: Settings(embedding_backend=b) for b in BACKENDS}
    batch_size = settings["torch"].embedding_batch_size
    streams = settings["torch"].embedding_streams
    embedders = {}
    for backend in BACKENDS:
        started = time.perf_counter()
        embedders[backend] = load_embedder(settings[backend])
        embedders[backend].encode(["A warm-up sentence for the encoder."] * batch_size)
        print(f"loaded {backend} in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    header = f"{'corpus':<28} {'backend':<10} {'texts/s':>8} {'range':>15} {'x torch':>8}"
    print(f"{header} {'cos mean':>10} {'cos min':>10}")
    for corpus, texts in corpora.items():
        rates: dict[str, list[float]] = {b: [] for b in BACKENDS}
        vectors: dict[str, Vectors] = {}
        for _ in range(args.rounds):
            for backend in BACKENDS:
                started = time.perf_counter()
                vectors[backend] = encode_like_the_service(
                    embedders[backend], texts, batch_size, streams
                )
                rates[backend].append(len(texts) / (time.perf_counter() - started))
        torch_rate = statistics.median(rates["torch"])
        for backend in BACKENDS:
            rate = statistics.median(rates[backend])
            spread = f"{min(rates[backend]):.1f}-{max(rates[backend]):.1f}"
            cos = np.sum(vectors[backend] * vectors["torch"], axis=1)
            print(
                f"{corpus:<28} {backend:<10} {rate:>8.1f} {spread:>15} {rate / torch_rate:>7.2f}x"
                f" {cos.mean():>10.7f} {cos.min():>10.7f}"
            )
            rows.append(
                {
                    "corpus": corpus,
                    "backend": backend,
                    "texts_per_s_median": round(rate, 1),
                    "texts_per_s_range": [
                        round(min(rates[backend]), 1),
                        round(max(rates[backend]), 1),
                    ],
                    "x_torch": round(rate / torch_rate, 2),
                    "cosine_to_torch_mean": round(float(cos.mean()), 7),
                    "cosine_to_torch_min": round(float(cos.min()), 7),
                }
            )
    record.save(rounds=args.rounds, batch_size=batch_size, streams=streams, rows=rows)


if __name__ == "__main__":
    main()
