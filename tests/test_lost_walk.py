"""An HNSW walk that never reached the article asked about is walked again, wider
(RelatedService.nearest_rows). The index is stood in for by a stub that records the calls."""

import uuid
from types import SimpleNamespace
from typing import Any

from app.related.repository import Filters
from app.related.service import LOST_WALK_EF_FACTOR, RelatedService

ARTICLE = uuid.uuid4()


class Index:
    """Answers the first walk with ``first`` and any later one with ten other rows."""

    def __init__(self, first: list[uuid.UUID]) -> None:
        self.first = first
        self.calls: list[dict[str, Any]] = []

    async def nearest(
        self, vector: Any, model: str, filters: Filters, limit: int, **kw: Any
    ) -> list[dict[str, Any]]:
        self.calls.append({"limit": limit, **kw})
        ids = self.first if len(self.calls) == 1 else [uuid.uuid4() for _ in range(limit)]
        return [{"id": i} for i in ids]


def service(index: Index) -> RelatedService:
    encoder = SimpleNamespace(model_name="m")
    return RelatedService(index, encoder, ef_search=100)  # type: ignore[arg-type]


async def test_a_walk_that_found_the_article_is_kept_without_it() -> None:
    others = [uuid.uuid4() for _ in range(10)]
    index = Index([ARTICLE, *others])
    rows = await service(index).nearest_rows(
        [0.0], Filters(exclude_id=ARTICLE), 10, 10, False, ARTICLE
    )
    assert [r["id"] for r in rows] == others
    assert len(index.calls) == 1
    # The article is let through the filters: one row more is asked for it.
    assert index.calls[0]["probe"] == ARTICLE


async def test_a_walk_that_missed_the_article_is_walked_again_wider() -> None:
    index = Index([uuid.uuid4() for _ in range(11)])
    rows = await service(index).nearest_rows(
        [0.0], Filters(exclude_id=ARTICLE), 10, 10, False, ARTICLE
    )
    assert len(index.calls) == 2
    again = index.calls[1]
    assert again["ef_search"] == 100 * LOST_WALK_EF_FACTOR
    assert again.get("probe") is None and not again.get("exact")
    assert len(rows) == 10 and ARTICLE not in {r["id"] for r in rows}


async def test_drafts_are_not_probed() -> None:
    index = Index([uuid.uuid4() for _ in range(10)])
    await service(index).nearest_rows([0.0], Filters(), 10, 10, False)
    assert len(index.calls) == 1 and index.calls[0]["probe"] is None


async def test_the_walk_holds_the_probe_beside_the_rows_asked_for() -> None:
    # limit=100 at ef_search 100: the article itself makes 101 rows, the walk must hold them.
    others = [uuid.uuid4() for _ in range(100)]
    index = Index([ARTICLE, *others])
    rows = await service(index).nearest_rows(
        [0.0], Filters(exclude_id=ARTICLE), 100, 100, False, ARTICLE
    )
    assert index.calls[0]["ef_search"] == 101
    assert len(rows) == 100 and len(index.calls) == 1
