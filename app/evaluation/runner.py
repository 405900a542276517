"""`related eval`: load a labelled corpus through the real ingest path into a fresh database,
ask the real related path for every article, and score it against two baselines."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.orm import undefer
from tqdm import tqdm

from app.articles.bulk import IngestReport, ingest_articles
from app.articles.models import Article
from app.articles.schemas import ArticleIn
from app.db.engine import Database
from app.embedding.encoder import Encoder
from app.evaluation.corpus import Corpus
from app.evaluation.lexical import BM25
from app.evaluation.metrics import K, Scores, mean_scores, query_scores
from app.related.repository import RelatedRepository
from app.related.schemas import RelatedQuery
from app.related.select import is_duplicate
from app.related.service import RelatedService
from app.related.statistics import CorpusIdf, load_corpus_idf
from app.related.terms import Terms

METHODS: dict[str, str] = {
    "service": "the service's ranking (default request)",
    "service, dedupe=false": "the same with copies of the article allowed, as in the baselines",
    "embedding": "plain embedding cosine (exact, over the stored vectors)",
    "embedding, dedupe": "plain cosine through the service with its duplicate rule "
    "(`ranking=vector`): the baseline on the service's terms",
    "lexical": "BM25 more-like-this (25 terms), a search engine's related query",
}


SERVICE_REQUESTS = {
    "service": RelatedQuery(limit=K),
    "service, dedupe=false": RelatedQuery(limit=K, dedupe=False),
    "embedding, dedupe": RelatedQuery(limit=K, ranking="vector"),
}


@dataclass
class Evaluation:
    corpus: str
    articles: int
    queries: int
    model: str
    scores: dict[str, Scores]
    withheld: list[str]  # metadata not ingested because it repeats the label


async def ingest(corpus: Corpus, database: Database, encoder: Encoder) -> None:
    items = [ArticleIn.model_validate(a) for a in corpus.articles]
    with tqdm(total=len(items), desc=f"ingest {corpus.name}", unit="article") as bar:
        await ingest_articles(items, database, encoder, 256, bar, IngestReport())


async def _stored(database: Database) -> dict[str, Article]:
    async with database.sessions() as session:
        query = select(Article).options(undefer(Article.term_hashes), undefer(Article.term_counts))
        return {a.external_id: a for a in await session.scalars(query)}


def _text(article: Article) -> str:
    return " ".join(f"{article.title} {article.summary or ''} {article.body}".split())


def _is_duplicate(query: Article, other: Article) -> bool:
    """An exact copy (the same headline and text), or a near one by the service's own rule
    (app.related.select). The same body under another headline counts only by that rule: short
    abstracts and boilerplate bodies repeat across different stories."""
    if query.embedding is None or other.embedding is None:
        return False
    same_text = _text(query) == _text(other)
    cosine = float(np.dot(query.embedding, other.embedding))
    terms = Terms.from_bytes(query.term_hashes, query.term_counts)
    other_terms = Terms.from_bytes(other.term_hashes, other.term_counts)
    return bool(same_text) or is_duplicate(cosine, terms, other_terms)


def _score_lists(
    corpus: Corpus,
    stored: dict[str, Article],
    results: Mapping[str, Sequence[str]],
) -> Scores:
    per_query, duplicates = [], 0
    for query, ranked in results.items():
        relevant = [corpus.relevant(query, other) for other in ranked]
        per_query.append(query_scores(relevant, corpus.relevant_count(query)))
        duplicates += any(_is_duplicate(stored[query], stored[other]) for other in ranked)
    return mean_scores(per_query, duplicates)


async def _service_results(
    corpus: Corpus,
    database: Database,
    encoder: Encoder,
    stored: dict[str, Article],
    ef: int,
    corpus_idf: CorpusIdf | None,
    query: RelatedQuery,
    name: str,
) -> dict[str, list[str]]:
    """What a frontend gets from `GET /v1/articles/{id}/related` with ``query``, in process."""
    results = {}
    for ext_id in tqdm(corpus.queries, desc=name, unit="query"):
        async with database.read_pool.acquire() as connection:
            repository = RelatedRepository(connection)
            # Every site: an evaluation corpus is one site's, or judged across all of them.
            [article] = await repository.source_article(str(stored[ext_id].id), None)
            service = RelatedService(repository, encoder, ef, corpus_idf)
            items = await service.for_article(article, query)
        results[ext_id] = [item.external_id for item in items]
    return results


def _cosine_results(corpus: Corpus, stored: dict[str, Article]) -> dict[str, list[str]]:
    ids = list(stored)
    matrix = np.asarray([stored[i].embedding for i in ids], dtype=np.float32)
    position = {ext_id: i for i, ext_id in enumerate(ids)}
    results = {}
    for ext_id in tqdm(corpus.queries, desc="embedding", unit="query"):
        scores = matrix @ matrix[position[ext_id]]
        scores[position[ext_id]] = -np.inf
        top = np.argpartition(-scores, K)[:K]
        results[ext_id] = [ids[i] for i in top[np.argsort(-scores[top])]]
    return results


def _lexical_results(corpus: Corpus) -> dict[str, list[str]]:
    bm25 = BM25(
        (a["external_id"], f"{a['title']} {a.get('summary') or ''} {a.get('body') or ''}")
        for a in corpus.articles
    )
    return {
        q: bm25.more_like_this(q, K) for q in tqdm(corpus.queries, desc="lexical", unit="query")
    }


async def load(
    corpus: Corpus, database: Database, encoder: Encoder
) -> tuple[dict[str, Article], CorpusIdf | None]:
    """The corpus ingested and analyzed: its stored articles by external_id, and its idf."""
    await ingest(corpus, database, encoder)
    stored = await _stored(database)
    # Analyzed, as autovacuum would after a load this size: the corpus' word statistics.
    async with database.engine.begin() as conn:
        await conn.execute(text("ANALYZE articles"))
    async with database.read_pool.acquire() as connection:
        idf = await load_corpus_idf(connection)
    return stored, idf


async def evaluate(
    corpus: Corpus, database: Database, encoder: Encoder, ef_search: int
) -> Evaluation:
    stored, idf = await load(corpus, database, encoder)
    results = {
        name: await _service_results(corpus, database, encoder, stored, ef_search, idf, query, name)
        for name, query in SERVICE_REQUESTS.items()
    } | {
        "embedding": _cosine_results(corpus, stored),
        "lexical": _lexical_results(corpus),
    }
    return Evaluation(
        corpus=corpus.name,
        articles=len(corpus.articles),
        queries=len(corpus.queries),
        model=encoder.model_name,
        scores={m: _score_lists(corpus, stored, results[m]) for m in METHODS},
        withheld=corpus.withheld,
    )
