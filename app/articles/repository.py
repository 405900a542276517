"""Every SQL statement about stored articles (related-article search lives in app.related)."""

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.filters import ArticleFilters, NamedParams, parse_uuid
from app.articles.models import Article

__all__ = ["ArticleRepository", "parse_uuid"]


class ArticleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_ref(self, ref: str) -> Article | None:
        """By our id or, failing that, by the publisher's external_id."""
        article_id = parse_uuid(ref)
        if article_id is not None:
            article = await self.session.get(Article, article_id)
            if article is not None:
                return article
        result = await self.session.scalars(select(Article).where(Article.external_id == ref))
        return result.one_or_none()

    async def get_by_external_ids(self, external_ids: Iterable[str]) -> list[Article]:
        ids = list(set(external_ids))
        if not ids:
            return []
        return list(await self.session.scalars(select(Article).where(Article.external_id.in_(ids))))

    async def count_failed(self, ids: Sequence[uuid.UUID]) -> int:
        failed = 0
        for start in range(0, len(ids), 10_000):
            chunk = list(ids[start : start + 10_000])
            failed += (
                await self.session.scalar(
                    select(func.count())
                    .select_from(Article)
                    .where(Article.id.in_(chunk), Article.embedding_status == "failed")
                )
                or 0
            )
        return failed

    def add_all(self, articles: Iterable[Article]) -> None:
        self.session.add_all(articles)

    async def flush(self) -> None:
        await self.session.flush()

    async def delete(self, article: Article) -> None:
        await self.session.execute(delete(Article).where(Article.id == article.id))

    async def list_page(
        self,
        filters: ArticleFilters,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Article]:
        """Newest first; keyset pagination on (published_at, id) so pages never skip or repeat.
        The filters' clauses are the ones related search applies (app.articles.filters)."""
        params = NamedParams()
        clauses = filters.clauses(params)
        stmt = select(Article)
        if clauses:
            stmt = stmt.where(text(" AND ".join(clauses)).bindparams(**params.values))
        if after is not None:
            stmt = stmt.where(tuple_(Article.published_at, Article.id) < tuple_(*after))
        stmt = stmt.order_by(Article.published_at.desc(), Article.id.desc()).limit(limit)
        return list(await self.session.scalars(stmt))
