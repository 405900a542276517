"""What the `related` commands and the service write besides their answers: no dependency's
warnings or start-up chatter, and progress bars only for a person at a terminal."""

import asyncio
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

import httpx
from httpx import AsyncClient

from app.db.embedded import EmbeddedPostgres
from bench.server import free_port
from tests.conftest import EXAMPLES, fresh_database
from tests.polling import until
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


async def test_serve_starts_with_only_the_services_own_lines(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "HF_HUB_OFFLINE": "1",
        "RELATED_LOG_FORMAT": "text",
        "RELATED_MIGRATE_ON_START": "true",  # at head already: nothing to say about it
        "RELATED_EMBEDDING_WORKER_IN_PROCESS": "false",  # the session's app embeds
    }
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:

        async def ready() -> bool:
            assert process.returncode is None, log.read_text()
            try:
                async with httpx.AsyncClient() as http:
                    response = await http.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                return response.status_code == 200
            except httpx.HTTPError:
                return False

        await until(ready, "related serve to be ready", timeout_s=180)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=60)
    lines = log.read_text().splitlines()
    loggers = {line.split()[3] for line in lines}  # "date time LEVEL logger [request]: ..."
    # Uvicorn's start and stop, the model and the database it found, the /readyz requests.
    assert loggers <= {"uvicorn.error", "app.embedding.model", "app.db.engine", "related.access"}, (
        lines
    )
    assert any("loaded embedding model" in line for line in lines)
    assert not [line for line in lines if "Warning" in line or "%|" in line]
