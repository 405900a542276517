"""api_keys.kind and api_keys.origins: publishable keys for web pages

A publishable key is put in a page's HTML (the embeddable related box), so it is read only,
accepted only from the origins named here, and rate limited per visitor. Existing keys are
secret keys with no origins.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "api_keys",
        sa.Column("kind", sa.String(length=16), server_default="secret", nullable=False),
    )
    op.add_column(
        "api_keys",
        sa.Column(
            "origins",
            postgresql.ARRAY(sa.String(length=255)),
            server_default="{}",
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("api_keys", "origins")
    op.drop_column("api_keys", "kind")
