"""A route for the request on every page view, without FastAPI's per-request machinery.

`GET /v1/articles/{ref}/related` is asked once per news page view. Through an ordinary FastAPI
route it cost about 3 ms of API CPU, 1.3 ms more than the same work from a plain Starlette
route (measured in process; docs/performance.md, "Tuning chosen"): FastAPI
resolves the dependency graph node by node on every request (10 to 20 us a node, path and query
parameters included), then validates and serializes the response through the response model's
adapter. A `DirectRoute` is still an APIRoute, so FastAPI documents it as
it documents any other (response model, responses, `openapi_extra` for its parameters), and the
app's exception handlers and middleware see it as any other; but its endpoint is called with the
Request alone and returns the Response itself. Its checks are in the endpoint, in order, where
they can be read.
"""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError

from app.core.errors import request_validation_error


class DirectRoute(APIRoute):
    """An APIRoute whose endpoint takes the Request and returns the Response. Include its
    router without dependencies too: they would be documented and never run."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if kwargs.get("dependencies"):
            # They would be documented and never run: an API key check skipped without a sound.
            raise TypeError(f"{path}: a DirectRoute runs no dependencies; call them inside")
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint


def path_parameter_openapi(name: str, adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """The parameter as FastAPI documents a declared one (for the route's `openapi_extra`)."""
    schema = adapter.json_schema()
    parameter = {"name": name, "in": "path", "required": True, "schema": schema}
    if "description" in schema:
        parameter["description"] = schema["description"]
    return parameter


def path_parameter(request: Request, name: str, adapter: TypeAdapter[Any]) -> Any:
    """A path parameter validated as FastAPI would: a failure is the same 422, located under
    ("path", name)."""
    try:
        return adapter.validate_python(request.path_params[name])
    except ValidationError as exc:
        raise request_validation_error(exc, "path", name) from None
