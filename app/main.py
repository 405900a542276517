"""The FastAPI application: routers, error handling, and the resources of its lifespan."""

import asyncio
import functools
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.types import Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.apidocs.router import install_api_docs
from app.articles.router import router as articles_router
from app.auth.cors import PublishableKeyCorsMiddleware
from app.auth.dependencies import require_by_method, require_read
from app.auth.ratelimit import RateLimiter
from app.core.caching import CachingMiddleware
from app.core.config import Settings, get_settings
from app.core.errors import ErrorResponse, install_error_handlers
from app.core.http import ErrorShapedCORSMiddleware, HeadAsGetMiddleware
from app.core.limits import BodySizeLimitMiddleware, LoadSheddingMiddleware
from app.db.engine import open_database
from app.demo.router import router as demo_router
from app.embedding.encoder import Encoder
from app.embedding.model import Embedder, load_embedder
from app.embedding.vectors import EMBEDDING_DIMENSION
from app.health.router import router as health_router
from app.observability.metrics import Metrics
from app.observability.middleware import REQUEST_ID_HEADER, RequestContextMiddleware
from app.observability.router import router as metrics_router
from app.pipeline.router import router as pipeline_router
from app.pipeline.service import PendingGauge
from app.pipeline.worker import EmbeddingWorker
from app.recommend.router import router as recommend_router
from app.related.estimates import RowEstimates
from app.related.router import router as related_router
from app.related.statistics import TermStatistics
from app.widget.router import router as widget_router

logger = logging.getLogger(__name__)

DESCRIPTION = """
Related articles for news sites: send articles, ask for the ones about the same story.

* `{ref}` in a path is our article id (a UUID) or your own `external_id`.
* Every error has the shape `{"error": {"code", "message", "details"}}`: a 422 lists each
  invalid field's path in `details`; a refused CORS preflight is a 400 `cors_refused`.
* `/v1` needs an API key (`Authorization: Bearer rk_...`, made with `related keys create`):
  the `read` scope for reads, `write` for writes, `admin` for both. Reads may be open to
  callers without a key (`RELATED_ANONYMOUS_READS`).
* A publishable key (`pk_...`, `related keys create --publishable --origin URL`) is for web
  pages: it reads only, only from pages of its origins (403 `origin_not_allowed` otherwise),
  and a page sends it as `?key=pk_...`. `/widget.js` is the related box that uses it.
"""

AUTH_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorResponse, "description": "No API key, or an invalid or revoked one"},
    403: {"model": ErrorResponse, "description": "The API key lacks the scope"},
    429: {"model": ErrorResponse, "description": "Rate limited; see Retry-After"},
}


class RelatedApp(FastAPI):
    """FastAPI behind the load shedding: a request over the limit is answered before FastAPI's
    own layers (its error and telemetry middleware) run, for a few microseconds less each,
    which a burst of a thousand adds up (bench/shedding.py)."""

    shedding: LoadSheddingMiddleware

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.shedding(scope, receive, send)


def create_app(settings: Settings | None = None, embedder: Embedder | None = None) -> RelatedApp:
    """The app. ``embedder`` lets tests share one loaded model across many app instances."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = await asyncio.to_thread(load_embedder, settings) if embedder is None else embedder
        if model.dimension != EMBEDDING_DIMENSION:
            raise RuntimeError(
                f"model {model.name} makes {model.dimension}-d vectors; the database stores "
                f"{EMBEDDING_DIMENSION}-d ones (a new migration is needed to change it)"
            )
        async with open_database(settings) as database:
            encoder = Encoder.from_settings(model, settings)
            encoder.batch_observers.append(metrics.observe_encode)
            metrics.add_queue("encoder", lambda: encoder.queue_depth)
            metrics.watch_pool(database.engine.pool)
            encoder.start()
            worker = None
            if settings.embedding_worker_in_process:
                worker = EmbeddingWorker.from_settings(database, encoder, settings)
                # Articles embedded by another model are queued in the background.
                worker.start(requeue_other_models=True)
            pending = PendingGauge(database)
            metrics.add_queue("database", lambda: pending.value)
            pending.start()
            term_statistics = TermStatistics(
                database.read_pool, settings.term_statistics_refresh_seconds, database.distributed
            )
            await term_statistics.start()
            app.state.term_statistics = term_statistics
            app.state.database = database
            app.state.encoder = encoder
            app.state.embedding_worker = worker
            app.state.pending_gauge = pending
            # The 530,000 objects alive after start-up (the model's, mostly) never die: out of
            # the collector's sight, a full collection takes 4 ms instead of 430 ms (a stall of
            # every request in flight).
            gc.collect()
            gc.freeze()
            try:
                yield
            finally:
                await term_statistics.stop()
                await pending.close()
                if worker is not None:
                    await worker.close()
                await encoder.close()

    app = RelatedApp(
        title="Related",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Served by install_api_docs, from the service rather than a CDN.
        docs_url=None,
        redoc_url=None,
        # What any request can meet, whatever its route.
        responses={
            413: {"model": ErrorResponse, "description": "Body over RELATED_MAX_REQUEST_BYTES"},
            431: {"model": ErrorResponse, "description": "Headers over RELATED_MAX_HEADER_BYTES"},
            500: {"model": ErrorResponse, "description": "Unexpected error"},
            503: {
                "model": ErrorResponse,
                "description": "overloaded (see Retry-After) or database_unavailable",
            },
        },
    )
    metrics = Metrics()
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    app.state.publishable_rate_limiter = RateLimiter(
        settings.publishable_rate_limit_per_s, settings.rate_limit_burst
    )
    app.state.row_estimates = RowEstimates()
    install_error_handlers(app)
    # Innermost first: the last added sees the request first.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(CachingMiddleware, max_age_s=settings.cache_max_age_s)
    app.add_middleware(PublishableKeyCorsMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            ErrorShapedCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-None-Match", REQUEST_ID_HEADER],
            expose_headers=["ETag", "Retry-After", "Related-Upsert", REQUEST_ID_HEADER],
            max_age=600,
        )
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    # In front of everything, the request context included: shedding a burst must cost next
    # to nothing per request (no id, no log line; a counter on /metrics), or the burst itself
    # keeps the loop busy.
    app.shedding = LoadSheddingMiddleware(
        functools.partial(FastAPI.__call__, app),
        max_concurrent=settings.request_limit,
        max_header_bytes=settings.max_header_bytes,
        on_shed=metrics.shed.inc,
    )
    if settings.trusted_proxies:
        # Outermost of the middleware: every layer (rate limits, logs) sees the client behind
        # the proxies.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    app.include_router(health_router)
    app.include_router(metrics_router)
    # Before the articles router: "/v1/articles/{ref:path}" would also match ".../related".
    # Its routes check the key themselves: GET related is a DirectRoute (app.core.routing),
    # which runs no dependencies.
    app.include_router(related_router, responses=AUTH_ERRORS)
    app.include_router(recommend_router, responses=AUTH_ERRORS)
    app.include_router(
        articles_router, dependencies=[Depends(require_by_method)], responses=AUTH_ERRORS
    )
    app.include_router(pipeline_router, dependencies=[Depends(require_read)], responses=AUTH_ERRORS)
    app.include_router(demo_router)
    app.include_router(widget_router)
    install_api_docs(app)
    return app
