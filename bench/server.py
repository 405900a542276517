"""Running `related serve` for a bench: a free port, an API key, waiting for /readyz."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

RELATED = Path(sys.executable).with_name("related")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_key(env: dict[str, str], *scopes: str, cwd: Path | None = None) -> str:
    """A new API key in the database the server with ``env`` is about to use; its token."""
    scope_args = [arg for scope in scopes for arg in ("--scope", scope)]
    created = subprocess.run(
        [str(RELATED), "keys", "create", "--name", "bench", *scope_args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if created.returncode != 0:
        raise SystemExit(f"related keys create failed:\n{created.stderr[-3000:]}")
    return created.stdout.strip()


def wait_ready(
    client: httpx.Client, server: subprocess.Popen[bytes], timeout_s: float = 300
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if server.poll() is not None:
            raise SystemExit("related serve exited during start-up")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"related serve was not ready within {timeout_s:.0f} s")
        time.sleep(0.5)
