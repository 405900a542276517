"""One error type, one handler, one response shape.

Every error response is ``{"error": {"code", "message", "details"}}``.
"""

import logging
import sysconfig
import traceback
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

logger = logging.getLogger(__name__)


class AppError(Exception):
    """An error the client can act on, carried to the response as-is."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers

    def body(self) -> "ErrorBody":
        return ErrorBody(code=self.code, message=self.message, details=self.details)


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def not_found(kind: str, ref: str) -> AppError:
    return AppError(404, "not_found", f"{kind} {ref!r} does not exist", {"ref": ref})


def request_validation_error(exc: ValidationError, *where: str) -> RequestValidationError:
    """A model's validation failure as FastAPI's own for a request part (``"query"``, or
    ``"path", "ref"``), for inputs a route parses itself: the same 422, the same field paths."""
    errors = exc.errors(include_url=False)
    for error in errors:
        error["loc"] = (*where, *error["loc"])
    return RequestValidationError(errors)


def validation_error(details: list[dict[str, Any]], message: str = "Invalid input") -> AppError:
    return AppError(422, "validation_error", message, details)


def error_details_from_pydantic(
    errors: Any, prefix: tuple[str | int, ...] = ()
) -> list[dict[str, Any]]:
    """Pydantic errors as ``{"path", "message", "type"}``, the path a dotted field path."""
    details = []
    for err in errors:
        loc = [*prefix, *err.get("loc", ())]
        details.append(
            {
                "path": ".".join(str(part) for part in loc),
                "message": err.get("msg", "invalid"),
                "type": err.get("type", "invalid"),
            }
        )
    return details


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details))
    return JSONResponse(status_code=status, content=body.model_dump(mode="json"), headers=headers)


# SQLSTATEs of a server that is down, going down, starting or full: connection exceptions
# (class 08), admin/crash shutdown, "cannot connect now", too many connections.
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


_DRIVER_PACKAGES = ("asyncpg", "sqlalchemy")
_STDLIB = sysconfig.get_paths()["stdlib"]


def _raised_by_driver(exc: BaseException) -> bool:
    """Whether the exception came out of the database driver (a socket it could not open or
    that broke, a connect that timed out) rather than out of our own code, whose OSError or
    TimeoutError is a bug, not an outage: the innermost frame outside the standard library
    (asyncio's sockets, say) decides."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.startswith(_STDLIB) and "site-packages" not in frame.filename:
            continue
        parts = Path(frame.filename).parts
        return "site-packages" in parts and parts[parts.index("site-packages") + 1] in (
            _DRIVER_PACKAGES
        )
    return False


def _is_database_unavailable(exc: Exception) -> bool:
    # asyncpg's InterfaceError: a connection of the read pool (app.db.reads) that broke.
    if isinstance(exc, (OperationalError, PoolTimeoutError, asyncpg.InterfaceError)):
        return True
    if isinstance(exc, OSError):  # ConnectionRefusedError, TimeoutError, socket.gaierror, ...
        return _raised_by_driver(exc)
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "").startswith(_UNAVAILABLE_SQLSTATES)
    if not isinstance(exc, DBAPIError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return exc.connection_invalidated or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)


def _leaf_routes(routes: Iterable[Any]) -> Iterator[Any]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's included routers
        yield from _leaf_routes(included.routes) if included is not None else (route,)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at this path (Starlette's own 405 names only the first
    route's), HEAD wherever GET is (app.core.http.HeadAsGetMiddleware)."""
    methods: set[str] = set()
    for route in _leaf_routes(request.app.router.routes):
        match, _ = route.matches({**request.scope, "method": ""})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


# Stable codes where Python's status phrases differ between versions.
_HTTP_CODES = {413: "payload_too_large"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(
            422, "validation_error", "Invalid input", error_details_from_pydantic(exc.errors())
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode (not UTF-8, say): invalid input, 422.
            details = [{"path": "body", "message": str(exc.detail), "type": "body_invalid"}]
            return error_response(422, "validation_error", "Invalid input", details)
        code = _HTTP_CODES.get(exc.status_code) or HTTPStatus(exc.status_code).phrase
        code = code.lower().replace(" ", "_")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(exc.status_code, code, str(exc.detail), headers=headers or None)

    async def _database_error(_: Request, exc: Exception) -> JSONResponse:
        if _is_database_unavailable(exc):
            logger.warning("database unavailable: %s", exc)
            return error_response(503, "database_unavailable", "The database cannot be reached")
        logger.error("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "Internal server error")

    # Registered per class (not for Exception) so Starlette answers them without re-raising.
    for exc_class in (
        DBAPIError,
        PoolTimeoutError,
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ):
        app.add_exception_handler(exc_class, _database_error)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "Internal server error")
