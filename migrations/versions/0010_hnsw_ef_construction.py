"""HNSW graph built with ef_construction 200: better recall with a shorter walk per query

The candidate list used while the graph is built (ef_construction) decides how well its
neighbourhoods are linked; ef_search, the list of each query, decides what a query pays. On the
100k bench corpus (docs/performance.md, "Tuning chosen"), recall@10 of the service's walk against
exact search, 600 articles:

    ef_construction 64:  ef_search 40 0.982, 64 0.985, 100 0.989
    ef_construction 200: ef_search 40 0.996, 64 0.998, 100 0.999

so the better graph at ef_search 40 beats the old one at 100, and a query at 40 costs
PostgreSQL about 40% less CPU than one at 100 (pgbench: 1,500 to 1,950 against 950 to 1,100
statements/s). The price is paid once per row: the
build takes about twice as long (100k: 71 s against 37 s) and so does each insert (2,000
vectors into a 100k graph: 2.9 against 1.2 ms each; into a new one, 1.65 against 1.09). A news
site reads an article's related box far more often than it writes the article.

Built CONCURRENTLY under another name, then swapped: a large table keeps taking writes and
answering queries (with the old graph) meanwhile.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

from app.db.online import rebuild_index_concurrently

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_articles_embedding_hnsw"


def _rebuild(ef_construction: int) -> None:
    with op.get_context().autocommit_block():
        rebuild_index_concurrently(
            op.get_bind(),
            NAME,
            "articles USING hnsw (embedding vector_cosine_ops) "
            f"WITH (m = 16, ef_construction = {ef_construction})",
        )


def upgrade() -> None:
    _rebuild(200)


def downgrade() -> None:
    _rebuild(64)
