"""Creating, updating, reading and deleting articles. Flushes; the request commits."""

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from app.articles.filters import site_not_allowed, visible_sites
from app.articles.models import Article
from app.articles.repository import ArticleRepository
from app.articles.schemas import ArticleIn, ArticleListQuery, UpsertStatus
from app.core.config import Settings
from app.core.errors import AppError, error_details_from_pydantic, not_found, validation_error
from app.core.limits import text_length_errors
from app.core.schemas import as_utc
from app.core.sites import DEFAULT_SITE, Sites
from app.db.base import utcnow
from app.embedding.text import embedding_hash, embedding_text


@dataclass
class UpsertResult:
    article: Article
    status: UpsertStatus


def content_hash(item: ArticleIn) -> str:
    # The site is part of the article's identity (with its external_id), not of its content:
    # hashes of articles stored before sites existed stay valid.
    fields = item.model_dump(mode="json", exclude={"site"})
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode_cursor(article: Article) -> str:
    raw = json.dumps([article.published_at.isoformat(), str(article.id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        published_at, article_id = json.loads(base64.urlsafe_b64decode(padded))
        return as_utc(datetime.fromisoformat(published_at)), uuid.UUID(article_id)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError) as exc:
        raise validation_error(
            [{"path": "cursor", "message": "not a cursor this API returned", "type": "cursor"}]
        ) from exc


class ArticleService:
    def __init__(
        self,
        repository: ArticleRepository,
        model_name: str,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        """``model_name`` names the vectors articles should have; ``on_queued`` is called after
        a commit that queued articles for embedding (it wakes the in-process worker)."""
        self.repository = repository
        self.model_name = model_name
        self.on_queued = on_queued
        self._hooked = False

    async def upsert(self, item: ArticleIn, sites: Sites = None) -> UpsertResult:
        """Create or update one article; 403 unless its site is one of ``sites`` (check_site)."""
        [result] = await self.upsert_many([item], sites)
        return result

    async def upsert_many(self, items: list[ArticleIn], sites: Sites = None) -> list[UpsertResult]:
        """Create or update by (site, external_id), in order; later duplicates in ``items`` win.
        Each item's site must be one of ``sites`` (None: any site).

        Articles whose embedded text changed are queued (status pending) for the embedding
        workers; nothing is encoded here, so ingest costs database time only.

        A concurrent request may insert one of these external_ids between our read and our
        insert; the unique constraint then fails only our savepoint, and the retry reads the
        other writer's row and updates it.
        """
        items = [check_site(item, sites) for item in items]
        session = self.repository.session
        for attempt in range(3):
            try:
                async with session.begin_nested():
                    return await self._upsert_many(items)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _upsert_many(self, items: list[ArticleIn]) -> list[UpsertResult]:
        now = utcnow()
        stored = {
            (a.external_id, a.site): a
            for a in await self.repository.get_by_external_ids(map(identity, items))
        }
        results: list[UpsertResult] = []
        for item in items:
            digest = content_hash(item)
            article = stored.get(identity(item))
            fields = item.model_dump(exclude={"published_at"})
            if article is None:
                article = Article(
                    **fields,
                    published_at=item.published_at or now,
                    content_hash=digest,
                    created_at=now,
                    updated_at=now,
                )
                self.repository.add_all([article])
                stored[identity(item)] = article
                status: UpsertStatus = "created"
            elif article.content_hash == digest:
                status = "unchanged"
            else:
                for name, value in fields.items():
                    setattr(article, name, value)
                article.published_at = item.published_at or article.published_at
                article.content_hash = digest
                article.updated_at = now
                status = "updated"
            results.append(UpsertResult(article, status))

        if self._queue({id(r.article): r.article for r in results}.values(), now):
            self._wake_after_commit()
        await self.repository.flush()
        return results

    def _queue(self, articles: Iterable[Article], now: datetime) -> bool:
        """Queue articles whose embedded text (or model) changed since their last vector.

        The stale vector stays until the new one is written: related queries of other articles
        keep finding it meanwhile, and the article itself answers 409 until it is ready.
        """
        queued = False
        for article in articles:
            text = embedding_text(article.title, article.summary, article.body)
            digest = embedding_hash(self.model_name, text)
            if article.embedding_hash != digest:
                article.embedding_hash = digest
                article.embedding_status = "pending"
                article.embedding_error = None
                article.embedding_attempts = 0
                article.embedding_lease_until = None
                article.embedding_queued_at = now
                queued = True
        return queued

    def _wake_after_commit(self) -> None:
        # After the commit, not now: a worker woken before it would find nothing to claim.
        if self.on_queued is None or self._hooked:
            return
        callback = self.on_queued
        event.listen(
            self.repository.session.sync_session, "after_commit", lambda _: callback(), once=True
        )
        self._hooked = True

    async def get(self, ref: str, sites: Sites, asked: Sequence[str] = ()) -> Article:
        """The article ``ref`` among the caller's ``sites`` (narrowed to the sites ``asked``):
        404 when there is none there, 409 when an external_id names one in several."""
        found = await self.repository.get_by_ref(ref, visible_sites(sites, asked))
        if not found:
            raise not_found("article", ref)
        if len(found) > 1:
            raise ambiguous_ref(ref, [article.site for article in found])
        return found[0]

    async def list(
        self, query: ArticleListQuery, sites: Sites = None
    ) -> tuple[list[Article], str | None]:
        """A page of the articles of ``sites`` (None: every site) that pass the filters."""
        after = decode_cursor(query.cursor) if query.cursor else None
        filters = query.resolve(sites)
        page = await self.repository.list_page(filters, after, query.limit + 1)
        next_cursor = encode_cursor(page[query.limit - 1]) if len(page) > query.limit else None
        return page[: query.limit], next_cursor

    async def delete(self, article: Article) -> None:
        await self.repository.delete(article)


def identity(item: ArticleIn) -> tuple[str, str]:
    """(external_id, site): what an article is stored under, once check_site named the site."""
    return item.external_id, item.site or DEFAULT_SITE


def check_site(item: ArticleIn, sites: Sites) -> ArticleIn:
    """``item`` with its site named: the one it gives, else the key's when it has exactly one,
    else `default`; 403 unless that is one of ``sites`` (None: any site)."""
    site = item.site
    if site is None:
        site = next(iter(sites)) if sites is not None and len(sites) == 1 else DEFAULT_SITE
        item = item.model_copy(update={"site": site})
    if sites is not None and site not in sites:
        raise site_not_allowed([site], sites)
    return item


def ambiguous_ref(ref: str, sites: list[str]) -> AppError:
    return AppError(
        409,
        "ambiguous_ref",
        f"External id {ref!r} is used in several of this key's sites; name one with `?site=` "
        "or use our id",
        {"ref": ref, "sites": sites},
    )


def validate_batch_items(
    raw_items: list[object], settings: Settings | None = None, sites: Sites = None
) -> tuple[list[tuple[int, ArticleIn]], dict[int, AppError]]:
    """Valid items with their positions, and an error per invalid position.

    With ``settings``, texts over the configured lengths are invalid too; an item for a site not
    among ``sites`` (None: any) is a 403 ``site_not_allowed`` of its own.
    """
    valid: list[tuple[int, ArticleIn]] = []
    errors: dict[int, AppError] = {}
    for index, raw in enumerate(raw_items):
        try:
            item = ArticleIn.model_validate(raw)
        except ValidationError as exc:
            details = error_details_from_pydantic(exc.errors(), prefix=("articles", index))
            errors[index] = validation_error(details, "Invalid article")
            continue
        too_long = text_length_errors(item, settings, ("articles", index)) if settings else []
        if too_long:
            errors[index] = validation_error(too_long, "Invalid article")
            continue
        try:
            valid.append((index, check_site(item, sites)))
        except AppError as exc:
            errors[index] = exc
    return valid, errors
