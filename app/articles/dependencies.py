from typing import Annotated

from fastapi import Depends, Path, Query
from pydantic import AfterValidator

from app.articles.models import Article
from app.articles.repository import ArticleRepository
from app.articles.service import ArticleService
from app.articles.waiting import EmbeddingWaiter
from app.auth.dependencies import CallerSitesDep
from app.core.deps import SettingsDep
from app.core.schemas import MAX_FILTER_VALUES, Label, no_nul
from app.db.session import DatabaseDep, ReadSessionDep, SessionDep
from app.embedding.dependencies import EncoderDep
from app.pipeline.dependencies import WorkerDep


async def get_article_service(
    session: SessionDep, encoder: EncoderDep, worker: WorkerDep
) -> ArticleService:
    wake = worker.wake if worker is not None else None
    return ArticleService(ArticleRepository(session), encoder.model_name, wake)


async def get_read_article_service(session: ReadSessionDep, encoder: EncoderDep) -> ArticleService:
    # Reads never queue anything: nothing to wake.
    return ArticleService(ArticleRepository(session), encoder.model_name, None)


async def get_waiter(
    session: SessionDep, database: DatabaseDep, worker: WorkerDep, settings: SettingsDep
) -> EmbeddingWaiter:
    return EmbeddingWaiter(session, database, worker, settings.embedding_wait_timeout_s)


EmbeddingWaiterDep = Annotated[EmbeddingWaiter, Depends(get_waiter)]
ArticleServiceDep = Annotated[ArticleService, Depends(get_article_service)]
# For requests that only read: the replica when there is one.
ReadArticleServiceDep = Annotated[ArticleService, Depends(get_read_article_service)]

ArticleRef = Annotated[
    str,
    Path(
        description="Our article id (a UUID) or the publisher's external_id.",
        examples=["cms-48213"],
        min_length=1,
        max_length=255,
    ),
    AfterValidator(no_nul),
]


SiteParam = Annotated[
    list[Label] | None,
    Query(
        max_length=MAX_FILTER_VALUES,
        description="The article's site, when its external_id is used in several of the "
        "key's sites (repeatable). Default: any of the key's sites.",
    ),
]


async def get_article(
    ref: ArticleRef, service: ArticleServiceDep, sites: CallerSitesDep, site: SiteParam = None
) -> Article:
    """The article among the caller's sites: 404 for one of another site, as for none."""
    return await service.get(ref, sites, site or ())


async def get_read_article(
    ref: ArticleRef, service: ReadArticleServiceDep, sites: CallerSitesDep, site: SiteParam = None
) -> Article:
    return await service.get(ref, sites, site or ())


ArticleDep = Annotated[Article, Depends(get_article)]
ReadArticleDep = Annotated[Article, Depends(get_read_article)]
