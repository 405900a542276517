"""The floor of shedding under uvicorn: a bare ASGI app that answers every request with the
service's 503 ``overloaded`` body at once (and /readyz with 200, so bench/server.py's wait
works). bench/burst.py's ``floor`` setup runs it under the same uvicorn (uvloop, httptools) as
`related serve`: what the HTTP server and the client cost per shed request, with no app."""

from typing import Any

from app.core.errors import error_response

OVERLOADED = error_response(
    503, "overloaded", "Too many requests in progress; retry shortly", headers={"Retry-After": "1"}
)
READY = b'{"status":"ok"}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/readyz":
        headers = [(b"content-type", b"application/json"), (b"content-length", b"15")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": READY})
        return
    await OVERLOADED(scope, receive, send)
