"""ETag and Cache-Control on API reads, and 304 for a client that already holds the answer.

The ETag is a hash of the body, so it changes exactly when the answer would (an edit, a new
related article, another model) and costs no extra query. The body is still computed for a
304: the saving is the transfer and the client's work, not ours.
"""

import hashlib

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CACHED_PREFIX = "/v1/"


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def matches(if_none_match: str, etag: str) -> bool:
    if if_none_match.strip() == "*":
        return True
    # Weak comparison, as RFC 9110 asks for If-None-Match: W/"x" matches "x".
    candidates = (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))
    return etag in candidates


class CachingMiddleware:
    def __init__(self, app: ASGIApp, max_age_s: int) -> None:
        self.app = app
        self.max_age_s = max_age_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or not scope["path"].startswith(CACHED_PREFIX)
        ):
            await self.app(scope, receive, send)
            return

        start: Message | None = None
        chunks: list[bytes] = []

        async def buffered_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] != 200:
                    await send(message)  # errors pass through untouched
                    return
                start = message
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await self._send_cached(scope, start, b"".join(chunks), send)

        await self.app(scope, receive, buffered_send)

    async def _send_cached(self, scope: Scope, start: Message, body: bytes, send: Send) -> None:
        etag = etag_of(body)
        principal = scope.get("state", {}).get("principal")
        # Keyed answers stay out of shared caches; anonymous ones are public by definition.
        visibility = "public" if getattr(principal, "anonymous", False) else "private"
        headers = MutableHeaders(scope=start)
        headers["ETag"] = etag
        headers["Cache-Control"] = f"{visibility}, max-age={self.max_age_s}"
        headers.append("Vary", "Authorization")
        if_none_match = Headers(scope=scope).get("if-none-match")
        if if_none_match is not None and matches(if_none_match, etag):
            for name in ("content-length", "content-type"):
                if name in headers:
                    del headers[name]
            await send({**start, "status": 304})
            await send({"type": "http.response.body", "body": b""})
            return
        await send(start)
        await send({"type": "http.response.body", "body": body})
