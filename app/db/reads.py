"""The hot read path's connections: an asyncpg pool, without SQLAlchemy in between.

`GET /v1/articles/{ref}/related` is the request a news site makes on every page view. Through
SQLAlchemy's session, ORM and text-form vectors it cost about 10 ms of API CPU per request
(py-spy, bench/related.py); through the driver with binary vectors it costs a fraction of that.
So related search sends its few hand-written statements (app/related/repository.py) on these
connections; everything else keeps the SQLAlchemy engine.

The connections are read-only (`default_transaction_read_only`), on the replica when one is
configured, and start with the walk's `hnsw.ef_search` (read_ef_search), so a search needs no SET
and no transaction: one round trip.
"""

import struct
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
import numpy as np
from fastapi import Depends, Request
from sqlalchemy.engine import make_url

from app.core.config import Settings
from app.core.errors import AppError
from app.db.citus import READ_SETTINGS


def encode_vector(value: Any) -> bytes:
    """pgvector's binary input: dimensions (int16), unused (int16), big-endian float32s."""
    array = np.asarray(value, dtype=">f4")
    return struct.pack(">HH", array.shape[0], 0) + array.tobytes()


def decode_vector(data: bytes) -> Any:
    return np.frombuffer(data, dtype=">f4", offset=4).astype(np.float32)


def decode_vectors(data: Sequence[bytes]) -> Any:
    """Vectors of one dimension in pgvector's binary form (`vector_send(...)`, bytes), as the
    rows of one float32 matrix: one decoding for all of them."""
    if not data:
        return np.zeros((0, 0), dtype=np.float32)
    joined = b"".join(data)
    # Each is a 4-byte header, the width of one float, then its floats.
    floats = np.frombuffer(joined, dtype=">f4").reshape(len(data), -1)
    return floats[:, 1:].astype(np.float32)


async def _register_vector(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "vector", encoder=encode_vector, decoder=decode_vector, format="binary"
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    # asyncpg's default reset on release (RESET ALL and friends) is a round trip per request;
    # the read path changes settings only with SET LOCAL, inside transactions that it closes.
    return None


def driver_dsn(sqlalchemy_url: str) -> str:
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)


# A walk's candidate list on the read connections holds at least this many rows: the hybrid
# ranking's 50 candidates and the article asked about (app.related.service.CANDIDATES). The
# default request's walk then needs no SET LOCAL (a transaction: three more round trips), nor
# pgvector's iterative scan to walk on past ef_search, which costs PostgreSQL more than a list
# long enough from the start; a plain walk costs about the same at 51 as at 40.
MIN_EF_SEARCH = 51


def read_ef_search(settings: Settings) -> int:
    """hnsw.ef_search of the read connections: RELATED_HNSW_EF_SEARCH, at least MIN_EF_SEARCH."""
    return max(settings.hnsw_ef_search, MIN_EF_SEARCH)


async def create_read_pool(
    sqlalchemy_url: str, settings: Settings, *, distributed: bool = False
) -> asyncpg.Pool:
    options = {
        **(READ_SETTINGS if distributed else {}),
        "default_transaction_read_only": "on",
        "hnsw.ef_search": str(read_ef_search(settings)),
        # A filtered index scan keeps walking the graph until LIMIT rows pass the filters, in
        # exact distance order (pgvector 0.8; see app.related.service).
        "hnsw.iterative_scan": "strict_order",
    }
    pool = await asyncpg.create_pool(
        driver_dsn(sqlalchemy_url),
        min_size=1,
        max_size=settings.db_pool_size,
        timeout=settings.db_connect_timeout_s,
        init=_register_vector,
        reset=_keep_session,
        server_settings=options,
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def read_connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the read pool for the request, back in the pool when it ends."""
    pool: asyncpg.Pool = request.app.state.database.read_pool
    settings: Settings = request.app.state.settings
    try:
        connection = await pool.acquire(timeout=settings.db_connect_timeout_s)
    except TimeoutError as exc:
        raise AppError(503, "database_unavailable", "The database cannot be reached") from exc
    try:
        yield connection
    finally:
        await pool.release(connection)


async def get_read_connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    async with read_connection(request) as connection:
        yield connection


ReadConnectionDep = Annotated[asyncpg.Connection, Depends(get_read_connection, scope="function")]
