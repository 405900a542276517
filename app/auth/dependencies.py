"""Who may call what: every /v1 route depends on one of these (attached where the routers are
included, in app.main), and so does its per-caller rate limit."""

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.models import KeyKind, Scope
from app.auth.ratelimit import RateLimiter, retry_after_header
from app.auth.repository import ApiKeyRepository
from app.auth.service import ApiKeyService, Principal, normalize_origin, parse_token
from app.core.config import Settings
from app.core.errors import AppError
from app.core.sites import Sites
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


def request_origin(request: Request) -> str | None:
    """The page's origin: the Origin header, which browsers send on cross-origin requests and
    scripts cannot set; else the origin of the Referer (a same-origin GET carries no Origin)."""
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if referer is None:
            return None
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    try:
        return normalize_origin(origin)
    except ValueError:
        return None  # "null" (a sandboxed frame, a file:// page) is no origin a key can name


def presented_token(request: Request) -> str | None:
    """The token from `Authorization: Bearer`, else a publishable one from `?key=`.

    A publishable key may come in the URL so that the embeddable box's request is a simple
    GET (no preflight, cacheable); a secret key never: URLs end up in logs and Referer headers.
    """
    header = request.headers.get("authorization")
    if header is not None:
        kind, _, token = header.partition(" ")
        # A scheme other than Bearer is a token that cannot be valid.
        return token.strip() if kind.lower() == "bearer" else ""
    key = request.query_params.get("key")
    if key is None:
        return None
    parsed = parse_token(key)
    if parsed is not None and parsed[0] is KeyKind.SECRET:
        raise unauthorized(
            "Secret keys go in the Authorization header, never in a URL; `?key=` takes "
            "publishable keys (pk_...). Revoke this key: it may be in logs now"
        )
    return key


async def authorize(request: Request, scope: Scope) -> Principal:
    """The caller, allowed ``scope`` and within its rate limit, or the 401, 403 or 429."""
    # Settings from the app's state, not SettingsDep: this runs on every /v1 request, and each
    # dependency FastAPI resolves costs 10 to 20 us (see app.related.dependencies).
    settings: Settings = request.app.state.settings
    token = presented_token(request)
    client = client_address(request)
    if token is None:
        if scope is not Scope.READ or not settings.anonymous_reads:
            raise unauthorized("An API key is required: send `Authorization: Bearer <key>`")
        principal = Principal(
            key_id=None,
            scopes=frozenset({Scope.READ}),
            client=client,
            sites=settings.anonymous_sites,
        )
    else:
        found = await authenticate(request, token, client) if token else None
        if found is None:
            raise unauthorized("The API key is invalid or revoked")
        principal = found
    # The request log, the cache headers and the CORS headers read it from here.
    request.state.principal = principal
    if not principal.allows(scope):
        raise AppError(
            403,
            "forbidden",
            f"This API key lacks the {scope.value!r} scope",
            {"required": scope.value, "granted": sorted(principal.scopes)},
        )
    limiter: RateLimiter = request.app.state.rate_limiter
    if principal.origins is not None:
        origin = request_origin(request)
        if origin not in principal.origins:
            raise AppError(
                403,
                "origin_not_allowed",
                "This publishable key is not accepted from this page's origin",
                {"origin": origin, "allowed": sorted(principal.origins)},
            )
        limiter = request.app.state.publishable_rate_limiter
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


async def caller_sites(request: Request) -> Sites:
    """The sites the caller (authorized by the router's dependency) reads and writes."""
    principal: Principal = request.state.principal
    return principal.sites


# Every read and write of articles is scoped by it (app.articles.filters).
CallerSitesDep = Annotated[Sites, Depends(caller_sites)]
