"""The labelled corpora of ../shared/data, read at run time (their text is never copied here)."""

import json
from pathlib import Path
from typing import Any

from app.embedding.text import embedding_text

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
BBC = "bbc-categories.jsonl"  # full articles
UCI = "uci-stories.jsonl"  # headlines only


def read_articles(data_dir: Path, name: str, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` articles of a corpus, as the article schema (extra fields ignored)."""
    articles = []
    with (data_dir / name).open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                articles.append(json.loads(line))
            if len(articles) == limit:
                break
    if len(articles) < limit:
        raise SystemExit(f"{name} has only {len(articles)} articles, {limit} asked")
    return articles


def texts_of(articles: list[dict[str, Any]]) -> list[str]:
    """What the service embeds for each article (title, summary, lead)."""
    return [embedding_text(a["title"], a.get("summary"), a.get("body")) for a in articles]
