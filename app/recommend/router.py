from fastapi import APIRouter, Depends

from app.auth.dependencies import CallerSitesDep, require_read
from app.core.errors import ErrorResponse
from app.recommend.schemas import RecommendIn, RecommendOut
from app.recommend.service import RecommendService
from app.related.dependencies import RelatedServiceDep
from app.related.router import SITE_NOT_ALLOWED

router = APIRouter(tags=["related"])


@router.post(
    "/v1/recommend",
    dependencies=[Depends(require_read)],
    responses={
        **SITE_NOT_ALLOWED,
        404: {"model": ErrorResponse, "description": "None of the positive articles exists"},
        409: {"model": ErrorResponse, "description": "None of them is embedded yet"},
        422: {"model": ErrorResponse, "description": "Invalid history or filters"},
    },
)
async def recommend(
    history: RecommendIn, service: RelatedServiceDep, sites: CallerSitesDep
) -> RecommendOut:
    """Articles for a reader, from what they read (`positive`, most recent first) and what
    they dismissed (`negative`), with every filter and option of related; never any article
    of the history. Refs that name no article or one not embedded yet are skipped and listed
    in `ignored`; 404 when no positive exists, 409 when none is embedded yet. Only articles of
    the key's sites, in the history as in the answer."""
    return await RecommendService(service).recommend(history, sites)
