"""Mixed traffic against a running server on loopback: latency percentiles per kind, throughput.

    .venv/bin/python bench/load.py [--clients 8] [--duration 60] [--max-requests 5000]
                                   [--mix related=80,draft=10,upsert=10] [--seed-articles 500]

It starts `related serve` itself as a subprocess on a free loopback port: on DATABASE_URL when
set (its articles are left in place, plus the ones this run sends), else on a fresh embedded
PostgreSQL in a temporary directory. Once /readyz answers it stores the example articles and
the first --seed-articles of the BBC corpus in ../shared/data (read at run time) through
/v1/articles/batch, so related queries search a table of realistic size. Then --clients
concurrent clients (one asyncio task each, one connection pool) send, each request after their
previous answer, a kind drawn by the --mix weights:

* related: GET /v1/articles/{ref}/related?limit=10 for a random stored article (hybrid ranking);
* draft:   POST /v1/related with the title and lead of a random stored article (one encode);
* upsert:  POST /v1/articles of a new article (a stored one's text under a new external_id:
           one encode and one insert).

It stops at --duration seconds or --max-requests requests, whichever comes first, and prints
p50/p90/p99/max latency per kind and the throughput. Any answer other than the expected status,
or a failed request, is an error: they are counted and listed, and the exit status is 1.

The load generator runs on the same machine as the server (and the database): on 2 cores the
figures are those of the three sharing them. The load average is printed at start and end.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpora import BBC, DATA_DIR, read_articles
from bench.record import Record
from bench.server import RELATED, create_key, free_port, wait_ready

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "articles.jsonl"
KINDS = ("related", "draft", "upsert")
SEED_BATCH = 100


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        if kind not in KINDS or not weight:
            raise SystemExit(f"--mix: expected kind=weight with kind in {KINDS}, got {part!r}")
        mix[kind] = float(weight)
    return mix


def start_server(port: int, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The server, and a read+write key made in its database first (writes need one)."""
    env = dict(os.environ)
    env.update(
        RELATED_DATA_DIR=str(data_dir),
        RELATED_LOG_LEVEL="warning",
        # Reads go without a key, as a public frontend's do; writes use the key.
        RELATED_ANONYMOUS_READS="true",
        HF_HUB_OFFLINE="1",
    )
    token = create_key(env, "read", "write")
    server = subprocess.Popen(
        [str(RELATED), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env
    )
    return server, token


def seed(client: httpx.Client, articles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for start in range(0, len(articles), SEED_BATCH):
        answer = client.post(
            "/v1/articles/batch", json={"articles": articles[start : start + SEED_BATCH]}
        )
        answer.raise_for_status()
        if answer.json()["counts"]["error"]:
            raise SystemExit(f"seed batch at {start} has invalid articles")
    # Ingest answers before embedding: the traffic starts once every seed article is ready.
    while client.get("/v1/embedding/status").json()["counts"].get("pending", 0):
        time.sleep(0.5)
    return articles


async def client_loop(
    number: int,
    http: httpx.AsyncClient,
    articles: list[dict[str, Any]],
    mix: dict[str, float],
    stop_at: float,
    budget: list[int],
    results: Results,
) -> None:
    rng = random.Random(number)
    kinds, weights = list(mix), list(mix.values())
    sent = 0
    while time.monotonic() < stop_at and budget[0] > 0:
        budget[0] -= 1
        kind = rng.choices(kinds, weights)[0]
        source = rng.choice(articles)
        if kind == "related":
            request = http.build_request(
                "GET", f"/v1/articles/{source['external_id']}/related", params={"limit": 10}
            )
            expected = {200}
        elif kind == "draft":
            draft = {"title": source["title"], "body": source.get("body", "")[:1500], "limit": 10}
            request = http.build_request("POST", "/v1/related", json=draft)
            expected = {200}
        else:
            sent += 1
            new = {**source, "external_id": f"load-{number}-{sent}-{time.time_ns()}"}
            request = http.build_request("POST", "/v1/articles", json=new)
            expected = {201}
        started = time.perf_counter()
        try:
            answer = await http.send(request)
            status = answer.status_code
        except httpx.HTTPError as exc:
            status, answer = 0, None
            detail = repr(exc)
        elapsed = time.perf_counter() - started
        results.latencies[kind].append(elapsed)
        if status not in expected:
            results.errors[kind] += 1
            if answer is not None:
                detail = f"{status} {answer.text[:200]}"
            if len(results.error_samples) < 10:
                results.error_samples.append(f"{kind} {request.url.path}: {detail}")


async def run_load(
    url: str,
    headers: dict[str, str],
    articles: list[dict[str, Any]],
    mix: dict[str, float],
    clients: int,
    duration: float,
    max_requests: int,
) -> tuple[Results, float]:
    results = Results()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120, headers=headers) as http:
        budget = [max_requests]
        started = time.perf_counter()
        stop_at = time.monotonic() + duration
        await asyncio.gather(
            *(client_loop(n, http, articles, mix, stop_at, budget, results) for n in range(clients))
        )
        elapsed = time.perf_counter() - started
    return results, elapsed


def report(results: Results, elapsed: float) -> list[str]:
    header = (
        f"{'kind':<8} {'requests':>8} {'errors':>6} {'req/s':>7} "
        f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7}"
    )
    rows = [header]
    everything: list[float] = []
    for kind in KINDS:
        values = results.latencies.get(kind, [])
        if not values:
            continue
        everything += values
        p50, p90, p99 = np.percentile(np.array(values) * 1000, [50, 90, 99])
        rows.append(
            f"{kind:<8} {len(values):>8} {results.errors[kind]:>6} {len(values) / elapsed:>7.1f} "
            f"{p50:>7.0f} {p90:>7.0f} {p99:>7.0f} {max(values) * 1000:>7.0f}"
        )
    p50, p90, p99 = np.percentile(np.array(everything) * 1000, [50, 90, 99])
    rows.append(
        f"{'all':<8} {len(everything):>8} {sum(results.errors.values()):>6} "
        f"{len(everything) / elapsed:>7.1f} {p50:>7.0f} {p90:>7.0f} {p99:>7.0f} "
        f"{max(everything) * 1000:>7.0f}"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--duration", type=float, default=60, help="seconds of traffic at most")
    parser.add_argument("--max-requests", type=int, default=5000, help="requests at most")
    parser.add_argument("--mix", default="related=80,draft=10,upsert=10", type=parse_mix)
    parser.add_argument("--seed-articles", type=int, default=500, help="BBC articles stored")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    record = Record("load")

    examples = [json.loads(line) for line in EXAMPLES.read_text().splitlines() if line.strip()]
    corpus = read_articles(args.data_dir, BBC, args.seed_articles) if args.seed_articles else []
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"load average at start {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="related-load-") as tmp:
        server, token = start_server(port, Path(tmp) / "data")
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with httpx.Client(base_url=url, timeout=600, headers=headers) as client:
                wait_ready(client, server)
                started = time.perf_counter()
                articles = seed(client, examples + corpus)
                print(
                    f"stored {len(articles)} articles in {time.perf_counter() - started:.1f} s; "
                    f"{args.clients} clients, mix {args.mix}, at most {args.duration:.0f} s "
                    f"or {args.max_requests} requests"
                )
            results, elapsed = asyncio.run(
                run_load(
                    url, headers, articles, args.mix, args.clients, args.duration, args.max_requests
                )
            )
        finally:
            # SIGINT: uvicorn shuts down cleanly and the embedded PostgreSQL is stopped.
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    print(f"load average at end {os.getloadavg()[0]:.2f}; {elapsed:.1f} s of traffic")
    lines = report(results, elapsed)
    print("\n".join(lines))
    record.save(
        clients=args.clients,
        mix=args.mix,
        seconds=round(elapsed, 1),
        errors=results.errors,
        error_samples=results.error_samples,
        report=lines,
    )
    for sample in results.error_samples:
        print(f"error: {sample}", file=sys.stderr)
    if results.errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
