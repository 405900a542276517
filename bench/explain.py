"""What `explain` costs: related-by-article latency with explain off before and after the change
that added it, and with it on, interleaved request by request in one run.

    .venv/bin/python bench/explain.py --before DIR [--copies 2] [--queries 200]

DIR is a checkout of the code before the change (`git worktree add --detach DIR REV`). BBC's
full articles are loaded --copies times into a fresh embedded PostgreSQL with synthetic vectors
(as bench/hybrid.py loads them), and two `related serve` run on that same database, one from
DIR and one from this tree. For the same random articles, in turn, so load on the machine hits
all alike, over real HTTP (keep-alive), each variant first for one article in five:

* before, after: the default request (hybrid ranking), explain off;
* before plain, after plain: `?ranking=vector&dedupe=false`, the one-statement path;
* after, explain: the default request with `explain=true`.

Prints p50/p90/p99 in ms and the ratio of medians to "before", with the load average at start
and end, and writes the run's record to bench/results/explain-TIMESTAMP.json.
"""

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.articles.models import Article
from app.core.config import Settings
from app.db.engine import open_database
from bench.corpora import BBC, DATA_DIR
from bench.hybrid import load
from bench.related import ROOT, git_commit
from bench.server import free_port, wait_ready

PLAIN = {"ranking": "vector", "dedupe": "false"}
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "before": ("before", {}),
    "after": ("after", {}),
    "before plain": ("before", PLAIN),
    "after plain": ("after", PLAIN),
    "after, explain": ("after", {"explain": "true"}),
}


def serve(tree: Path, url: str, stack: ExitStack) -> httpx.Client:
    """`related serve` from the source tree ``tree`` on ``url``; a client of it."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "DATABASE_URL": url,
        "RELATED_ANONYMOUS_READS": "true",
        "RELATED_MIGRATE_ON_START": "false",
        "RELATED_EMBEDDER_FACTORY": "bench.hybrid:NoModel",
        "RELATED_LOG_LEVEL": "warning",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tree,
        env=env,
    )
    stack.callback(server.wait, 60)
    stack.callback(server.terminate)
    client = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60))
    wait_ready(client, server)
    return client


def measure(clients: dict[str, httpx.Client], ids: list[str]) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_ in range(2):  # the first round warms caches and is not counted
        for n, article_id in enumerate(ids):
            # Each variant in each place in turn: the first request for an article warms the
            # database's pages of its neighbours for the ones after it.
            names = list(VARIANTS)
            for name in names[n % len(names) :] + names[: n % len(names)]:
                tree, params = VARIANTS[name]
                started = time.perf_counter()
                response = clients[tree].get(f"/v1/articles/{article_id}/related", params=params)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, response.text
                items = response.json()["items"]
                assert len(items) == 10, name
                assert ("explain" in items[0]) == ("explain" in params), name
                if round_:
                    timings[name].append(elapsed)
    return timings


def checkout_commit(tree: Path) -> str:
    described = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=tree, capture_output=True, text=True
    )
    return described.stdout.strip()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout before the change")
    parser.add_argument("--data", type=Path, default=DATA_DIR / BBC)
    parser.add_argument("--copies", type=int, default=2, help="times the corpus is loaded")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started_at = datetime.now(UTC)
    load_start = os.getloadavg()
    print(f"load average at start: {load_start[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="related-bench-") as data_dir:
        settings = Settings(database_url=None, data_dir=Path(data_dir))
        async with open_database(settings) as database:
            count = await load(database, args.data, args.copies, args.seed)
            async with database.sessions() as session:
                ids = [str(i) for i in await session.scalars(select(Article.id))]
            chosen = random.Random(args.seed).sample(sorted(ids), args.queries)
            url = database.engine.url.render_as_string(hide_password=False)
            with ExitStack() as stack:
                clients = {
                    "before": serve(args.before.resolve(), url, stack),
                    "after": serve(ROOT, url, stack),
                }
                timings = await asyncio.to_thread(measure, clients, chosen)
    load_end = os.getloadavg()
    base = float(np.median(timings["before"]))
    print(f"\n{count} articles, {args.queries} asked about, each way; ms per request over HTTP")
    print(f"{'variant':16s} {'p50':>7s} {'p90':>7s} {'p99':>7s} {'p50 / before':>13s}")
    summary = {}
    for name, values in timings.items():
        p50, p90, p99 = (float(v) for v in np.percentile(values, [50, 90, 99]))
        summary[name] = {"p50": p50, "p90": p90, "p99": p99, "p50_over_before": p50 / base}
        print(f"{name:16s} {p50:7.2f} {p90:7.2f} {p99:7.2f} {p50 / base:13.2f}")
    print(f"load average at end: {load_end[0]:.2f}")
    record = {
        "started": started_at.isoformat(),
        # The checkout's path is this machine's: DIR, unless it is this tree.
        "command": "bench/explain.py "
        + " ".join("DIR" if a == str(args.before) and a != "." else a for a in sys.argv[1:]),
        "commit": git_commit(),
        "before_commit": await asyncio.to_thread(checkout_commit, args.before),
        "articles": count,
        "queries": args.queries,
        "load_average_start": load_start,
        "load_average_end": load_end,
        "ms": summary,
    }
    out = ROOT / "bench" / "results" / f"explain-{started_at:%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
