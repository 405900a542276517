"""The relevance harness: protocol options, metrics, and a full run on the example stories."""

import json
import math
from pathlib import Path
from typing import Any

import pytest

from app.evaluation.corpus import Protocol, load_corpus
from app.evaluation.lexical import BM25
from app.evaluation.metrics import query_scores
from app.evaluation.report import write_reports
from app.evaluation.runner import METHODS, evaluate
from tests.conftest import EXAMPLES


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_protocol_options(tmp_path: Path) -> None:
    rows = [
        {"external_id": "a", "title": "A", "body": "same text", "label": "x"},
        {"external_id": "b", "title": "B", "body": "same text", "label": "x"},  # duplicate body
        {"external_id": "c", "title": "C", "body": "other", "label": "x"},
        {"external_id": "d", "title": "D", "body": "alone", "label": "y"},  # no partner
        {"external_id": "e", "title": "E", "body": "two", "labels": ["x", "z"]},
        {"external_id": "f", "title": "F", "body": "drop", "labels": ["earn"]},
    ]
    path = write_jsonl(tmp_path / "c.jsonl", rows)

    everything = load_corpus(path, Protocol())
    assert len(everything.articles) == 6 and len(everything.queries) == 6
    assert everything.relevant("a", "e") and not everything.relevant("a", "d")
    assert everything.relevant_count("e") == 3  # a, b, c share x

    strict = load_corpus(
        path,
        Protocol(
            dedupe_exact=True, require_partner=True, single_label=True, exclude_labels=("earn",)
        ),
    )
    assert [a["external_id"] for a in strict.articles] == ["a", "c", "d"]
    assert strict.queries == ["a", "c"]


def test_metrics_by_hand() -> None:
    scores = query_scores([False, True, False, True] + [False] * 6, relevant_total=2)
    assert scores.p_at_1 == 0 and scores.p_at_5 == 0.4 and scores.p_at_10 == 0.2
    assert scores.mrr_at_10 == 0.5
    ideal = 1 + 1 / math.log2(3)
    assert scores.ndcg_at_10 == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)
    # A short list counts its empty slots as misses.
    assert query_scores([True], relevant_total=5).p_at_10 == 0.1


def test_bm25_more_like_this_prefers_shared_rare_terms() -> None:
    bm25 = BM25(
        [
            ("q", "Volcano erupts near Catania, ash closes airport"),
            ("same", "Catania airport shut as volcano ash drifts"),
            ("other", "Airport strike delays flights across the country"),
        ]
    )
    assert bm25.more_like_this("q", 2) == ["same", "other"]


async def test_full_run_on_the_example_stories(client: Any, app: Any, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
    for row in rows:  # the story slug is the label; the unrelated articles get one each
        slug = row["external_id"].rsplit("-", 1)[0]
        row["label"] = row["external_id"] if slug == "demo-misc" else slug
    corpus = load_corpus(
        write_jsonl(tmp_path / "stories.jsonl", rows), Protocol(require_partner=True)
    )
    database, encoder = app.state.database, app.state.encoder

    evaluation = await evaluate(corpus, database, encoder, ef_search=100)

    assert evaluation.articles == 28 and evaluation.queries == 24
    service, embedding = evaluation.scores["service"], evaluation.scores["embedding"]
    # Each story's three other articles lead the list: the best is always one of them, all three
    # are in the top five, and nearly always the top three (the same-section prior may put an
    # article from the story's section just above the story's local-angle piece).
    assert service.p_at_1 == embedding.p_at_1 == 1.0
    assert service.p_at_5 == pytest.approx(3 / 5) and service.ndcg_at_10 >= 0.99
    assert service.duplicate_rate == 0
    assert 0 < evaluation.scores["lexical"].p_at_1 <= 1
    # The service's requests beside the default: copies allowed, and plain cosine with dedupe.
    assert list(evaluation.scores) == list(METHODS)
    assert evaluation.scores["embedding, dedupe"].duplicate_rate == 0
    assert evaluation.scores["service, dedupe=false"].p_at_1 == 1.0

    paths = write_reports(evaluation, Protocol(), tmp_path / "out", "related eval stories.jsonl")
    assert json.loads(paths[0].read_text())["scores"]["service"]["p_at_10"] == service.p_at_10
    assert "| service |" in paths[1].read_text()
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
