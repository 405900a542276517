"""search_vector: the lexemes related ranking compares

A plain column kept by a trigger (articles_fill_search_vector) whenever the title, body or
summary is written, and filled for existing rows in committed chunks. (It was first a STORED
generated column: adding one rewrites the whole table under an ACCESS EXCLUSIVE lock, which
stops every read and write of a large table for minutes. Databases made that way are turned to
the same trigger by migration 0014, without a rewrite.)

Online: the column is added without a default (a catalog change), the trigger in the same
short transaction, so every row written from then on is filled; the rows before are filled in
chunks (app.db.online.backfill), each its own transaction.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from app.db.online import backfill

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of app.articles.models.SEARCH_DOCUMENT as of this revision.
SEARCH_DOCUMENT = (
    "to_tsvector('english'::regconfig, title || ' ' || "
    "CASE WHEN body = '' THEN coalesce(summary, '') ELSE left(body, 10000) END)"
)

# The same document on NEW. A generated column is computed on every write; the document
# depends on these three columns only, so the trigger fires when one of them is written.
FILL = """
CREATE OR REPLACE FUNCTION articles_fill_search_vector() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_vector := to_tsvector('english'::regconfig, NEW.title || ' ' ||
        CASE WHEN NEW.body = '' THEN coalesce(NEW.summary, '') ELSE left(NEW.body, 10000) END);
    RETURN NEW;
END
$$
"""
TRIGGER = (
    "CREATE TRIGGER articles_fill_search_vector BEFORE INSERT OR UPDATE OF title, body, summary "
    "ON articles FOR EACH ROW EXECUTE FUNCTION articles_fill_search_vector()"
)


def upgrade() -> None:
    # Each statement is written to run again: a run that gave up on a lock, or was stopped
    # during the backfill, is started again from this revision (migrations/env.py).
    op.execute("ALTER TABLE articles ADD COLUMN IF NOT EXISTS search_vector tsvector")
    op.execute(FILL)
    op.execute("DROP TRIGGER IF EXISTS articles_fill_search_vector ON articles")
    op.execute(TRIGGER)
    with op.get_context().autocommit_block():
        backfill(
            op.get_bind(),
            f"search_vector = {SEARCH_DOCUMENT}",
            "search_vector IS NULL",
            "0002 search_vector",
        )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS articles_fill_search_vector ON articles")
    op.execute("DROP FUNCTION IF EXISTS articles_fill_search_vector()")
    op.execute("ALTER TABLE articles DROP COLUMN IF EXISTS search_vector")
