"""search_vector: the lexemes related ranking compares

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of app.articles.models.SEARCH_DOCUMENT as of this revision.
SEARCH_DOCUMENT = (
    "to_tsvector('english'::regconfig, title || ' ' || "
    "CASE WHEN body = '' THEN coalesce(summary, '') ELSE left(body, 10000) END)"
)


def upgrade() -> None:
    op.add_column(
        "articles",
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(SEARCH_DOCUMENT, persisted=True),
            nullable=True,
        ),
    )


def downgrade() -> None:
    op.drop_column("articles", "search_vector")
