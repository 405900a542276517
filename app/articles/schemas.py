import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from app.articles.filters import FilterParams
from app.core.errors import ErrorBody
from app.core.schemas import (
    Label,
    OptionalLabel,
    Timestamp,
    blank_is_none,
    no_nul,
)

MAX_BODY_CHARS = 200_000
NoNul = AfterValidator(no_nul)


def _no_control_chars(value: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain control characters")
    return value


def _reachable_by_path(value: str) -> str:
    # `/` is fine anywhere ({ref} takes the rest of the path, escaped or not), but an id ending
    # in /related could not be told from the related articles of the id before it.
    if value.rstrip("/").endswith("/related") or value.endswith("/"):
        raise ValueError("must not end with '/' or '/related' (it would not be addressable)")
    return value


ExternalId = Annotated[Label, AfterValidator(_no_control_chars), AfterValidator(_reachable_by_path)]


class ArticleIn(BaseModel):
    """An article as a publisher sends it. Unknown fields are ignored."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "external_id": "cms-48213",
                    "title": "City council approves night bus network after long debate",
                    "summary": "Six new night routes start in March.",
                    "body": "The city council voted 9 to 4 on Tuesday to fund six night bus...",
                    "url": "https://example.com/local/night-buses",
                    "source": "Harbor Daily",
                    "authors": ["Ana Ruiz"],
                    "language": "en",
                    "category": "local",
                    "tags": ["transport", "city council"],
                    "published_at": "2026-11-20T08:15:00Z",
                }
            ]
        },
    )

    external_id: ExternalId = Field(description="The publisher's own id; unique within its site.")
    site: OptionalLabel = Field(
        default=None,
        description="The site the article belongs to, one of the API key's (else 403 "
        "`site_not_allowed`). Left out: the key's site when it has exactly one, else `default`.",
    )
    title: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000), NoNul
    ]
    body: Annotated[str, StringConstraints(max_length=MAX_BODY_CHARS), NoNul] = ""
    summary: Annotated[str, StringConstraints(max_length=10_000), NoNul] | None = None
    url: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2048), NoNul] | None = (
        None
    )
    source: OptionalLabel = None
    authors: list[Label] = Field(default_factory=list, max_length=50)
    language: Annotated[
        Annotated[
            str,
            StringConstraints(
                strip_whitespace=True,
                to_lower=True,
                max_length=35,
                pattern=r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$",
            ),
        ]
        | None,
        BeforeValidator(blank_is_none),
    ] = Field(default=None, description="BCP 47 language tag, e.g. `en` or `pt-br`.")
    category: OptionalLabel = None
    tags: list[Label] = Field(default_factory=list, max_length=100)
    published_at: Timestamp | None = Field(
        default=None, description="Defaults to the time the article is first received."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value and not value.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value or None


EmbeddingStatus = Literal["pending", "ready", "failed"]


class ArticleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    external_id: str
    site: str
    title: str
    body: str
    summary: str | None
    url: str | None
    source: str | None
    authors: list[str]
    language: str | None
    category: str | None
    tags: list[str]
    published_at: datetime
    created_at: datetime
    updated_at: datetime
    content_hash: str
    embedding_model: str | None = Field(description="Model of the stored vector, if any.")
    embedding_status: EmbeddingStatus = Field(
        description="pending: queued for the embedding workers; ready: related works; "
        "failed: the text could not be embedded (see embedding_error)."
    )
    embedding_error: str | None = Field(description="Why embedding failed, when it did.")


UpsertStatus = Literal["created", "updated", "unchanged"]


class BatchIn(BaseModel):
    # Items are validated one by one in the service so one bad item cannot reject the others.
    articles: list[Any] = Field(
        json_schema_extra={"items": {"$ref": "#/components/schemas/ArticleIn"}},
        description="Up to RELATED_MAX_BATCH_ARTICLES articles (1,000 by default).",
    )


class BatchItemResult(BaseModel):
    index: int = Field(description="The item's position in the request.")
    id: uuid.UUID | None = Field(description="Our id of the stored article; null for an error.")
    external_id: str | None = Field(
        description="The item's external_id (when it had one, even in an error)."
    )
    status: UpsertStatus | Literal["error"]
    embedding_status: EmbeddingStatus | None = Field(
        description="As in the article (pending, ready, failed); null for an error."
    )
    error: ErrorBody | None = Field(default=None, description="Why the item was not stored.")
    # A batch of long articles echoed back whole is as big as the request (5 MB in, 5 MB out):
    # the article only when the caller asks for it.
    article: ArticleOut | None = Field(
        default=None, description="The stored article, only with `?full=true`."
    )


class BatchOut(BaseModel):
    items: list[BatchItemResult]
    counts: dict[str, int]


class ArticlePage(BaseModel):
    items: list[ArticleOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class ArticleListQuery(FilterParams):
    """The list's filters are related search's (app.articles.filters), with its pages."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=200)
