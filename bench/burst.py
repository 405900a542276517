"""Bursts of concurrent related requests against API processes: what is shed, how fast, and
how the accepted requests fare.

    .venv/bin/python bench/burst.py [--bursts 64,256,1024] [--rounds 3]
        [--setups default,64,defaultx2,floor] [--baseline DIR]

Starts `related serve` processes for each --setups entry LIMIT[xPROCESSES] (LIMIT:
RELATED_MAX_CONCURRENT_REQUESTS; PROCESSES: how many processes, as behind a load balancer, a
burst's connections being spread over them in turn; anonymous reads). Each burst goes to each
setup in turn, so they are compared side by side; `--baseline DIR` adds each setup with
another tree's code (the code before a change, beside it in every round). The setup `floor` is
no app at all: uvicorn serving bench/floor.py, which sheds every request at once, shows what
the HTTP server and the client cost per shed request on this machine. All share one fresh
embedded PostgreSQL in a temporary directory, loads examples/articles.jsonl (the
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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.server import RELATED, create_key, free_port, wait_ready

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "articles.jsonl"
RESULTS = ROOT / "bench" / "results"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class OneRequest(asyncio.Protocol):
    """One keep-alive connection that sends one request and times its whole answer. A bare
    protocol, not asyncio streams: at a burst of 1,024 the client's own cost per answer sits
    in every later answer's time, and streams cost several times more per answer."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.answer: asyncio.Future[tuple[int, float]] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.started = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def send(self) -> None:
        assert self.transport is not None
        self.started = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.answer.done():
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if len(self.buffer) >= end + 4 + length:
            self.answer.set_result((int(head[0].split()[1]), time.perf_counter() - self.started))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_result((0, time.perf_counter() - self.started))


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


async def burst(ports: list[int], paths: list[str], size: int) -> dict[str, Any]:
    """One burst of ``size`` requests, its connections spread over ``ports`` in turn (processes
    behind a load balancer)."""
    loop = asyncio.get_running_loop()

    def factory(path: str) -> Callable[[], OneRequest]:
        request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
        return lambda: OneRequest(request)

    connections = await asyncio.gather(
        *(
            loop.create_connection(
                factory(paths[i % len(paths)]), "127.0.0.1", ports[i % len(ports)]
            )
            for i in range(size)
        )
    )
    requests = []
    for transport, protocol in connections:
        # uvloop may call connection_made after create_connection has returned.
        protocol.transport = transport
        requests.append(protocol)
    # Every connection open (and accepted by the server) before the burst starts.
    await asyncio.sleep(0.5 + size / 1000)
    for request in requests:
        request.send()
    try:
        answers = await asyncio.gather(*(request.answer for request in requests))
    finally:
        for transport, _ in connections:
            transport.close()
    accepted = [t for status, t in answers if status == 200]
    shed = [t for status, t in answers if status == 503]
    others = sorted({status for status, _ in answers} - {200, 503})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[0]}") as http:
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


# A setup's limit: RELATED_MAX_CONCURRENT_REQUESTS, None for the service's default, or FLOOR.
FLOOR = "floor"
Limit = int | str | None


def start_server(
    env: dict[str, str], limit: Limit, tree: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """``related serve`` on a port of its own (the embedded database is shared: a second one
    joins the running server); ``limit`` None: the service's default. FLOOR: bench/floor.py
    under uvicorn as `related serve` runs it (uvloop, httptools, no access log). ``tree``:
    another source tree's code (its `app` first on the path)."""
    port = free_port()
    if tree is not None:
        env = {**env, "PYTHONPATH": str(tree)}
    if limit == FLOOR:
        command = [sys.executable, "-m", "uvicorn", "bench.floor:app", "--port", str(port)]
        quiet = ["--log-level", "warning", "--no-access-log", "--no-proxy-headers"]
        return subprocess.Popen([*command, *quiet], cwd=ROOT, env=env), port
    env = dict(env)
    if limit is not None:
        env["RELATED_MAX_CONCURRENT_REQUESTS"] = str(limit)
    serve = [str(RELATED), "serve", "--port", str(port)]
    return subprocess.Popen(serve, cwd=tree, env=env), port


def setup(text: str) -> tuple[Limit, int]:
    """``LIMIT[xPROCESSES]``: ``default``, ``64``, ``defaultx2``, ``floor``."""
    limit, _, processes = text.partition("x")
    if limit in ("default", FLOOR):
        return (None if limit == "default" else FLOOR), int(processes or 1)
    return int(limit), int(processes or 1)


def setup_name(limit: Limit, processes: int) -> str:
    return f"{limit or 'default'}x{processes}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bursts", default="64,256,1024")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--setups",
        default="default",
        help="comma-separated LIMIT[xPROCESSES] to compare, bursts interleaved: LIMIT is "
        "RELATED_MAX_CONCURRENT_REQUESTS (`default`: the service's own; `floor`: no app, "
        "bench/floor.py), PROCESSES the API processes a burst's connections are spread over (1)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another source tree (`git archive <commit> | tar -x -C DIR`): each setup of the "
        "service runs that tree's code too, `before` in its name, in every round",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.bursts.split(",")]
    setups = [setup(v) for v in args.setups.split(",")]
    trees: list[Path | None] = [None] if args.baseline is None else [None, args.baseline]

    with tempfile.TemporaryDirectory(prefix="related-burst-") as data_dir:
        env = {
            **os.environ,
            "RELATED_DATA_DIR": data_dir,
            "RELATED_LOG_LEVEL": "warning",
            "RELATED_ANONYMOUS_READS": "true",
            "HF_HUB_OFFLINE": "1",
        }
        token = create_key(env, "write")
        processes: list[subprocess.Popen[bytes]] = []
        groups: list[tuple[str, list[int]]] = []
        try:
            for limit, count in setups:
                for tree in trees if limit != FLOOR else [None]:
                    ports = []
                    for _ in range(count):
                        server, port = start_server(env, limit, tree)
                        processes.append(server)
                        ports.append(port)
                        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as c:
                            wait_ready(c, server)
                    before = "" if tree is None else "before "
                    groups.append((before + setup_name(limit, count), ports))
            articles = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
            # Loaded through a service (the floor has no database).
            service_port = next(p for n, p in groups if FLOOR not in n)[0]
            with httpx.Client(base_url=f"http://127.0.0.1:{service_port}", timeout=300) as client:
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
                    for name, ports in groups:
                        result = uvloop.run(burst(ports, paths, size))
                        result["setup"] = name
                        result["round"] = round_number + 1
                        runs.append(result)
                        load = result["load_average"]
                        print(
                            f"burst {size:5d} {name} (round {round_number + 1}, load {load}): "
                            f"accepted {result['accepted']:4d} {result['accepted_latency']}, "
                            f"shed {result['shed']:4d} {result['shed_latency']}, "
                            f"other {result['other']} {result['other_statuses']}, "
                            f"after {result['after_status']} in {result['after_ms']} ms",
                            flush=True,
                        )
        finally:
            for server in processes:
                server.terminate()
            for server in processes:
                server.wait(timeout=60)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    record = {
        "bench": "burst",
        "command": "bench/burst.py " + " ".join(sys.argv[1:]),
        "at": stamp,
        "setups": [name for name, _ in groups],
        "baseline": None if args.baseline is None else args.baseline.name,
        "cores": os.cpu_count(),
        "runs": runs,
    }
    path = RESULTS / f"burst-{stamp}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
