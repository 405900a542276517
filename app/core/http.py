"""HTTP behaviour every route shares: HEAD answered as GET without a body, and CORS preflight
refusals in the one error shape."""

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import error_response


class HeadAsGetMiddleware:
    """HEAD on any GET route: the GET's status and headers (Content-Length, ETag included), no
    body. FastAPI's routes take only the methods they declare, so without this every HEAD, a
    link checker's or a cache's, was a 405."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)


class ErrorShapedCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight (origin, method or header not allowed) as a
    400 ``cors_refused`` in the error shape instead of a plain-text line."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        reason = bytes(response.body).decode()  # "Disallowed CORS origin, method"
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        headers.pop("content-type", None)
        return error_response(
            400,
            "cors_refused",
            f"{reason}: this origin may not call the API from a browser",
            headers=headers,
        )
