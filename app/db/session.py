"""One transaction per request: committed before the response is sent, rolled back on error.

Writes use SessionDep (the primary); related, get and list use ReadSessionDep (read-only, on the
replica when one is configured). One request uses one of the two, never both.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import Database


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with get_database(request).sessions() as session, session.begin():
        yield session


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A read-only transaction, on the replica when RELATED_DATABASE_REPLICA_URL is set."""
    async with get_database(request).read_sessions() as session, session.begin():
        yield session


# scope="function" closes the transaction when the endpoint returns, before the response goes out:
# a client that receives 201 knows the article is committed.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def database_dependency(request: Request) -> Database:
    # async: no thread-pool hop (see app.core.deps)
    return get_database(request)


DatabaseDep = Annotated[Database, Depends(database_dependency)]
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
