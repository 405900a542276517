"""The embeddable related box (/widget.js) on a publisher's page of another origin, in Debian's
headless Chromium, against the real app on a loopback port (real HTTP, database and model)."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.auth.models import Scope
from app.auth.repository import ApiKeyRepository
from app.auth.service import ApiKeyService
from app.core.config import Settings
from app.main import create_app
from tests.live import Browser, LiveServer, StaticSite
from tests.test_demo import REPORTS, examples, same_story

BOX = "document.getElementById({id!r})"


@pytest.fixture(scope="module")
def site() -> Iterator[StaticSite]:
    publisher = StaticSite()
    yield publisher
    publisher.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = Browser()
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
async def publishable_key(app: Any, site: StaticSite) -> str:
    async with app.state.database.sessions() as session, session.begin():
        _, token = await ApiKeyService(ApiKeyRepository(session)).create(
            "publisher", [Scope.READ], origins=[site.origin]
        )
    return token


@pytest.fixture(scope="module")
def cors_server(
    settings: Settings, embedder: Any, site: StaticSite, live_examples: LiveServer
) -> Iterator[LiveServer]:
    """The service as an operator opens it to one site: anonymous reads, its origin in CORS."""
    opened = settings.model_copy(
        update={
            "anonymous_reads": True,
            "cors_origins": [site.origin],
            "embedding_worker_in_process": False,  # the session app's worker embeds
        }
    )
    server = LiveServer(create_app(opened, embedder=embedder))
    server.start()
    yield server
    server.stop()


def publisher_page(api: str, boxes: str) -> str:
    """A plain article page of a publisher: the two-line snippet, the page's own theme."""
    return f"""<!doctype html>
<html lang="en-GB"><head><meta charset="utf-8"><title>The Publisher</title>
<script src="{api}/widget.js"></script>
<style>
  body {{ font-family: Georgia, serif; max-width: 40rem; margin: 2rem auto; }}
  related-articles {{ --related-link-color: rgb(170, 0, 0); margin: 1rem 0; }}
</style></head>
<body><h1>Wildfire forces evacuations</h1><p>The publisher's own story text.</p>
{boxes}
<p id="after">The page goes on below the boxes.</p>
</body></html>"""


def wait_state(browser: Browser, box: str) -> str:
    return str(
        browser.wait_for(
            f"['ready', 'empty', 'error'].includes({BOX.format(id=box)}.dataset.state)"
            f" && {BOX.format(id=box)}.dataset.state"
        )
    )


def box_items(browser: Browser, box: str) -> list[dict[str, Any]]:
    return list(
        browser.evaluate(
            f"[...{BOX.format(id=box)}.shadowRoot.querySelectorAll('li')].map(li => ({{"
            " title: li.querySelector('a').textContent, href: li.querySelector('a').href,"
            " meta: li.querySelector('.meta').textContent,"
            " datetime: li.querySelector('time').dateTime,"
            " color: getComputedStyle(li.querySelector('a')).color }))"
        )
    )


def height(browser: Browser, box: str) -> float:
    return float(browser.evaluate(f"{BOX.format(id=box)}.getBoundingClientRect().height"))


async def test_widget_script_is_served_for_other_sites(anonymous_client: httpx.AsyncClient) -> None:
    response = await anonymous_client.get("/widget.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    assert 'customElements.define("related-articles"' in response.text
    again = await anonymous_client.get(
        "/widget.js", headers={"If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304
    paths = (await anonymous_client.get("/openapi.json")).json()["paths"]
    assert "/widget.js" not in paths


async def test_box_on_another_origin_with_a_publishable_key(
    live_examples: LiveServer, site: StaticSite, browser: Browser, publishable_key: str
) -> None:
    key = publishable_key
    url = site.page(
        "/story.html",
        publisher_page(
            live_examples.url,
            f"""<related-articles id="story" ref="demo-wildfire-1" limit="3" key="{key}">
</related-articles>
<related-articles id="empty" ref="demo-wildfire-1" limit="3" key="{key}" min-score="0.99">
</related-articles>
<related-articles id="missing" ref="no-such-story" limit="3" key="{key}"></related-articles>
<related-articles id="anonymous" ref="demo-wildfire-1" limit="3"></related-articles>""",
        ),
    )
    # Layout shifts from the first paint on, as Chromium measures them for Core Web Vitals.
    browser.call(
        "Page.addScriptToEvaluateOnNewDocument",
        source="window.__shift = 0; new PerformanceObserver(list => { for (const e of"
        " list.getEntries()) window.__shift += e.value; }).observe({type: 'layout-shift',"
        " buffered: true});",
    )
    browser.goto(url)
    assert browser.evaluate("location.origin") == site.origin != live_examples.url

    # The story's other coverage, as links to the articles' own pages, with source and date.
    assert wait_state(browser, "story") == "ready"
    items = box_items(browser, "story")
    by_title = {a["title"]: a for a in examples()}
    assert {item["title"] for item in items} == same_story("demo-wildfire-1")
    for item in items:
        article = by_title[item["title"]]
        assert item["href"] == article["url"]
        assert item["meta"].startswith(f"{article['source']} · ")
        assert item["datetime"] == article["published_at"]
        # Dates in the page's language (en-GB: day month year).
        assert item["meta"].endswith(article["published_at"][:4])
        assert item["color"] == "rgb(170, 0, 0)"  # the page's theme, through the shadow root
    box = BOX.format(id="story")
    assert browser.evaluate(f"{box}.shadowRoot.querySelector('h2').textContent") == (
        "Related articles"
    )
    assert browser.evaluate(
        f"{box}.shadowRoot.querySelector('section').getAttribute('aria-labelledby') === 'heading'"
        f" && {box}.shadowRoot.querySelector('section').getAttribute('aria-busy') === 'false'"
    )

    # Nothing related enough: the box says so, in the same reserved height.
    assert wait_state(browser, "empty") == "empty"
    assert (
        browser.evaluate(f"{BOX.format(id='empty')}.shadowRoot.querySelectorAll('a').length") == 0
    )
    assert "No related articles" in browser.evaluate(
        f"{BOX.format(id='empty')}.shadowRoot.querySelector('[role=status]').textContent"
    )
    assert height(browser, "empty") == height(browser, "story")

    # An unknown article, and reads without a key from an origin the service does not open to
    # (CORS): an error state for the reader, the reason in the developer's console.
    for failing in ("missing", "anonymous"):
        assert wait_state(browser, failing) == "error"
        assert "not available" in browser.evaluate(
            f"{BOX.format(id=failing)}.shadowRoot.querySelector('[role=status]').textContent"
        )
        assert height(browser, failing) == height(browser, "story")
    assert browser.evaluate("window.__shift") == 0

    # The height is reserved from the moment the box exists, before its answer.
    loading, reserved = browser.evaluate(
        "(() => { const b = document.createElement('related-articles');"
        f" b.id = 'late'; b.setAttribute('key', {json.dumps(key)});"
        " b.setAttribute('limit', '3'); b.setAttribute('ref', 'demo-marathon-1');"
        " document.body.append(b);"
        " return [b.dataset.state, b.getBoundingClientRect().height]; })()"
    )
    assert loading == "loading"
    assert wait_state(browser, "late") == "ready"
    assert reserved == height(browser, "late") == height(browser, "story")
    assert {item["title"] for item in box_items(browser, "late")} == same_story("demo-marathon-1")

    screenshot = browser.screenshot(REPORTS / "widget.png")
    print(f"screenshot of the related box on a publisher's page: {screenshot}")


async def test_box_waits_for_a_story_still_being_embedded(
    app: Any, live_examples: LiveServer, site: StaticSite, browser: Browser, publishable_key: str
) -> None:
    """A story just published answers 409 embedding_pending until it is embedded: the box
    keeps loading and asks again, and fills once the embedding is there."""

    async def set_model(name: str) -> None:
        async with app.state.database.engine.begin() as conn:
            await conn.execute(
                text("UPDATE articles SET embedding_model = :name WHERE external_id = :ref"),
                {"name": name, "ref": "demo-transfer-1"},
            )

    url = site.page(
        "/new.html",
        publisher_page(
            live_examples.url,
            f'<related-articles id="new" ref="demo-transfer-1" limit="3" key="{publishable_key}">'
            "</related-articles>",
        ),
    )
    await set_model("another-model")  # as if not embedded by the current model yet
    try:
        browser.goto(url)
        # Its first request has been answered (409), and the box is still loading.
        browser.wait_for(
            "performance.getEntriesByType('resource')"
            ".filter(e => e.name.includes('/related?')).length >= 1"
        )
        assert browser.evaluate(f"{BOX.format(id='new')}.dataset.state") == "loading"
    finally:
        await set_model(app.state.encoder.model_name)
    assert wait_state(browser, "new") == "ready"
    assert {item["title"] for item in box_items(browser, "new")} == same_story("demo-transfer-1")


async def test_boxes_defined_after_the_page_ask_once_each(
    live_examples: LiveServer, site: StaticSite, browser: Browser, publishable_key: str
) -> None:
    # The script at the end of the page, deferred: the boxes exist before it defines them.
    boxes = "".join(
        f'<related-articles id="b{n}" ref="{ref}" limit="3" key="{publishable_key}">'
        "</related-articles>"
        for n, ref in enumerate(("demo-ratecut-1", "demo-breach-1"))
    )
    url = site.page(
        "/deferred.html",
        f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Deferred</title>
</head><body>{boxes}<script src="{live_examples.url}/widget.js" defer></script></body></html>""",
    )
    browser.goto(url)
    for n, ref in enumerate(("demo-ratecut-1", "demo-breach-1")):
        assert wait_state(browser, f"b{n}") == "ready"
        assert {item["title"] for item in box_items(browser, f"b{n}")} == same_story(ref)
    asked = browser.evaluate(
        "performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(name => name.includes('/related?'))"
    )
    assert len(asked) == 2  # one request per box, not one per attribute


async def test_box_with_anonymous_reads_from_an_origin_the_service_opens_to(
    cors_server: LiveServer, site: StaticSite, browser: Browser
) -> None:
    url = site.page(
        "/open.html",
        publisher_page(
            cors_server.url,
            '<related-articles id="open" ref="demo-marathon-1" limit="3"></related-articles>',
        ),
    )
    browser.goto(url)
    assert wait_state(browser, "open") == "ready"
    assert {item["title"] for item in box_items(browser, "open")} == same_story("demo-marathon-1")


def test_readme_shows_the_snippet() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert '<script src="https://related.example.com/widget.js"></script>' in readme
    assert '<related-articles ref="cms-48213" limit="5"></related-articles>' in readme
