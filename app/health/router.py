import asyncio
from functools import lru_cache
from typing import Any

from alembic.script import ScriptDirectory
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.core.config import Settings
from app.db.engine import Database
from app.db.migrate import alembic_config

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive (no dependency is checked)."""
    return {"status": "ok"}


@lru_cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("unused"))


def head_revision() -> str | None:
    return _scripts().get_current_head()


def schema_state(current: str | None) -> str:
    """`current` (at this release's head), `behind` (a revision this release knows, not its
    head: not migrated yet) or `ahead` (a revision it does not know: a newer release migrated the
    database, and its migrations keep this release working: docs/operations.md, rolling
    deploys)."""
    if current is not None and current == head_revision():
        return "current"
    if current is None:
        return "behind"
    try:
        known = _scripts().get_revision(current) is not None
    except Exception:  # alembic: "No such revision" (and friends) for a newer release's id
        known = False
    return "behind" if known else "ahead"


def _check(ok: bool, **facts: Any) -> dict[str, Any]:
    return {"status": "ok" if ok else "fail", "ok": ok, **facts}


async def _database_checks(database: Database) -> dict[str, dict[str, Any]]:
    async with database.engine.connect() as conn:
        current = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    state = schema_state(current)
    return {
        "database": _check(
            True, server_version=database.versions.server, pgvector=database.versions.pgvector
        ),
        # Unready only when the database is behind this release: a rolling deploy whose first
        # process migrates must not take the older processes out of the load balancer.
        "migrations": _check(
            state != "behind", current=current, head=head_revision(), schema=state
        ),
    }


@router.get("/readyz", responses={503: {"description": "A dependency is not ready"}})
async def readyz(request: Request) -> JSONResponse:
    """Ready for traffic: the database answers and is migrated to head, the model is loaded and
    its encoder running. Each check has a status; 503 when any fails."""
    database: Database = request.app.state.database
    settings: Settings = request.app.state.settings
    checks: dict[str, dict[str, Any]] = {}
    try:
        # Bounded: a load balancer's probe must get an answer, not hang with the database.
        checks |= await asyncio.wait_for(
            _database_checks(database), timeout=settings.db_connect_timeout_s
        )
    except Exception as exc:
        error = exc.__class__.__name__
        checks["database"] = _check(False, error=error)
        checks["migrations"] = _check(False, error="database unreachable")
    encoder = request.app.state.encoder
    checks["model"] = _check(encoder.running, name=encoder.model_name)
    ready = all(check["ok"] for check in checks.values())
    return JSONResponse(
        status_code=200 if ready else 503,
        content={"status": "ready" if ready else "not_ready", "checks": checks},
    )
