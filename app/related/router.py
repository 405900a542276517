from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError

from app.articles.repository import parse_uuid
from app.auth.dependencies import READ_SECURITY, CallerSitesDep, authorize, require_read
from app.auth.models import Scope
from app.core.deps import SettingsDep
from app.core.errors import ErrorResponse
from app.core.limits import check_text_length
from app.core.routing import DirectRoute, path_parameter, path_parameter_openapi
from app.db.reads import read_connection
from app.related.dependencies import (
    RelatedServiceDep,
    article_ref,
    related_query,
    related_service,
    source_article,
)
from app.related.schemas import ArticleKey, DraftIn, RelatedOut, RelatedQuery

router = APIRouter(tags=["related"])


async def related_to_article(request: Request) -> Response:
    """Articles related to a stored one, best first; never the article itself.

    `{ref}` is our id or the publisher's external_id. List filters repeat the parameter:
    `?source=A&source=B`.
    """
    # The request on every page view: a DirectRoute (app.core.routing), its checks in order.
    principal = await authorize(request, Scope.READ)
    sites = principal.sites
    ref = path_parameter(request, "ref", article_ref)
    invalid: RequestValidationError | None = None
    query: RelatedQuery | None = None
    try:
        query = await related_query(request)
    except RequestValidationError as exc:
        invalid = exc  # raised after the article's own 404: an unknown article is a 404 first
    article_id = parse_uuid(ref)
    async with read_connection(request) as connection:
        service = related_service(request, connection)
        # By our id: one statement finds the article and its related articles.
        answer = None
        if query is not None and article_id is not None:
            answer = await service.for_article_id(article_id, query, sites)
        if answer is not None:
            key, items = answer
        else:  # by external_id, or no such article (404), or not embedded yet (409)
            asked = query.site if query is not None else ()
            article = await source_article(service, ref, sites, asked)
            if query is None:
                assert invalid is not None
                raise invalid
            items = await service.for_article(article, query, sites)
            key = ArticleKey(id=article.id, external_id=article.external_id)
    out = RelatedOut(article=key, model=service.encoder.model_name, items=items)
    return Response(out.model_dump_json(), media_type="application/json")


router.add_api_route(
    "/v1/articles/{ref:path}/related",
    related_to_article,
    methods=["GET"],
    route_class_override=DirectRoute,
    response_model=RelatedOut,
    responses={
        403: {"model": ErrorResponse, "description": "A site the key does not have"},
        404: {"model": ErrorResponse, "description": "No such article"},
        409: {
            "model": ErrorResponse,
            "description": "The article is not embedded yet; or its external_id is used in "
            "several of the key's sites (`ambiguous_ref`: name one with `site`)",
        },
        422: {"model": ErrorResponse, "description": "Invalid filters"},
    },
    openapi_extra={
        "security": READ_SECURITY,
        "parameters": [
            path_parameter_openapi("ref", article_ref),
            *related_query.openapi()["parameters"],
        ],
    },
)


SITE_NOT_ALLOWED: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorResponse, "description": "A site the key does not have"}
}


@router.post(
    "/v1/related",
    dependencies=[Depends(require_read)],
    responses={
        **SITE_NOT_ALLOWED,
        422: {"model": ErrorResponse, "description": "Invalid text or filters"},
    },
)
async def related_to_text(
    draft: DraftIn, service: RelatedServiceDep, settings: SettingsDep, sites: CallerSitesDep
) -> RelatedOut:
    """Articles related to text that is not stored: a draft in a CMS, for example; only
    articles of the key's sites."""
    check_text_length(draft, settings)
    items = await service.for_draft(draft, sites)
    return RelatedOut(article=None, model=service.encoder.model_name, items=items)
