"""embedding stored in the row (STORAGE MAIN), not out of line in the TOAST table

pgvector's type defaults to EXTENDED storage: once a row passes about 2 kB, PostgreSQL moves
its largest values out of line, and a 384-d vector (1.5 kB) is often the largest. Every
distance computed outside the HNSW index (the exact scan of a selective filter, the 100
candidates the hybrid ranking reads) then costs a TOAST index lookup and more page reads: a
2% source filter over 100k articles read 13,600 buffers for 1,958 rows. MAIN keeps the vector
in the row (out of line only as a last resort); titles and bodies still move out first.

Rows written before this migration keep their layout until they are rewritten: run
`VACUUM FULL articles` (locks the table) or pg_repack in a quiet hour to move them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE articles ALTER COLUMN embedding SET STORAGE MAIN")


def downgrade() -> None:
    op.execute("ALTER TABLE articles ALTER COLUMN embedding SET STORAGE EXTENDED")
