"""embedding pipeline: status, error, attempts, lease and queue time; the claiming index

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "articles",
        sa.Column(
            "embedding_status", sa.String(length=16), server_default="pending", nullable=False
        ),
    )
    op.add_column("articles", sa.Column("embedding_error", sa.Text(), nullable=True))
    op.add_column(
        "articles",
        sa.Column("embedding_attempts", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "articles",
        sa.Column("embedding_lease_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "articles",
        sa.Column(
            "embedding_queued_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=True,
        ),
    )
    # Rows embedded before the pipeline existed are done; the others wait for a worker.
    op.execute("UPDATE articles SET embedding_status = 'ready' WHERE embedding IS NOT NULL")
    op.create_check_constraint(
        op.f("ck_articles_embedding_status"),
        "articles",
        "embedding_status IN ('pending', 'ready', 'failed')",
    )
    op.create_index(
        "ix_articles_embedding_pending",
        "articles",
        ["embedding_queued_at"],
        postgresql_where=sa.text("embedding_status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_articles_embedding_pending", table_name="articles")
    op.drop_constraint(op.f("ck_articles_embedding_status"), "articles", type_="check")
    for column in (
        "embedding_queued_at",
        "embedding_lease_until",
        "embedding_attempts",
        "embedding_error",
        "embedding_status",
    ):
        op.drop_column("articles", column)
