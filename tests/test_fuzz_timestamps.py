"""Property-based: timestamps drawn at the edges of what Python and PostgreSQL represent (years
1 and 9999, offsets to +-14:00, fractions of a second, numbers, infinities), sent as an article's
published_at and then queried every way (list with since/until and its cursors, related with
recency, a draft): never a 5xx, an accepted value reads back as the same instant, and no stored
article breaks a request about another one."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.schemas import TIMESTAMP_MAX, TIMESTAMP_MIN
from tests.live import LiveServer

OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
EDGE_DAYS = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(1, 1, 3)),
    st.datetimes(min_value=datetime(9999, 12, 29), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.datetimes(),
)
AS_TEXT = st.builds(
    lambda moment, zone: moment.replace(tzinfo=zone).isoformat(), EDGE_DAYS, OFFSETS
)
TIMESTAMPS = st.one_of(
    AS_TEXT,
    EDGE_DAYS.map(lambda moment: moment.isoformat()),  # no zone: UTC
    st.sampled_from(["infinity", "-infinity", "0", "1e20", "9999-12-31T23:59:59.999999Z"]),
    st.integers(min_value=-(10**15), max_value=10**15),
)


def in_range(value: Any) -> datetime | None:
    """The instant the API must store for ``value``, or None when it must refuse it."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return moment if TIMESTAMP_MIN <= moment <= TIMESTAMP_MAX else None


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(published=TIMESTAMPS, window=TIMESTAMPS)
def test_timestamps_at_the_edges_are_stored_exactly_or_refused_and_never_break_a_query(
    live_server: LiveServer, api_headers: dict[str, str], published: Any, window: Any
) -> None:
    with httpx.Client(base_url=live_server.url, headers=api_headers, timeout=60) as http:
        # A reference article that every query below is about or passes by.
        http.post(
            "/v1/articles?wait=true", json={"external_id": "fz-ref", "title": "Harbour storm"}
        )
        sent = http.post(
            "/v1/articles?wait=true",
            json={
                "external_id": "fz-edge",
                "title": "Harbour storm floods",
                "published_at": published,
            },
        )
        expected = in_range(published)
        if expected is None:
            assert sent.status_code == 422, (published, sent.text)
        else:
            assert sent.status_code in (200, 201), (published, sent.text)
            stored = datetime.fromisoformat(sent.json()["published_at"])
            assert stored == expected, (published, stored)

        answers = [
            http.get("/v1/articles/fz-ref/related", params={"recency": 1}),
            http.post("/v1/related", json={"title": "Harbour storm", "recency": 1}),
        ]
        for name in ("since", "until"):
            params = {name: window} if isinstance(window, str) else {name: str(window)}
            answers.append(http.get("/v1/articles", params=params))
            answers.append(http.get("/v1/articles/fz-ref/related", params=params))
        # Cursors made from the edge article: as the newest of all, and as the newest before
        # a moment just after it (the table holds other tests' articles: no full walk).
        windows: list[dict[str, str]] = [{}]
        if expected is not None and expected < TIMESTAMP_MAX:
            windows.append({"until": (expected + timedelta(seconds=1)).isoformat()})
        for window_params in windows:
            page = http.get("/v1/articles", params={"limit": 1, **window_params})
            answers.append(page)
            cursor = page.json()["next_cursor"] if page.status_code == 200 else None
            if cursor:
                answers.append(
                    http.get("/v1/articles", params={"limit": 1, "cursor": cursor, **window_params})
                )
        for answer in answers:
            assert answer.status_code < 500, (published, window, answer.request.url, answer.text)
        assert answers[0].status_code == 200 and answers[1].status_code == 200
