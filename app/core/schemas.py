"""Field types and query pieces shared by the features."""

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


def _as_utc(value: datetime) -> datetime:
    # A timestamp without a zone is taken as UTC rather than rejected: feeds often omit it.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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


Timestamp = Annotated[datetime, AfterValidator(_as_utc)]
Label = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
    AfterValidator(no_nul),
]


def blank_is_none(value: object) -> object:
    # Feeds send "" for "unknown"; that is the same as leaving the field out.
    return None if isinstance(value, str) and not value.strip() else value


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
