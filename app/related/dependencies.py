from collections.abc import Sequence
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from pydantic import TypeAdapter

from app.articles.dependencies import ArticleRef
from app.articles.filters import visible_sites
from app.articles.service import ambiguous_ref
from app.core.errors import not_found
from app.core.query import QueryModel
from app.core.sites import Sites
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
        RelatedRepository(
            connection,
            distributed=state.database.distributed,
            ef_search=read_ef_search(state.settings),
        ),
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


async def source_article(
    service: RelatedService, ref: str, sites: Sites, asked: Sequence[str] = ()
) -> SourceArticle:
    """The article among the caller's ``sites`` (narrowed to those ``asked``): 404 for one of
    another site, as for none; 409 for an external_id used in several of them."""
    found = await service.repository.source_article(ref, visible_sites(sites, asked))
    if not found:
        raise not_found("article", ref)
    if len(found) > 1:
        raise ambiguous_ref(ref, [article.site or "" for article in found])
    return found[0]
