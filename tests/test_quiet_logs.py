"""What the `related` commands and the service write besides their answers: no dependency's
warnings or start-up chatter, and progress bars only for a person at a terminal."""

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

from httpx import AsyncClient

from app.db.embedded import EmbeddedPostgres
from tests.conftest import EXAMPLES, fresh_database
from tests.test_cli import related_cli


def three_articles(tmp_path: Path) -> Path:
    path = tmp_path / "three.jsonl"
    path.write_text("\n".join(EXAMPLES.read_text().splitlines()[:3]) + "\n")
    return path


async def test_commands_in_a_pipe_write_their_answer_and_nothing_else(
    client: AsyncClient, database_url: str, tmp_path: Path
) -> None:
    # No terminal here (stderr is a pipe): nothing on stderr at all when all goes well.
    for args, answer in (
        (["--help"], "Related: related articles for news sites."),
        (["ingest", str(three_articles(tmp_path))], "3 created, 0 updated, 0 unchanged"),
        (["reembed", "--all"], "embedded 3, failed 0"),
        (["keys", "list"], ""),
    ):
        result = related_cli(*args, database_url=database_url)
        assert result.returncode == 0, result.stderr
        assert answer in result.stdout
        assert result.stderr == "", args  # no warning, no "Loading weights", no bar


def test_progress_bars_on_a_terminal(database_url: str, tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    # 24 rows of 100 columns: a terminal of size 0 gets bars of width 0.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    output: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the process has exited and closed its end
                return
            if not chunk:
                return
            output.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    env = {**os.environ, "DATABASE_URL": database_url, "HF_HUB_OFFLINE": "1"}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", "ingest", str(three_articles(tmp_path))],
            stdout=subprocess.PIPE,
            stderr=terminal,
            env=env,
            timeout=300,
            check=False,
        )
    finally:
        os.close(terminal)
    reader.join(timeout=30)
    os.close(controller)
    assert result.returncode == 0
    shown = b"".join(output).decode(errors="replace")
    assert "store three.jsonl" in shown and "3/3" in shown  # the bars, on the terminal
    assert "Loading weights" not in shown  # the model's own bar is noise even here


def test_migrations_log_what_ran_and_no_chatter(pg_server: EmbeddedPostgres) -> None:
    url = fresh_database(pg_server, "related_quiet")
    # The service's logging, then migrations, as `related serve` does at start-up.
    script = (
        "import sys\n"
        "from app.observability.logs import setup_logging\n"
        "setup_logging('info', 'text')\n"
        "from app.db import migrate\n"
        "migrate.upgrade(sys.argv[1])\n"
    )
    first = subprocess.run(
        [sys.executable, "-c", script, url], capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stderr
    assert re.search(r"Running upgrade +-> 0001", first.stderr)  # a migration that ran
    again = subprocess.run(
        [sys.executable, "-c", script, url], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    for result in (first, again):
        for chatter in ("setup plugin", "Context impl", "Will assume"):
            assert chatter not in result.stderr
    assert again.stderr == ""  # nothing ran, nothing to say
