"""Latency and throughput of GET /v1/articles/{id}/related over HTTP, against the same SQL direct.

    .venv/bin/python bench/related.py [--articles 100000] [--seconds 10] [--clients 1,16]
        [--workers 1,2] [--rankings plain,hybrid] [--filters none,2%,0.1%] [--seeds 3000]
        [--recall-queries 200] [--baseline DIR] [--chart docs/related-latency.png]
        [--results bench/results] [--reload]

Corpus (built once, kept in --data-dir for re-runs; --reload rebuilds it): --seeds real articles
of the four corpora in ../shared/data (read at run time, never copied) are embedded once with the
service's model (vectors cached in --cache-dir). Each of the --articles synthetic articles copies
one seed: its headline, an 80-word window of its body (so the stored tsvector is real text), and
the seed's vector plus Gaussian noise (cosine about 0.9 to the seed, 0.8 between two copies).
Seeds are drawn with Zipf-like weights, so a few stories have hundreds of articles and most a
handful. Metadata: 200 sources with Zipf-like shares, except `source-000`, which holds 2% of the
corpus (the selective filter); the seed's category; languages 85% en; publication dates a burst
of a few days around a story date in the last year. Rows go straight into `articles` with COPY
and explicit columns (the model is not involved; `search_vector` and the word columns are
written by the table's triggers; `embedding_status` is set to `ready` when a migration has
added it); the HNSW index is dropped for the load and rebuilt with its migration's definition.

Measured, for each ranking (`plain`: ranking=vector&dedupe=false, one index query; `hybrid`: the
default, 50 candidates reranked in Python), under each filter (none; `source=source-000`, 2%;
`since=` the newest 0.1% of the corpus), at each number of clients, side by side in one run:

* direct: the service's own statements (RelatedService.candidates) sent from this process on a
  pool configured like the service's read pool (app/db/reads.py; --clients connections): with a
  filter the planner's row estimate (kept for a minute, app/related/estimates.py), then the
  search by the article's id (a walk of the index, or the exact scan; again when a walk misses
  the article or comes back short). One round trip each, as the service does; no HTTP, no
  FastAPI, no rerank.
* http w1, http w2: N processes of `uvicorn app.main:create_app --factory` (one worker each;
  uvloop, httptools, log level warning as RELATED_LOG_LEVEL=warning), each on its own port, as
  N processes behind a load balancer: the clients' connections are spread over them in turn.
  (`uvicorn --workers 2` shares one listening socket, and the first worker to accept took all
  16 connections: `ss -tnp` during a run; its rows measured one busy worker.) Driven by a
  minimal HTTP/1.1 keep-alive client on asyncio + uvloop in this process (one connection per
  client, each sending its next request when the previous answer is read).

Each run warms up for a second, then counts --seconds. p50 and p99 are per request, measured
by the client; req/s is completed requests over the run; any non-200 answer or transport error
counts as an error. CPU: the 2 cores are shared by this process (the load generator, or the
direct client), the API processes, PostgreSQL and anything else on the machine; each run prints
the share of each, from /proc, and the load average. Memory: resident set (VmRSS) of the API
processes with the model loaded, summed: idle after start-up, the peak under load (sampled every
100 ms, each process's peak) and idle again after the runs (shared pages count once per process).

With --baseline DIR (another source tree, e.g. `git archive <commit> | tar -x -C DIR`), "before
wN" API processes run that tree's code beside this one's, in every run.

Recall@10: for --recall-queries articles under each filter, the plain answer over HTTP (of each
tree) against an exact search (SET LOCAL enable_indexscan = off): mean, minimum, the worst
articles; and the plain and hybrid lists short of 10 though 10 articles match.

Every run writes its record (arguments, each run's figures and CPU shares, recall, memory) to
--results/related-<UTC timestamp>.json.
"""

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import asyncpg
import numpy as np
import uvloop
from pgvector.asyncpg import register_vector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.config import Settings
from app.db import migrate
from app.db.embedded import EmbeddedPostgres
from app.db.reads import create_read_pool, read_ef_search
from app.db.url import to_async_url
from app.embedding.model import load_embedder
from app.related.estimates import RowEstimates
from app.related.repository import RelatedRepository
from app.related.schemas import RelatedQuery
from app.related.service import RelatedService
from bench.corpora import BBC, DATA_DIR, UCI, read_articles, texts_of
from bench.server import free_port

ROOT = Path(__file__).resolve().parents[1]
CORPORA = (UCI, "mind-subcategories.jsonl", BBC, "reuters-topics.jsonl")
FILTER_SOURCE = "source-000"
FILTER_SHARE = 0.02
SOURCES = 200
LANGUAGES = (("en", 0.85), ("de", 0.05), ("fr", 0.04), ("es", 0.03), ("it", 0.03))
CATEGORIES = ("news", "business", "sport", "tech", "politics", "entertainment", "world")
NOISE = 0.45  # norm of the noise added to a seed's unit vector: cosine ~0.9 to it
BODY_WORDS = 80
LIMIT = 10
TICKS = os.sysconf("SC_CLK_TCK")
REQUEST_TIMEOUT_S = 30.0  # a request slower than this counts as an error

ARTICLE_COLUMNS = (
    "id, external_id, title, body, summary, url, source, authors, language, category, tags, "
    "published_at, created_at, updated_at, content_hash, embedding, embedding_model, "
    "embedding_hash"
)
RESULT_COLUMNS = "id, external_id, title, url, source, published_at, summary"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- corpus ----------------------------------------------------------------------------------


def seed_articles(data_dir: Path, count: int) -> list[dict[str, Any]]:
    per = count // len(CORPORA)
    seeds = []
    for name in CORPORA:
        seeds += read_articles(data_dir, name, per)
    return seeds


def seed_vectors(seeds: list[dict[str, Any]], cache_dir: Path, settings: Settings) -> np.ndarray:
    """The model's vectors of the seeds, computed once and cached (keyed by model and ids)."""
    key = hashlib.sha256(
        (settings.embedding_model + "\n" + "\n".join(s["external_id"] for s in seeds)).encode()
    ).hexdigest()[:16]
    path = cache_dir / f"seed-vectors-{key}.npy"
    if path.exists():
        return np.load(path)
    embedder = load_embedder(settings)
    texts = texts_of(seeds)
    started = time.perf_counter()
    vectors = np.vstack([embedder.encode(texts[i : i + 64]) for i in range(0, len(texts), 64)])
    print(f"embedded {len(texts)} seed texts in {time.perf_counter() - started:.0f} s")
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors.astype(np.float32))
    return vectors.astype(np.float32)


def synthetic_rows(
    seeds: list[dict[str, Any]], vectors: np.ndarray, count: int, model: str, seed: int
) -> list[tuple[Any, ...]]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(seeds))
    weights = np.empty(len(seeds))
    weights[order] = 1.0 / np.arange(1, len(seeds) + 1) ** 0.8
    picks = rng.choice(len(seeds), size=count, p=weights / weights.sum())
    noise = rng.standard_normal((count, vectors.shape[1]), dtype=np.float32)
    noisy = vectors[picks] + noise * (NOISE / np.sqrt(vectors.shape[1]))
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)

    source_weights = 1.0 / np.arange(1, SOURCES) ** 0.7
    other_sources = rng.choice(SOURCES - 1, size=count, p=source_weights / source_weights.sum())
    in_filter = rng.random(count) < FILTER_SHARE
    language_names = [name for name, _ in LANGUAGES]
    languages = rng.choice(len(LANGUAGES), size=count, p=[p for _, p in LANGUAGES])
    now = datetime.now(UTC)
    story_dates = [now - timedelta(days=float(d)) for d in rng.uniform(3, 365, len(seeds))]
    lags = rng.exponential(1.5, count)
    starts = rng.random(count)

    rows = []
    for i in range(count):
        s = seeds[picks[i]]
        words = (s.get("body") or "").split()
        start = int(starts[i] * max(0, len(words) - BODY_WORDS))
        body = " ".join(words[start : start + BODY_WORDS])
        source = FILTER_SOURCE if in_filter[i] else f"source-{other_sources[i] + 1:03d}"
        published = min(now, story_dates[picks[i]] + timedelta(days=float(lags[i])))
        external_id = f"bench-{i}"
        rows.append(
            (
                uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | i, version=4),
                external_id,
                s["title"],
                body,
                None,
                f"https://{source}.example/{i}",
                source,
                [],
                language_names[languages[i]],
                s.get("category") or CATEGORIES[picks[i] % len(CATEGORIES)],
                [],
                published,
                now,
                now,
                hashlib.sha256(external_id.encode()).hexdigest(),
                noisy[i],
                model,
                hashlib.sha256(f"{model}\n{external_id}".encode()).hexdigest(),
            )
        )
    return rows


async def connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await register_vector(conn)
    return conn


async def build_corpus(url: str, args: argparse.Namespace, model: str) -> None:
    conn = await connect(url)
    try:
        have = await conn.fetchval("SELECT count(*) FROM articles WHERE external_id LIKE 'bench-%'")
        total = await conn.fetchval("SELECT count(*) FROM articles")
        if not args.reload and have == total == args.articles:
            print(f"corpus: {have:,} articles already loaded (--reload to rebuild)")
            return
        seeds = seed_articles(args.shared_data, args.seeds)
        vectors = seed_vectors(seeds, args.cache_dir, Settings())
        started = time.perf_counter()
        rows = synthetic_rows(seeds, vectors, args.articles, model, args.seed)
        print(f"generated {len(rows):,} articles in {time.perf_counter() - started:.1f} s")

        columns = [c.strip() for c in ARTICLE_COLUMNS.split(",")]
        # Another branch adds embedding_status (pending/ready/failed): these rows are ready.
        status = await conn.fetchval(
            "SELECT 1 FROM information_schema.columns "
            "WHERE table_name = 'articles' AND column_name = 'embedding_status'"
        )
        if status:
            columns.append("embedding_status")
            rows = [(*row, "ready") for row in rows]
        index = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_articles_embedding_hnsw'"
        )
        started = time.perf_counter()
        await conn.execute("TRUNCATE articles")
        await conn.execute("DROP INDEX IF EXISTS ix_articles_embedding_hnsw")
        for start in range(0, len(rows), 10_000):
            await conn.copy_records_to_table(
                "articles", records=rows[start : start + 10_000], columns=columns
            )
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.execute("SET max_parallel_maintenance_workers = 1")
        await conn.execute(index)  # the migration's own definition (m, ef_construction, ops)
        built = time.perf_counter() - started
        await conn.execute("VACUUM ANALYZE articles")
        print(
            f"corpus: {len(rows):,} articles copied in {loaded:.0f} s, HNSW index rebuilt in "
            f"{built:.0f} s ({index.split(' WITH ')[-1]}); load average {load_average()}"
        )
    finally:
        await conn.close()


# --- measurements ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchFilter:
    """One filter of the runs: a source, or a time window from `since` (none: no filter)."""

    name: str  # as printed: "none", "2%", "0.1%"
    param: str | None = None  # the query parameter: "source" or "since"
    value: str | None = None
    share: float = 1.0  # of the corpus it keeps

    @property
    def params(self) -> list[tuple[str, str]]:
        return [] if self.param is None or self.value is None else [(self.param, self.value)]

    @property
    def sql(self) -> str:
        """The filter in SQL, on parameter $4 (exact_neighbours)."""
        return {None: "", "source": " AND source = $4", "since": " AND published_at >= $4"}[
            self.param
        ]

    @property
    def sql_value(self) -> Any:
        return datetime.fromisoformat(self.value) if self.param == "since" else self.value

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "param": self.param, "value": self.value, "share": self.share}


NO_FILTER = BenchFilter("none")


@dataclass
class Run:
    ranking: str
    filter: BenchFilter
    clients: int
    path: str
    latencies: list[float] = field(default_factory=list)  # ms
    errors: int = 0
    seconds: float = 0.0
    load: str = ""
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        # Successful requests only (errors are counted, not timed).
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    def record(self) -> dict[str, Any]:
        api, pg = cpu_ms(self)
        return {
            "ranking": self.ranking,
            "filter": self.filter.name,
            "clients": self.clients,
            "path": self.path,
            "requests": len(self.latencies),
            "errors": self.errors,
            "seconds": self.seconds,
            "req_s": self.rate,
            "p50_ms": self.p(50),
            "p99_ms": self.p(99),
            "api_cpu_ms": api,
            "postgres_cpu_ms": pg,
            "load": self.load,
            "cpu_share": self.cpu,
        }


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU seconds used so far by each process (those that still exist)."""
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return used


def machine_cpu_seconds() -> float:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    busy = sum(int(v) for v in fields) - int(fields[3]) - int(fields[4])  # minus idle, iowait
    return busy / TICKS


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class CpuMeter:
    """CPU seconds of each party over a run, as a share of the machine's cores."""

    def __init__(self, parties: dict[str, Callable[[], list[int]]]) -> None:
        self.parties = parties

    def read(self) -> dict[str, Any]:
        values: dict[str, Any] = {name: cpu_seconds(pids()) for name, pids in self.parties.items()}
        values["machine"] = machine_cpu_seconds()
        values["wall"] = time.perf_counter()
        return values

    @staticmethod
    def shares(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
        wall = (after["wall"] - before["wall"]) * (os.cpu_count() or 1)
        shares = {}
        for name in before:
            if name in ("wall", "machine"):
                continue
            # Per process: one that started during the run counts from zero; one that ended
            # during it is missing from `after` and its last moments are lost (a small undercount).
            used = sum(t - before[name].get(pid, 0.0) for pid, t in after[name].items())
            shares[name] = 100 * used / wall
        machine = 100 * (after["machine"] - before["machine"]) / wall
        shares["other"] = max(0.0, machine - sum(shares.values()))
        return shares


class RssSampler(threading.Thread):
    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak = 0.0
        self.samples: list[float] = []
        self.running = threading.Event()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            if self.running.is_set():
                value = rss_mib(process_tree(self.root))
                self.samples.append(value)
                self.peak = max(self.peak, value)
            time.sleep(0.1)


async def drive(
    clients: int,
    seconds: float,
    request: Callable[[int, int], Coroutine[Any, Any, bool]],
    run: Run,
    meter: CpuMeter,
) -> None:
    """``clients`` loops, each awaiting ``request(client, i)``; a second of warm-up first."""

    async def loop(client: int, stop: float, record: bool) -> None:
        i = 0
        while time.perf_counter() < stop:
            started = time.perf_counter()
            try:
                ok = await asyncio.wait_for(request(client, i), REQUEST_TIMEOUT_S)
            except Exception as exc:  # a transport error is an error, not the end of the bench
                print(f"  {run.path}: {exc.__class__.__name__}: {exc}", file=sys.stderr)
                ok = False
            if record and ok:
                run.latencies.append((time.perf_counter() - started) * 1000)
            elif record:
                run.errors += 1
            i += 1

    warm = time.perf_counter() + 1.0
    await asyncio.gather(*(loop(c, warm, False) for c in range(clients)))
    before = meter.read()
    started = time.perf_counter()
    await asyncio.gather(*(loop(c, started + seconds, True) for c in range(clients)))
    run.seconds = time.perf_counter() - started
    run.cpu = CpuMeter.shares(before, meter.read())
    run.load = load_average()


class HttpClient:
    """One keep-alive HTTP/1.1 connection; the smallest client that measures the server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        try:
            self.writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            return status, await self.reader.readexactly(length)
        except Exception:
            self.close()  # the next request opens a new connection
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def related_path(article_id: str, ranking: str, bench_filter: BenchFilter) -> str:
    params: list[tuple[str, str]] = []
    if ranking == "plain":
        params += [("ranking", "vector"), ("dedupe", "false")]
    params += bench_filter.params
    query = "?" + urlencode(params) if params else ""
    return f"/v1/articles/{article_id}/related{query}"


class DirectSql:
    """The statements the service sends for one related request (RelatedService.candidates: the
    search from the stored article by id, with the planner's row estimate before it when
    filtered, kept for a minute as each service process keeps it), sent from this process on a
    pool configured like the service's read pool. No HTTP, no FastAPI, no rerank."""

    def __init__(self, pool: asyncpg.Pool, model: str, ef_search: int) -> None:
        self.pool = pool
        self.model = SimpleNamespace(model_name=model)
        self.ef_search = ef_search
        self.row_estimates = RowEstimates()  # kept across requests, as the service's process does

    async def related(self, article_id: uuid.UUID, ranking: str, bench_filter: BenchFilter) -> bool:
        hybrid = ranking == "hybrid"
        query = RelatedQuery(
            ranking="hybrid" if hybrid else "vector",
            dedupe=hybrid,
            limit=LIMIT,
            **{k: v if k == "since" else [v] for k, v in bench_filter.params},
        )
        async with self.pool.acquire() as conn:
            service = RelatedService(
                RelatedRepository(conn),
                self.model,  # type: ignore[arg-type]
                self.ef_search,
                row_estimates=self.row_estimates,
            )
            found = await service.candidates(article_id, query)
        return found is not None and len(found.rows) >= LIMIT


async def warm_up(direct: DirectSql, ids: list[uuid.UUID], concurrency: int = 4) -> None:
    async def worker(start: int) -> None:
        for article_id in ids[start::concurrency]:
            await direct.related(article_id, "plain", NO_FILTER)

    await asyncio.gather(*(worker(start) for start in range(concurrency)))


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    rss: RssSampler
    idle_after_start: float = 0.0
    idle_after_load: float = 0.0


def start_server(database_url: str, log: Path, ef_search: int, tree: Path = ROOT) -> Server:
    """One single-worker API process on a port of its own, running the code in ``tree``."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELATED_")}
    env.update(
        RELATED_DATABASE_URL=database_url,
        RELATED_MIGRATE_ON_START="false",
        RELATED_LOG_LEVEL="warning",
        RELATED_HNSW_EF_SEARCH=str(ef_search),
        # Reads without a key, as a public frontend's (and bench/load.py's) are.
        RELATED_ANONYMOUS_READS="true",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(tree),
    )
    command = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    output = log.open("wb")
    process = subprocess.Popen(command, cwd=tree, env=env, stdout=output, stderr=subprocess.STDOUT)
    sampler = RssSampler(process.pid)
    sampler.start()
    return Server(port, process, sampler)


async def wait_ready(server: Server) -> None:
    """Ready when it answers /readyz."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"the API on port {server.port} exited during start-up")
        try:
            client = HttpClient(server.port)
            status, _ = await client.get("/readyz")
            client.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.5)
    raise SystemExit(f"the API on port {server.port} not ready within 300 s")


@dataclass
class Recall:
    """Recall@10 of the plain answers over HTTP against exact search, and the lists that came
    back short of 10 (plain and hybrid) though at least 10 articles match."""

    filter: str
    code: str  # which API processes answered: "after" or "before"
    queries: int = 0
    recalls: list[float] = field(default_factory=list)
    short_plain: int = 0
    short_hybrid: int = 0
    worst: list[str] = field(default_factory=list)  # articles with the lowest recall

    @property
    def mean(self) -> float:
        return statistics.mean(self.recalls) if self.recalls else float("nan")

    @property
    def min(self) -> float:
        return min(self.recalls) if self.recalls else float("nan")

    def record(self) -> dict[str, Any]:
        return {
            "filter": self.filter,
            "code": self.code,
            "queries": self.queries,
            "mean": self.mean,
            "min": self.min,
            "below_0_9": sum(r < 0.9 for r in self.recalls),
            "short_plain": self.short_plain,
            "short_hybrid": self.short_hybrid,
            "worst": self.worst,
        }


async def exact_neighbours(
    pool: asyncpg.Pool, model: str, ids: list[uuid.UUID], bench_filter: BenchFilter
) -> dict[uuid.UUID, set[str]]:
    """The true 10 nearest of each article under the filter, by a scan of every row it keeps."""
    where = "embedding_model = $2 AND id <> $3" + bench_filter.sql
    sql = f"SELECT id FROM articles WHERE {where} ORDER BY embedding <=> $1 LIMIT {LIMIT}"
    exact = {}
    async with pool.acquire() as conn:
        for article_id in ids:
            async with conn.transaction():
                await conn.execute("SET LOCAL enable_indexscan = off")
                vector = await conn.fetchval(
                    "SELECT embedding FROM articles WHERE id = $1", article_id
                )
                args = [vector, model, article_id]
                args += [bench_filter.sql_value] if bench_filter.param else []
                exact[article_id] = {str(r["id"]) for r in await conn.fetch(sql, *args)}
    return exact


async def recall_at_10(
    port: int,
    code: str,
    ids: list[uuid.UUID],
    bench_filter: BenchFilter,
    exact: dict[uuid.UUID, set[str]],
) -> Recall:
    client = HttpClient(port)
    result = Recall(bench_filter.name, code, len(ids))
    scored = []
    for article_id in ids:
        expected = exact[article_id]
        items = {}
        for ranking in ("plain", "hybrid"):
            status, body = await client.get(related_path(str(article_id), ranking, bench_filter))
            if status != 200:
                raise SystemExit(f"related answered {status}: {body[:300]!r}")
            items[ranking] = json.loads(body)["items"]
        got = {item["id"] for item in items["plain"]}
        recall = len(got & expected) / len(expected) if expected else 1.0
        result.recalls.append(recall)
        scored.append((recall, str(article_id)))
        result.short_plain += len(items["plain"]) < len(expected)
        result.short_hybrid += len(items["hybrid"]) < len(expected)
    client.close()
    result.worst = [f"{article_id} {recall:.2f}" for recall, article_id in sorted(scored)[:3]]
    return result


def postmaster_tree(data_dir: Path | None) -> Callable[[], list[int]]:
    def pids() -> list[int]:
        if data_dir is None or not (data_dir / "postmaster.pid").exists():
            return []
        return process_tree(int((data_dir / "postmaster.pid").read_text().split()[0]))

    return pids


async def bench_filters(pool: asyncpg.Pool) -> list[BenchFilter]:
    """No filter; `source-000` (2%); the newest 0.1% of the corpus (a `since` window)."""
    total = await pool.fetchval("SELECT count(*) FROM articles")
    source = await pool.fetchval("SELECT count(*) FROM articles WHERE source = $1", FILTER_SOURCE)
    newest = await pool.fetchval(
        "SELECT date_trunc('second', published_at) FROM articles "
        "ORDER BY published_at DESC OFFSET $1 LIMIT 1",
        total // 1000,
    )
    window = await pool.fetchval("SELECT count(*) FROM articles WHERE published_at >= $1", newest)
    return [
        NO_FILTER,
        BenchFilter("2%", "source", FILTER_SOURCE, source / total),
        BenchFilter("0.1%", "since", newest.isoformat(), window / total),
    ]


def git_commit() -> str:
    described = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    )
    return described.stdout.strip()


async def measure(args: argparse.Namespace, url: str, pg_data: Path | None) -> None:
    started_at = datetime.now(UTC)
    settings = Settings() if args.ef_search is None else Settings(hnsw_ef_search=args.ef_search)
    model = load_embedder(settings).name if args.model is None else args.model
    await build_corpus(url, args, model)

    pool = await create_read_pool(
        url, settings.model_copy(update={"db_pool_size": max(args.clients)})
    )
    sample = await pool.fetch("SELECT id FROM articles ORDER BY random() LIMIT 5000")
    ids = [r["id"] for r in sample]
    filters = [f for f in await bench_filters(pool) if f.name in args.filters]
    for f in filters:
        print(f"filter {f.name}: {f.param}={f.value} keeps {100 * f.share:.2f}% of the corpus")
    print(f"PostgreSQL shared_buffers {await pool.fetchval('SHOW shared_buffers')}")
    direct = DirectSql(pool, model, read_ef_search(settings))
    started = time.perf_counter()
    await warm_up(direct, ids)
    print(
        f"warm-up: each of the {len(ids):,} sampled articles asked once, direct, in "
        f"{time.perf_counter() - started:.0f} s (the pages they touch in shared_buffers, as on a "
        "server that has been answering for a while)"
    )

    logs = args.cache_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # "http wN": N single-worker API processes, the clients spread over them in turn; "before
    # wN" the same with the code of --baseline.
    trees = {"http": ROOT} | ({"before": args.baseline.resolve()} if args.baseline else {})
    servers: dict[str, list[Server]] = {}
    runs: list[Run] = []
    recalls: list[Recall] = []
    try:
        for workers in args.workers:
            for code, tree in trees.items():
                group = []
                for index in range(workers):
                    log = logs / f"uvicorn-{code}-w{workers}-{index}.log"
                    group.append(
                        start_server(to_async_url(url), log, settings.hnsw_ef_search, tree)
                    )
                for server in group:
                    await wait_ready(server)
                    server.idle_after_start = rss_mib(process_tree(server.process.pid))
                servers[f"{code} w{workers}"] = group
        print(f"API processes ready; load average {load_average()}")

        clients: dict[str, list[HttpClient]] = {
            name: [HttpClient(group[c % len(group)].port) for c in range(max(args.clients))]
            for name, group in servers.items()
        }
        parties: dict[str, Callable[[], list[int]]] = {
            "bench": lambda: [os.getpid()],
            "postgres": postmaster_tree(pg_data),
        }
        for name, group in servers.items():
            parties["api " + name] = lambda g=group: [
                pid for server in g for pid in process_tree(server.process.pid)
            ]
        meter = CpuMeter(parties)

        for ranking in args.rankings:
            for bench_filter in filters:
                for n in args.clients:
                    offset = random.randrange(len(ids))

                    def pick(client: int, i: int, offset: int = offset) -> uuid.UUID:
                        return ids[(offset + client * 997 + i) % len(ids)]

                    async def direct_request(
                        client: int, i: int, ranking: str = ranking, f: BenchFilter = bench_filter
                    ) -> bool:
                        return await direct.related(pick(client, i), ranking, f)

                    run = Run(ranking, bench_filter, n, "direct")
                    await drive(n, args.seconds, direct_request, run, meter)
                    runs.append(run)
                    print_run(run)
                    for name, group in servers.items():

                        async def http_request(
                            client: int,
                            i: int,
                            name: str = name,
                            ranking: str = ranking,
                            f: BenchFilter = bench_filter,
                        ) -> bool:
                            path = related_path(str(pick(client, i)), ranking, f)
                            status, _ = await clients[name][client].get(path)
                            return status == 200

                        # Fresh connections: uvicorn closes keep-alive ones idle for 5 s.
                        for client in clients[name]:
                            client.close()
                        run = Run(ranking, bench_filter, n, name)
                        for server in group:
                            server.rss.running.set()
                        await drive(n, args.seconds, http_request, run, meter)
                        for server in group:
                            server.rss.running.clear()
                        runs.append(run)
                        print_run(run)

        every = [server for group in servers.values() for server in group]
        for server in every:
            server.idle_after_load = rss_mib(process_tree(server.process.pid))
        recall_ids = ids[: args.recall_queries]
        if recall_ids:
            for bench_filter in filters:
                exact = await exact_neighbours(pool, model, recall_ids, bench_filter)
                for code in trees:
                    first = next(g for name, g in servers.items() if name.startswith(code))[0]
                    recall = await recall_at_10(first.port, code, recall_ids, bench_filter, exact)
                    recalls.append(recall)
                    print(recall_text(recall), flush=True)

        print_table(runs)
        print(
            f"\nrecall@10 of the plain answer over HTTP against exact, {len(recall_ids)} articles:"
        )
        for recall in recalls:
            print(recall_text(recall))
        memory = {}
        print("\nresident memory of the API (model loaded), VmRSS of its processes, summed:")
        for name, group in servers.items():
            processes = sum(len(process_tree(server.process.pid)) for server in group)
            memory[name] = {
                "processes": processes,
                "idle_after_start_mib": sum(s.idle_after_start for s in group),
                "peak_mib": sum(s.rss.peak for s in group),
                "idle_after_runs_mib": sum(s.idle_after_load for s in group),
            }
            print(
                f"  {name} ({processes} processes): idle after start-up "
                f"{memory[name]['idle_after_start_mib']:,.0f} MiB, peak under load "
                f"{memory[name]['peak_mib']:,.0f} MiB, idle after the runs "
                f"{memory[name]['idle_after_runs_mib']:,.0f} MiB"
            )
        print_targets(runs, recalls)
        if args.chart:
            draw(runs, args.chart, args.articles)
            print(f"\nchart: {args.chart}")
        if args.results:
            record = {
                "started": started_at.isoformat(timespec="seconds"),
                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": " ".join(["bench/related.py", *sys.argv[1:]]),
                "commit": git_commit(),
                "baseline": str(args.baseline) if args.baseline else None,
                "cores": os.cpu_count(),
                "articles": args.articles,
                "ef_search": read_ef_search(settings),
                "shared_buffers": args.shared_buffers,
                "filters": [f.record() for f in filters],
                "runs": [run.record() for run in runs],
                "recall": [recall.record() for recall in recalls],
                "memory": memory,
            }
            stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
            args.results.mkdir(parents=True, exist_ok=True)
            path = args.results / f"related-{stamp}.json"
            path.write_text(json.dumps(record, indent=1) + "\n")
            print(f"\nrecord: {path}")
        for group in clients.values():
            for client in group:
                client.close()
    finally:
        await pool.close()
        for server in [server for group in servers.values() for server in group]:
            server.rss.stopped.set()
            tree = process_tree(server.process.pid)
            server.process.terminate()
            try:
                server.process.wait(30)
            except subprocess.TimeoutExpired:
                for pid in tree:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                server.process.wait(10)


def recall_text(recall: Recall) -> str:
    return (
        f"  {recall.code:<6} filter {recall.filter:<5} mean {recall.mean:.3f} min {recall.min:.2f} "
        f"short lists: plain {recall.short_plain}, hybrid {recall.short_hybrid} "
        f"(of {recall.queries}); worst {', '.join(recall.worst)}"
    )


def label(run: Run) -> str:
    return f"{run.ranking:<7} {run.filter.name:<6} {run.clients:>3}"


def cpu_text(run: Run) -> str:
    return " ".join(f"{k} {v:.0f}%" for k, v in run.cpu.items() if v >= 0.5)


def cpu_ms(run: Run) -> tuple[float, float]:
    """CPU milliseconds per request of the API that answered and of PostgreSQL."""
    if not run.rate:
        return float("nan"), float("nan")
    to_ms = 10 * (os.cpu_count() or 1) / run.rate  # share % of the cores over 1 s -> ms/request
    api = 0.0 if run.path == "direct" else run.cpu.get("api " + run.path, 0.0)
    return api * to_ms, run.cpu.get("postgres", 0.0) * to_ms


def print_run(run: Run) -> None:
    print(
        f"  {label(run)} {run.path:<9} p50 {run.p(50):6.2f} ms  p99 {run.p(99):6.2f} ms  "
        f"{run.rate:7.0f} req/s  errors {run.errors}  load {run.load}  cpu: {cpu_text(run)}",
        flush=True,
    )


def print_table(runs: list[Run]) -> None:
    print(
        f"\n{'ranking':<7} {'filter':<6} {'cli':>3} {'path':<9} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'req/s':>7} {'errors':>6} {'p50-direct':>10} {'CPU ms/request':<18} "
        f"{'load average':<15} CPU share of the 2 cores"
    )
    direct = {(r.ranking, r.filter, r.clients): r for r in runs if r.path == "direct"}
    for run in runs:
        base = direct[(run.ranking, run.filter, run.clients)]
        gap = "" if run is base else f"{run.p(50) - base.p(50):+.2f}"
        api, pg = cpu_ms(run)
        print(
            f"{label(run)} {run.path:<9} {run.p(50):>7.2f} {run.p(99):>7.2f} {run.rate:>7.0f} "
            f"{run.errors:>6} {gap:>10} {f'api {api:.2f} pg {pg:.2f}':<18} {run.load:<15} "
            f"{cpu_text(run)}"
        )


def print_targets(runs: list[Run], recalls: list[Recall]) -> None:
    """Issue 15: hybrid >= 800 req/s and plain >= 1,300 at 16 clients, HTTP p50 within 1.5 ms
    of direct at 1 client; recall@10 >= 0.98 under every filter, no short list."""
    direct = {(r.ranking, r.filter, r.clients): r for r in runs if r.path == "direct"}
    print("\ntargets (issue 15), the API of this tree (http):")
    floors = {"plain": 1300, "hybrid": 800}
    for ranking in sorted({r.ranking for r in runs}):
        ours = [r for r in runs if r.ranking == ranking and r.path.startswith("http")]
        ones = [r for r in ours if r.clients == 1 and r.filter.name == "none"]
        gaps = [r.p(50) - direct[(ranking, r.filter, 1)].p(50) for r in ones]
        most = max(r.clients for r in runs)
        best = max(
            (r.rate for r in ours if r.clients == most and r.filter.name == "none"),
            default=float("nan"),
        )
        print(
            f"  {ranking}: unfiltered HTTP p50 - direct p50 at 1 client "
            f"{min(gaps, default=float('nan')):+.2f} ms (target <= 1.5); best req/s at {most} "
            f"clients {best:.0f} (target >= {floors.get(ranking, 0)})"
        )
    errors = sum(r.errors for r in runs)
    print(f"  errors over all runs: {errors} (target 0)")
    for recall in recalls:
        if recall.code == "http":
            ok = recall.mean >= 0.98 and not recall.short_plain and not recall.short_hybrid
            print(
                f"  filter {recall.filter}: recall@10 {recall.mean:.3f} (min {recall.min:.2f}), "
                f"short lists {recall.short_plain + recall.short_hybrid}: "
                f"{'met' if ok else 'NOT met'}"
            )


def draw(runs: list[Run], path: Path, corpus: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rankings = sorted({r.ranking for r in runs}, key=lambda r: r != "plain")
    names = list(dict.fromkeys(r.filter.name for r in runs))
    fig, axes = plt.subplots(
        len(rankings),
        len(names),
        figsize=(5.5 * len(names), 4 * len(rankings)),
        squeeze=False,
        sharex=True,
    )
    colours = {
        "direct": "tab:gray",
        "http w1": "tab:blue",
        "http w2": "tab:orange",
        "before w1": "tab:cyan",
        "before w2": "tab:red",
    }
    for row, ranking in enumerate(rankings):
        for col, name in enumerate(names):
            ax = axes[row][col]
            for run in runs:
                if run.ranking != ranking or run.filter.name != name or not run.latencies:
                    continue
                values = np.sort(np.array(run.latencies))
                ax.plot(
                    values,
                    np.arange(1, len(values) + 1) / len(values),
                    color=colours.get(run.path, "tab:green"),
                    linestyle="-" if run.clients == 1 else "--",
                    label=f"{run.path}, {run.clients} client{'s' if run.clients > 1 else ''}",
                )
            ax.set_xscale("log")
            ax.set_title(f"{ranking}, filter {name}", fontsize=10)
            ax.set_xlabel("latency, ms (log)")
            ax.set_ylabel("fraction of requests")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    loads = sorted(float(r.load.split()[0]) for r in runs if r.load)
    fig.suptitle(
        f"GET /v1/articles/{{id}}/related, {corpus:,} articles, 2 cores; load average during the "
        f"runs {loads[0]:.1f} to {loads[-1]:.1f} (other work on the machine)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    names = lambda s: s.split(",")  # noqa: E731
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=3000, help="real articles embedded")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured run")
    parser.add_argument("--clients", type=ints, default=[1, 16])
    parser.add_argument(
        "--workers", type=ints, default=[1, 2], help="API processes, one worker each"
    )
    parser.add_argument("--rankings", type=names, default=["plain", "hybrid"])
    parser.add_argument("--filters", type=names, default=["none", "2%", "0.1%"])
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another source tree (e.g. `git archive` of main) whose API runs beside this "
        "one's in every run, as 'before wN'",
    )
    parser.add_argument("--recall-queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--ef-search", type=int, help="RELATED_HNSW_EF_SEARCH (default: the setting's)"
    )
    parser.add_argument("--model", help="stored model name (default: the configured model's)")
    parser.add_argument("--shared-data", type=Path, default=DATA_DIR)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".bench-cache")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="embedded PostgreSQL data, kept for re-runs (default: CACHE_DIR/related-pg)",
    )
    parser.add_argument("--database-url", help="a migrated database to fill instead")
    parser.add_argument(
        "--shared-buffers",
        default="1GB",
        help="shared_buffers of the embedded server (restarted when it differs)",
    )
    parser.add_argument("--reload", action="store_true", help="rebuild the corpus")
    parser.add_argument(
        "--chart",
        type=lambda s: Path(s) if s else None,
        default=ROOT / "docs" / "related-latency.png",
        help='where to draw the PNG ("" for none)',
    )
    parser.add_argument(
        "--results",
        type=lambda s: Path(s) if s else None,
        default=ROOT / "bench" / "results",
        help='where to write the JSON record of the run ("" for none)',
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"load average at start {load_average()}; {os.cpu_count()} cores")

    runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    if args.database_url:
        url = args.database_url.replace("postgresql+asyncpg://", "postgresql://")
        runner.run(measure(args, url, None))
        return
    data_dir = (args.data_dir or args.cache_dir / "related-pg").resolve()
    # The embedded server's default shared_buffers (128 MB) is less than the 100k corpus's HNSW
    # index (about 200 MB) and table: most index pages would then come from the OS page cache,
    # at about 0.6 ms of PostgreSQL CPU per query. pgvector's advice, and any production
    # server's configuration, is memory enough for the index.
    server = EmbeddedPostgres(data_dir, {"shared_buffers": args.shared_buffers}).join()
    try:
        if server.psql("SHOW shared_buffers").strip() != args.shared_buffers:
            server.restart()  # a server started earlier with other settings
        url = server.url()
        migrate.upgrade(to_async_url(url))
        runner.run(measure(args, url, server.pgdata))
    finally:
        runner.close()
        server.leave()


if __name__ == "__main__":
    main()
