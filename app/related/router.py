from typing import Annotated

from fastapi import APIRouter, Query

from app.core.deps import SettingsDep
from app.core.errors import ErrorResponse
from app.core.limits import check_text_length
from app.related.dependencies import RelatedServiceDep, SourceArticleDep
from app.related.schemas import ArticleKey, DraftIn, RelatedOut, RelatedQuery

router = APIRouter(tags=["related"])


@router.get(
    "/v1/articles/{ref:path}/related",
    responses={
        404: {"model": ErrorResponse, "description": "No such article"},
        409: {"model": ErrorResponse, "description": "The article is not embedded yet"},
        422: {"model": ErrorResponse, "description": "Invalid filters"},
    },
)
async def related_to_article(
    article: SourceArticleDep, query: Annotated[RelatedQuery, Query()], service: RelatedServiceDep
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
