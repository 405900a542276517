"""`related keys create|list|revoke`: API keys are managed where the database is, not over HTTP."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from app.auth.models import Scope
from app.auth.repository import ApiKeyRepository
from app.auth.service import ApiKeyService
from app.core.config import get_settings

keys_cli = typer.Typer(help="API keys.", no_args_is_help=True)

T = TypeVar("T")


def _with_service(work: Callable[[ApiKeyService], Awaitable[T]]) -> T:
    from app.db.engine import open_database

    async def run() -> T:
        async with (
            open_database(get_settings()) as database,
            database.sessions() as session,
            session.begin(),
        ):
            return await work(ApiKeyService(ApiKeyRepository(session)))

    return asyncio.run(run())


@keys_cli.command("create")
def create(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    scope: Annotated[list[Scope], typer.Option(help="read, write or admin (repeatable).")],
) -> None:
    """Make a key and print its token, once: only its hash is stored."""
    if not name.strip():
        raise typer.BadParameter("must not be blank", param_hint="--name")
    key, token = _with_service(lambda service: service.create(name.strip(), scope))
    typer.echo(f"id {key.id}, scopes {','.join(key.scopes)}", err=True)
    typer.echo(token)


@keys_cli.command("list")
def list_keys() -> None:
    """Every key: id, name, scopes, created, revoked (never the token)."""
    keys = _with_service(lambda service: service.list())
    for key in keys:
        revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "active"
        typer.echo(
            f"{key.id}\t{key.name}\t{','.join(key.scopes)}\t"
            f"{key.created_at.isoformat(timespec='seconds')}\t{revoked}"
        )


@keys_cli.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The id `keys list` shows.")]) -> None:
    """Revoke a key: requests with it get 401 from the next one on."""
    key = _with_service(lambda service: service.revoke(key_id))
    if key is None:
        typer.echo(f"error: no key {key_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key.id} ({key.name})")
