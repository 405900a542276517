"""The article filters, defined once: what a caller may ask for (``FilterParams``), what they
resolve to (``ArticleFilters``) and the one function that turns them into SQL (``clauses``).

Listing (app.articles, through SQLAlchemy) and related search (app.related, hand-written SQL on
the driver) both take their WHERE clauses from ``clauses``; only the placeholder style differs
(``:f1`` or ``$1``), so the two can never disagree on what a filter keeps. The caller's sites
(app.auth: a key's sites, or every site for an aggregator) are part of the filters: every read
applies them the same way, and a new feature that takes ``ArticleFilters`` is scoped by site
without doing anything else.
"""

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field

from app.core.errors import AppError
from app.core.schemas import MAX_FILTER_VALUES, Label, TimeWindow
from app.core.sites import Sites


def parse_uuid(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


def labels(description: str) -> Any:
    """A list-valued filter: at most MAX_FILTER_VALUES labels, none by default."""
    return Field(default_factory=list, max_length=MAX_FILTER_VALUES, description=description)


class FilterParams(TimeWindow):
    """The filters of listing, related search and drafts, as query parameters or JSON."""

    site: list[Label] = labels(
        "Only these sites, among the caller's own (an aggregator's key sees several; "
        "a site the key does not have is a 403). Default: all of the caller's sites."
    )
    max_age_days: float | None = Field(
        default=None, gt=0, le=36500, description="Only articles published in the last N days."
    )
    source: list[Label] = labels("Only these sources.")
    exclude_source: list[Label] = labels("Not these sources (articles without a source are kept).")
    category: list[Label] = labels("Only these categories.")
    exclude_category: list[Label] = labels(
        "Not these categories (articles without a category are kept)."
    )
    language: list[Label] = labels("Only these languages.")
    exclude_ids: list[Label] = Field(
        default_factory=list,
        max_length=1000,
        description="Articles to leave out, by our id or by external_id.",
    )

    def resolve(
        self, sites: Sites, exclude_id: uuid.UUID | None = None, now: datetime | None = None
    ) -> "ArticleFilters":
        """The filters to apply for a caller who sees ``sites``; 403 for a ``site`` asked for
        that the caller does not have."""
        since = self.since
        if self.max_age_days is not None:
            cutoff = (now or datetime.now(UTC)) - timedelta(days=self.max_age_days)
            since = max(since, cutoff) if since else cutoff
        return ArticleFilters(
            sites=visible_sites(sites, self.site),
            source=tuple(self.source),
            exclude_source=tuple(self.exclude_source),
            category=tuple(self.category),
            exclude_category=tuple(self.exclude_category),
            language=tuple(self.language),
            since=since,
            until=self.until,
            exclude_ids=tuple(self.exclude_ids),
            exclude_id=exclude_id,
        )


def site_not_allowed(sites: Collection[str], allowed: Sites) -> AppError:
    return AppError(
        403,
        "site_not_allowed",
        f"This API key has no access to site {sorted(sites)[0]!r}",
        {"sites": sorted(sites), "allowed": None if allowed is None else sorted(allowed)},
    )


def visible_sites(allowed: Sites, asked: Sequence[str] = ()) -> tuple[str, ...] | None:
    """The sites a request reads: those ``asked`` (each one the caller's, else 403), or all of
    the caller's; None: every site, unrestricted."""
    if asked:
        missing = set(asked) - allowed if allowed is not None else set()
        if missing:
            raise site_not_allowed(missing, allowed)
        return tuple(sorted(set(asked)))
    return None if allowed is None else tuple(sorted(allowed))


@dataclass(frozen=True)
class ArticleFilters:
    """Resolved filters (``max_age_days`` already a ``since``), applied by ``clauses``."""

    sites: Sequence[str] | None = None  # None: every site
    source: Sequence[str] = ()
    exclude_source: Sequence[str] = ()
    category: Sequence[str] = ()
    exclude_category: Sequence[str] = ()
    language: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None
    exclude_ids: Sequence[str] = ()
    exclude_id: uuid.UUID | None = None  # the article asked about

    @property
    def restrictive(self) -> bool:
        """Filters that can keep a small share of the corpus (exclusions cannot). Sites are not
        counted: whether a site is a small share is for the planner's estimate to say
        (app.related.service counts them there), and a single publisher's site is everything."""
        return bool(self.source or self.category or self.language or self.since or self.until)

    def clauses(self, param: Callable[[Any], str]) -> list[str]:
        """The WHERE clauses, ANDed; ``param(value)`` returns the placeholder of a new parameter
        (values never enter the SQL text)."""
        where: list[str] = []
        if self.sites is not None:
            if len(self.sites) == 1:
                # A scalar comparison for the common case, a key of one site: PostgreSQL then
                # keeps a generic plan of the walk (planned once, not per page view), which it
                # does not for `= ANY` of a parameter (tests/test_filtered_recall.py).
                where.append(f"site = {param(self.sites[0])}")
            else:
                where.append(f"site = ANY(CAST({param(list(self.sites))} AS text[]))")
        if self.source:
            where.append(f"source = ANY(CAST({param(list(self.source))} AS text[]))")
        if self.exclude_source:
            # NULL is not "another source" to SQL: an article without one is kept explicitly.
            values = param(list(self.exclude_source))
            where.append(f"(source IS NULL OR NOT source = ANY(CAST({values} AS text[])))")
        if self.category:
            where.append(f"category = ANY(CAST({param(list(self.category))} AS text[]))")
        if self.exclude_category:
            values = param(list(self.exclude_category))
            where.append(f"(category IS NULL OR NOT category = ANY(CAST({values} AS text[])))")
        if self.language:
            languages = [language.lower() for language in self.language]  # stored lower-case
            where.append(f"language = ANY(CAST({param(languages)} AS text[]))")
        if self.since is not None:
            where.append(f"published_at >= {param(self.since)}")
        if self.until is not None:
            where.append(f"published_at < {param(self.until)}")
        if self.exclude_ids:
            values = param(list(self.exclude_ids))
            where.append(f"NOT external_id = ANY(CAST({values} AS text[]))")
            ids = [i for i in map(parse_uuid, self.exclude_ids) if i is not None]
            if ids:
                where.append(f"NOT id = ANY(CAST({param(ids)} AS uuid[]))")
        if self.exclude_id is not None:
            where.append(f"id <> {param(self.exclude_id)}")
        return where


class NamedParams:
    """``param`` for SQLAlchemy's text(): ``:f1``, ``:f2``, ... and their values."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any) -> str:
        name = f"f{len(self.values) + 1}"
        self.values[name] = value
        return f":{name}"
