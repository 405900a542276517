"""The embedded PostgreSQL + pgvector used when no DATABASE_URL is set (the `pgserver` package)."""

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DATABASE_NAME = "related"


def start_embedded_postgres(data_dir: Path) -> Any:
    """Start (or join) the private server in ``data_dir`` and make sure our database exists.

    pgserver counts the processes using a data directory and stops the server when the last one
    exits, so the API, the CLI and the test suite can share it safely.
    """
    import pgserver  # imported here: production deployments never start it

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    logger.info("embedded PostgreSQL running in %s", data_dir)
    return server


def embedded_url(server: Any) -> str:
    return str(server.get_uri(DATABASE_NAME))
