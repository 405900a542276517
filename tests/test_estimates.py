"""The planner's row estimates are kept per filter set for a while (app.related.estimates), and
decide between a walk of the index and an exact scan (app.related.service.exact_first)."""

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from app.related import service
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


@pytest.mark.parametrize(
    ("rows", "total", "exact"),
    [
        (1_958, 100_000, True),  # the bench's 2% source at 100k: few rows
        (9_999, 10_000, True),  # few rows, whatever their share
        (20_000, 1_000_000, True),  # 2% of a million: a small share, exact scan of 20,000
        (20_000, 100_000, False),  # a section of 20% of the archive: walked
        (49_999, 1_000_000, True),  # just under 5%
        (50_000, 1_000_000, False),  # 5%: walked
        (100_000, 10_000_000, True),  # 1% of ten million, at the cap
        (200_000, 10_000_000, False),  # 2% of ten million: over the cap, walked
    ],
)
def test_few_rows_or_a_small_share_of_a_large_table_are_ranked_exactly(
    rows: float, total: float, exact: bool
) -> None:
    assert service.exact_first(rows, total) is exact


class TwoEstimates:
    """Stands in for RelatedRepository.estimated_rows: ``rows`` for the filters asked about,
    ``total`` for the model's whole table (no filters)."""

    def __init__(self, rows: float, total: float) -> None:
        self.rows, self.total = rows, total
        self.asked: list[Filters] = []

    async def estimated_rows(self, model: str, filters: Filters) -> float:
        self.asked.append(filters)
        return self.total if filters == Filters() else self.rows


class Model:
    model_name = "m"


def search_service(repository: TwoEstimates) -> Any:
    return service.RelatedService(
        repository,  # type: ignore[arg-type]
        Model(),  # type: ignore[arg-type]
        ef_search=51,
        row_estimates=RowEstimates(),
    )


async def test_a_two_percent_filter_of_a_million_articles_is_ranked_exactly() -> None:
    repository = TwoEstimates(rows=20_000, total=1_000_000)
    searches = search_service(repository)
    assert await searches._exact_first(Filters(source=["wire"]))
    assert repository.asked == [Filters(source=["wire"]), Filters()]
    # Both estimates are kept: the next page view asks the planner nothing.
    assert await searches._exact_first(Filters(source=["wire"]))
    assert len(repository.asked) == 2


async def test_the_table_is_estimated_only_when_its_size_decides() -> None:
    few = TwoEstimates(rows=500, total=1_000_000)
    assert await search_service(few)._exact_first(Filters(category=["sport"]))
    many = TwoEstimates(rows=400_000, total=1_000_000)
    assert not await search_service(many)._exact_first(Filters(category=["sport"]))
    assert few.asked == [Filters(category=["sport"])]
    assert many.asked == [Filters(category=["sport"])]
