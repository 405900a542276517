"""The tracked tree works on a fresh clone of any machine: no symlinks (a clone may not resolve
them) and no paths of the machine it was written on."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(^|[^.A-Za-z0-9_])/(work|tmp|root|home)/")


def tracked() -> list[tuple[str, str]]:
    """(mode, path) of every tracked file."""
    listing = subprocess.run(
        ["git", "ls-files", "-s", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    entries = []
    for entry in filter(None, listing.split("\0")):
        meta, path = entry.split("\t", 1)
        entries.append((meta.split()[0], path))
    return entries


def test_no_tracked_symlinks() -> None:
    assert [path for mode, path in tracked() if mode == "120000"] == []


def test_no_tracked_file_names_a_path_of_this_machine() -> None:
    found = []
    for _, path in tracked():
        try:
            text = (ROOT / path).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # images; files deleted in the working tree
        for number, line in enumerate(text.splitlines(), 1):
            if MACHINE_PATH.search(line) and path != "tests/test_repository_hygiene.py":
                found.append(f"{path}:{number}: {line.strip()}")
    assert found == []


def test_what_the_benches_and_the_service_write_is_ignored() -> None:
    written = [
        ".venv/bin/python",
        ".venv-lock/bin/pip-compile",
        ".env",
        ".bench-cache/related-pg/PG_VERSION",
        ".bench-cache/logs/http-w1.log",
        "scale.log",
        "reports/demo-story.png",
        "reports/mind-subcategories.json",
        ".related-data/PG_VERSION",
        "app/__pycache__/main.cpython-311.pyc",
        "related.egg-info/PKG-INFO",
    ]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *written], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert sorted(ignored) == sorted(written)


def test_the_bench_records_and_the_lock_files_are_not_ignored() -> None:
    kept = ["bench/results/related-20990101T000000Z.json", "requirements.lock", "docs/api.md"]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *kept], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert ignored == []
