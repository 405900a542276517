"""The lexeme arrays related ranking reads are the stored tsvector's words, kept in step with
every write of the text (trigger of migration 0005)."""

from typing import Any

from httpx import AsyncClient
from sqlalchemy import text

from tests.conftest import article

SAME_AS_TSVECTOR = text(
    "SELECT lexemes = tsvector_to_array(search_vector) AS words,"
    " lexeme_counts = ARRAY(SELECT cardinality(u.positions) FROM unnest(search_vector) AS u)"
    " AS counts, lexemes FROM articles WHERE external_id = :ext"
)


async def words_of(app: Any, external_id: str) -> Any:
    async with app.state.database.engine.begin() as conn:
        return (await conn.execute(SAME_AS_TSVECTOR, {"ext": external_id})).one()


async def test_lexemes_follow_every_write_of_the_text(client: AsyncClient, app: Any) -> None:
    await client.post(
        "/v1/articles", json=article("lx", "Harbour bridge reopens", "The bridge reopens today.")
    )
    row = await words_of(app, "lx")
    assert row.words and row.counts
    assert "bridg" in row.lexemes and "harbour" in row.lexemes

    await client.post(
        "/v1/articles", json=article("lx", "Harbour bridge reopens", "Ferries stop running.")
    )
    row = await words_of(app, "lx")
    assert row.words and row.counts
    assert "ferri" in row.lexemes and "today" not in row.lexemes

    # A headline-only article takes its words from the summary, as search_vector does.
    await client.post(
        "/v1/articles", json=article("hd", "Tram strike", summary="Drivers walk out at dawn.")
    )
    row = await words_of(app, "hd")
    assert row.words and row.counts and "dawn" in row.lexemes
