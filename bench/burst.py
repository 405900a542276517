"""Bursts of concurrent related requests against one API process: what is shed, how fast, and
how the accepted requests fare.

    .venv/bin/python bench/burst.py [--bursts 64,256,1024] [--rounds 3] [--limit 64]

Starts `related serve` (one process, RELATED_MAX_CONCURRENT_REQUESTS=--limit, anonymous reads)
on a fresh embedded PostgreSQL in a temporary directory, loads examples/articles.jsonl (the
real model embeds them), then for each burst size opens that many keep-alive connections and,
once all are open, sends one `GET /v1/articles/{id}/related` on each at the same moment. Per
request it records the status and the time from sending to the whole answer. After each burst
one more request on a fresh connection checks that the process answers normally at once.

Prints, per burst: accepted (200) count and p50/p99/max, shed (503 overloaded) count and
p50/p99/max, anything else (errors), and the request after. Writes the figures and the load
average to bench/results/burst-<UTC time>.json. The client runs on the same 2 cores as the
server and PostgreSQL: its own cost is inside every figure.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.server import RELATED, create_key, free_port, wait_ready

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "articles.jsonl"
RESULTS = ROOT / "bench" / "results"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def one_request(port: int, path: str, start: asyncio.Event) -> tuple[int, float]:
    """On its own connection, opened before the burst: (status, seconds) or (0, seconds)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    await start.wait()
    started = time.perf_counter()
    try:
        writer.write(request)
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await reader.readexactly(length)
        return int(status_line.split()[1]), time.perf_counter() - started
    except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
        return 0, time.perf_counter() - started
    finally:
        writer.close()


def summary(times: list[float]) -> dict[str, float | None]:
    if not times:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


async def burst(port: int, paths: list[str], size: int) -> dict[str, Any]:
    start = asyncio.Event()
    tasks = [
        asyncio.create_task(one_request(port, paths[i % len(paths)], start)) for i in range(size)
    ]
    # Every connection open (and accepted by the server) before the burst starts.
    await asyncio.sleep(0.5 + size / 1000)
    start.set()
    answers = await asyncio.gather(*tasks)
    accepted = [t for status, t in answers if status == 200]
    shed = [t for status, t in answers if status == 503]
    others = sorted({status for status, _ in answers} - {200, 503})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        started = time.perf_counter()
        after = await http.get(paths[0])
        after_ms = round((time.perf_counter() - started) * 1000, 1)
    return {
        "burst": size,
        "accepted": len(accepted),
        "accepted_latency": summary(accepted),
        "shed": len(shed),
        "shed_latency": summary(shed),
        "other_statuses": others,
        "other": size - len(accepted) - len(shed),
        "after_status": after.status_code,
        "after_ms": after_ms,
        "load_average": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bursts", default="64,256,1024")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=64, help="RELATED_MAX_CONCURRENT_REQUESTS")
    args = parser.parse_args()
    sizes = [int(s) for s in args.bursts.split(",")]

    with tempfile.TemporaryDirectory(prefix="related-burst-") as data_dir:
        env = {
            **os.environ,
            "RELATED_DATA_DIR": data_dir,
            "RELATED_LOG_LEVEL": "warning",
            "RELATED_ANONYMOUS_READS": "true",
            "RELATED_MAX_CONCURRENT_REQUESTS": str(args.limit),
            "HF_HUB_OFFLINE": "1",
        }
        token = create_key(env, "write")
        port = free_port()
        server = subprocess.Popen([str(RELATED), "serve", "--port", str(port)], env=env)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
                wait_ready(client, server)
                articles = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
                loaded = client.post(
                    "/v1/articles/batch?wait=true",
                    json={"articles": articles},
                    headers={"Authorization": f"Bearer {token}"},
                )
                loaded.raise_for_status()
            paths = [f"/v1/articles/{a['external_id']}/related" for a in articles]
            runs = []
            for round_number in range(args.rounds):
                for size in sizes:
                    result = uvloop.run(burst(port, paths, size))
                    result["round"] = round_number + 1
                    runs.append(result)
                    load = result["load_average"]
                    print(
                        f"burst {size:5d} (round {round_number + 1}, load {load}): "
                        f"accepted {result['accepted']:4d} {result['accepted_latency']}, "
                        f"shed {result['shed']:4d} {result['shed_latency']}, "
                        f"other {result['other']} {result['other_statuses']}, "
                        f"after {result['after_status']} in {result['after_ms']} ms",
                        flush=True,
                    )
        finally:
            server.terminate()
            server.wait(timeout=60)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    record = {
        "bench": "burst",
        "command": "bench/burst.py " + " ".join(sys.argv[1:]),
        "at": stamp,
        "limit": args.limit,
        "cores": os.cpu_count(),
        "runs": runs,
    }
    path = RESULTS / f"burst-{stamp}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
