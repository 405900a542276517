"""Who may call what: every /v1 route depends on one of these (attached where the routers are
included, in app.main), and so does its per-caller rate limit."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.models import Scope
from app.auth.ratelimit import RateLimiter, retry_after_header
from app.auth.repository import ApiKeyRepository
from app.auth.service import ApiKeyService, Principal
from app.core.config import Settings
from app.core.errors import AppError
from app.db.session import get_database

# Declares the bearer scheme in OpenAPI; the header itself is read below, so that a malformed
# one is a 401 rather than silently anonymous.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key made with `related keys create`: `Authorization: Bearer rk_...`.",
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
# The same declaration for a route that calls `authorize` itself (app.core.routing).
READ_SECURITY: list[dict[str, list[str]]] = [{bearer_scheme.scheme_name: []}]


async def authenticate(request: Request, token: str, client: str) -> Principal | None:
    """The key's principal, read from the primary in a transaction of its own, opened only
    when a key is sent: anonymous reads, the bulk of a public frontend's traffic, touch no
    database here. Not cached, so a revoked key fails from the next request."""
    async with get_database(request).sessions() as session, session.begin():
        return await ApiKeyService(ApiKeyRepository(session)).authenticate(token, client)


def unauthorized(message: str) -> AppError:
    return AppError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def authorize(request: Request, scope: Scope) -> Principal:
    """The caller, allowed ``scope`` and within its rate limit, or the 401, 403 or 429."""
    # Settings from the app's state, not SettingsDep: this runs on every /v1 request, and each
    # dependency FastAPI resolves costs 10 to 20 us (see app.related.dependencies).
    settings: Settings = request.app.state.settings
    header = request.headers.get("authorization")
    client = client_address(request)
    if header is None:
        if scope is not Scope.READ or not settings.anonymous_reads:
            raise unauthorized("An API key is required: send `Authorization: Bearer <key>`")
        principal = Principal(key_id=None, scopes=frozenset({Scope.READ}), client=client)
    else:
        kind, _, token = header.partition(" ")
        found = (
            await authenticate(request, token.strip(), client) if kind.lower() == "bearer" else None
        )
        if found is None:
            raise unauthorized("The API key is invalid or revoked")
        principal = found
    # The request log and the cache headers read it from here.
    request.state.principal = principal
    if not principal.allows(scope):
        raise AppError(
            403,
            "forbidden",
            f"This API key lacks the {scope.value!r} scope",
            {"required": scope.value, "granted": sorted(principal.scopes)},
        )
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = limiter.acquire(principal.rate_key)
    if wait is not None:
        retry = retry_after_header(wait)
        raise AppError(
            429,
            "rate_limited",
            f"Too many requests; retry in {retry} s",
            {"retry_after_s": int(retry)},
            headers={"Retry-After": retry},
        )
    return principal


async def require_read(request: Request, _: BearerDep) -> Principal:
    return await authorize(request, Scope.READ)


async def require_by_method(request: Request, _: BearerDep) -> Principal:
    """GET and HEAD read; every other method writes."""
    scope = Scope.READ if request.method in ("GET", "HEAD") else Scope.WRITE
    return await authorize(request, scope)
