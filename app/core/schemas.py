"""Field types and query pieces shared by the features."""

import re
from datetime import UTC, datetime
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    model_validator,
)

# The instants every layer represents alike. Python's datetime stops at years 1 and 9999, and
# the driver stores its two extremes as PostgreSQL's -infinity and infinity, read back without
# a zone; a day's margin keeps every UTC offset of a valid instant inside Python's range too.
TIMESTAMP_MIN = datetime(1, 1, 2, tzinfo=UTC)
TIMESTAMP_MAX = datetime(9999, 12, 30, 23, 59, 59, tzinfo=UTC)
_RANGE = "0001-01-02T00:00:00Z to 9999-12-30T23:59:59Z"


_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


_INFINITE = ("infinity", "inf", "nan")


def _not_a_number(value: object) -> object:
    # A number could be seconds or milliseconds since 1970 (pydantic guesses by its size), in
    # JSON or in a query string: ambiguous, so refused with the form that is not.
    if isinstance(value, int | float) or (
        isinstance(value, str)
        and (_NUMBER.fullmatch(value) or value.strip().lower().lstrip("+-") in _INFINITE)
    ):
        raise ValueError("must be an ISO 8601 date-time string such as 2026-11-20T08:15:00Z")
    return value


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC (without a zone: taken as UTC, as feeds often omit it), or a ValueError
    when it is outside TIMESTAMP_MIN..TIMESTAMP_MAX."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # year 1 at +14:00, year 9999 at -14:00
        utc = None
    if utc is None or not TIMESTAMP_MIN <= utc <= TIMESTAMP_MAX:
        raise ValueError(f"must be from {_RANGE} (UTC)")
    return utc


def no_nul(value: str) -> str:
    # PostgreSQL text holds neither NUL nor lone UTF-16 surrogates (valid in JSON escapes):
    # reject them here, with a field path, rather than fail in the driver.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode (lone surrogate)") from exc
    return value


Timestamp = Annotated[datetime, BeforeValidator(_not_a_number), AfterValidator(as_utc)]
Label = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
    AfterValidator(no_nul),
]


def blank_is_none(value: object) -> object:
    # Feeds send "" for "unknown"; that is the same as leaving the field out.
    return None if isinstance(value, str) and not value.strip() else value


# Values one list-valued filter may take (source, category, language): a page asks with a few;
# thousands would only make a slow query and a large plan.
MAX_FILTER_VALUES = 100

# An optional label where "" means absent, not an invalid value.
OptionalLabel = Annotated[Label | None, BeforeValidator(blank_is_none)]


class TimeWindow(BaseModel):
    since: Timestamp | None = Field(default=None, description="published_at at or after this.")
    until: Timestamp | None = Field(default=None, description="published_at before this.")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.since and self.until and self.since >= self.until:
            raise ValueError("since must be before until")
        return self
