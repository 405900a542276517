"""On a Citus coordinator: articles distributed by site (nothing on a single PostgreSQL)

Migrations 0001 to 0015 run on a Citus coordinator as they do on one PostgreSQL: `articles` is an
ordinary table of the coordinator until this revision, so their DDL, triggers and backfills are
PostgreSQL's own. This one, only where the `citus` extension is installed in the database:

* the counting triggers of 0012 go (statement triggers writing a table of the coordinator
  cannot run on the workers' shards); the queue counts articles itself there
  (app.pipeline.repository);
* the primary key becomes (id, site): on a distributed table every unique constraint includes
  the distribution column (the external id's is (external_id, site) since 0015); ids stay
  unique, being random UUIDs;
* the row triggers' functions are propagated to the workers, and the table is distributed by
  site (`create_distributed_table`, as many shards as the server's citus.shard_count): each
  shard has its own copy of every index, the HNSW graph included, and the row triggers;
* the column settings that Citus does not pass on to the shards (STORAGE MAIN of 0006,
  STATISTICS 100 of 0007) are set on each shard.

Not online: create_distributed_table copies the rows to the shards while writes wait. Run it on
a new cluster before loading (docs/operations.md, "Past one machine: Citus"). Downgrade takes
the table back to the coordinator (undistribute_table) and restores the key and the counts.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

from app.db.online import no_lock_timeout

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of 0012's triggers and its function names.
COUNT_TRIGGERS = {
    "articles_count_insert": "AFTER INSERT ON articles REFERENCING NEW TABLE AS new_rows",
    "articles_count_update": (
        "AFTER UPDATE ON articles REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    ),
    "articles_count_delete": "AFTER DELETE ON articles REFERENCING OLD TABLE AS old_rows",
}
# The functions the row triggers call (0002, 0007/0008), needed on every worker.
TRIGGER_FUNCTIONS = (
    "tsvector_terms(tsvector)",
    "articles_fill_search_vector()",
    "articles_fill_lexemes()",
)
SHARD_COLUMN_SETTINGS = (
    "ALTER TABLE %s ALTER COLUMN embedding SET STORAGE MAIN",
    "ALTER TABLE %s ALTER COLUMN search_vector SET STATISTICS 100",
)


def on_citus() -> bool:
    return bool(
        op.get_bind().exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'citus'").scalar()
    )


def is_distributed() -> bool:
    return bool(
        op.get_bind()
        .exec_driver_sql(
            "SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'articles'::regclass"
        )
        .scalar()
    )


def _primary_key(columns: str) -> None:
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        with no_lock_timeout(bind):
            op.execute("DROP INDEX CONCURRENTLY IF EXISTS pk_articles_next")
            op.execute(f"CREATE UNIQUE INDEX CONCURRENTLY pk_articles_next ON articles ({columns})")
    op.execute(
        "ALTER TABLE articles DROP CONSTRAINT pk_articles, "
        "ADD CONSTRAINT pk_articles PRIMARY KEY USING INDEX pk_articles_next"
    )


def upgrade() -> None:
    if not on_citus() or is_distributed():
        return
    for name in (*COUNT_TRIGGERS, "articles_truncate_counts"):
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON articles")
    _primary_key("id, site")
    # Row triggers on a distributed table are refused unless allowed: ours change only the row
    # they fire for, which is what makes them safe on a shard.
    op.execute("SET LOCAL citus.enable_unsafe_triggers = on")
    for function in TRIGGER_FUNCTIONS:
        op.execute(f"SELECT create_distributed_function('{function}')")
    op.execute("SELECT create_distributed_table('articles', 'site')")
    for command in SHARD_COLUMN_SETTINGS:
        op.execute(f"SELECT run_command_on_shards('articles', $cmd${command}$cmd$)")


def downgrade() -> None:
    if not on_citus() or not is_distributed():
        return
    op.execute("SET LOCAL citus.enable_unsafe_triggers = on")
    op.execute("SELECT undistribute_table('articles')")
    _primary_key("id")
    for name, when in COUNT_TRIGGERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON articles")
        op.execute(
            f"CREATE TRIGGER {name} {when} FOR EACH STATEMENT "
            "EXECUTE FUNCTION articles_count_embedding()"
        )
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
