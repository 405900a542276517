"""lexemes and lexeme_counts: each article's words as arrays, kept by a trigger

Related ranking reads the lexemes of 100 candidates per request. Unnesting each candidate's
tsvector at read time cost more than the rest of the query; the arrays are written with the
article instead, so a read fetches them as they are.

Online: the columns and the trigger are added in one short transaction (no rewrite, so every
row written from then on is filled), then the rows before are filled in committed chunks from
their search_vector.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from app.db.online import backfill

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same document as the search_vector column (frozen copy of SEARCH_DOCUMENT, on NEW).
FILL = """
CREATE OR REPLACE FUNCTION articles_fill_lexemes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    document tsvector := to_tsvector('english'::regconfig, NEW.title || ' ' ||
        CASE WHEN NEW.body = '' THEN coalesce(NEW.summary, '') ELSE left(NEW.body, 10000) END);
BEGIN
    -- Both in the tsvector's own (sorted) lexeme order: counts[i] belongs to lexemes[i].
    NEW.lexemes := tsvector_to_array(document);
    NEW.lexeme_counts := ARRAY(SELECT cardinality(u.positions) FROM unnest(document) AS u);
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    # Written to run again from the start (migrations/env.py retries a run that gave up on a
    # lock; a stopped backfill resumes).
    op.execute(
        "ALTER TABLE articles ADD COLUMN IF NOT EXISTS lexemes text[], "
        "ADD COLUMN IF NOT EXISTS lexeme_counts integer[]"
    )
    op.execute(FILL)
    op.execute("DROP TRIGGER IF EXISTS articles_fill_lexemes ON articles")
    op.execute(
        "CREATE TRIGGER articles_fill_lexemes BEFORE INSERT OR UPDATE OF title, body, summary "
        "ON articles FOR EACH ROW EXECUTE FUNCTION articles_fill_lexemes()"
    )
    with op.get_context().autocommit_block():
        backfill(
            op.get_bind(),
            "lexemes = tsvector_to_array(search_vector), lexeme_counts = "
            "ARRAY(SELECT cardinality(u.positions) FROM unnest(search_vector) AS u)",
            "lexemes IS NULL",
            "0005 lexemes",
        )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS articles_fill_lexemes ON articles")
    op.execute("DROP FUNCTION IF EXISTS articles_fill_lexemes()")
    op.execute(
        "ALTER TABLE articles DROP COLUMN IF EXISTS lexeme_counts, DROP COLUMN IF EXISTS lexemes"
    )
