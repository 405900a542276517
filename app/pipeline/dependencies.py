from typing import Annotated

from fastapi import Depends, Request

from app.pipeline.worker import EmbeddingWorker


async def get_worker(request: Request) -> EmbeddingWorker | None:
    """The in-process worker; None when separate `related worker` processes embed."""
    worker: EmbeddingWorker | None = getattr(request.app.state, "embedding_worker", None)
    return worker


WorkerDep = Annotated[EmbeddingWorker | None, Depends(get_worker)]
