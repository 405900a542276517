"""Labelled corpora (JSONL in the article schema plus `label` or `labels`) and the protocol
options the published reference figures use."""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Protocol:
    dedupe_exact: bool = False  # drop articles whose body repeats an earlier one exactly
    require_partner: bool = False  # ask only for articles whose label has another article
    single_label: bool = False  # keep only articles with exactly one label
    exclude_labels: tuple[str, ...] = ()  # leave out articles carrying any of these labels


@dataclass
class Corpus:
    name: str
    articles: list[dict[str, Any]]
    labels: dict[str, frozenset[str]]  # external_id -> its labels
    queries: list[str] = field(default_factory=list)  # external_ids asked about
    withheld: list[str] = field(default_factory=list)  # metadata fields that repeat the label

    def relevant(self, query: str, candidate: str) -> bool:
        return bool(self.labels[query] & self.labels[candidate])

    def relevant_count(self, query: str) -> int:
        return self._partners[query]

    def __post_init__(self) -> None:
        members: dict[str, set[str]] = {}
        for ext_id, labels in self.labels.items():
            for label in labels:
                members.setdefault(label, set()).add(ext_id)
        self._partners: dict[str, int] = {}
        for ext_id, labels in self.labels.items():
            if len(labels) == 1:
                self._partners[ext_id] = len(members[next(iter(labels))]) - 1
            else:
                self._partners[ext_id] = len(set().union(*(members[label] for label in labels))) - 1


def _labels_of(row: dict[str, Any]) -> frozenset[str]:
    if row.get("labels"):
        return frozenset(str(label) for label in row["labels"])
    if row.get("label") is not None:
        return frozenset([str(row["label"])])
    raise ValueError(f"article {row.get('external_id')!r} has neither `label` nor `labels`")


def load_corpus(path: Path, protocol: Protocol) -> Corpus:
    articles: list[dict[str, Any]] = []
    labels: dict[str, frozenset[str]] = {}
    seen_bodies: set[str] = set()
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            row = json.loads(line)
            row_labels = _labels_of(row)
            if protocol.single_label and len(row_labels) != 1:
                continue
            if row_labels & set(protocol.exclude_labels):
                continue
            if protocol.dedupe_exact and row.get("body"):
                digest = hashlib.sha256(row["body"].encode()).hexdigest()
                if digest in seen_bodies:
                    continue
                seen_bodies.add(digest)
            articles.append(row)
            labels[row["external_id"]] = row_labels
    corpus = Corpus(path.stem, articles, labels, withheld=_withhold_label_copies(articles, labels))
    corpus.queries = [
        a["external_id"]
        for a in articles
        if not protocol.require_partner or corpus.relevant_count(a["external_id"]) > 0
    ]
    return corpus


def _withhold_label_copies(
    articles: list[dict[str, Any]], labels: dict[str, frozenset[str]]
) -> list[str]:
    """Drop metadata that is the label under another name (BBC's `category` is its section, the
    label): ranking may use a publisher's category, so ingesting it would leak the answer."""
    withheld = []
    for name in ("category", "source", "tags"):
        if articles and all(
            frozenset([str(a.get(name))]) == labels[a["external_id"]] for a in articles
        ):
            withheld.append(name)
            for a in articles:
                a.pop(name, None)
    return withheld
