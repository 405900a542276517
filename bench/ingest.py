"""End-to-end ingest throughput against the model's own, side by side on the same articles.

    .venv/bin/python bench/ingest.py [--bbc 400] [--uci 2000] [--backend torch] [--batch 200]

For each corpus (BBC full articles, UCI headlines) it measures, in this order:

* model: the Embedder itself (the configured backend, loaded in this process and warmed up)
  encoding each article's embedding text in chunks of RELATED_EMBEDDING_BATCH_SIZE, as the
  service's encoding queue hands them over. Nothing else: no parsing, no database. It is
  measured before and after the two end-to-end runs; the ratios use the mean of the two, and
  the table shows both, so a change of the machine's load during the run is visible.
* cli: `related ingest FILE.jsonl` as a subprocess on a fresh embedded PostgreSQL (its own
  RELATED_DATA_DIR in a temporary directory, DATABASE_URL unset). Its rate uses the time the
  command itself prints: from reading the first article until every article is embedded
  (reading, validating, storing, claiming, encoding and writing back, first and cold batch
  included), so Python start-up, the model load and the database start are left out; the wall
  time of the whole command is printed too.
* http: `related serve` as a subprocess on a free loopback port and another fresh data
  directory, with a write key made by `related keys create`; once /readyz answers and one
  small warm-up batch (articles not in the measured set) has been stored and embedded
  (`?wait=true`), one client POSTs the articles to /v1/articles/batch in batches of --batch
  over real HTTP, each after the previous answer (ingest answers before embedding), then polls
  /v1/embedding/status. The rate is articles
  over the time from the first request until no article is pending; every article must come
  back `created` and end `ready`.

The ratio end-to-end / model says how much of the model's speed survives the service. The runs
follow one another on the same machine; other load on it (another test run, ...) lowers each
by however much it takes at that moment, so the load average is printed at the start and end.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.config import Settings
from app.embedding.model import Embedder, load_embedder
from bench.corpora import BBC, DATA_DIR, UCI, read_articles, texts_of
from bench.server import RELATED, create_key, free_port, wait_ready

ROOT = Path(__file__).resolve().parents[1]
WARM_UP = 16


def service_env(data_dir: Path, backend: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "RELATED_DATABASE_URL")}
    env.update(
        # This checkout's code, whichever checkout the virtualenv was installed from.
        PYTHONPATH=str(ROOT),
        RELATED_DATA_DIR=str(data_dir),
        RELATED_EMBEDDING_BACKEND=backend,
        RELATED_LOG_LEVEL="warning",
        HF_HUB_OFFLINE="1",
    )
    return env


def model_rate(embedder: Embedder, texts: list[str], size: int) -> float:
    embedder.encode(texts[:size])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(texts), size):
        embedder.encode(texts[start : start + size])
    return len(texts) / (time.perf_counter() - started)


def cli_rate(backend: str, articles: list[dict[str, Any]], tmp: Path) -> tuple[float, float]:
    """Articles per second of the ingest loop, and of the whole command."""
    path = tmp / "articles.jsonl"
    path.write_text("".join(json.dumps(a) + "\n" for a in articles))
    started = time.perf_counter()
    result = subprocess.run(
        [str(RELATED), "ingest", str(path)],
        cwd=tmp,  # no stray .env
        env=service_env(tmp / "cli-data", backend),
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    wall = time.perf_counter() - started
    match = re.search(r"^(\d+) created, .* invalid in ([\d.]+) s$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or match is None or int(match[1]) != len(articles):
        raise SystemExit(f"related ingest failed:\n{result.stdout}\n{result.stderr[-3000:]}")
    return len(articles) / float(match[2]), len(articles) / wall


def http_rate(
    backend: str,
    articles: list[dict[str, Any]],
    warm_up: list[dict[str, Any]],
    tmp: Path,
    batch: int,
) -> float:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(tmp / "http-data", backend)
    # Writes need an API key: make one in the database the server is about to use.
    token = create_key(env, "read", "write", cwd=tmp)  # writes, and polls the queue
    server = subprocess.Popen(
        [str(RELATED), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, timeout=600, headers=headers) as client:
            wait_ready(client, server)
            client.post(
                "/v1/articles/batch", params={"wait": "true"}, json={"articles": warm_up}
            ).raise_for_status()
            started = time.perf_counter()
            for start in range(0, len(articles), batch):
                answer = client.post(
                    "/v1/articles/batch", json={"articles": articles[start : start + batch]}
                )
                answer.raise_for_status()
                counts = answer.json()["counts"]
                if counts["created"] != len(articles[start : start + batch]):
                    raise SystemExit(f"batch at {start} was not all created: {counts}")
            # Ingest answers before embedding: the end is when every article is ready.
            while True:
                queue = client.get("/v1/embedding/status").json()["counts"]
                if queue["pending"] == 0:
                    break
                # Each poll is a request and a count over the table, on the cores the model
                # uses: every 20 ms took about a fifth of a core from it. 0.25 s bounds the
                # error at the end to a quarter of a second.
                time.sleep(0.25)
            elapsed = time.perf_counter() - started
            if queue["ready"] != len(articles) + len(warm_up):
                raise SystemExit(f"not every article was embedded: {queue}")
            return len(articles) / elapsed
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--bbc", type=int, default=400, help="BBC articles (full text)")
    parser.add_argument("--uci", type=int, default=2000, help="UCI headlines")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--batch", type=int, default=200, help="articles per HTTP request")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    print(f"backend {args.backend}; load average at start {os.getloadavg()[0]:.2f}")
    settings = Settings(embedding_backend=args.backend)
    embedder = load_embedder(settings)
    size = settings.embedding_batch_size
    header = f"{'corpus':<26} {'model/s':>13} {'cli/s':>6} {'cli/model':>9} {'http/s':>6}"
    rows = [header + f" {'http/model':>10} {'cli wall/s':>10}"]
    for name, file, count in (
        ("BBC full articles", BBC, args.bbc),
        ("UCI headlines", UCI, args.uci),
    ):
        if count == 0:
            continue
        everything = read_articles(args.data_dir, file, count + WARM_UP)
        articles, warm_up = everything[:count], everything[count:]
        before = model_rate(embedder, texts_of(articles), size)
        with tempfile.TemporaryDirectory(prefix="related-bench-") as tmp:
            cli, cli_wall = cli_rate(args.backend, articles, Path(tmp))
            http = http_rate(args.backend, articles, warm_up, Path(tmp), args.batch)
        after = model_rate(embedder, texts_of(articles), size)
        model = (before + after) / 2
        rows.append(
            f"{f'{name} ({count})':<26} {model:>5.1f} ({before:.0f}-{after:.0f}) {cli:>6.1f}"
            f" {cli / model:>9.2f} {http:>6.1f} {http / model:>10.2f} {cli_wall:>10.1f}"
        )
        print(rows[-1], file=sys.stderr)  # progress
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
