import uuid
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.articles.filters import FilterParams
from app.articles.schemas import MAX_BODY_CHARS, NoNul
from app.core.schemas import Label

Ranking = Literal["hybrid", "vector"]


class RelatedFilters(FilterParams):
    ranking: Ranking = Field(
        default="hybrid",
        description="`hybrid` (default): semantic and lexical evidence with query expansion, "
        "better than plain cosine on three of the four labelled corpora (see `related eval`). "
        "`vector`: plain embedding cosine.",
    )
    limit: int = Field(default=10, ge=1, le=100, description="How many related articles.")
    min_score: float | None = Field(
        default=None,
        ge=-1,
        le=1,
        description="Only results whose `similarity` (embedding cosine) is at least this: an "
        "absolute threshold, the same for every article and ranking.",
    )
    dedupe: bool = Field(
        default=True,
        description="Leave out copies of the article asked about (wire copies, republished "
        "stories) and show one of each group of duplicates, the earliest published.",
    )
    diversity: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="0: by relevance only; towards 1: results that differ from each other "
        "(maximal marginal relevance).",
    )
    recency: float | None = Field(
        default=None,
        gt=0,
        le=36500,
        description="Half-life in days: an article this much older counts half as relevant.",
    )
    max_per_source: int | None = Field(
        default=None, ge=1, le=100, description="At most this many results from one source."
    )
    explain: bool = Field(
        default=False,
        description="Add to each item an `explain` object: why it is there and at this place.",
    )


class RelatedQuery(RelatedFilters):
    # Unknown query parameters (cache busters, tracking) are ignored, not rejected.
    model_config = ConfigDict(extra="ignore")


class DraftIn(RelatedFilters):
    """Text that is not stored (yet): a draft in a CMS, a page being read, a search."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "Night buses to run on six new routes from March",
                    "body": "The council's transport committee confirmed the routes on Tuesday...",
                    "limit": 5,
                    "max_age_days": 30,
                    "language": ["en"],
                }
            ]
        },
    )

    title: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000), NoNul] = ""
    summary: Annotated[str, StringConstraints(max_length=10_000), NoNul] | None = None
    body: Annotated[str, StringConstraints(max_length=MAX_BODY_CHARS), NoNul] = ""
    own_category: Label | None = Field(
        default=None,
        description="The draft's own category (section): related articles in the same one are "
        "preferred, as for a stored article (not a filter; `category` filters).",
    )

    @model_validator(mode="after")
    def _has_text(self) -> Self:
        if not (self.title.strip() or (self.summary or "").strip() or self.body.strip()):
            raise ValueError("give at least one of title, summary or body")
        return self


class Explanation(BaseModel):
    """What the ranking saw of one item (`explain=true`)."""

    similarity: float = Field(
        description="Cosine similarity of the item's embedding with the query's: the article "
        "asked about, the draft, or for recommendations the mean of the positives."
    )
    lexical: float = Field(
        description="The lexical score: tf-idf cosine of the two texts' words (PostgreSQL's "
        "English lexemes), 0 to 1, before query expansion; `ranking=hybrid` mixes it in."
    )
    shared_words: list[str] = Field(
        description="At most five words both texts use, the heaviest first (each word's share "
        "of the lexical score): PostgreSQL's stemmed lexemes, as `to_tsvector` writes them."
    )
    category_prior: float | None = Field(
        description="What the same-category prior added, in z-units (0.5 for an item in the "
        "article's own category, else 0); null with `ranking=vector`, which has no prior."
    )
    recency_factor: float | None = Field(
        description="0 to 1: 0.5 to the power of the item's distance in days from the "
        "reference date over the `recency` half-life; the score loses 0.15 times (1 - it). "
        "Null without `recency`."
    )
    rank_before_rerank: int = Field(
        description="The item's place, from 1, among the nearest neighbours by embedding "
        "similarity, before the ranking and selection reordered them."
    )


class RelatedArticle(BaseModel):
    id: uuid.UUID
    external_id: str
    title: str
    url: str | None
    source: str | None
    published_at: datetime
    summary: str | None
    score: float = Field(
        description="What the list is ordered by, descending. A plain search (`ranking=vector`, "
        "no dedupe, diversity, recency or max_per_source) is ordered by `similarity`; "
        "otherwise it is the ranking's value for the item: its relevance among the candidates "
        "(embedding and, with `ranking=hybrid`, shared words) as a gain from 0 to 1, lowered "
        "by at most 0.15 for distance in time with `recency` and, with `diversity`, by its "
        "resemblance to the items above it."
    )
    similarity: float = Field(
        description="Cosine similarity of the two articles' embeddings, -1 to 1; what "
        "`min_score` applies to."
    )
    explain: Explanation | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Only with `explain=true` (absent otherwise): why this item, here.",
    )


class ArticleKey(BaseModel):
    id: uuid.UUID
    external_id: str


class RelatedOut(BaseModel):
    article: ArticleKey | None = Field(description="The stored article asked about; null for text.")
    model: str = Field(description="The embedding model that ranked the results.")
    items: list[RelatedArticle] = Field(description="Best first.")
