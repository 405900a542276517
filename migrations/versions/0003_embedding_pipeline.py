"""embedding pipeline: status, error, attempts, lease and queue time; the claiming index

Online: the columns are added with constant (or now()) defaults, which PostgreSQL records in
the catalog without rewriting the table. embedding_status is added with the default 'ready',
which every existing row then reads without being written, and its default becomes 'pending'
in the same transaction, for the rows written from then on; only rows never embedded are
written, set back to pending in committed chunks (before the pipeline every article was
embedded as it was stored: there are few). The status check is added NOT VALID in the same
short transaction and validated afterwards under a lock that lets reads and writes go on, and
the claiming index is built concurrently.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from app.db.online import (
    backfill,
    create_index_concurrently,
    drop_index_concurrently,
    validate_constraint,
)

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECK = "ck_articles_embedding_status"
INDEX = "ix_articles_embedding_pending"


def upgrade() -> None:
    # Written to run again from the start (migrations/env.py retries a run that gave up on a
    # lock; a stopped backfill resumes).
    op.execute(
        "ALTER TABLE articles "
        "ADD COLUMN IF NOT EXISTS embedding_status varchar(16) NOT NULL DEFAULT 'ready', "
        "ADD COLUMN IF NOT EXISTS embedding_error text, "
        "ADD COLUMN IF NOT EXISTS embedding_attempts integer NOT NULL DEFAULT 0, "
        "ADD COLUMN IF NOT EXISTS embedding_lease_until timestamptz, "
        "ADD COLUMN IF NOT EXISTS embedding_queued_at timestamptz DEFAULT now()"
    )
    # Existing rows keep reading 'ready' (the value recorded when the column was added); rows
    # inserted from now on are pending.
    op.execute("ALTER TABLE articles ALTER COLUMN embedding_status SET DEFAULT 'pending'")
    op.execute(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_constraint WHERE conname = '{CHECK}'
                           AND conrelid = 'articles'::regclass) THEN
                ALTER TABLE articles ADD CONSTRAINT {CHECK}
                    CHECK (embedding_status IN ('pending', 'ready', 'failed')) NOT VALID;
            END IF;
        END $$
        """
    )
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        # Rows embedded before the pipeline existed are done; the others wait for a worker.
        # (A row read 'ready' without a vector can only be one from before the pipeline.)
        backfill(
            bind,
            "embedding_status = 'pending'",
            "embedding IS NULL AND embedding_status = 'ready'",
            "0003 embedding_status",
        )
        validate_constraint(bind, "articles", CHECK)
        create_index_concurrently(
            bind,
            INDEX,
            "articles (embedding_queued_at) WHERE embedding_status = 'pending'",
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        drop_index_concurrently(op.get_bind(), INDEX)
    op.execute(
        f"ALTER TABLE articles DROP CONSTRAINT IF EXISTS {CHECK}, "
        "DROP COLUMN IF EXISTS embedding_queued_at, "
        "DROP COLUMN IF EXISTS embedding_lease_until, "
        "DROP COLUMN IF EXISTS embedding_attempts, "
        "DROP COLUMN IF EXISTS embedding_error, "
        "DROP COLUMN IF EXISTS embedding_status"
    )
