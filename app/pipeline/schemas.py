from pydantic import BaseModel, Field


class ModelCount(BaseModel):
    model: str | None = Field(description="Model of the stored vector; null: none yet.")
    status: str
    count: int


class EmbeddingStatusOut(BaseModel):
    model: str = Field(description="The model this service embeds with.")
    counts: dict[str, int] = Field(description="Articles per embedding status.")
    by_model: list[ModelCount]
    stale: int = Field(description="Ready articles whose vector is from another model.")
    oldest_pending_age_s: float | None = Field(
        description="Seconds the oldest pending article has waited; null when none is pending."
    )
