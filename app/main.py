"""The FastAPI application: routers, error handling, and the resources of its lifespan."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.articles.models import EMBEDDING_DIMENSION
from app.articles.router import router as articles_router
from app.core.config import Settings, get_settings
from app.core.errors import ErrorResponse, install_error_handlers
from app.core.limits import BodySizeLimitMiddleware
from app.db.engine import open_database
from app.embedding.encoder import Encoder
from app.embedding.model import Embedder, load_embedder
from app.health.router import router as health_router
from app.pipeline.router import router as pipeline_router
from app.pipeline.worker import EmbeddingWorker
from app.related.router import router as related_router

logger = logging.getLogger(__name__)

DESCRIPTION = """
Related articles for news sites: send articles, ask for the ones about the same story.

* `{ref}` in a path is our article id (a UUID) or your own `external_id`.
* Every error has the shape `{"error": {"code", "message", "details"}}`.
"""


def create_app(settings: Settings | None = None, embedder: Embedder | None = None) -> FastAPI:
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
            encoder = Encoder(model, settings.embedding_batch_size)
            encoder.start()
            worker = None
            if settings.embedding_worker_in_process:
                worker = EmbeddingWorker.from_settings(database, encoder, settings)
                # Articles embedded by another model are queued in the background.
                worker.start(requeue_other_models=True)
            app.state.database = database
            app.state.encoder = encoder
            app.state.embedding_worker = worker
            try:
                yield
            finally:
                if worker is not None:
                    await worker.close()
                await encoder.close()

    app = FastAPI(
        title="Related",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses={500: {"model": ErrorResponse, "description": "Unexpected error"}},
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.include_router(health_router)
    # Before the articles router: "/v1/articles/{ref:path}" would also match ".../related".
    app.include_router(related_router)
    app.include_router(articles_router)
    app.include_router(pipeline_router)
    return app
