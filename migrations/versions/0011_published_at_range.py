"""published_at within what Python and the API represent (0001-01-02 to 9999-12-30 UTC)

PostgreSQL's timestamptz reaches far wider (4713 BC to 294276 AD, and +-infinity) than Python's
datetime (years 1 to 9999); the driver reads +-infinity as a datetime without a zone and fails
on the rest. One such row among a related query's candidates failed that request, for every
article whose candidates it was. The API refuses such values since this revision; the
constraint keeps rows written by other means in range too.

Online: rows out of range (found through the published_at index) are clamped first, the
constraint is added NOT VALID (an instant's lock; new rows are checked from then on) and then
validated in its own transaction, which reads the table under a lock that lets reads and
writes go on.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

from app.db.online import validate_constraint

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ck_articles_published_at_range"
LOW = "'0001-01-02 00:00:00+00'::timestamptz"
HIGH = "'9999-12-30 23:59:59+00'::timestamptz"


def upgrade() -> None:
    op.execute(
        f"UPDATE articles SET published_at = greatest(least(published_at, {HIGH}), {LOW}) "
        f"WHERE published_at < {LOW} OR published_at > {HIGH}"
    )
    # Written to run again (migrations/env.py retries a run that gave up on a lock).
    op.execute(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_constraint WHERE conname = '{NAME}'
                           AND conrelid = 'articles'::regclass) THEN
                ALTER TABLE articles ADD CONSTRAINT {NAME}
                    CHECK (published_at >= {LOW} AND published_at <= {HIGH}) NOT VALID;
            END IF;
        END $$
        """
    )
    with op.get_context().autocommit_block():
        validate_constraint(op.get_bind(), "articles", NAME)


def downgrade() -> None:
    op.execute(f"ALTER TABLE articles DROP CONSTRAINT IF EXISTS {NAME}")
