"""Bounded work per process: requests past the limit are shed at once with 503 and Retry-After,
probes keep answering, and oversized headers are refused."""

import asyncio
import time
from typing import Any

from app.core.config import Settings
from tests.conftest import http_client, running_app


async def test_requests_past_the_limit_are_shed_at_once_and_probes_still_answer(
    settings: Settings, embedder: Any
) -> None:
    async with running_app(settings, embedder, max_concurrent_requests=2) as app:
        release = asyncio.Event()
        holding = 0

        async def hold() -> dict[str, str]:
            nonlocal holding
            holding += 1
            await release.wait()
            return {"held": "yes"}

        app.add_api_route("/test-only/hold", hold, include_in_schema=False)
        async with http_client(app) as http:
            held = [asyncio.ensure_future(http.get("/test-only/hold")) for _ in range(2)]
            deadline = time.monotonic() + 10
            while holding < 2:
                assert time.monotonic() < deadline, "the held requests never started"
                await asyncio.sleep(0.01)

            started = time.perf_counter()
            shed = await http.get("/v1/articles")
            shed_in_s = time.perf_counter() - started
            assert shed.status_code == 503
            assert shed.json()["error"]["code"] == "overloaded"
            assert shed.headers["Retry-After"] == "1"
            assert shed_in_s < 0.5
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 200
            metrics = (await http.get("/metrics")).text
            assert "related_http_requests_shed_total 1.0" in metrics

            release.set()
            assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
            # Right after, the process answers normally again.
            assert (await http.get("/v1/articles")).status_code != 503


async def test_oversized_request_headers_are_a_431_in_the_error_shape(
    settings: Settings, embedder: Any
) -> None:
    async with (
        running_app(settings, embedder, max_header_bytes=4096) as app,
        http_client(app) as http,
    ):
        response = await http.get("/v1/articles", headers={"X-Padding": "x" * 5000})
        assert response.status_code == 431
        assert response.json()["error"]["code"] == "headers_too_large"
        assert (await http.get("/v1/articles", headers={"X-Padding": "x" * 100})).status_code != 431
