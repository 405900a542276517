from typing import Annotated

from fastapi import Depends

from app.core.deps import EncoderDep, SettingsDep
from app.db.session import DatabaseDep, ReadSessionDep
from app.related.repository import RelatedRepository
from app.related.service import RelatedService


async def get_related_service(
    session: ReadSessionDep, encoder: EncoderDep, database: DatabaseDep, settings: SettingsDep
) -> RelatedService:
    return RelatedService(
        RelatedRepository(session), encoder, database.pgvector, settings.hnsw_ef_search
    )


RelatedServiceDep = Annotated[RelatedService, Depends(get_related_service)]
