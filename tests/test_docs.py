"""The README's configuration table documents every setting, and only real ones."""

import re
from pathlib import Path

from app.core.config import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def env_name(field: str) -> str:
    return "DATABASE_URL" if field == "database_url" else f"RELATED_{field.upper()}"


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", section, flags=re.MULTILINE))
    assert documented == {env_name(name) for name in Settings.model_fields}


ROOT = README.parent
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
# A reader reads a reference page whole: past these it has become a log.
MOST_BYTES = {"docs/performance.md": 20_000}
MOST_BYTES_ANY = 40_000
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_docs_stay_reference_sized() -> None:
    sizes = {str(p.relative_to(ROOT)): p.stat().st_size for p in DOCS}
    too_big = {
        name: size for name, size in sizes.items() if size > MOST_BYTES.get(name, MOST_BYTES_ANY)
    }
    assert too_big == {}


def test_links_between_the_docs_resolve() -> None:
    broken = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not ours to check offline
            path, _, fragment = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists() or (
                fragment and file.suffix == ".md" and fragment not in anchors(file)
            ):
                broken.append(f"{doc.name}: {target}")
    assert broken == []


def test_no_heading_is_a_dated_run() -> None:
    months = "January|February|March|April|May|June|July|August|September|October|November|December"
    dated = re.compile(rf"\b({months})\b|\bUTC\b|\b[Rr]un of\b")
    found = [
        f"{doc.name}: {heading}"
        for doc in DOCS
        for heading in re.findall(r"^#+ (.+)$", doc.read_text(), flags=re.MULTILINE)
        if dated.search(heading)
    ]
    assert found == []
