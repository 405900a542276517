"""The related path's driver connections (app.db.reads): binary vectors, read-only, settings."""

from typing import Any

import asyncpg
import numpy as np
import pytest

from app.db.reads import read_ef_search
from app.related.repository import Filters, Where
from app.related.service import CANDIDATES


async def test_vectors_round_trip_in_binary_form(app: Any) -> None:
    vector = np.random.default_rng(3).standard_normal(384).astype(np.float32)
    async with app.state.database.read_pool.acquire() as connection:
        back = await connection.fetchval("SELECT $1::vector", vector)
        text = await connection.fetchval("SELECT ($1::vector)::text", vector)
    assert back.dtype == np.float32 and np.array_equal(back, vector)
    assert float(text.strip("[]").split(",")[0]) == pytest.approx(float(vector[0]))


async def test_read_connections_are_read_only_and_start_with_ef_search(app: Any) -> None:
    async with app.state.database.read_pool.acquire() as connection:
        ef_search = await connection.fetchval("SHOW hnsw.ef_search")
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await connection.execute("DELETE FROM articles")
    assert int(ef_search) == read_ef_search(app.state.settings)
    # The default request's walk needs no SET: its list holds the hybrid ranking's candidates
    # and the article asked about.
    assert read_ef_search(app.state.settings) >= CANDIDATES + 1


def test_filters_become_numbered_parameters_never_sql_text() -> None:
    where = Where()
    where.add(f"embedding_model = {where.param('m')}")
    filters = Filters(
        source=["a'; DROP TABLE articles; --"],
        exclude_source=["b"],
        language=["EN"],
        exclude_ids=["x", "00000000-0000-0000-0000-000000000001"],
    )
    where.apply(filters)
    assert "DROP" not in where.sql
    assert where.sql.count("$") == len(where.args) == 6
    assert where.args[3] == ["en"]  # languages are stored lower-case
    assert Filters(exclude_ids=["x"]).restrictive is False
    assert Filters(language=["en"]).restrictive is True
