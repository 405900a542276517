from fastapi import APIRouter

from app.core.deps import SettingsDep
from app.core.errors import ErrorResponse
from app.core.limits import check_text_length
from app.related.dependencies import (
    RelatedQueryDep,
    RelatedServiceDep,
    SourceArticleDep,
    related_query,
)
from app.related.schemas import ArticleKey, DraftIn, RelatedOut

router = APIRouter(tags=["related"])


@router.get(
    "/v1/articles/{ref:path}/related",
    responses={
        404: {"model": ErrorResponse, "description": "No such article"},
        409: {"model": ErrorResponse, "description": "The article is not embedded yet"},
        422: {"model": ErrorResponse, "description": "Invalid filters"},
    },
    openapi_extra=related_query.openapi(),
)
async def related_to_article(
    # The query after the article, as FastAPI validated it: an unknown article is a 404 even
    # with invalid filters.
    article: SourceArticleDep,
    query: RelatedQueryDep,
    service: RelatedServiceDep,
) -> RelatedOut:
    """Articles related to a stored one, best first; never the article itself.

    `{ref}` is our id or the publisher's external_id. List filters repeat the parameter:
    `?source=A&source=B`.
    """
    items = await service.for_article(article, query)
    return RelatedOut(
        article=ArticleKey(id=article.id, external_id=article.external_id),
        model=service.encoder.model_name,
        items=items,
    )


@router.post(
    "/v1/related",
    responses={422: {"model": ErrorResponse, "description": "Invalid text or filters"}},
)
async def related_to_text(
    draft: DraftIn, service: RelatedServiceDep, settings: SettingsDep
) -> RelatedOut:
    """Articles related to text that is not stored: a draft in a CMS, for example."""
    check_text_length(draft, settings)
    items = await service.for_draft(draft)
    return RelatedOut(article=None, model=service.encoder.model_name, items=items)
