"""`related eval --history K`: recommendations from a reader's history, measured.

For each K, HISTORIES histories are drawn (seeded: the same every run): an article is drawn
among those whose label has more than K articles (so a label weighs as much as it has
articles, as in the per-article evaluation), then K random articles of that label are the
history. Every method answers with 10 articles, never one of the history; an answer's article
is relevant when it carries that label. P@10 counts the articles of the label, nDCG@10 is
against the label's other articles (the history excluded).

The methods: the plain mean-vector baseline (exact cosine of the normalised mean of the
history's vectors, numpy over the stored vectors), and POST /v1/recommend's service in process
with each combination (app.recommend.service) and each ranking.
"""

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from app.articles.models import Article
from app.db.engine import Database
from app.embedding.encoder import Encoder
from app.evaluation.corpus import Corpus
from app.evaluation.metrics import K, Scores, mean_scores, query_scores
from app.evaluation.runner import load
from app.recommend.schemas import RecommendIn
from app.recommend.service import Combination, RecommendService
from app.related.repository import RelatedRepository
from app.related.schemas import Ranking
from app.related.service import RelatedService
from app.related.statistics import CorpusIdf

BASELINE = "mean vector"
SERVICE: dict[str, tuple[Combination, Ranking]] = {
    "service: mean, hybrid": ("mean", "hybrid"),
    "service: best, hybrid": ("best", "hybrid"),
    "service: mean, vector": ("mean", "vector"),
    "service: best, vector": ("best", "vector"),
}
METHODS: dict[str, str] = {
    BASELINE: "exact cosine of the mean of the history's vectors (numpy), the baseline",
    "service: mean, hybrid": "POST /v1/recommend: the mean of the history, hybrid ranking "
    "(the default)",
    "service: best, hybrid": "each positive ranked on its own (hybrid), a candidate's best",
    "service: mean, vector": "the mean of the history, ranking=vector (dedupe on)",
    "service: best, vector": "each positive searched on its own, a candidate's best cosine "
    "(Qdrant's best_score), ranking=vector",
}


@dataclass(frozen=True)
class History:
    label: str
    articles: list[str]  # external_ids


@dataclass
class HistoryEvaluation:
    corpus: str
    articles: int
    model: str
    seed: int
    histories: dict[int, int]  # K -> how many
    scores: dict[int, dict[str, Scores]]  # K -> method -> scores


def draw(corpus: Corpus, k: int, count: int, seed: int) -> list[History]:
    members: dict[str, list[str]] = {}
    for ext_id in sorted(corpus.labels):
        for label in corpus.labels[ext_id]:
            members.setdefault(label, []).append(ext_id)
    eligible = [
        ext_id
        for ext_id in sorted(corpus.labels)
        if any(len(members[label]) > k for label in corpus.labels[ext_id])
    ]
    if not eligible:
        return []
    rng = np.random.default_rng([seed, k])
    histories = []
    for _ in range(count):
        drawn = eligible[int(rng.integers(len(eligible)))]
        labels = sorted(label for label in corpus.labels[drawn] if len(members[label]) > k)
        label = labels[int(rng.integers(len(labels)))]
        chosen = rng.choice(len(members[label]), size=k, replace=False)
        histories.append(History(label, [members[label][int(i)] for i in chosen]))
    return histories


def _scores(corpus: Corpus, histories: Sequence[History], answers: Sequence[list[str]]) -> Scores:
    sizes: dict[str, int] = {}
    for labels in corpus.labels.values():
        for label in labels:
            sizes[label] = sizes.get(label, 0) + 1
    per_history = [
        query_scores(
            [h.label in corpus.labels[other] for other in answer],
            sizes[h.label] - len(h.articles),
        )
        for h, answer in zip(histories, answers, strict=True)
    ]
    return mean_scores(per_history, 0)


def _baseline(stored: dict[str, Article], histories: Sequence[History]) -> list[list[str]]:
    ids = sorted(stored)  # ties (copies) go to the same article whatever order rows came in
    matrix = np.asarray([stored[i].embedding for i in ids], dtype=np.float32)
    position = {ext_id: i for i, ext_id in enumerate(ids)}
    answers = []
    for history in histories:
        rows = [position[e] for e in history.articles]
        mean = matrix[rows].mean(axis=0)
        scores = matrix @ (mean / np.linalg.norm(mean))
        scores[rows] = -np.inf
        answers.append([ids[i] for i in np.argsort(-scores, kind="stable")[:K]])
    return answers


async def _service(
    database: Database,
    encoder: Encoder,
    stored: dict[str, Article],
    ef_search: int,
    idf: CorpusIdf | None,
    histories: Sequence[History],
    combination: Combination,
    ranking: Ranking,
    name: str,
) -> list[list[str]]:
    answers = []
    for history in tqdm(histories, desc=name, unit="history"):
        request = RecommendIn(
            positive=[str(stored[e].id) for e in history.articles], limit=K, ranking=ranking
        )
        async with database.read_pool.acquire() as connection:
            related = RelatedService(RelatedRepository(connection), encoder, ef_search, idf)
            out = await RecommendService(related).recommend(request, None, combination)
        answers.append([item.external_id for item in out.items])
    return answers


async def evaluate_histories(
    corpus: Corpus,
    database: Database,
    encoder: Encoder,
    ef_search: int,
    ks: Sequence[int],
    count: int,
    seed: int,
) -> HistoryEvaluation:
    stored, idf = await load(corpus, database, encoder)
    scores: dict[int, dict[str, Scores]] = {}
    drawn: dict[int, int] = {}
    for k in ks:
        histories = draw(corpus, k, count, seed)
        drawn[k] = len(histories)
        answers = {BASELINE: _baseline(stored, histories)}
        for name, (combination, ranking) in SERVICE.items():
            answers[name] = await _service(
                database, encoder, stored, ef_search, idf, histories, combination, ranking, name
            )
        scores[k] = {m: _scores(corpus, histories, answers[m]) for m in METHODS}
    return HistoryEvaluation(
        corpus.name, len(corpus.articles), encoder.model_name, seed, drawn, scores
    )


def history_markdown(evaluation: HistoryEvaluation, command: str) -> str:
    lines = [
        f"# {evaluation.corpus}: recommendations from histories",
        "",
        f"{evaluation.articles} articles, model {evaluation.model}, seed {evaluation.seed}.",
        "",
        f"Reproduce: `{command}`",
        "",
        "| K | histories | method | P@10 | nDCG@10 | P@10 - baseline | nDCG@10 - baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, by_method in evaluation.scores.items():
        base = by_method[BASELINE]
        for method, s in by_method.items():
            lines.append(
                f"| {k} | {evaluation.histories[k]} | {method} | {s.p_at_10:.3f} | "
                f"{s.ndcg_at_10:.3f} | {s.p_at_10 - base.p_at_10:+.3f} | "
                f"{s.ndcg_at_10 - base.ndcg_at_10:+.3f} |"
            )
    lines += ["", *(f"* **{m}**: {what}" for m, what in METHODS.items())]
    return "\n".join(lines) + "\n"


def write_history_reports(evaluation: HistoryEvaluation, out_dir: Path, command: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"{evaluation.corpus}-history"
    payload = {
        "corpus": evaluation.corpus,
        "articles": evaluation.articles,
        "model": evaluation.model,
        "seed": evaluation.seed,
        "command": command,
        "histories": evaluation.histories,
        "scores": {
            str(k): {m: asdict(s) for m, s in by_method.items()}
            for k, by_method in evaluation.scores.items()
        },
    }
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md")]
    paths[0].write_text(json.dumps(payload, indent=2) + "\n")
    paths[1].write_text(history_markdown(evaluation, command))
    return paths
