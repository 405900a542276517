"""Every statement of related search, sent with the driver on the read pool (app.db.reads).

Hand-written SQL with numbered parameters: values never enter the SQL text. Vectors travel in
pgvector's binary form (numpy arrays here), words as bytes (app.related.terms).
"""

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from app.articles.filters import ArticleFilters, parse_uuid
from app.db.reads import MIN_EF_SEARCH, decode_vectors
from app.related.terms import TermBatch, Terms

RESULT_COLUMNS = "id, external_id, title, url, source, published_at, summary"
# What the hybrid ranking reads of each candidate, and of the article asked about (its own row
# among them: the probe). The vector as bytes (pgvector's binary form): the ranking decodes all
# of them at once (app.db.reads.decode_vectors).
FEATURE_COLUMNS = (
    "vector_send(embedding) AS vector, term_hashes, term_counts, category, title_hashes, "
    "coalesce(body_words, 0) AS body_words"
)
SOURCE_COLUMNS = (
    "id, external_id, embedding_status, embedding_error, embedding_model, "
    "embedding IS NOT NULL AS embedded"
)


@dataclass(frozen=True)
class StoredVector:
    """The query vector of a stored article, read by the statement itself: one round trip
    instead of two. NULL (every score NULL) unless the article is ready with the model asked."""

    article_id: uuid.UUID


@dataclass(frozen=True)
class SourceArticle:
    """The stored article whose related articles are asked for, by id or external_id: whether
    it can be searched from (the search reads its vector and words itself)."""

    id: uuid.UUID
    external_id: str
    embedding_status: str
    embedding_error: str | None
    embedding_model: str | None
    embedded: bool  # it has a vector (of embedding_model)
    site: str | None = None  # read when found by external_id, which may be in several sites


class Where:
    """A WHERE clause and its parameters, numbered as they are added."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.args: list[Any] = []

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, clause: str) -> None:
        self.clauses.append(clause)

    @property
    def sql(self) -> str:
        return " AND ".join(self.clauses) or "true"

    def apply(self, filters: ArticleFilters) -> None:
        for clause in filters.clauses(self.param):
            self.add(clause)

    def or_id(self, article_id: uuid.UUID) -> None:
        """From now on: these clauses, or the one row ``article_id``."""
        self.clauses = [f"({self.sql}) OR id = {self.param(article_id)}"]


# The one definition of the filters, shared with listing (app.articles.filters).
Filters = ArticleFilters


class RelatedRepository:
    def __init__(
        self,
        connection: asyncpg.Connection,
        *,
        distributed: bool = False,
        ef_search: int = MIN_EF_SEARCH,
    ) -> None:
        self.connection = connection
        # On Citus (app.db.citus): the connection's own settings stay on the coordinator, so
        # every walk sets its ef_search (the connection's, ``ef_search``, unless asked for
        # another) and iterative scan with SET LOCAL, which reaches the shards.
        self.distributed = distributed
        self.ef_search = ef_search

    async def source_article(self, ref: str, sites: Sequence[str] | None) -> list[SourceArticle]:
        """By our id or, failing that, by the publisher's external_id, among ``sites``'
        articles (None: every site): one, none, or one per site using that external_id."""
        where = Where()
        where.apply(ArticleFilters(sites=sites))
        in_sites = where.sql
        article_id = parse_uuid(ref)
        if article_id is not None:
            row = await self.connection.fetchrow(
                f"SELECT {SOURCE_COLUMNS} FROM articles "
                f"WHERE id = {where.param(article_id)} AND {in_sites}",
                *where.args,
            )
            if row is not None:
                return [SourceArticle(**dict(row))]
            where.args.pop()
        rows = await self.connection.fetch(
            f"SELECT {SOURCE_COLUMNS}, site FROM articles "
            f"WHERE external_id = {where.param(ref)} AND {in_sites} ORDER BY site",
            *where.args,
        )
        return [SourceArticle(**dict(row)) for row in rows]

    async def draft_terms(self, title: str, summary: str | None, body: str) -> tuple[Terms, Terms]:
        """The draft's terms and its headline's, as the trigger of migration 0007 computes a
        stored article's."""
        document = title + " " + (body[:10000] if body else summary or "")
        row = await self.connection.fetchrow(
            "SELECT d.hashes, d.counts, t.hashes AS title_hashes "
            "FROM tsvector_terms(to_tsvector('english'::regconfig, $1::text)) AS d, "
            "tsvector_terms(to_tsvector('english'::regconfig, $2::text)) AS t",
            document,
            title,
        )
        assert row is not None
        return Terms.from_bytes(row["hashes"], row["counts"]), Terms.headline(row["title_hashes"])

    async def history(
        self, refs: Sequence[str], model: str, sites: Sequence[str] | None
    ) -> list[asyncpg.Record]:
        """The articles of ``sites`` (None: every site) these refs name, by our id or
        external_id, each with FEATURE_COLUMNS and ``usable``: it has a ready vector of
        ``model``."""
        where = Where()
        where.apply(ArticleFilters(sites=sites))
        ids = [i for i in map(parse_uuid, refs) if i is not None]
        rows: list[asyncpg.Record] = await self.connection.fetch(
            "SELECT id, external_id, published_at, embedding_status, embedding_model, "
            f"(embedding_model = {where.param(model)} AND embedding_status = 'ready' "
            f"AND embedding IS NOT NULL) AS usable, {FEATURE_COLUMNS} FROM articles "
            f"WHERE (id = ANY({where.param(ids)}::uuid[]) "
            f"OR external_id = ANY({where.param(list(refs))}::text[])) AND {where.sql}",
            *where.args,
        )
        return rows

    async def lexemes(self, ids: Sequence[uuid.UUID]) -> dict[int, str]:
        """The words of these articles by their hash (app.related.terms): to show as words the
        hashes the ranking compared."""
        rows = await self.connection.fetch(
            "SELECT DISTINCT hashtextextended(u.lexeme, 0) AS hash, u.lexeme "
            "FROM articles, unnest(search_vector) AS u WHERE id = ANY($1::uuid[])",
            list(ids),
        )
        return {row["hash"]: row["lexeme"] for row in rows}

    async def estimated_rows(self, model: str, filters: Filters) -> float:
        """The planner's estimate of the rows the filters keep: statistics, no scan."""
        where = Where()
        where.add(f"embedding_model = {where.param(model)}")
        where.apply(filters)
        plan = await self.connection.fetchval(
            f"EXPLAIN (FORMAT JSON) SELECT 1 FROM articles WHERE {where.sql}", *where.args
        )
        return plan_rows(json.loads(plan)[0]["Plan"])

    async def nearest(
        self,
        vector: Any,
        model: str,
        filters: Filters,
        limit: int,
        *,
        with_features: bool = False,
        ef_search: int | None = None,
        exact: bool = False,
        probe: uuid.UUID | None = None,
    ) -> list[asyncpg.Record]:
        """Nearest first, by cosine, to ``vector``: an array, or a StoredVector.
        ``with_features`` adds each row's FEATURE_COLUMNS. ``ef_search`` overrides the
        connection's for the index walk; ``exact`` ranks every row the filters keep instead of
        walking the index.
        ``probe``: the article asked about, let through the filters: one row more (see
        app.related.service)."""
        sql, args = nearest_sql(vector, model, filters, limit, with_features, exact, probe)
        if self.distributed:
            return await self._nearest_on_shards(sql, args, ef_search)
        rows: list[asyncpg.Record]
        if exact or ef_search is None:
            rows = await self.connection.fetch(sql, *args)
            return rows
        async with self.connection.transaction(readonly=True):
            # SET LOCAL with a bound parameter: it ends with the transaction.
            await self.connection.execute(
                "SELECT set_config('hnsw.ef_search', $1, true)", str(ef_search)
            )
            rows = await self.connection.fetch(sql, *args)
        return rows

    async def _nearest_on_shards(
        self, sql: str, args: list[Any], ef_search: int | None
    ) -> list[asyncpg.Record]:
        """nearest() on Citus: the same statement, with its walk settings set locally, which the
        coordinator passes on to the shards it queries. (A site's statement goes whole to the
        shard of that site; across sites, Citus reads the stored vector first, sends it to every
        shard, and merges their nearest rows.)"""
        walk = int(ef_search or self.ef_search)
        async with self.connection.transaction(readonly=True):
            await self.connection.execute(
                f"SET LOCAL hnsw.ef_search = {walk}; SET LOCAL hnsw.iterative_scan = strict_order"
            )
            rows: list[asyncpg.Record] = await self.connection.fetch(sql, *args)
        return rows


def nearest_sql(
    vector: Any,
    model: str,
    filters: Filters,
    limit: int,
    with_features: bool,
    exact: bool,
    probe: uuid.UUID | None = None,
) -> tuple[str, list[Any]]:
    """The statement RelatedRepository.nearest sends, with its parameters."""
    where = Where()
    model_param = where.param(model)
    asked = ""
    if isinstance(vector, StoredVector):
        # Only an article of the caller's sites is searched from: another's has no vector here.
        in_sites = "".join(
            f" AND {c}" for c in ArticleFilters(sites=filters.sites).clauses(where.param)
        )
        asked = (
            "WITH asked AS MATERIALIZED (SELECT embedding FROM articles "
            f"WHERE id = {where.param(vector.article_id)} AND embedding_model = {model_param} "
            f"AND embedding_status = 'ready'{in_sites}) "
        )
        # A scalar subquery is computed once, before the scan: the index walks from its value.
        query = "(SELECT embedding FROM asked)"
    else:
        query = where.param(vector)
    # Vectors of two models are never compared.
    where.add(f"embedding_model = {model_param}")
    where.apply(filters)
    if probe is not None:
        limit += 1
    features = f", {FEATURE_COLUMNS}" if with_features else ""
    distance = f"embedding <=> {query}"
    if exact:
        # Every row the filters keep, ranked, then the columns of the ones it kept. The OFFSET 0
        # fence keeps the ORDER BY out of the scan, so the planner cannot answer it with the
        # HNSW index (approximate) and reads the filtered rows instead: a bitmap scan of a
        # filter index when the filters are selective. Without SET LOCAL enable_indexscan there
        # is no transaction to open: one round trip instead of four. (Only `articles` has the
        # selected columns but `id`, which USING merges.)
        kept = f"(SELECT id, {distance} AS distance FROM articles WHERE {where.sql} OFFSET 0)"
        if probe is not None:
            # The probe as a row of its own: in the WHERE clause (OR id = ...) it would keep
            # the planner from reading the filtered rows from their index alone.
            kept += (
                f" UNION ALL SELECT id, {distance} FROM articles WHERE id = {where.param(probe)}"
            )
        ranked = (
            f"SELECT id, distance FROM ({kept}) AS k ORDER BY distance LIMIT {where.param(limit)}"
        )
        sql = (
            f"{asked}SELECT {RESULT_COLUMNS}, 1 - distance AS score{features} "
            f"FROM ({ranked}) AS n JOIN articles USING (id) ORDER BY distance"
        )
    else:
        if probe is not None:
            where.or_id(probe)  # the walk applies its filters to each row it finds
        # The index scan yields rows in order: the SELECT list is computed for those only.
        # Without restrictive filters the HNSW scan is the only sensible plan, and a literal
        # LIMIT lets PostgreSQL keep one generic plan for the statement asyncpg prepared rather
        # than plan it again on every request (costed for an unknown LIMIT, the generic plan
        # never wins): 0.4 ms of its CPU, a fifth of the statement. With restrictive filters
        # the best plan can depend on how many rows their values keep: LIMIT stays a parameter
        # and the choice stays PostgreSQL's usual one.
        rows = where.param(limit) if filters.restrictive else str(int(limit))
        sql = (
            f"{asked}SELECT {RESULT_COLUMNS}, 1 - ({distance}) AS score{features} FROM articles "
            f"WHERE {where.sql} ORDER BY {distance} LIMIT {rows}"
        )
    return sql, where.args


def plan_rows(plan: dict[str, Any]) -> float:
    """The planner's row estimate of an EXPLAIN (FORMAT JSON) plan. On Citus the coordinator's
    own is a placeholder (0 or 100,000): the estimate is the sum of the shards' plans, each
    planned by its worker with its shard's statistics (every task shown: the read connections
    set citus.explain_all_tasks, app.db.citus)."""
    distributed = plan.get("Distributed Query")
    if distributed is None:
        return float(plan["Plan Rows"])
    return float(
        sum(
            remote["Plan"]["Plan Rows"]
            for task in distributed["Job"]["Tasks"]
            for remote in task["Remote Plan"][0]
        )
    )


def candidate_terms(rows: Sequence[asyncpg.Record]) -> TermBatch:
    """The rows' terms, as fetched with FEATURE_COLUMNS."""
    return TermBatch.from_bytes(
        [row["term_hashes"] for row in rows], [row["term_counts"] for row in rows]
    )


def candidate_vectors(rows: Sequence[asyncpg.Record]) -> Any:
    """The rows' vectors as a float32 matrix, as fetched with FEATURE_COLUMNS."""
    return decode_vectors([row["vector"] for row in rows])
