"""The planner's row estimates are kept per filter set for a while (app.related.estimates)."""

import uuid
from datetime import UTC, datetime

from app.related.estimates import RowEstimates
from app.related.repository import Filters


class Planner:
    """Stands in for RelatedRepository.estimated_rows: counts the EXPLAINs it was asked for."""

    def __init__(self, rows: float = 42.0) -> None:
        self.rows = rows
        self.asked: list[Filters] = []

    async def __call__(self, model: str, filters: Filters) -> float:
        self.asked.append(filters)
        return self.rows


async def test_the_same_filters_ask_the_planner_once() -> None:
    planner, estimates = Planner(), RowEstimates()
    filters = Filters(source=["a"], category=["sport"])
    assert await estimates.get("m", filters, planner) == 42.0
    planner.rows = 7.0
    assert await estimates.get("m", filters, planner) == 42.0
    assert len(planner.asked) == 1
    # Another model or another filter set is another question.
    assert await estimates.get("other", filters, planner) == 7.0
    assert await estimates.get("m", Filters(source=["b"]), planner) == 7.0
    assert len(planner.asked) == 3


async def test_exclusions_share_an_estimate_and_are_left_out_of_it() -> None:
    planner, estimates = Planner(), RowEstimates()
    first = Filters(source=["a"], exclude_id=uuid.uuid4(), exclude_ids=["x"])
    second = Filters(source=["a"], exclude_id=uuid.uuid4(), exclude_source=["b"])
    await estimates.get("m", first, planner)
    await estimates.get("m", second, planner)
    # Each page view excludes its own article: that must not make every request a new EXPLAIN.
    assert len(planner.asked) == 1
    assert planner.asked[0] == Filters(source=["a"])


async def test_time_windows_a_minute_apart_share_an_estimate() -> None:
    planner, estimates = Planner(), RowEstimates()
    # max_age_days makes a new `since` on every request.
    await estimates.get("m", Filters(since=datetime(2026, 11, 27, 10, 5, 1, tzinfo=UTC)), planner)
    await estimates.get("m", Filters(since=datetime(2026, 11, 27, 10, 5, 59, tzinfo=UTC)), planner)
    assert len(planner.asked) == 1
    await estimates.get("m", Filters(since=datetime(2026, 11, 27, 10, 6, 0, tzinfo=UTC)), planner)
    assert len(planner.asked) == 2


async def test_estimates_expire_and_the_oldest_are_dropped() -> None:
    planner = Planner()
    expired = RowEstimates(ttl_s=0)
    await expired.get("m", Filters(source=["a"]), planner)
    await expired.get("m", Filters(source=["a"]), planner)
    assert len(planner.asked) == 2

    planner, small = Planner(), RowEstimates(max_entries=2)
    for source in ("a", "b", "c"):
        await small.get("m", Filters(source=[source]), planner)
    await small.get("m", Filters(source=["c"]), planner)
    assert len(planner.asked) == 3  # "c" is kept
    await small.get("m", Filters(source=["a"]), planner)
    assert len(planner.asked) == 4  # "a" was dropped for "c"
