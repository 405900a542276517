from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.db.engine import Database

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency is not ready"}})
async def readyz(request: Request) -> JSONResponse:
    """Ready for traffic: the database answers and the model is loaded."""
    database: Database = request.app.state.database
    checks: dict[str, dict[str, Any]] = {}
    try:
        async with database.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = {"ok": True, "pgvector": str(database.pgvector)}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": exc.__class__.__name__}
    encoder = request.app.state.encoder
    checks["model"] = {"ok": encoder.running, "name": encoder.model_name}
    ready = all(check["ok"] for check in checks.values())
    return JSONResponse(
        status_code=200 if ready else 503,
        content={"status": "ready" if ready else "not_ready", "checks": checks},
    )
