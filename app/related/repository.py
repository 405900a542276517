"""The nearest-neighbour SQL: approximate through the HNSW index, or exact."""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Row, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article
from app.articles.repository import metadata_filters, parse_uuid


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

    async def nearest(
        self,
        vector: Sequence[float],
        model: str,
        filters: list[ColumnElement[bool]],
        limit: int,
    ) -> Sequence[Row[tuple[object, ...]]]:
        distance = Article.embedding.cosine_distance(vector)
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
            )
            # Vectors of two models are never compared.
            .where(Article.embedding_model == model, *filters)
            .order_by(distance)
            .limit(limit)
        )
        return (await self.session.execute(stmt)).all()
