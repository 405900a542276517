from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.schemas import Label
from app.related.schemas import RelatedArticle, RelatedFilters

MAX_POSITIVE = 50


class RecommendIn(RelatedFilters):
    """A reader's history: what to recommend from, and what to steer away from."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "positive": ["demo-marathon-1", "demo-transfer-2"],
                    "negative": ["demo-ratecut-1"],
                    "limit": 5,
                    "max_age_days": 30,
                }
            ]
        },
    )

    positive: list[Label] = Field(
        min_length=1,
        max_length=MAX_POSITIVE,
        description="What the reader read, most recent first: our ids or external_ids. Never "
        "returned. Refs that name no article of the caller's sites, or one not embedded yet, "
        "are skipped and listed in `ignored`.",
    )
    negative: list[Label] = Field(
        default_factory=list,
        max_length=MAX_POSITIVE,
        description="Articles to steer away from (the reader dismissed them): articles like them "
        "rank lower. Never returned.",
    )


IgnoredReason = Literal["not_found", "not_embedded", "ambiguous"]


class Ignored(BaseModel):
    ref: str
    reason: IgnoredReason = Field(
        description="`not_found`: no article of the caller's sites by that id or external_id; "
        "`not_embedded`: it has no vector of the current model yet (or it failed); "
        "`ambiguous`: an external_id that several of the caller's sites use (name the `site`, "
        "or send our id)."
    )


class RecommendOut(BaseModel):
    model: str = Field(description="The embedding model that ranked the results.")
    items: list[RelatedArticle] = Field(description="Best first.")
    ignored: list[Ignored] = Field(
        description="Refs of `positive` and `negative` that were skipped, and why."
    )
