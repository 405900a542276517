from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.articles.dependencies import (
    ArticleDep,
    ArticleServiceDep,
    EmbeddingWaiterDep,
    ReadArticleDep,
    ReadArticleServiceDep,
)
from app.articles.schemas import (
    ArticleIn,
    ArticleListQuery,
    ArticleOut,
    ArticlePage,
    BatchIn,
    BatchItemResult,
    BatchOut,
)
from app.articles.service import validate_batch_items
from app.auth.dependencies import CallerSitesDep
from app.core.deps import SettingsDep
from app.core.errors import AppError, ErrorResponse
from app.core.limits import check_text_length

router = APIRouter(prefix="/v1/articles", tags=["articles"])

WaitParam = Annotated[
    bool,
    Query(
        description="Answer once the embedding is ready (or failed), at most "
        "RELATED_EMBEDDING_WAIT_TIMEOUT_S seconds; after that the answer says `pending`."
    ),
]

ERRORS = {
    403: {"model": ErrorResponse, "description": "A site the key does not have"},
    404: {"model": ErrorResponse, "description": "No such article"},
    409: {
        "model": ErrorResponse,
        "description": "An external_id used in several of the key's sites (`ambiguous_ref`)",
    },
    422: {"model": ErrorResponse, "description": "Invalid input, with field paths"},
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": ArticleOut, "description": "Updated, or unchanged (identical resend)"},
        403: ERRORS[403],
        413: {"model": ErrorResponse, "description": "Body over the size limit"},
        422: ERRORS[422],
    },
)
async def upsert_article(
    item: ArticleIn,
    service: ArticleServiceDep,
    waiter: EmbeddingWaiterDep,
    response: Response,
    settings: SettingsDep,
    sites: CallerSitesDep,
    wait: WaitParam = False,
) -> ArticleOut:
    """Create or update an article by `external_id`.

    201 when new; 200 when updated or when the same content was sent again (nothing changes and
    nothing is re-embedded). The `Related-Upsert` header says which: created, updated, unchanged.
    The article is stored at once and embedded in the background: `embedding_status` says
    where it is (`pending`, `ready`, `failed`).
    """
    check_text_length(item, settings)
    result = await service.upsert(item, sites)
    response.status_code = 201 if result.status == "created" else 200
    response.headers["Related-Upsert"] = result.status
    article = result.article
    if wait:
        article = (await waiter.wait([article])).get(article.id, article)
    return ArticleOut.model_validate(article)


@router.post(
    "/batch",
    response_model=BatchOut,
    response_model_exclude_unset=True,
    responses={413: {"model": ErrorResponse, "description": "Too many articles or bytes"}},
)
async def upsert_batch(
    batch: BatchIn,
    service: ArticleServiceDep,
    settings: SettingsDep,
    waiter: EmbeddingWaiterDep,
    sites: CallerSitesDep,
    wait: WaitParam = False,
    full: Annotated[
        bool, Query(description="Each result also carries the whole stored `article`.")
    ] = False,
) -> BatchOut:
    """Create or update up to 1,000 articles; one result per item, in the order sent.

    Each result is compact: `index`, `id`, `external_id`, `status` (created, updated,
    unchanged or error), `embedding_status` and `error`. `?full=true` adds the stored `article`.
    Invalid items get an `error` result and do not stop the valid ones from being stored.
    """
    limit = settings.max_batch_articles
    if len(batch.articles) > limit:
        raise AppError(
            413,
            "batch_too_large",
            f"A batch holds at most {limit} articles, got {len(batch.articles)}",
            {"limit": limit, "received": len(batch.articles)},
        )
    valid, errors = validate_batch_items(batch.articles, settings, sites)
    stored = await service.upsert_many([item for _, item in valid], sites)
    if wait:
        fresh = await waiter.wait([r.article for r in stored])
        for r in stored:
            r.article = fresh.get(r.article.id, r.article)
    items = [
        BatchItemResult(
            index=i,
            id=None,
            external_id=batch_external_id(batch.articles[i]),
            status="error",
            embedding_status=None,
            error=err.body(),
        )
        for i, err in errors.items()
    ]
    for (i, _), r in zip(valid, stored, strict=True):
        result = BatchItemResult(
            index=i,
            id=r.article.id,
            external_id=r.article.external_id,
            status=r.status,
            embedding_status=r.article.embedding_status,
            error=None,
        )
        if full:  # set only when asked: unset fields are left out of the answer
            result.article = ArticleOut.model_validate(r.article)
        items.append(result)
    items.sort(key=lambda result: result.index)
    counts = {name: 0 for name in ("created", "updated", "unchanged", "error")}
    for result in items:
        counts[result.status] += 1
    return BatchOut(items=items, counts=counts)


def batch_external_id(item: object) -> str | None:
    """The external_id an invalid item was sent with, so the caller can match the error."""
    value = item.get("external_id") if isinstance(item, dict) else None
    return value if isinstance(value, str) else None


@router.get("", responses={403: ERRORS[403], 422: ERRORS[422]})
async def list_articles(
    query: Annotated[ArticleListQuery, Query()],
    service: ReadArticleServiceDep,
    sites: CallerSitesDep,
) -> ArticlePage:
    """Newest first (by published_at), filtered, one page at a time; only the key's sites."""
    articles, next_cursor = await service.list(query, sites)
    return ArticlePage(
        items=[ArticleOut.model_validate(a) for a in articles], next_cursor=next_cursor
    )


@router.get("/{ref:path}", responses={404: ERRORS[404], 409: ERRORS[409]})
async def get_article(article: ReadArticleDep) -> ArticleOut:
    """One article, by our id or by the publisher's external_id."""
    return ArticleOut.model_validate(article)


@router.delete(
    "/{ref:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: ERRORS[404], 409: ERRORS[409]},
)
async def delete_article(article: ArticleDep, service: ArticleServiceDep) -> None:
    """Delete an article; it stops appearing in related results at once."""
    await service.delete(article)
