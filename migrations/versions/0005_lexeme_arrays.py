"""lexemes and lexeme_counts: each article's words as arrays, kept by a trigger

Related ranking reads the lexemes of 100 candidates per request. Unnesting each candidate's
tsvector at read time cost more than the rest of the query; the arrays are written with the
article instead, so a read fetches them as they are.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same document as the search_vector column (frozen copy of SEARCH_DOCUMENT, on NEW).
FILL = """
CREATE FUNCTION articles_fill_lexemes() RETURNS trigger LANGUAGE plpgsql AS $$
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
    op.add_column("articles", sa.Column("lexemes", postgresql.ARRAY(sa.Text()), nullable=True))
    op.add_column(
        "articles", sa.Column("lexeme_counts", postgresql.ARRAY(sa.Integer()), nullable=True)
    )
    op.execute(FILL)
    op.execute(
        "CREATE TRIGGER articles_fill_lexemes BEFORE INSERT OR UPDATE OF title, body, summary "
        "ON articles FOR EACH ROW EXECUTE FUNCTION articles_fill_lexemes()"
    )
    op.execute(
        "UPDATE articles SET lexemes = tsvector_to_array(search_vector), lexeme_counts = "
        "ARRAY(SELECT cardinality(u.positions) FROM unnest(search_vector) AS u)"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER articles_fill_lexemes ON articles")
    op.execute("DROP FUNCTION articles_fill_lexemes()")
    op.drop_column("articles", "lexeme_counts")
    op.drop_column("articles", "lexemes")
