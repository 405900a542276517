from typing import Annotated

from fastapi import Depends

from app.articles.dependencies import ArticleRef
from app.core.deps import EncoderDep, SettingsDep
from app.core.errors import not_found
from app.core.query import QueryModel
from app.db.reads import ReadConnectionDep
from app.related.repository import RelatedRepository, SourceArticle
from app.related.schemas import RelatedQuery
from app.related.service import RelatedService


async def get_related_repository(connection: ReadConnectionDep) -> RelatedRepository:
    return RelatedRepository(connection)


RelatedRepositoryDep = Annotated[RelatedRepository, Depends(get_related_repository)]


async def get_related_service(
    repository: RelatedRepositoryDep, encoder: EncoderDep, settings: SettingsDep
) -> RelatedService:
    return RelatedService(repository, encoder, settings.hnsw_ef_search)


async def get_source_article(ref: ArticleRef, repository: RelatedRepositoryDep) -> SourceArticle:
    article = await repository.source_article(ref)
    if article is None:
        raise not_found("article", ref)
    return article


RelatedServiceDep = Annotated[RelatedService, Depends(get_related_service)]
SourceArticleDep = Annotated[SourceArticle, Depends(get_source_article)]

# The filters of GET related: every news page view parses them (see app.core.query).
related_query = QueryModel(RelatedQuery)
RelatedQueryDep = Annotated[RelatedQuery, Depends(related_query)]
