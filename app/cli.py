"""The `related` command: serve the API, bulk-ingest JSONL, migrate the database."""

import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.auth.cli import keys_cli
from app.core.config import get_settings
from app.observability.logs import setup_logging

if TYPE_CHECKING:
    from app.db.engine import Database

cli = typer.Typer(help="Related: related articles for news sites.", no_args_is_help=True)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(keys_cli, name="keys")


def _setup_logging(level: str) -> None:
    # Before any model is loaded: transformers' "Loading weights" bar (a hundredth of a second
    # of loading) is noise on a terminal and garbles logs elsewhere. Read when huggingface_hub
    # is imported, which no command has done yet.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    setup_logging(level, get_settings().log_format)


def _on_terminal() -> bool:
    """Progress bars only for a person watching: in a log file or a pipe they are lines of
    carriage returns and escape codes."""
    return sys.stderr.isatty()


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default: RELATED_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: RELATED_PORT.")] = None,
) -> None:
    """Run the HTTP API (uvicorn)."""
    import uvicorn

    settings = get_settings()
    _setup_logging(settings.log_level)
    if settings.database_url is None:
        # Before uvicorn: a missing database is one clear line and exit 1, not a traceback.
        from app.db.embedded import binaries

        binaries()
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level,
        # The app logs each request itself (JSON, with request id and key id).
        access_log=False,
        # X-Forwarded-For is read by the app, from RELATED_TRUSTED_PROXIES only.
        proxy_headers=False,
        log_config=None,
    )


@cli.command()
def ingest(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSONL, one article a line.")
    ],
    batch_size: Annotated[int, typer.Option(min=1, max=1000)] = 256,
    wait: Annotated[
        bool,
        typer.Option(
            help="Embed here and wait until every article is embedded; --no-wait only stores "
            "them, for the service's or `related worker`'s workers."
        ),
    ] = True,
) -> None:
    """Load articles from a JSONL file; rerunning skips articles already stored unchanged."""
    from app.articles.bulk import ingest_file
    from app.db.engine import open_database
    from app.embedding.encoder import Encoder
    from app.embedding.model import load_embedder

    settings = get_settings()
    _setup_logging("warning")

    async def run() -> int:
        embedder = await asyncio.to_thread(load_embedder, settings)
        async with open_database(settings) as database:
            encoder = Encoder.from_settings(embedder, settings)
            encoder.start()
            try:
                # Timed without the model load and database start, so rates compare with the
                # model's own (bench/ingest.py reads this line): from the first article read
                # until the last is embedded.
                started = time.perf_counter()
                report = await ingest_file(
                    file,
                    database,
                    encoder,
                    batch_size,
                    progress=_on_terminal(),
                    wait=wait,
                    settings=settings,
                )
                elapsed = time.perf_counter() - started
            finally:
                await encoder.close()
        counts = ", ".join(f"{report.counts[k]} {k}" for k in ("created", "updated", "unchanged"))
        typer.echo(f"{counts}, {len(report.invalid)} invalid in {elapsed:.2f} s")
        if report.counts["failed"]:
            typer.echo(f"{report.counts['failed']} could not be embedded (status failed)")
        for problem in report.invalid[:20]:
            typer.echo(f"  {problem}", err=True)
        return 1 if report.invalid or report.counts["failed"] else 0

    raise typer.Exit(asyncio.run(run()))


@cli.command()
def worker() -> None:
    """Embed pending articles until stopped (SIGTERM or Ctrl-C); run any number, anywhere.

    Set RELATED_EMBEDDING_WORKER_IN_PROCESS=false on the API processes when these do the work.
    """
    import signal

    from app.db.engine import open_database
    from app.embedding.encoder import Encoder
    from app.embedding.model import load_embedder
    from app.pipeline.worker import EmbeddingWorker

    settings = get_settings()
    _setup_logging(settings.log_level)

    async def run() -> None:
        embedder = await asyncio.to_thread(load_embedder, settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with open_database(settings) as database:
            encoder = Encoder.from_settings(embedder, settings)
            encoder.start()
            embedding = EmbeddingWorker.from_settings(database, encoder, settings)
            embedding.start(requeue_other_models=True)
            logging.getLogger("app.cli").info("worker embedding with %s", embedder.name)
            try:
                await stop.wait()
            finally:
                await embedding.close()
                await encoder.close()

    asyncio.run(run())


@cli.command()
def reembed(
    everything: Annotated[
        bool, typer.Option("--all", help="Re-embed every article, not only other models'.")
    ] = False,
    failed: Annotated[bool, typer.Option(help="Retry failed articles too.")] = False,
    wait: Annotated[
        bool, typer.Option(help="Embed here, with a progress bar, until the queue is empty.")
    ] = True,
) -> None:
    """Queue articles embedded by another model than RELATED_EMBEDDING_MODEL, and embed them."""
    from tqdm import tqdm

    from app.db.engine import open_database
    from app.embedding.encoder import Encoder
    from app.embedding.model import load_embedder
    from app.pipeline.service import queue_counts
    from app.pipeline.worker import EmbeddingWorker, requeue

    settings = get_settings()
    _setup_logging("warning")

    async def pending(database: "Database") -> int:
        async with database.sessions() as session:
            return (await queue_counts(session)).status("pending")

    async def run() -> None:
        embedder = await asyncio.to_thread(load_embedder, settings)
        async with open_database(settings) as database:
            queued = await requeue(database, embedder.name, everything, failed)
            typer.echo(f"queued {queued} articles for {embedder.name}")
            if not wait:
                return
            encoder = Encoder.from_settings(embedder, settings)
            encoder.start()
            embedding = EmbeddingWorker.from_settings(database, encoder, settings)
            embedding.start()
            try:
                total = await pending(database)
                with tqdm(
                    total=total, unit="article", desc="re-embed", disable=not _on_terminal()
                ) as bar:
                    while (left := await pending(database)) > 0:
                        bar.update(max(0, total - left - bar.n))
                        await embedding.changed(1.0)
                    bar.update(total - bar.n)
            finally:
                await embedding.close()
                await encoder.close()
            typer.echo(f"embedded {embedding.embedded}, failed {embedding.failed}")

    asyncio.run(run())


@cli.command("eval")
def evaluate(
    dataset: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Labelled JSONL (label/labels).")
    ],
    dedupe_exact: Annotated[bool, typer.Option(help="Drop exact duplicate bodies first.")] = False,
    require_partner: Annotated[
        bool, typer.Option(help="Ask only about articles whose label has a partner.")
    ] = False,
    single_label: Annotated[
        bool, typer.Option(help="Keep only articles with exactly one label.")
    ] = False,
    exclude_label: Annotated[
        list[str] | None, typer.Option(help="Leave out articles with this label (repeatable).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where the JSON, Markdown and PNG go.")] = Path(
        "reports"
    ),
    history: Annotated[
        list[int] | None,
        typer.Option(
            min=1,
            help="Measure recommendations from reading histories of K articles of a label "
            "instead (repeatable: --history 1 --history 3).",
        ),
    ] = None,
    histories: Annotated[int, typer.Option(min=1, help="Histories drawn per K.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the histories drawn.")] = 0,
    embedding_cache: Annotated[
        Path | None,
        typer.Option(help="Keep the corpus' vectors here between runs (off if not given)."),
    ] = None,
) -> None:
    """Measure relevance on a labelled corpus, in a fresh embedded database."""
    import shlex
    import tempfile

    from app.core.config import Settings
    from app.db.engine import open_database
    from app.embedding.encoder import Encoder
    from app.embedding.model import load_embedder
    from app.evaluation.cache import CachedEmbedder
    from app.evaluation.corpus import Protocol, load_corpus
    from app.evaluation.history import (
        evaluate_histories,
        history_markdown,
        write_history_reports,
    )
    from app.evaluation.report import markdown, write_reports
    from app.evaluation.runner import evaluate as run_evaluation

    _setup_logging("warning")
    protocol = Protocol(dedupe_exact, require_partner, single_label, tuple(exclude_label or ()))
    corpus = load_corpus(dataset, protocol)
    command = "related eval " + shlex.join(sys.argv[2:])

    async def run() -> None:
        with tempfile.TemporaryDirectory(prefix="related-eval-") as data_dir:
            settings = Settings(database_url=None, data_dir=Path(data_dir))
            embedder = await asyncio.to_thread(load_embedder, get_settings())
            cached = None if embedding_cache is None else CachedEmbedder(embedder, embedding_cache)
            async with open_database(settings) as database:
                encoder = Encoder.from_settings(cached or embedder, settings)
                encoder.start()
                try:
                    if history:
                        by_history = await evaluate_histories(
                            corpus,
                            database,
                            encoder,
                            settings.hnsw_ef_search,
                            history,
                            histories,
                            seed,
                        )
                    else:
                        evaluation = await run_evaluation(
                            corpus, database, encoder, settings.hnsw_ef_search
                        )
                finally:
                    await encoder.close()
                    if cached is not None:
                        cached.save()
        if history:
            paths = write_history_reports(by_history, out, command)
            typer.echo(history_markdown(by_history, command))
        else:
            paths = write_reports(evaluation, protocol, out, command)
            typer.echo(markdown(evaluation, protocol, command))
        typer.echo("wrote " + ", ".join(str(p) for p in paths))

    asyncio.run(run())


@db_cli.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Migrate the database to the latest schema (or to REVISION)."""
    from app.db import migrate
    from app.db.engine import check_url
    from app.db.url import resolve_database_url

    settings = get_settings()
    _setup_logging("info")
    url, _server = resolve_database_url(settings)
    asyncio.run(check_url(url, settings))
    migrate.upgrade(url, revision)
    typer.echo(f"database at {revision}")


@db_cli.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Migrate down to REVISION (`base` removes every table)."""
    from app.db import migrate
    from app.db.url import resolve_database_url

    url, _server = resolve_database_url(get_settings())
    migrate.downgrade(url, revision)
    typer.echo(f"database at {revision}")


def main() -> None:
    try:
        cli()
    except Exception as exc:  # start-up problems get one clear line, not a traceback
        from app.db.embedded import EmbeddedServerError
        from app.db.engine import DatabaseStartupError

        if isinstance(exc, DatabaseStartupError | EmbeddedServerError | ValueError):
            typer.echo(f"error: {exc}", err=True)
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
