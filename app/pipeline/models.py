"""The embedding queue's counts, kept as it changes (migration 0012).

Counting articles per status and model with a GROUP BY reads the whole table: seconds at a
million rows, every 15 s per process for the queue-depth gauge. Instead, statement triggers on
`articles` append the change of each statement (+n/-n per status and model) to this table, and
a read sums it; the process that reads compacts it now and then (app.pipeline.repository). Rows
are only ever inserted by writers, so concurrent writers never wait on a shared counter row.
"""

from sqlalchemy import BigInteger, Column, String, Table, Text

from app.db.base import Base

embedding_counts = Table(
    "embedding_counts",
    Base.metadata,
    Column("embedding_status", String(16), nullable=False),
    Column("embedding_model", Text, nullable=True),
    Column("articles", BigInteger, nullable=False),
)
