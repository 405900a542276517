"""app.core.query.QueryModel parses the related filters as FastAPI's `Annotated[M, Query()]`
did: the same values, the same errors, the same OpenAPI parameters."""

from typing import Annotated, Any

import pytest
from fastapi import FastAPI, Query
from fastapi.dependencies.utils import get_dependant, request_params_to_args
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import QueryParams
from starlette.requests import Request

from app.related.dependencies import related_query
from app.related.schemas import RelatedQuery

QUERIES = [
    "",
    "ranking=vector&dedupe=false",
    "limit=0",
    "limit=abc&diversity=2",
    "limit=",
    "limit=3&limit=5",
    "source=a&source=b&source=",
    "source=%20a%20&exclude_source=b",
    "language=en&language=fr&limit=101",
    "exclude_ids=x&exclude_ids=y&category=%00",
    "since=2026-01-02&until=2026-01-01",
    "since=bad",
    "since=2026-01-01T00:00:00&max_age_days=-1&min_score=3",
    "junk=1&limit=4",
    "dedupe=maybe&ranking=foo",
    "recency=0&max_per_source=0",
]


def _errors(errors: Any) -> list[tuple[Any, ...]]:
    return [(tuple(e["loc"]), e["msg"], e["type"]) for e in errors]


def _fastapi_dependant() -> Any:
    def endpoint(query: Annotated[RelatedQuery, Query()]) -> None:
        return None

    return get_dependant(path="/", call=endpoint)


@pytest.mark.parametrize("query_string", QUERIES)
async def test_same_values_and_errors_as_fastapi(query_string: str) -> None:
    values, errors = request_params_to_args(
        _fastapi_dependant().query_params, QueryParams(query_string)
    )
    request = Request({"type": "http", "query_string": query_string.encode(), "headers": []})
    try:
        parsed, parse_errors = await related_query(request), []
    except RequestValidationError as exc:
        parsed, parse_errors = None, exc.errors()
    assert _errors(parse_errors) == _errors(errors)
    assert parsed == values.get("query")


def test_same_openapi_parameters_as_fastapi() -> None:
    declared = FastAPI()

    @declared.get("/")
    async def by_fastapi(query: Annotated[RelatedQuery, Query()]) -> None:
        return None

    extra = FastAPI()

    @extra.get("/", openapi_extra=related_query.openapi())
    async def by_query_model() -> None:
        return None

    expected = declared.openapi()["paths"]["/"]["get"]["parameters"]
    assert extra.openapi()["paths"]["/"]["get"]["parameters"] == expected
