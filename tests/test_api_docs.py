"""/docs and /redoc load everything from the service itself: in Debian's headless Chromium, every
request the pages make goes to the service, and they list every operation of the API."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.live import Browser, LiveServer


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = Browser()
    yield chromium
    chromium.close()


def operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }


def requested_urls(browser: Browser) -> list[str]:
    return [
        event["params"]["request"]["url"]
        for event in browser.events
        if event["method"] == "Network.requestWillBeSent"
    ]


async def test_docs_pages_name_only_local_assets(anonymous_client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        response = await anonymous_client.get(page)
        assert response.status_code == 200
        assert "cdn." not in response.text and "googleapis" not in response.text
        assert "fastapi.tiangolo.com" not in response.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
        response = await anonymous_client.get(f"/docs/assets/{asset}")
        assert response.status_code == 200, asset
        again = await anonymous_client.get(
            f"/docs/assets/{asset}", headers={"If-None-Match": response.headers["etag"]}
        )
        assert again.status_code == 304
    missing = await anonymous_client.get("/docs/assets/nope.js")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    paths = (await anonymous_client.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith(("/docs", "/redoc"))]


def test_swagger_ui_lists_every_operation_offline(
    live_server: LiveServer, browser: Browser
) -> None:
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    expected = operations(spec)
    browser.call("Network.enable")
    browser.events.clear()
    browser.goto(f"{live_server.url}/docs")
    shown = browser.wait_for(
        f"document.querySelectorAll('.opblock').length === {len(expected)}"
        " && [...document.querySelectorAll('.opblock')].map(b => ["
        "  b.querySelector('.opblock-summary-method').textContent.toLowerCase(),"
        "  b.querySelector('.opblock-summary-path').dataset.path])"
    )
    assert {(method, path) for method, path in shown} == expected
    assert browser.evaluate("document.querySelector('.info .title').textContent").startswith(
        "Related"
    )
    urls = requested_urls(browser)
    assert f"{live_server.url}/docs/assets/swagger-ui-bundle.js" in urls
    assert f"{live_server.url}/openapi.json" in urls
    assert [url for url in urls if not url.startswith((live_server.url, "data:"))] == []


def test_redoc_lists_every_operation_offline(live_server: LiveServer, browser: Browser) -> None:
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    summaries = {
        operation["summary"]
        for item in spec["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "summary" in operation
    }
    browser.call("Network.enable")
    browser.events.clear()
    browser.goto(f"{live_server.url}/redoc")
    shown = browser.wait_for(
        "document.querySelectorAll('[data-section-id^=\"operation/\"]').length"
        f" === {len(operations(spec))}"
        " && [...document.querySelectorAll('[data-section-id^=\"operation/\"] h2')]"
        ".map(h => h.textContent.trim())"
    )
    assert summaries <= set(shown)
    urls = requested_urls(browser)
    assert f"{live_server.url}/docs/assets/redoc.standalone.js" in urls
    assert [url for url in urls if not url.startswith((live_server.url, "data:", "blob:"))] == []
