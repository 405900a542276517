"""The terms related ranking reads (app.related.terms) are the stored tsvector's words, kept in
step with every write of the text (trigger of migration 0007) with the body's length in words,
and decode to the same words."""

import asyncio
from typing import Any

import numpy as np
from httpx import AsyncClient
from sqlalchemy import text

from app.auth.models import Scope
from app.core.config import Settings
from app.db import migrate
from app.related.terms import Terms, jaccard
from tests.conftest import article, create_key, fresh_database, http_client, running_app
from tests.fakes import terms_of

STORED = text(
    "SELECT (term_hashes, term_counts) = (SELECT hashes, counts FROM tsvector_terms(search_vector))"
    " AND title_hashes = (SELECT hashes FROM tsvector_terms(to_tsvector('english', title)))"
    " AS in_step, term_hashes, term_counts, body_words FROM articles WHERE external_id = :ext"
)
HASH = text("SELECT hashtextextended(:word, 0)")


async def stored_terms(app: Any, external_id: str) -> tuple[bool, Terms, int]:
    async with app.state.database.engine.begin() as conn:
        row = (await conn.execute(STORED, {"ext": external_id})).one()
    return row.in_step, Terms.from_bytes(row.term_hashes, row.term_counts), row.body_words


async def hash_of(app: Any, word: str) -> int:
    async with app.state.database.engine.begin() as conn:
        return int((await conn.execute(HASH, {"word": word})).scalar_one())


async def test_terms_follow_every_write_of_the_text(client: AsyncClient, app: Any) -> None:
    body = " The bridge\treopens today,\n\nbridge fans. "
    await client.post("/v1/articles", json=article("lx", "Harbour bridge reopens", body))
    in_step, terms, body_words = await stored_terms(app, "lx")
    assert in_step and body_words == len(body.split()) == 6
    bridge = await hash_of(app, "bridg")
    assert bridge in terms.hashes and await hash_of(app, "harbour") in terms.hashes
    assert int(terms.counts[list(terms.hashes).index(bridge)]) == 3  # title once, body twice

    await client.post(
        "/v1/articles", json=article("lx", "Harbour bridge reopens", "Ferries stop running.")
    )
    in_step, terms, body_words = await stored_terms(app, "lx")
    assert in_step and body_words == 3
    assert await hash_of(app, "ferri") in terms.hashes
    assert await hash_of(app, "today") not in terms.hashes

    # A headline-only article takes its words from the summary, as search_vector does.
    await client.post(
        "/v1/articles", json=article("hd", "Tram strike", summary="Drivers walk out at dawn.")
    )
    in_step, terms, body_words = await stored_terms(app, "hd")
    assert in_step and body_words == 0 and await hash_of(app, "dawn") in terms.hashes


def test_terms_decode_and_compare() -> None:
    a = terms_of({"etna": 2, "erupt": 1, "catania": 1})
    b = terms_of({"etna": 1, "erupt": 3, "sicili": 1})
    assert len(a) == 3 and a.counts.tolist() == [2, 1, 1]
    assert jaccard(a, b) == 2 / 4
    assert jaccard(a, a) == 1.0
    raw = Terms.from_bytes(a.hashes.astype(">i8").tobytes(), a.counts.astype(">i2").tobytes())
    assert np.array_equal(raw.hashes, a.hashes) and np.array_equal(raw.counts, a.counts)
    assert len(Terms.from_bytes(None, None)) == 0


async def test_word_rarity_comes_from_the_analyzed_corpus(
    pg_server: Any, settings: Settings, embedder: Any
) -> None:
    url = fresh_database(pg_server, "related_statistics")
    await asyncio.to_thread(migrate.upgrade, url)
    async with running_app(settings, embedder, database_url=url) as app:
        statistics = app.state.term_statistics
        assert statistics.idf is None  # never analyzed: the ranking uses local idf
        token = await create_key(app, Scope.ADMIN)
        async with http_client(app, token) as http:
            for i in range(8):
                body = "Harbour ferries run late." + (" The lighthouse shone." if i == 0 else "")
                response = await http.post(
                    "/v1/articles?wait=true", json=article(f"s{i}", f"Port news {i}", body)
                )
                assert response.status_code == 201, response.text
            async with app.state.database.engine.begin() as conn:
                await conn.execute(text("ANALYZE articles"))
            await statistics.refresh()

            idf = statistics.idf
            assert idf is not None and idf.articles == 8
            words = [await hash_of(app, w) for w in ("harbour", "lighthous", "zeppelin")]
            rarity = idf(np.array(words, dtype=np.int64))
            assert rarity[0] < rarity[1] <= rarity[2]

            related = await http.get("/v1/articles/s0/related")
            assert related.status_code == 200
            assert len(related.json()["items"]) == 7
