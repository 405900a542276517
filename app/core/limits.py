"""Request body size limit, enforced before the body is parsed (also for chunked uploads), and
the configurable text length limits."""

from collections.abc import Callable
from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import Settings
from app.core.errors import error_response, validation_error


def _message(limit: int) -> str:
    return f"Request body is over the limit of {limit} bytes"


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = error_response(413, "payload_too_large", _message(self.max_bytes))
            await response(scope, receive, send)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException: FastAPI turns other errors raised while it reads a body
                    # into a 400; the app's handler renders this one in the usual error shape.
                    raise HTTPException(413, _message(self.max_bytes))
            return message

        await self.app(scope, limited_receive, send)


def text_length_errors(
    item: object, settings: Settings, prefix: tuple[str | int, ...] = ("body",)
) -> list[dict[str, Any]]:
    """Error details for each of title, summary and body over its configured length."""
    details = []
    for name, limit in (
        ("title", settings.max_title_chars),
        ("summary", settings.max_summary_chars),
        ("body", settings.max_body_chars),
    ):
        value = getattr(item, name, None)
        if isinstance(value, str) and len(value) > limit:
            details.append(
                {
                    "path": ".".join(str(part) for part in (*prefix, name)),
                    "message": f"String should have at most {limit} characters",
                    "type": "string_too_long",
                }
            )
    return details


def check_text_length(item: object, settings: Settings) -> None:
    details = text_length_errors(item, settings)
    if details:
        raise validation_error(details)


# Probes and scrapes answer under any load: a load balancer must not see an overloaded process
# as a dead one, and the metrics of an overload are the ones worth having.
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class LoadSheddingMiddleware:
    """Bounded work per process: at most ``max_concurrent`` requests in progress; one more is
    answered 503 ``overloaded`` with ``Retry-After`` at once, instead of waiting seconds in
    queues (the database pool's, the encoder's) while its client has given up. Request headers
    over ``max_header_bytes`` in all are a 431."""

    def __init__(
        self,
        app: ASGIApp,
        max_concurrent: int,
        max_header_bytes: int,
        on_shed: Callable[[], None] = lambda: None,
    ) -> None:
        self.app = app
        self.max_concurrent = max_concurrent
        self.max_header_bytes = max_header_bytes
        self.on_shed = on_shed
        self.in_progress = 0
        # Made once: a burst is shed at the cost of a counter and a send.
        self.overloaded = error_response(
            503,
            "overloaded",
            "Too many requests in progress; retry shortly",
            headers={"Retry-After": "1"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        header_bytes = sum(len(name) + len(value) for name, value in scope.get("headers") or [])
        if header_bytes > self.max_header_bytes:
            response = error_response(
                431,
                "headers_too_large",
                f"Request headers are over the limit of {self.max_header_bytes} bytes",
            )
            await response(scope, receive, send)
            return
        if self.in_progress >= self.max_concurrent:
            self.on_shed()
            await self.overloaded(scope, receive, send)
            return
        self.in_progress += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_progress -= 1
