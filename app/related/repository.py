"""The nearest-neighbour SQL: approximate through the HNSW index, or exact."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Row, SQLColumnExpression, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article
from app.articles.repository import metadata_filters, parse_uuid

Lexemes = dict[str, int]  # lexeme -> occurrences in the text


def related_filters(
    *,
    source: Sequence[str],
    exclude_source: Sequence[str],
    category: Sequence[str],
    language: Sequence[str],
    since: datetime | None,
    until: datetime | None,
    exclude_ids: Sequence[str],
) -> list[ColumnElement[bool]]:
    clauses = metadata_filters(source, category, language, since, until)
    if exclude_source:
        # NULL sources are not "another source" to SQL; keep them explicitly.
        clauses.append(or_(Article.source.is_(None), Article.source.not_in(exclude_source)))
    if exclude_ids:
        ids = [i for i in map(parse_uuid, exclude_ids) if i is not None]
        clauses.append(Article.external_id.not_in(exclude_ids))
        if ids:
            clauses.append(Article.id.not_in(ids))
    return clauses


class RelatedRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _set_local(self, name: str, value: str) -> None:
        # set_config(..., true) is SET LOCAL with bound parameters: it ends with the transaction.
        await self.session.execute(select(func.set_config(name, value, True)))

    async def use_index(self, ef_search: int, iterative_scan: bool) -> None:
        await self._set_local("hnsw.ef_search", str(ef_search))
        if iterative_scan:
            # pgvector 0.8+: keep scanning the graph until LIMIT rows pass the filters, in order.
            await self._set_local("hnsw.iterative_scan", "strict_order")

    async def use_exact_scan(self) -> None:
        # pgvector's documented way to get exact results despite an HNSW index; bitmap scans on
        # the filter indexes stay allowed, so a selective filter still reads few rows.
        await self._set_local("enable_indexscan", "off")

    async def search_terms(self, article_id: uuid.UUID) -> Lexemes:
        row = (
            await self.session.execute(
                select(Article.lexemes, Article.lexeme_counts).where(Article.id == article_id)
            )
        ).one()
        return _counts(row.lexemes, row.lexeme_counts)

    async def draft_terms(self, title: str, summary: str | None, body: str) -> Lexemes:
        # The same document as Article.search_vector, for text that is not stored.
        document = title + " " + (body[:10000] if body else summary or "")
        vector = func.to_tsvector(literal_column("'english'::regconfig"), document)
        row = (await self.session.execute(select(*_lexemes(vector)))).one()
        return _counts(row.lexemes, row.lexeme_counts)

    async def nearest(
        self,
        vector: Sequence[float],
        model: str,
        filters: list[ColumnElement[bool]],
        limit: int,
        with_features: bool = False,
    ) -> Sequence[Row[tuple[object, ...]]]:
        """Nearest first; ``with_features`` adds each row's vector (binary, see
        parse_vector), lexemes and their counts (see lexemes_of), and category."""
        distance = Article.embedding.cosine_distance(vector)
        features = (
            [
                # pgvector's binary form: no float formatting in PostgreSQL, no parsing here.
                func.vector_send(Article.embedding).label("vector"),
                Article.lexemes,
                Article.lexeme_counts,
                Article.category,
            ]
            if with_features
            else []
        )
        stmt = (
            select(
                Article.id,
                Article.external_id,
                Article.title,
                Article.url,
                Article.source,
                Article.published_at,
                Article.summary,
                (1 - distance).label("score"),
                *features,
            )
            # Vectors of two models are never compared.
            .where(Article.embedding_model == model, *filters)
            .order_by(distance)
            .limit(limit)
        )
        rows: Sequence[Row[tuple[object, ...]]] = (await self.session.execute(stmt)).all()
        return rows


def _lexemes(tsvector: SQLColumnExpression[Any]) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """A tsvector as two arrays, lexemes and how often each occurs, as the stored articles keep
    them (Article.lexemes, Article.lexeme_counts): for a draft's text."""
    occurrences = (
        select(func.cardinality(literal_column("u.positions")))
        .select_from(
            func.unnest(tsvector).table_valued("lexeme", "positions", "weights").alias("u")
        )
        .scalar_subquery()
    )
    return (
        func.tsvector_to_array(tsvector).label("lexemes"),
        func.array(occurrences).label("lexeme_counts"),
    )


def _counts(lexemes: Sequence[str] | None, counts: Sequence[int] | None) -> Lexemes:
    # Both arrays come from one tsvector, in its (sorted) lexeme order.
    return dict(zip(lexemes or (), counts or (), strict=True))


def lexemes_of(row: Row[Any]) -> Lexemes:
    return _counts(row.lexemes, row.lexeme_counts)


def parse_vector(binary: bytes) -> "np.ndarray[tuple[int], np.dtype[np.float32]]":
    """pgvector's binary form: dimensions (int16), unused (int16), then big-endian float32s."""
    return np.frombuffer(binary, dtype=">f4", offset=4).astype(np.float32)
