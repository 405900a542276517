"""The /demo story page: served by the app, and driven in Debian's headless Chromium against the
real app on a loopback port (real HTTP, real database, real model)."""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import EXAMPLES
from tests.live import Browser, LiveServer

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def examples() -> list[dict[str, Any]]:
    return [json.loads(line) for line in EXAMPLES.read_text().splitlines() if line.strip()]


def same_story(external_id: str) -> set[str]:
    """Titles of the other example articles about the same story (ids are `demo-<story>-<n>`;
    the `demo-misc-<n>` ones are each a story of their own)."""
    story = external_id.rsplit("-", 1)[0]
    if story == "demo-misc":
        return set()
    return {
        a["title"]
        for a in examples()
        if a["external_id"].rsplit("-", 1)[0] == story and a["external_id"] != external_id
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = Browser()
    yield chromium
    chromium.close()


def related_titles(browser: Browser, list_id: str) -> list[str]:
    return list(
        browser.evaluate(
            f"[...document.querySelectorAll('#{list_id} .related-title')].map(a => a.textContent)"
        )
    )


async def test_demo_page_and_its_assets_are_served_outside_the_api_schema(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/demo")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:href|src)="(/demo/assets/[^"]+)"', page.text)
    assert len(assets) == 2
    for asset in assets:
        response = await client.get(asset)
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] in ("text/css", "text/javascript")
        assert response.content

    missing = await client.get("/demo/assets/..%2F..%2Fcore%2Fconfig.py")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"

    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/demo")]


async def test_story_page_lists_the_same_story_and_relates_a_draft(
    live_examples: LiveServer, browser: Browser
) -> None:
    # Without ?article=, the newest story with other coverage (the newest article of all is a
    # one-off, whose box would be empty).
    newest = max(examples(), key=lambda a: a["published_at"])
    assert not same_story(newest["external_id"])
    opening = max(
        (a for a in examples() if same_story(a["external_id"])), key=lambda a: a["published_at"]
    )
    browser.goto(f"{live_examples.url}/demo")
    browser.wait_for("document.body.dataset.related === 'ready'")
    assert (
        browser.evaluate("document.getElementById('story-title').textContent") == opening["title"]
    )
    # Its whole coverage is in the box (with, for this story, one article of another story
    # that shares its city and scores over the page's minimum).
    assert same_story(opening["external_id"]) <= set(related_titles(browser, "related-list"))
    assert browser.evaluate("document.getElementById('related-status').hidden")

    browser.goto(f"{live_examples.url}/demo?article=demo-wildfire-1")
    browser.wait_for("document.body.dataset.related === 'ready'")
    story = next(a for a in examples() if a["external_id"] == "demo-wildfire-1")
    assert browser.evaluate("document.getElementById('story-title').textContent") == story["title"]
    assert browser.evaluate("document.querySelectorAll('#story-body p').length") >= 3
    # Exactly the other coverage of the story: the page asks for a minimum score.
    titles = related_titles(browser, "related-list")
    assert len(titles) == 3
    assert set(titles) == same_story("demo-wildfire-1")
    screenshot = browser.screenshot(REPORTS / "demo-story.png")
    print(f"screenshot of the story page: {screenshot}")

    # Each related item links to the demo page of that article.
    first = related_titles(browser, "related-list")[0]
    browser.click("#related-list .related-title")
    browser.wait_for(
        f"document.getElementById('story-title').textContent === {json.dumps(first)}"
        " && document.body.dataset.related === 'ready'"
    )
    assert "demo-wildfire-1" not in browser.evaluate("location.search")
    assert browser.evaluate("document.title").startswith(first)

    # A draft about the marathon (written here, not an example) finds the marathon coverage.
    browser.type_into("#draft-title", "Runner breaks world record at Lakemont marathon")
    browser.type_into(
        "#draft-body",
        "Selam Abera ran the fastest women's marathon ever on Sunday, cheered by crowds "
        "along the lakeside course.",
    )
    browser.click("#draft-submit")
    browser.wait_for("document.body.dataset.draft === 'ready'")
    links = browser.evaluate(
        "[...document.querySelectorAll('#draft-results .related-title')].map(a => a.href)"
    )
    marathon = [a for a in examples() if a["external_id"].startswith("demo-marathon-")]
    assert len(links) == len(marathon)
    assert all("article=demo-marathon-" in link for link in links)
    screenshot = browser.screenshot(REPORTS / "demo-draft.png")
    print(f"screenshot of the draft box: {screenshot}")


async def test_story_page_shows_api_errors_to_the_reader(
    app: Any, live_examples: LiveServer, browser: Browser
) -> None:
    browser.goto(f"{live_examples.url}/demo?article={quote('no-such-story')}")
    browser.wait_for("document.body.dataset.related === 'error'")
    error = browser.evaluate("document.getElementById('story-error').innerText")
    assert "'no-such-story' does not exist" in error
    assert "HTTP 404 · not_found" in error

    # An article with no embedding from the current model yet (as after a model change): the
    # box says so instead of staying empty. Restored after, for the module's other tests.
    async def set_model(name: str | None) -> None:
        async with app.state.database.engine.begin() as conn:
            await conn.execute(
                text("UPDATE articles SET embedding_model = :name WHERE external_id = :ref"),
                {"name": name, "ref": "demo-breach-2"},
            )

    await set_model("another-model")
    try:
        browser.goto(f"{live_examples.url}/demo?article=demo-breach-2")
        status = browser.wait_for(
            "document.getElementById('related-status').innerText.includes('HTTP 409')"
            " && document.getElementById('related-status').innerText"
        )
    finally:
        await set_model(app.state.encoder.model_name)
    assert "still being processed" in status
    assert "embedding_pending" in status

    # The draft box refuses an empty draft without calling the API.
    browser.click("#draft-submit")
    browser.wait_for("document.body.dataset.draft === 'error'")
    assert "headline or some text" in browser.evaluate(
        "document.getElementById('draft-status').textContent"
    )


STRIP = """(() => {
  const nav = document.getElementById('latest');
  const box = nav.getBoundingClientRect();
  const links = [...nav.querySelectorAll('a')];
  const shown = links.filter(a => a.getBoundingClientRect().width > 0);
  return {
    overflowing: nav.scrollWidth > nav.clientWidth,
    pageOverflowing: document.documentElement.scrollWidth > window.innerWidth,
    links: links.length,
    shown: shown.length,
    inside: shown.every(a => {
      const r = a.getBoundingClientRect();
      return r.left >= box.left && r.right <= box.right && r.width >= 60;
    }),
    titled: links.every(a => a.title === a.textContent),
  };
})()"""


@pytest.mark.parametrize("width, shown", [(1280, 6), (390, 3)])
def test_the_top_strip_fits_without_a_scrollbar(
    live_examples: LiveServer, browser: Browser, width: int, shown: int
) -> None:
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        width=width,
        height=900,
        deviceScaleFactor=1,
        mobile=width < 500,
    )
    try:
        browser.goto(f"{live_examples.url}/demo?article=demo-wildfire-1")
        browser.wait_for("document.querySelectorAll('#latest a').length === 6")
        strip = browser.evaluate(STRIP)
        if width == 1280:
            browser.screenshot(REPORTS / "demo-strip.png")
    finally:
        browser.call("Emulation.clearDeviceMetricsOverride")
    assert strip == {
        "overflowing": False,
        "pageOverflowing": False,
        "links": 6,
        "shown": shown,
        "inside": True,  # each one readable (60 px or more) and inside the strip
        "titled": True,  # a headline cut short is whole in its tooltip
    }
