"""The planner's row estimates for filter sets asked about recently, kept for a minute.

Whether a filtered search walks the HNSW index or ranks the filtered rows exactly depends on how
many rows the filters keep (app.related.service). The estimate is an EXPLAIN: statistics, no
scan, but one round trip. A news site asks with the same few filter sets on every page view
(its own source, a section, the last days), and the estimate changes only when ANALYZE runs,
so each process keeps the recent ones.
"""

import dataclasses
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime

from app.related.repository import Filters

TTL_S = 60.0
MAX_ENTRIES = 1024


def _minute(value: datetime | None) -> datetime | None:
    # `max_age_days` makes a new `since` on every request: a minute apart, the estimate is the same.
    return None if value is None else value.replace(second=0, microsecond=0)


def estimate_key(model: str, filters: Filters) -> Hashable:
    # The caller's sites are part of the key: one site's estimate is not another's.
    return (
        model,
        None if filters.sites is None else tuple(filters.sites),
        tuple(filters.source),
        tuple(filters.category),
        tuple(filters.language),
        _minute(filters.since),
        _minute(filters.until),
    )


def restrictive_part(filters: Filters) -> Filters:
    """The filters that can keep few rows: exclusions leave the estimate as good as unchanged."""
    return dataclasses.replace(
        filters, exclude_source=(), exclude_category=(), exclude_ids=(), exclude_id=None
    )


class RowEstimates:
    def __init__(self, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    async def get(
        self,
        model: str,
        filters: Filters,
        estimate: Callable[[str, Filters], Awaitable[float]],
    ) -> float:
        """The estimate for ``filters``, from ``estimate`` when not kept or over a minute old."""
        key = estimate_key(model, filters)
        now = time.monotonic()
        kept = self._entries.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        rows = await estimate(model, restrictive_part(filters))
        self._entries[key] = (now + self.ttl_s, rows)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return rows
