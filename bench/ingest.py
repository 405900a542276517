"""End-to-end ingest throughput against the model's own, side by side on the same articles.

    .venv/bin/python bench/ingest.py [--bbc 400] [--uci 2000] [--backend torch] [--batch 200]
                                     [--streams 1,2]

For each corpus (BBC full articles, UCI headlines) it measures, in this order:

* model: the Embedder itself (the configured backend, loaded in this process and warmed up)
  encoding each article's embedding text in chunks of RELATED_EMBEDDING_BATCH_SIZE, --streams
  of them at once on the cores shared out between them, as the service's encoding queue hands
  them over (the service runs with the same RELATED_EMBEDDING_STREAMS). Nothing else: no
  parsing, no database. It is measured before and after the two end-to-end runs; the ratios
  use the mean of the two, and the table shows both, so a change of the machine's load during
  the run is visible.
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

Then, per corpus, the pipeline's database work alone (no model running), step by step on a fresh
embedded PostgreSQL: store the articles, claim them, write back their vectors; the CPU that
PostgreSQL's processes and this process spend per article. Set beside the model's own CPU per
article, it gives the ceiling of end-to-end / model when PostgreSQL shares the model's cores,
as it does here: model / (model + database).

The ratio end-to-end / model says how much of the model's speed survives the service. The runs
follow one another on the same machine; other load on it (another test run, ...) lowers each
by however much it takes at that moment, so the load average is printed at the start and end.
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.articles.bulk import ingest_file
from app.core.config import Settings
from app.db.engine import open_database
from app.embedding.model import Embedder, Vectors, compute_threads, load_embedder
from app.embedding.text import embedding_hash, embedding_text
from app.pipeline.repository import Embedded, PipelineRepository
from bench.corpora import BBC, DATA_DIR, UCI, read_articles, texts_of
from bench.encoders import encode_like_the_service
from bench.record import Record
from bench.related import cpu_seconds
from bench.server import RELATED, create_key, free_port, wait_ready

ROOT = Path(__file__).resolve().parents[1]
WARM_UP = 16


def service_env(data_dir: Path, backend: str, streams: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "RELATED_DATABASE_URL")}
    env.update(
        # This checkout's code, whichever checkout the virtualenv was installed from.
        PYTHONPATH=str(ROOT),
        RELATED_DATA_DIR=str(data_dir),
        RELATED_EMBEDDING_BACKEND=backend,
        RELATED_EMBEDDING_STREAMS=str(streams),
        RELATED_LOG_LEVEL="warning",
        HF_HUB_OFFLINE="1",
    )
    return env


def model_rate(
    embedder: Embedder, texts: list[str], size: int, streams: int
) -> tuple[float, float, Vectors]:
    """Texts per second, CPU milliseconds per text (every thread of this process), vectors."""
    embedder.encode(texts[:size])  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    vectors = encode_like_the_service(embedder, texts, size, streams)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return len(texts) / elapsed, 1000 * cpu / len(texts), vectors


def postgres_cpu_seconds() -> float:
    """CPU used so far by the machine's PostgreSQL processes (the bench's own, on a quiet one)."""
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    named = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "postgres":
                named.append(pid)
    return sum(cpu_seconds(named).values())


def database_cost(
    articles: list[dict[str, Any]], vectors: Vectors, model: str, tmp: Path
) -> dict[str, float]:
    """CPU milliseconds per article of the pipeline's database work, one step at a time, on a
    fresh embedded PostgreSQL: PostgreSQL's own (store, claim, write back the given vectors),
    and this process's (the client side of the same statements). No model runs meanwhile."""
    # Its own embedded server, whatever DATABASE_URL says, as the CLI and HTTP runs get.
    settings = Settings(database_url=None, data_dir=tmp / "cost-data", log_level="warning")
    return asyncio.run(_database_cost(articles, vectors, model, tmp, settings))


async def _database_cost(
    articles: list[dict[str, Any]], vectors: Vectors, model: str, tmp: Path, settings: Settings
) -> dict[str, float]:
    path = tmp / "cost.jsonl"
    path.write_text("".join(json.dumps(a) + "\n" for a in articles))
    costs: dict[str, float] = {}
    async with open_database(settings) as database:
        pg, app = postgres_cpu_seconds(), time.process_time()

        def step(name: str) -> None:
            nonlocal pg, app
            now_pg, now_app = postgres_cpu_seconds(), time.process_time()
            costs[f"pg {name}"] = 1000 * (now_pg - pg) / len(articles)
            costs[f"app {name}"] = 1000 * (now_app - app) / len(articles)
            pg, app = now_pg, now_app

        encoder = SimpleNamespace(model_name=model)  # storing only: nothing is encoded
        await ingest_file(
            path,
            database,
            encoder,  # type: ignore[arg-type]
            256,
            progress=False,
            wait=False,
            settings=settings,
        )
        step("store")
        claims = []
        while True:
            async with database.sessions() as session, session.begin():
                claimed = await PipelineRepository(session).claim(
                    settings.embedding_claim_size, 600
                )
            if not claimed:
                break
            claims.append(claimed)
        step("claim")
        vector_of = dict(zip(texts_of(articles), vectors, strict=True))
        for claimed in claims:
            written = []
            for c in claimed:
                text_ = embedding_text(c.title, c.summary, c.body)
                new_hash = embedding_hash(model, text_)
                written.append(Embedded(c.id, c.claimed_hash, vector_of[text_].tolist(), new_hash))
            async with database.sessions() as session, session.begin():
                repository = PipelineRepository(session)
                await repository.write_back(model, written)
                await repository.release([c.id for c in claimed])
        step("write back")
    return costs


def cli_rate(
    backend: str, streams: int, articles: list[dict[str, Any]], tmp: Path
) -> tuple[float, float]:
    """Articles per second of the ingest loop, and of the whole command."""
    path = tmp / "articles.jsonl"
    path.write_text("".join(json.dumps(a) + "\n" for a in articles))
    started = time.perf_counter()
    result = subprocess.run(
        [str(RELATED), "ingest", str(path)],
        cwd=tmp,  # no stray .env
        env=service_env(tmp / f"cli-data-{streams}", backend, streams),
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
    streams: int,
    articles: list[dict[str, Any]],
    warm_up: list[dict[str, Any]],
    tmp: Path,
    batch: int,
) -> float:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(tmp / f"http-data-{streams}", backend, streams)
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


def use_streams(backend: str, streams: int) -> None:
    """Share the cores out as the service would for ``streams`` (torch: process-wide)."""
    if backend == "torch":
        import torch

        torch.set_num_threads(compute_threads(streams))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--bbc", type=int, default=400, help="BBC articles (full text)")
    parser.add_argument("--uci", type=int, default=2000, help="UCI headlines")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--batch", type=int, default=200, help="articles per HTTP request")
    parser.add_argument(
        "--streams",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[Settings().embedding_streams],
        help="RELATED_EMBEDDING_STREAMS values to run in turn (default: the setting's)",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    record = Record("ingest")
    figures: list[dict[str, Any]] = []

    print(f"backend {args.backend}; load average at start {os.getloadavg()[0]:.2f}")
    settings = Settings(embedding_backend=args.backend)
    # One per streams value: an ONNX session's threads are fixed when it is made.
    embedders = {
        streams: load_embedder(settings.model_copy(update={"embedding_streams": streams}))
        for streams in args.streams
    }
    size = settings.embedding_batch_size
    header = f"{'corpus':<22} {'streams':>7} {'model/s':>13} {'cli/s':>6} {'cli/model':>9}"
    rows = [header + f" {'http/s':>6} {'http/model':>10} {'cli wall/s':>10}"]
    costs = []
    for name, file, count in (
        ("BBC full articles", BBC, args.bbc),
        ("UCI headlines", UCI, args.uci),
    ):
        if count == 0:
            continue
        everything = read_articles(args.data_dir, file, count + WARM_UP)
        articles, warm_up = everything[:count], everything[count:]
        texts = texts_of(articles)
        for streams, embedder in embedders.items():
            use_streams(args.backend, streams)
            before, model_cpu, vectors = model_rate(embedder, texts, size, streams)
            with tempfile.TemporaryDirectory(prefix="related-bench-") as tmp:
                cli, cli_wall = cli_rate(args.backend, streams, articles, Path(tmp))
                http = http_rate(args.backend, streams, articles, warm_up, Path(tmp), args.batch)
            use_streams(args.backend, streams)
            after, _, _ = model_rate(embedder, texts, size, streams)
            model = (before + after) / 2
            rows.append(
                f"{f'{name} ({count})':<22} {streams:>7} {model:>5.1f} ({before:.0f}-{after:.0f})"
                f" {cli:>6.1f} {cli / model:>9.2f} {http:>6.1f} {http / model:>10.2f}"
                f" {cli_wall:>10.1f}"
            )
            print(rows[-1], file=sys.stderr)  # progress
            figures.append(
                {
                    "corpus": f"{name} ({count})",
                    "streams": streams,
                    "model_per_s": round(model, 1),
                    "model_per_s_before_after": [round(before, 1), round(after, 1)],
                    "cli_per_s": round(cli, 1),
                    "cli_over_model": round(cli / model, 2),
                    "http_per_s": round(http, 1),
                    "http_over_model": round(http / model, 2),
                    "cli_wall_s": round(cli_wall, 1),
                }
            )
        with tempfile.TemporaryDirectory(prefix="related-bench-") as tmp:
            cost = database_cost(articles, vectors, embedder.name, Path(tmp))
        costs.append((f"{name} ({count})", model_cpu, cost))
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    print("\n".join(rows))
    print_costs(costs, args.streams[-1])
    record.save(
        backend=args.backend,
        rows=figures,
        cpu_ms_per_article=[
            {"corpus": name, "model": round(model_cpu, 2), **{k: round(v, 2) for k, v in c.items()}}
            for name, model_cpu, c in costs
        ],
    )


def print_costs(costs: list[tuple[str, float, dict[str, float]]], streams: int) -> None:
    """What the database work takes beside the model, and the ceiling that puts on the ratio
    when PostgreSQL runs on the model's cores (the embedded default, and this bench)."""
    print(
        "\nCPU ms per article: the model's (all its threads, streams "
        f"{streams}) and the pipeline's database work, step by step (PostgreSQL / this process)"
    )
    for name, model_cpu, cost in costs:
        steps = ("store", "claim", "write back")
        pg = sum(cost[f"pg {step}"] for step in steps)
        app = sum(cost[f"app {step}"] for step in steps)
        detail = ", ".join(f"{s} {cost[f'pg {s}']:.2f} / {cost[f'app {s}']:.2f}" for s in steps)
        ceiling = model_cpu / (model_cpu + pg + app)
        print(
            f"  {name}: model {model_cpu:.2f}; database {pg:.2f} / {app:.2f} ({detail});"
            f" ceiling on one machine {ceiling:.2f}"
        )


if __name__ == "__main__":
    main()
