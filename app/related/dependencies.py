from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from pydantic import TypeAdapter

from app.articles.dependencies import ArticleRef
from app.core.errors import not_found
from app.core.query import QueryModel
from app.db.reads import ReadConnectionDep, read_ef_search
from app.related.repository import RelatedRepository, SourceArticle
from app.related.schemas import RelatedQuery
from app.related.service import RelatedService
from app.related.statistics import TermStatistics


def related_service(request: Request, connection: asyncpg.Connection) -> RelatedService:
    # The app's encoder and settings read here rather than as dependencies of their own: the
    # page-view route resolves no dependencies (app.core.routing), and each one FastAPI
    # resolves elsewhere costs 10 to 20 us.
    state = request.app.state
    statistics: TermStatistics = state.term_statistics
    return RelatedService(
        RelatedRepository(connection),
        state.encoder,
        read_ef_search(state.settings),
        statistics.idf,
        state.row_estimates,
    )


async def get_related_service(connection: ReadConnectionDep, request: Request) -> RelatedService:
    return related_service(request, connection)


RelatedServiceDep = Annotated[RelatedService, Depends(get_related_service)]

# GET related's path parameter and filters, parsed by the route itself (app.core.routing).
article_ref = TypeAdapter(ArticleRef)
related_query = QueryModel(RelatedQuery)


async def source_article(service: RelatedService, ref: str) -> SourceArticle:
    article = await service.repository.source_article(ref)
    if article is None:
        raise not_found("article", ref)
    return article
