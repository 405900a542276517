"""embedding_counts: the queue's counts per status and model, without scanning articles

Statement triggers on articles append each statement's change per (status, model) to
embedding_counts (app/pipeline/models.py says why); TRUNCATE empties it.

Online: the triggers are created in a short transaction; the baseline is counted afterwards in
one statement that also deletes the changes its snapshot already includes (a data-modifying
WITH and its main query share one snapshot), so writes committed meanwhile are counted exactly
once. The count reads the table without blocking reads or writes.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DELTAS = """
CREATE OR REPLACE FUNCTION articles_count_embedding() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO embedding_counts
        SELECT embedding_status, embedding_model, count(*) FROM new_rows GROUP BY 1, 2;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO embedding_counts
        SELECT embedding_status, embedding_model, -count(*) FROM old_rows GROUP BY 1, 2;
    ELSE
        INSERT INTO embedding_counts
        SELECT embedding_status, embedding_model, sum(n) FROM (
            SELECT embedding_status, embedding_model, 1 AS n FROM new_rows
            UNION ALL
            SELECT embedding_status, embedding_model, -1 FROM old_rows
        ) AS change
        GROUP BY 1, 2 HAVING sum(n) <> 0;
    END IF;
    RETURN NULL;
END
$$
"""

EMPTIED = """
CREATE OR REPLACE FUNCTION articles_truncate_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM embedding_counts;
    RETURN NULL;
END
$$
"""

TRIGGERS = {
    "articles_count_insert": "AFTER INSERT ON articles REFERENCING NEW TABLE AS new_rows",
    "articles_count_update": (
        "AFTER UPDATE ON articles REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    ),
    "articles_count_delete": "AFTER DELETE ON articles REFERENCING OLD TABLE AS old_rows",
}


def upgrade() -> None:
    # Written to run again from the start (migrations/env.py retries a run that gave up on a
    # lock; one stopped after the triggers were committed is finished by the next run).
    op.execute(
        "CREATE TABLE IF NOT EXISTS embedding_counts (embedding_status varchar(16) NOT NULL, "
        "embedding_model text, articles bigint NOT NULL)"
    )
    op.execute(DELTAS)
    op.execute(EMPTIED)
    for name, when in TRIGGERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON articles")
        op.execute(
            f"CREATE TRIGGER {name} {when} FOR EACH STATEMENT "
            "EXECUTE FUNCTION articles_count_embedding()"
        )
    op.execute("DROP TRIGGER IF EXISTS articles_truncate_counts ON articles")
    op.execute(
        "CREATE TRIGGER articles_truncate_counts AFTER TRUNCATE ON articles "
        "FOR EACH STATEMENT EXECUTE FUNCTION articles_truncate_counts()"
    )
    with op.get_context().autocommit_block():
        op.execute(
            "WITH counted AS (DELETE FROM embedding_counts RETURNING 1) "
            "INSERT INTO embedding_counts "
            "SELECT embedding_status, embedding_model, count(*) FROM articles GROUP BY 1, 2"
        )


def downgrade() -> None:
    for name in (*TRIGGERS, "articles_truncate_counts"):
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON articles")
    op.execute("DROP FUNCTION IF EXISTS articles_truncate_counts()")
    op.execute("DROP FUNCTION IF EXISTS articles_count_embedding()")
    op.execute("DROP TABLE IF EXISTS embedding_counts")
