"""Request body size limit, enforced before the body is parsed (also for chunked uploads), and
the configurable text length limits."""

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
