from typing import Annotated

from fastapi import Depends, Request

from app.articles.dependencies import ArticleRef
from app.core.errors import not_found
from app.core.query import QueryModel
from app.db.reads import ReadConnectionDep
from app.related.repository import RelatedRepository, SourceArticle
from app.related.schemas import RelatedQuery
from app.related.service import RelatedService
from app.related.statistics import TermStatistics


async def get_related_service(connection: ReadConnectionDep, request: Request) -> RelatedService:
    # The repository built here and the app's encoder and settings read here, rather than as
    # dependencies of their own: every page view resolves this graph, and FastAPI resolves each
    # dependency again wherever it is declared (cached or not), 10 to 20 us a node.
    state = request.app.state
    statistics: TermStatistics = state.term_statistics
    return RelatedService(
        RelatedRepository(connection),
        state.encoder,
        state.settings.hnsw_ef_search,
        statistics.idf,
        state.row_estimates,
    )


RelatedServiceDep = Annotated[RelatedService, Depends(get_related_service)]


async def get_source_article(ref: ArticleRef, service: RelatedServiceDep) -> SourceArticle:
    article = await service.repository.source_article(ref)
    if article is None:
        raise not_found("article", ref)
    return article


SourceArticleDep = Annotated[SourceArticle, Depends(get_source_article)]

# The filters of GET related: every news page view parses them (see app.core.query).
related_query = QueryModel(RelatedQuery)
RelatedQueryDep = Annotated[RelatedQuery, Depends(related_query)]
