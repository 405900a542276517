from typing import Annotated

from fastapi import Depends, Request

from app.core.deps import SettingsDep
from app.db.session import DatabaseDep, SessionDep
from app.pipeline.service import EmbeddingWaiter
from app.pipeline.worker import EmbeddingWorker


async def get_worker(request: Request) -> EmbeddingWorker | None:
    """The in-process worker; None when separate `related worker` processes embed."""
    worker: EmbeddingWorker | None = getattr(request.app.state, "embedding_worker", None)
    return worker


WorkerDep = Annotated[EmbeddingWorker | None, Depends(get_worker)]


async def get_waiter(
    session: SessionDep, database: DatabaseDep, worker: WorkerDep, settings: SettingsDep
) -> EmbeddingWaiter:
    return EmbeddingWaiter(session, database, worker, settings.embedding_wait_timeout_s)


EmbeddingWaiterDep = Annotated[EmbeddingWaiter, Depends(get_waiter)]
