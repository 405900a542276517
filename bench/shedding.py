"""What shedding one request costs inside the process: the app (app.main.RelatedApp, which
sheds in front of FastAPI's own layers), against bench/floor.py's bare app and the shedding
layer alone.

    .venv/bin/python bench/shedding.py [--requests 20000] [--rounds 3]

No server, no socket: each request is a call of the ASGI app with a GET scope while the
process is full (the shedding layer's count of requests in progress set past its limit), so
every call is answered 503 ``overloaded``. Prints microseconds per request, round by round,
and writes bench/results/shedding-<UTC time>.json; bench/burst.py measures the same over
HTTP, where uvicorn's own cost comes on top.
"""

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from app.core.config import Settings
from app.main import create_app
from bench import floor
from bench.record import Record

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/v1/articles/an-article/related",
    "raw_path": b"/v1/articles/an-article/related",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"bench")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
    "state": {},
}


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict[str, Any]) -> None:
    if message["type"] == "http.response.start":
        assert message["status"] == 503, message


async def per_request_us(app: Any, requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        await app(dict(SCOPE), receive, send)
    return (time.perf_counter() - started) / requests * 1e6


async def main(requests: int, rounds: int) -> list[dict[str, float]]:
    # No lifespan: a shed request needs none.
    app = create_app(Settings(database_url="postgresql://unused/related"))
    layer = app.shedding
    layer.in_progress = layer.max_concurrent  # full: every request is shed
    results = []
    for round_number in range(rounds):
        figures = {
            "app": await per_request_us(app, requests),
            "shedding layer alone": await per_request_us(layer, requests),
            "floor (bench/floor.py)": await per_request_us(floor.app, requests),
        }
        load = os.getloadavg()[0]
        text = ", ".join(f"{name} {us:.2f} us" for name, us in figures.items())
        print(f"round {round_number + 1} (load {load:.2f}): {text}")
        results.append({**{k: round(v, 2) for k, v in figures.items()}, "load_average": load})
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    record = Record("shedding")
    rounds = asyncio.run(main(args.requests, args.rounds))
    record.save(requests=args.requests, rounds=rounds, unit="us per request")
