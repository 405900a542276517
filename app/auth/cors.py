"""CORS for publishable keys: the origins are the key's, known only once the key is read.

`RELATED_CORS_ORIGINS` (Starlette's CORSMiddleware) is fixed at start-up; a publishable key
made with `related keys create` while the service runs names its own origins. Its requests are
simple GETs (the key in `?key=`, no custom header), so there is no preflight to answer: the
response allows the page's origin when `authorize` accepted the key from it.
"""

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.service import Principal, normalize_origin

EXPOSED = "ETag, Retry-After, X-Request-ID"


class PublishableKeyCorsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = Headers(scope=scope).get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return

        async def send_allowing_origin(message: Message) -> None:
            if message["type"] == "http.response.start":
                principal = scope.get("state", {}).get("principal")
                if isinstance(principal, Principal) and principal.origins is not None:
                    headers = MutableHeaders(scope=message)
                    if "access-control-allow-origin" not in headers and _allowed(
                        origin, principal.origins
                    ):
                        headers["Access-Control-Allow-Origin"] = origin
                        headers["Access-Control-Expose-Headers"] = EXPOSED
                        headers.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_allowing_origin)


def _allowed(origin: str, origins: frozenset[str]) -> bool:
    try:
        return normalize_origin(origin) in origins
    except ValueError:
        return False
