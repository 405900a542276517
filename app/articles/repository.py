"""Every SQL statement about stored articles (related-article search lives in app.related)."""

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import TextClause, delete, func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.filters import ArticleFilters, NamedParams, parse_uuid
from app.articles.models import Article

__all__ = ["ArticleRepository", "parse_uuid"]


class ArticleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _in_sites(self, sites: Sequence[str] | None) -> TextClause:
        """The clause that keeps ``sites``' articles (None: every site): the one definition's."""
        params = NamedParams()
        clauses = ArticleFilters(sites=sites).clauses(params)
        return text(" AND ".join(clauses) or "true").bindparams(**params.values)

    async def get_by_ref(self, ref: str, sites: Sequence[str] | None) -> list[Article]:
        """By our id or, failing that, by the publisher's external_id, among ``sites``' articles
        (None: every site): one article, or none, or (by an external_id used in several of the
        sites) each site's."""
        article_id = parse_uuid(ref)
        if article_id is not None:
            found = await self.session.scalars(
                select(Article).where(Article.id == article_id, self._in_sites(sites))
            )
            article = found.one_or_none()
            if article is not None:
                return [article]
        result = await self.session.scalars(
            select(Article)
            .where(Article.external_id == ref, self._in_sites(sites))
            .order_by(Article.site)
        )
        return list(result)

    async def get_by_external_ids(self, keys: Iterable[tuple[str, str]]) -> list[Article]:
        """The stored articles of these (external_id, site) pairs."""
        pairs = list(set(keys))
        if not pairs:
            return []
        found = await self.session.scalars(
            select(Article).where(tuple_(Article.external_id, Article.site).in_(pairs))
        )
        return list(found)

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
