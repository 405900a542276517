"""articles.site and api_keys.sites: one service for many sites

Every article belongs to a site (`default` unless the publisher names one), external ids are
unique per site, and each API key is bound to sites (NULL: every site, an aggregator's key).

Online, in three steps:

1. The two columns, added with a constant default: catalog only, no rewrite (PostgreSQL 11+),
   an instant's lock under the migrations' lock timeout. Existing articles are in `default`;
   existing keys are bound to `default`, where every existing article is: nothing they see
   changes, and nothing widens when another site is added later.
2. Indexes, built CONCURRENTLY: the unique index of (external_id, site), which finds an article
   by external_id within some sites or, for an aggregator, in every site; (site, published_at,
   id) for a site's list pages and the planner's estimate of a site's share; the two covering
   filter indexes of 0009 with `site` among their included columns, so that a source or
   category filter of a site's key is still answered from the index alone.
3. The unique constraint moved to the new index (ADD CONSTRAINT ... USING INDEX) and the one on
   external_id alone dropped, in one short transaction.

Downgrade reverses each step; it fails, changing nothing, while one external_id is used in two
sites (uniqueness on external_id alone could not hold).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

from app.db.online import (
    create_index_concurrently,
    drop_index_concurrently,
    no_lock_timeout,
    rebuild_index_concurrently,
)

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_UNIQUE = "uq_articles_external_id"
NEW_UNIQUE = "uq_articles_external_id_site"
SITE_INDEX = "ix_articles_site_published_at"
# Frozen copies: the covering indexes of 0009 (name -> leading column) and what they include.
COVERING = {
    "ix_articles_source_published_at": "source",
    "ix_articles_category_published_at": "category",
}
COVERED_BEFORE = ["embedding_model", "id", "external_id", "embedding"]
COVERED_AFTER = [*COVERED_BEFORE, "site"]


def _rebuild_covering(include: list[str]) -> None:
    # As 0009 builds them: the new one beside the old, then the old dropped and the new renamed.
    for name, column in COVERING.items():
        rebuild_index_concurrently(
            op.get_bind(),
            name,
            f"articles ({column}, published_at) INCLUDE ({', '.join(include)})",
        )


def _swap_unique(add: str, drop: str) -> None:
    # Written to run again (migrations/env.py retries a run that gave up on a lock).
    op.execute(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_constraint WHERE conname = '{add}'
                           AND conrelid = 'articles'::regclass) THEN
                ALTER TABLE articles ADD CONSTRAINT {add} UNIQUE USING INDEX {add};
            END IF;
        END $$
        """
    )
    op.execute(f"ALTER TABLE articles DROP CONSTRAINT IF EXISTS {drop}")


def upgrade() -> None:
    op.execute(
        "ALTER TABLE articles ADD COLUMN IF NOT EXISTS site varchar(255) NOT NULL DEFAULT 'default'"
    )
    # Existing keys, and keys made by the previous release during a rolling deploy, are bound
    # to `default`; NULL (every site) is only ever set on purpose (`--all-sites`).
    op.execute(
        "ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS sites varchar(255)[] DEFAULT '{default}'"
    )
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        create_index_concurrently(bind, NEW_UNIQUE, "articles (external_id, site)", unique=True)
        create_index_concurrently(bind, SITE_INDEX, "articles (site, published_at, id)")
        _rebuild_covering(COVERED_AFTER)
    _swap_unique(NEW_UNIQUE, OLD_UNIQUE)
    with op.get_context().autocommit_block(), no_lock_timeout(op.get_bind()):
        # The planner knows nothing of a new column until it is analyzed, and adding one does
        # not make autovacuum analyze: it would take `site = 'default'` (every row of a single
        # publisher) for 0.5% of the table and rank each related request by reading all of it
        # instead of walking the index. ANALYZE samples the table under a lock that blocks
        # neither reads nor writes.
        op.execute("ANALYZE articles (site)")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        # Fails (and changes nothing) while one external_id is in two sites.
        create_index_concurrently(bind, OLD_UNIQUE, "articles (external_id)", unique=True)
    _swap_unique(OLD_UNIQUE, NEW_UNIQUE)
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        _rebuild_covering(COVERED_BEFORE)
        drop_index_concurrently(bind, SITE_INDEX)
    op.execute("ALTER TABLE api_keys DROP COLUMN IF EXISTS sites")
    op.execute("ALTER TABLE articles DROP COLUMN IF EXISTS site")
