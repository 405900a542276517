"""search_vector kept by the trigger of 0002, no longer a generated column

Databases migrated before 0002 was made online have search_vector as a STORED generated
column; those migrated since, a plain column kept by the trigger articles_fill_search_vector.
This brings the first kind to the second, so that both are the schema the models describe.
DROP EXPRESSION keeps the stored values and changes only the catalog (no rewrite): one short
transaction, with the trigger created in it, so no row is written in between without its
lexemes. On a database of the second kind it changes nothing.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of 0002's trigger function.
FILL = """
CREATE OR REPLACE FUNCTION articles_fill_search_vector() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_vector := to_tsvector('english'::regconfig, NEW.title || ' ' ||
        CASE WHEN NEW.body = '' THEN coalesce(NEW.summary, '') ELSE left(NEW.body, 10000) END);
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.execute("ALTER TABLE articles ALTER COLUMN search_vector DROP EXPRESSION IF EXISTS")
    op.execute(FILL)
    op.execute("DROP TRIGGER IF EXISTS articles_fill_search_vector ON articles")
    op.execute(
        "CREATE TRIGGER articles_fill_search_vector BEFORE INSERT OR UPDATE OF title, body, "
        "summary ON articles FOR EACH ROW EXECUTE FUNCTION articles_fill_search_vector()"
    )


def downgrade() -> None:
    # Nothing: the column stays a plain one kept by the trigger, as 0002 now makes it (making it
    # generated again would rewrite the table); 0002's downgrade drops both.
    pass
