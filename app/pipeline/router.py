from fastapi import APIRouter

from app.db.session import SessionDep
from app.embedding.dependencies import EncoderDep
from app.pipeline.schemas import EmbeddingStatusOut
from app.pipeline.service import embedding_status

router = APIRouter(prefix="/v1/embedding", tags=["embedding"])


@router.get("/status")
async def get_embedding_status(session: SessionDep, encoder: EncoderDep) -> EmbeddingStatusOut:
    """The embedding queue: articles per status and per model, and how long the oldest
    pending article has waited."""
    return await embedding_status(session, encoder.model_name)
