"""The outermost layer of every request served (only the shedding of an overload and the
trusted proxies' rewrite come before it): a request id, one log line and the metrics of every
request, and the last word on errors nothing else answered (still in the one error shape, with
the id)."""

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import error_response
from app.observability.logs import request_id_var
from app.observability.metrics import Metrics

logger = logging.getLogger("related.access")
error_logger = logging.getLogger("related.errors")

# An incoming id is kept only when it is short and plain: it goes into logs and headers.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REQUEST_ID_HEADER = "X-Request-ID"


def request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers") or []:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _SANE_REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    # The template, not the path: one series per endpoint however many articles there are.
    route = scope.get("route")
    path = getattr(route, "path_format", None)
    return str(path) if path else "<unmatched>"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        token = request_id_var.set(request_id)
        # One state dict for every layer below, so what the auth dependency records is seen here.
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_logger.exception("unhandled error")
            if not response_started:
                response = error_response(500, "internal_error", "Internal server error")
                await response(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            method = scope["method"]
            self.metrics.observe_request(method, route, status, seconds)
            # The fields are built only when the line is written (not at RELATED_LOG_LEVEL=warning).
            if logger.isEnabledFor(logging.INFO):
                principal = state.get("principal")
                logger.info(
                    "%s %s %d",
                    method,
                    route,
                    status,
                    extra={
                        "method": method,
                        "route": route,
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                        "request_id": request_id,
                        "key_id": getattr(principal, "key_id", None),
                    },
                )
            request_id_var.reset(token)
