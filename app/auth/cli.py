"""`related keys create|list|revoke`: API keys are managed where the database is, not over HTTP."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from app.auth.models import KeyKind, Scope
from app.auth.repository import ApiKeyRepository
from app.auth.service import ApiKeyService, normalize_origin
from app.core.config import get_settings
from app.core.sites import DEFAULT_SITE

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
    scope: Annotated[
        list[Scope] | None, typer.Option(help="read, write or admin (repeatable).")
    ] = None,
    publishable: Annotated[
        bool,
        typer.Option(
            "--publishable",
            help="A key to put in web pages (the related box): read only, accepted only from "
            "the --origin pages, rate limited per reader.",
        ),
    ] = False,
    origin: Annotated[
        list[str] | None,
        typer.Option(help="An origin a publishable key works from: https://www.example.com."),
    ] = None,
    site: Annotated[
        list[str] | None,
        typer.Option(
            help="A site the key reads and writes (repeatable). Default: `default`, the site "
            "of every article sent without one."
        ),
    ] = None,
    all_sites: Annotated[
        bool,
        typer.Option("--all-sites", help="Every site, present and future (an aggregator)."),
    ] = False,
) -> None:
    """Make a key and print its token, once: only its hash is stored."""
    if not name.strip():
        raise typer.BadParameter("must not be blank", param_hint="--name")
    if all_sites and site:
        raise typer.BadParameter("give --site or --all-sites, not both", param_hint="--site")
    sites = None if all_sites else [s.strip() for s in site or [DEFAULT_SITE]]
    if sites is not None and not all(0 < len(s) <= 255 for s in sites):
        raise typer.BadParameter("a site is a name of 1 to 255 characters", param_hint="--site")
    scopes = scope or []
    if publishable:
        if set(scopes) - {Scope.READ}:
            raise typer.BadParameter("a publishable key can only read", param_hint="--scope")
        if not origin:
            raise typer.BadParameter("a publishable key needs one", param_hint="--origin")
        try:
            origins = [normalize_origin(o) for o in origin]
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--origin") from None
    else:
        if origin:
            raise typer.BadParameter("only with --publishable", param_hint="--origin")
        if not scopes:
            raise typer.BadParameter("give at least one", param_hint="--scope")
    key, token = _with_service(
        lambda service: service.create(
            name.strip(), scopes or [Scope.READ], origins if publishable else None, sites
        )
    )
    described = f"id {key.id}, scopes {','.join(key.scopes)}, sites {describe_sites(key.sites)}"
    if publishable:
        described += f", publishable from {', '.join(key.origins)}"
    typer.echo(described, err=True)
    typer.echo(token)


def describe_sites(sites: list[str] | None) -> str:
    return "*" if sites is None else ",".join(sites)


def printable(text: str) -> str:
    """Control characters as escapes (\\t, \\x1b, ...): a name cannot move the terminal's
    cursor, recolour it or break the tab-separated columns."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


@keys_cli.command("list")
def list_keys() -> None:
    """Every key: id, name, scopes, created, revoked, origins, sites (* for every site; never
    the token)."""
    keys = _with_service(lambda service: service.list())
    for key in keys:
        revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "active"
        # A secret key works from anywhere; a publishable one from its origins only.
        origins = ",".join(key.origins) if key.kind == KeyKind.PUBLISHABLE else "-"
        typer.echo(
            f"{key.id}\t{printable(key.name)}\t{','.join(key.scopes)}\t"
            f"{key.created_at.isoformat(timespec='seconds')}\t{revoked}\t{printable(origins)}"
            f"\t{printable(describe_sites(key.sites))}"
        )


@keys_cli.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The id `keys list` shows.")]) -> None:
    """Revoke a key: requests with it get 401 from the next one on."""
    key = _with_service(lambda service: service.revoke(key_id))
    if key is None:
        typer.echo(f"error: no key {key_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key.id} ({key.name})")
