import uuid
from datetime import datetime

from pgvector.sqlalchemy import VECTOR
from sqlalchemy import (
    CheckConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, utcnow

# The column's dimension is fixed by the migration; a model with another dimension needs one.
from app.embedding.vectors import EMBEDDING_DIMENSION

# What the exact scan of related search reads besides its filter columns
# (app.related.repository): in the filter indexes, the scan never visits the table.
# `site` too (migration 0015): a site's key filters on it, and reads it from the index as well.
COVERED_BY_FILTER_INDEXES = ["embedding_model", "id", "external_id", "embedding", "site"]

# The words the lexical signal of related ranking reads: the headline, then the body (or the
# summary when there is no body), in PostgreSQL's English configuration (stemmed, no stop words).
SEARCH_DOCUMENT = (
    "to_tsvector('english'::regconfig, title || ' ' || "
    "CASE WHEN body = '' THEN coalesce(summary, '') ELSE left(body, 10000) END)"
)


PUBLISHED_AT_RANGE = (
    "published_at >= '0001-01-02 00:00:00+00' AND published_at <= '9999-12-30 23:59:59+00'"
)


class Article(Base):
    __tablename__ = "articles"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # The publisher's own id: unique within its site (migration 0015).
    external_id: Mapped[str] = mapped_column(String(255))
    # Whose article it is (app.articles.filters): every read is scoped to the caller's sites.
    site: Mapped[str] = mapped_column(String(255), default="default", server_default="default")
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text, default="", server_default="")
    summary: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(255))
    authors: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    language: Mapped[str | None] = mapped_column(String(35))
    category: Mapped[str | None] = mapped_column(String(255))
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    # Never null: when a publisher omits it, the time we received the article stands in, so time
    # filters, recency and pagination work on every article.
    published_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    # sha256 of the article as the publisher sent it: an identical resend changes nothing.
    content_hash: Mapped[str] = mapped_column(String(64))

    # Stored in the row, not out of line (STORAGE MAIN, migration 0006): exact scans and the
    # hybrid ranking read it for many rows per request.
    embedding: Mapped[list[float] | None] = mapped_column(VECTOR(EMBEDDING_DIMENSION))
    embedding_model: Mapped[str | None] = mapped_column(String(255))
    # sha256 of model name + embedded text: metadata edits do not cost a re-encode. While the
    # article is pending it names the text waiting to be embedded (set by the upsert), so a
    # worker's write-back can tell whether the text changed under it.
    embedding_hash: Mapped[str | None] = mapped_column(String(64))

    # The embedding pipeline (app.pipeline): ingest stores the article as pending and returns;
    # workers claim pending rows with a lease, embed them and mark them ready (or failed).
    embedding_status: Mapped[str] = mapped_column(
        String(16), default="pending", server_default="pending"
    )
    embedding_error: Mapped[str | None] = mapped_column(Text)
    # Claims since the text last changed: bounds retries of an article that kills its worker.
    embedding_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A claimed row is someone's until then; a killed worker's rows are claimable again after.
    embedding_lease_until: Mapped[datetime | None]
    # When the article last became pending: the queue's order and its oldest age.
    embedding_queued_at: Mapped[datetime | None] = mapped_column(
        default=utcnow, server_default=func.now()
    )

    # SEARCH_DOCUMENT of the row, written by the trigger articles_fill_search_vector whenever
    # the title, body or summary is written (migrations 0002, 0014): a plain column rather than
    # a generated one, which could not be added to a large table without rewriting it under a
    # lock. The ORM never writes it. Deferred: only the word statistics read it (ANALYZE).
    search_vector: Mapped[str | None] = mapped_column(TSVECTOR, deferred=True)
    # The same words as related ranking reads them (app.related.terms): 8-byte hashes and
    # 2-byte counts. Written by the trigger articles_fill_lexemes (migrations 0005, 0007)
    # whenever the title, body or summary is written.
    term_hashes: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    term_counts: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    # The headline's words alone, hashed alike (migration 0008): they weigh more in ranking.
    title_hashes: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    # len(body.split()), by the same trigger: whether the text is long, without reading it.
    body_words: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        # external_id first: an aggregator's key, which sees every site, finds an article by
        # external_id through it as well as a key bound to some sites does.
        UniqueConstraint("external_id", "site", name="uq_articles_external_id_site"),
        CheckConstraint(
            "embedding_status IN ('pending', 'ready', 'failed')", name="embedding_status"
        ),
        # What the API accepts (app.core.schemas.TIMESTAMP_MIN/MAX), for rows written by other
        # means too: a published_at of PostgreSQL's +-infinity, which Python cannot hold, would
        # break every request whose candidates include that row (migration 0011).
        CheckConstraint(PUBLISHED_AT_RANGE, name="published_at_range"),
        # Claiming reads only pending rows, oldest first: a small index however large the table.
        Index(
            "ix_articles_embedding_pending",
            "embedding_queued_at",
            postgresql_where=text("embedding_status = 'pending'"),
        ),
        # A graph built with a long candidate list (ef_construction 200) and walked with a short
        # one (RELATED_HNSW_EF_SEARCH 40) finds more true neighbours than pgvector's default
        # graph (64) walked at 100, for about 40% less CPU per query (migration 0010).
        Index(
            "ix_articles_embedding_hnsw",
            "embedding",
            postgresql_using="hnsw",
            postgresql_with={"m": 16, "ef_construction": 200},
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
        # Listing and time windows walk published_at; the filters below narrow related queries.
        Index("ix_articles_published_at_id", "published_at", "id"),
        # A source's or a category's rows are spread over the whole table: these two carry what
        # the exact scan of a selective filter reads, so it never visits the table (migration
        # 0009: 2.6x faster at a 2% source, for an index as large as the vectors).
        Index(
            "ix_articles_source_published_at",
            "source",
            "published_at",
            postgresql_include=COVERED_BY_FILTER_INDEXES,
        ),
        Index(
            "ix_articles_category_published_at",
            "category",
            "published_at",
            postgresql_include=COVERED_BY_FILTER_INDEXES,
        ),
        Index("ix_articles_language_published_at", "language", "published_at"),
        # A site's list pages, and the planner's estimate of a site's share (migration 0015).
        Index("ix_articles_site_published_at", "site", "published_at", "id"),
    )
