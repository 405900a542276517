"""Covering filter indexes: a selective source or category filter is ranked from its index alone

Related search ranks every row a selective filter keeps by exact distance
(app.related.service). Through the (source, published_at) index that visited one heap page per
row, the rows of one source being spread over the whole table: for a source with 2% of 100k
articles, 1,958 rows on 1,895 pages, 8.3 to 8.7 ms. With the model, id, external_id and vector
in the index the same statement is an index-only scan: 3.0 to 3.5 ms (psql, the bench corpus;
docs/performance.md). The price is an index as large as the vectors, about 1.6 kB a row, for
each of the two. Time windows need no copy (articles arrive in time order: a window's rows
share pages), nor does language (rarely selective).

Built CONCURRENTLY, outside the migration's transaction: a large table takes its writes
meanwhile.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from app.db.online import rebuild_index_concurrently

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# index name -> its leading column (the second is published_at)
INDEXES = {
    "ix_articles_source_published_at": "source",
    "ix_articles_category_published_at": "category",
}
# What the exact scan reads besides the filter columns (app.related.repository).
COVERED = ["embedding_model", "id", "external_id", "embedding"]


def _rebuild(include: list[str]) -> None:
    covering = f" INCLUDE ({', '.join(include)})" if include else ""
    with op.get_context().autocommit_block():
        for name, column in INDEXES.items():
            rebuild_index_concurrently(
                op.get_bind(), name, f"articles ({column}, published_at){covering}"
            )


def upgrade() -> None:
    _rebuild(COVERED)


def downgrade() -> None:
    _rebuild([])
