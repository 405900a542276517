"""The machine-readable record each bench run writes: bench/results/<bench>-<UTC time>.json.

The docs quote the latest record of each bench (docs/performance.md); the run history stays
here, not in the docs. Every record carries what makes its figures readable later: the command,
the commit, the machine's cores and its load average at the start and the end (the machine is
shared: figures taken under load say so).
"""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Record:
    """Started when the bench starts; ``save`` adds the figures and writes the file."""

    def __init__(self, bench: str) -> None:
        self.bench = bench
        self.started = datetime.now(UTC)
        self.fields: dict[str, Any] = {
            "bench": bench,
            "command": " ".join([f"bench/{bench}.py", *sys.argv[1:]]),
            "commit": git_commit(),
            "started": self.started.isoformat(timespec="seconds"),
            "cores": os.cpu_count(),
            "load_average_start": load_average(),
        }

    def save(self, results: Path = RESULTS, **figures: Any) -> Path:
        self.fields |= {
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "load_average_end": load_average(),
            **figures,
        }
        results.mkdir(parents=True, exist_ok=True)
        path = results / f"{self.bench}-{self.started.strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(json.dumps(self.fields, indent=1, default=str) + "\n")
        print(f"record: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        return path
