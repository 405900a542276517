"""The README's example requests, run against the example corpus (examples/articles.jsonl) on the
real service: what the README shows is what the service answers.

When a change to ranking changes an answer on purpose, rewrite the README's blocks from the
service with ``RELATED_WRITE_README=1 pytest tests/test_readme.py`` and review the diff.
"""

import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.core.config import Settings
from app.main import create_app
from tests.live import LiveServer
from tests.test_demo import same_story

README = Path(__file__).resolve().parents[1] / "README.md"
BASE = "http://127.0.0.1:8000"
QUICKSTART = "/v1/articles/demo-marathon-1/related?limit=4"
RELATED = (
    "/v1/articles/demo-wildfire-1/related?limit=5&since=2026-11-01T00:00:00Z"
    "&exclude_source=Harbor%20Daily&language=en"
)
DRAFT = {
    "title": "Evacuation orders expand as Cedar Ridge fire grows",
    "body": "Firefighters battled wind-driven flames near Alder Springs overnight.",
    "limit": 5,
    "exclude_ids": ["cms-48213"],
}


def block_after(text: str, marker: str, in_block: bool = True) -> tuple[int, int]:
    """Where the first fenced block after ``marker`` starts and ends (its contents); past the
    end of the block holding ``marker`` when it is in one (a command, then its answer)."""
    at = text.index(marker) + len(marker)
    if in_block:
        at = text.index("\n```\n", at) + len("\n```\n")
    fence = re.compile(r"^```[a-z]*\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
    match = fence.search(text, at)
    assert match is not None, marker
    return match.start(1), match.end(1)


def check_block(marker: str, expected: str) -> None:
    text = README.read_text()
    assert marker in text, f"the README no longer shows {marker}"
    start, end = block_after(text, marker)
    if os.environ.get("RELATED_WRITE_README") == "1":
        README.write_text(text[:start] + expected + text[end:])
        return
    assert text[start:end] == expected, (
        f"The README's answer to {marker} is not the service's; the service answers:\n{expected}"
        "\n(RELATED_WRITE_README=1 pytest tests/test_readme.py rewrites it)"
    )


def table(items: list[dict[str, Any]]) -> str:
    rows = [("score", "external_id", "source", "title")] + [
        (f"{i['score']:.3f}", i["external_id"], i["source"], i["title"]) for i in items
    ]
    widths = [max(len(row[c]) for row in rows) for c in range(3)]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + f"  {row[3]}\n"
        for row in rows
    )


def abridged(item: dict[str, Any]) -> str:
    """One related item as the README shows it: long or random values elided, numbers to two
    places, wrapped at 100 columns."""
    parts = []
    for key, value in item.items():
        if key in ("id", "title", "summary"):
            shown = '"..."'
        elif key == "url":
            shown = '"https://..."'
        elif isinstance(value, float):
            shown = f"{value:.2f}"
        else:
            shown = json.dumps(value, ensure_ascii=False)
        parts.append(f'"{key}": {shown}')
    lines, line = [], "    {"
    for n, part in enumerate(parts):
        piece = part + ("}" if n == len(parts) - 1 else ",")
        if len(line) + 1 + len(piece) > 100 and line.strip() != "{":
            lines.append(line)
            line = "     " + piece
        else:
            line += ("" if line.endswith("{") else " ") + piece
    lines.append(line)
    return "\n".join(lines)


@pytest.fixture(scope="module")
async def make_run(
    app: Any, live_examples: LiveServer, settings: Settings, embedder: Any
) -> AsyncIterator[LiveServer]:
    """The service as `make run` leaves it: the examples loaded by `related ingest`, which ends
    with ANALYZE, then a server started after it, so its ranking has the corpus' word
    statistics from the start (the session's server read none)."""
    async with app.state.database.engine.begin() as conn:
        await conn.execute(text("ANALYZE articles"))
    server = LiveServer(
        create_app(
            # Reads open as make run opens them; the session app's worker embeds.
            settings.model_copy(
                update={"anonymous_reads": True, "embedding_worker_in_process": False}
            ),
            embedder=embedder,
        )
    )
    server.start()
    yield server
    server.stop()


async def test_quickstart_answer_is_the_services(make_run: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=make_run.url) as http:
        answer = (await http.get(QUICKSTART)).json()
    # What the README says of it: the story's other three articles first.
    top = {item["title"] for item in answer["items"][:3]}
    assert top == same_story("demo-marathon-1")
    check_block(f"curl -s '{BASE}{QUICKSTART}'", table(answer["items"]))


async def test_related_example_answer_is_the_services(make_run: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=make_run.url) as http:
        answer = (await http.get(RELATED)).json()
    first = answer["items"][0]
    assert first["source"] != "Harbor Daily"
    assert first["title"] in same_story("demo-wildfire-1")
    expected = (
        "{\n"
        f'  "article": {{"id": "...", "external_id": "{answer["article"]["external_id"]}"}},\n'
        f'  "model": "{answer["model"]}",\n'
        '  "items": [\n'
        f"{abridged(first)},\n"
        "    ...\n"
        "  ]\n"
        "}\n"
    )
    check_block(f"curl -s '{BASE}{RELATED}'", expected)


async def test_draft_example_finds_the_story(make_run: LiveServer) -> None:
    readme = README.read_text()
    start, end = block_after(readme, "`POST /v1/related` does the same", in_block=False)
    command = readme[start:end]
    body = json.loads(command.split("-d '", 1)[1].rsplit("'", 1)[0])
    assert body == DRAFT
    async with httpx.AsyncClient(base_url=make_run.url) as http:
        answer = await http.post("/v1/related", json=body)
    assert answer.status_code == 200
    titles = [item["title"] for item in answer.json()["items"]]
    wildfire = same_story("demo-wildfire-0")
    assert set(titles[: len(wildfire)]) == wildfire


def github_anchor(title: str) -> str:
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def test_contents_list_every_section() -> None:
    text = README.read_text()
    contents = text.split("## Contents\n", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^( *)- \[(.+)\]\(#(.+)\)$", contents, flags=re.MULTILINE)
    headings = [
        (level, title)
        for level, title in re.findall(r"^(##+) (.+)$", text, flags=re.MULTILINE)
        if title != "Contents"
    ]
    assert [(len(indent) // 2 + 2, title) for indent, title, _ in listed] == [
        (len(level), title) for level, title in headings
    ]
    assert all(anchor == github_anchor(title) for _, title, anchor in listed)


def test_layout_names_every_package_and_only_real_files() -> None:
    text = README.read_text()
    layout = text.split("### Layout\n", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    app = README.parent / "app"
    packages = {p.name for p in app.iterdir() if (p / "__init__.py").exists()}
    listed = set(re.findall(r"^  (\w+)/ ", layout, flags=re.MULTILINE))
    assert listed == packages
    # A package's entry: its line and the indented lines that continue it.
    entries = dict(re.findall(r"^  (\w+)/ +(.*(?:\n {6,}.*)*)", layout, flags=re.MULTILINE))
    for package, entry in entries.items():
        # Each file an entry names (config.py, ...) is in that package.
        for name in re.findall(r"\b(\w+\.py)\b", entry):
            assert (app / package / name).exists(), f"app/{package}/{name}"
    # related/ has many modules: each is said what it does.
    modules = {p.stem for p in (app / "related").glob("*.py")} - {"__init__"}
    assert {m for m in modules if not re.search(rf"\b{m}\b", entries["related"])} == set()
