"""title_hashes: the headline's words, hashed like term_hashes, kept by the same trigger

The ranking weighs the article's headline words more (app.related.rerank). Computing them per
request cost a to_tsvector and tsvector_terms() call on every related lookup (about 0.2 ms, and
4 ms on a connection's first use while the dictionary loads); stored, they are a column read.

Online: the column and the trigger's new body in one short transaction (no rewrite; rows written
from then on are filled), the rows before filled in committed chunks.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from app.db.online import backfill

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same document as the search_vector column (frozen copy of SEARCH_DOCUMENT, on NEW).
FILL = """
CREATE OR REPLACE FUNCTION articles_fill_lexemes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.body_words := regexp_count(NEW.body, '\\S+');
    SELECT t.hashes, t.counts INTO NEW.term_hashes, NEW.term_counts
    FROM tsvector_terms(to_tsvector('english'::regconfig, NEW.title || ' ' || CASE
        WHEN NEW.body = '' THEN coalesce(NEW.summary, '') ELSE left(NEW.body, 10000) END)) AS t;
    NEW.title_hashes := (SELECT t.hashes
                         FROM tsvector_terms(to_tsvector('english'::regconfig, NEW.title)) AS t);
    RETURN NEW;
END
$$
"""

# Revision 0007's function, for downgrade.
FILL_0007 = """
CREATE OR REPLACE FUNCTION articles_fill_lexemes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.body_words := regexp_count(NEW.body, '\\S+');
    SELECT t.hashes, t.counts INTO NEW.term_hashes, NEW.term_counts
    FROM tsvector_terms(to_tsvector('english'::regconfig, NEW.title || ' ' || CASE
        WHEN NEW.body = '' THEN coalesce(NEW.summary, '') ELSE left(NEW.body, 10000) END)) AS t;
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    # Written to run again from the start (migrations/env.py retries a run that gave up on a
    # lock; a stopped backfill resumes).
    op.execute("ALTER TABLE articles ADD COLUMN IF NOT EXISTS title_hashes bytea")
    op.execute(FILL)
    with op.get_context().autocommit_block():
        backfill(
            op.get_bind(),
            "title_hashes = (SELECT t.hashes "
            "FROM tsvector_terms(to_tsvector('english'::regconfig, title)) AS t)",
            "title_hashes IS NULL",
            "0008 title_hashes",
        )


def downgrade() -> None:
    op.execute(FILL_0007)
    op.execute("ALTER TABLE articles DROP COLUMN IF EXISTS title_hashes")
