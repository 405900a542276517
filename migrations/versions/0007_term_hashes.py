"""term_hashes, term_counts, body_words: each article's words as bytes the ranking decodes at once

Related ranking reads the words of 50 candidates per request. As a text[] (migration 0005)
every word became a Python string in the driver, then was hashed again in Python; as bytes
(8-byte hashes, 2-byte counts, in the tsvector's lexeme order) a candidate is two
`np.frombuffer` calls. `tsvector_terms()` is the one definition of both, used by the trigger,
the backfill below and the service for a draft's text. `body_words` (Python's
`len(body.split())`) tells the ranking whether the text is long without reading the body, which
is TOASTed and compressed for most full articles.

The statistics target of `search_vector` is pinned at 100 whatever the server's default: ANALYZE
then keeps its 1,000 most common lexemes, the corpus word statistics related ranking reads
(app.related.statistics), as measured.

Online: the columns, the function and the trigger's new body in one short transaction (no
rewrite; rows written from then on are filled), the rows before filled in committed chunks from
their search_vector, then the old columns dropped (a catalog change). The downgrade fills
lexemes the same way.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from app.db.online import backfill

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# hashtextextended: PostgreSQL's own 64-bit text hash (the one hash partitioning relies on).
# Declared as returning a set (of one row) so that the planner inlines it into the calling
# statement: called from the trigger, a non-inlined SQL function is planned again for every row
# (0.2 to 0.3 ms per insert; inlined, 0.06: 2,000 headlines with the trigger, psql timing).
TERMS = """
CREATE OR REPLACE FUNCTION tsvector_terms(document tsvector)
RETURNS TABLE (hashes bytea, counts bytea)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(string_agg(int8send(hashtextextended(u.lexeme, 0)), ''::bytea ORDER BY u.n),
                    ''::bytea),
           coalesce(string_agg(int2send(least(greatest(cardinality(u.positions), 1), 32767)::int2),
                               ''::bytea ORDER BY u.n), ''::bytea)
    FROM unnest(document) WITH ORDINALITY AS u(lexeme, positions, weights, n)
$$
"""

# The same document as the search_vector column (frozen copy of SEARCH_DOCUMENT, on NEW).
FILL = """
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

FILL_0005 = """
CREATE OR REPLACE FUNCTION articles_fill_lexemes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    document tsvector := to_tsvector('english'::regconfig, NEW.title || ' ' ||
        CASE WHEN NEW.body = '' THEN coalesce(NEW.summary, '') ELSE left(NEW.body, 10000) END);
BEGIN
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
        "ALTER TABLE articles ADD COLUMN IF NOT EXISTS term_hashes bytea, "
        "ADD COLUMN IF NOT EXISTS term_counts bytea, ADD COLUMN IF NOT EXISTS body_words integer"
    )
    op.execute(TERMS)
    op.execute(FILL)
    with op.get_context().autocommit_block():
        # search_vector is the same document, already computed.
        backfill(
            op.get_bind(),
            "body_words = regexp_count(body, '\\S+'), (term_hashes, term_counts) = "
            "(SELECT t.hashes, t.counts FROM tsvector_terms(search_vector) AS t)",
            "term_hashes IS NULL",
            "0007 term_hashes",
        )
    op.execute(
        "ALTER TABLE articles DROP COLUMN IF EXISTS lexeme_counts, DROP COLUMN IF EXISTS lexemes"
    )
    op.execute("ALTER TABLE articles ALTER COLUMN search_vector SET STATISTICS 100")


def downgrade() -> None:
    op.execute("ALTER TABLE articles ALTER COLUMN search_vector SET STATISTICS -1")
    op.execute(
        "ALTER TABLE articles ADD COLUMN IF NOT EXISTS lexemes text[], "
        "ADD COLUMN IF NOT EXISTS lexeme_counts integer[]"
    )
    op.execute(FILL_0005)
    with op.get_context().autocommit_block():
        backfill(
            op.get_bind(),
            "lexemes = tsvector_to_array(search_vector), lexeme_counts = "
            "ARRAY(SELECT cardinality(u.positions) FROM unnest(search_vector) AS u)",
            "lexemes IS NULL",
            "0007 down: lexemes",
        )
    op.execute("DROP FUNCTION IF EXISTS tsvector_terms(tsvector)")
    op.execute(
        "ALTER TABLE articles DROP COLUMN IF EXISTS body_words, "
        "DROP COLUMN IF EXISTS term_counts, DROP COLUMN IF EXISTS term_hashes"
    )
