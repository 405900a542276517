"""Latency and throughput of GET /v1/articles/{id}/related over HTTP, against the same SQL direct.

    .venv/bin/python bench/related.py [--articles 100000] [--seconds 10] [--clients 1,16]
        [--workers 1,2] [--rankings plain,hybrid] [--seeds 3000] [--recall-queries 200]
        [--chart docs/related-latency.png] [--reload]

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
default, 50 candidates reranked in Python), with and without `source=source-000`, at each
number of clients, side by side in one run:

* direct: the service's own statements (app/related/repository.py) sent from this process on a
  pool configured like the service's read pool (app/db/reads.py; --clients connections): the
  article by id (with its terms); with the filter the planner's row estimate (kept for a
  minute, app/related/estimates.py); the nearest-neighbour query (for hybrid with each
  candidate's vector and terms); the exact scan when the estimate is small or the index comes
  back short. One round trip each, as the service does; no HTTP, no FastAPI, no rerank.
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

Recall@10: for --recall-queries articles, the plain filtered answer over HTTP against an exact
search (the same SQL with SET LOCAL enable_indexscan = off); the unfiltered one too.
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
from app.db.engine import PgvectorVersion
from app.db.reads import create_read_pool
from app.db.url import to_async_url
from app.embedding.model import load_embedder
from app.related.estimates import RowEstimates
from app.related.repository import Filters, RelatedRepository
from app.related.schemas import RelatedQuery
from app.related.service import CANDIDATES, RelatedService
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


@dataclass
class Run:
    ranking: str
    filtered: bool
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


def related_path(article_id: str, ranking: str, filtered: bool) -> str:
    params: list[tuple[str, str]] = []
    if ranking == "plain":
        params += [("ranking", "vector"), ("dedupe", "false")]
    if filtered:
        params.append(("source", FILTER_SOURCE))
    query = "?" + urlencode(params) if params else ""
    return f"/v1/articles/{article_id}/related{query}"


class DirectSql:
    """The statements the service sends for one related request, sent from this process with
    the service's own repository (app/related/repository.py) on a pool configured like the
    service's read pool, each one round trip, as the service does: for plain, first the
    one-statement search from the stored article's id (RelatedService.for_article_id: the
    planner's row estimate before it when filtered, kept for a minute as each service process
    keeps it); when that cannot answer (an exact scan), and for hybrid, the article (with its
    terms), the estimate, the nearest-neighbour query or the exact scan, and the exact
    fallback. No HTTP, no FastAPI, no rerank."""

    def __init__(self, pool: asyncpg.Pool, model: str, ef_search: int) -> None:
        self.pool = pool
        self.model = SimpleNamespace(model_name=model)
        self.ef_search = ef_search
        self.row_estimates = RowEstimates()  # kept across requests, as the service's process does
        self.plain = {
            filtered: RelatedQuery(
                ranking="vector",
                dedupe=False,
                limit=LIMIT,
                source=[FILTER_SOURCE] if filtered else [],
            )
            for filtered in (False, True)
        }

    async def related(self, article_id: uuid.UUID, ranking: str, filtered: bool) -> bool:
        hybrid = ranking == "hybrid"
        filters = Filters(source=[FILTER_SOURCE] if filtered else (), exclude_id=article_id)
        async with self.pool.acquire() as conn:
            repository = RelatedRepository(conn)
            service = RelatedService(
                repository,
                self.model,  # type: ignore[arg-type]
                self.ef_search,
                row_estimates=self.row_estimates,
            )
            if not hybrid:
                answer = await service.for_article_id(article_id, self.plain[filtered])
                if answer is not None:
                    return len(answer[1]) >= LIMIT
            article = await repository.source_article(str(article_id))
            assert article is not None
            wanted = CANDIDATES if hybrid else LIMIT
            rows = await service.nearest_rows(
                article.embedding, filters, wanted, LIMIT, hybrid, probe=article.id
            )
        return len(rows) >= LIMIT


async def warm_up(direct: DirectSql, ids: list[uuid.UUID], concurrency: int = 4) -> None:
    async def worker(start: int) -> None:
        for article_id in ids[start::concurrency]:
            await direct.related(article_id, "plain", False)

    await asyncio.gather(*(worker(start) for start in range(concurrency)))


def ensure_shared_buffers(server: Any, data_dir: Path, size: str) -> None:
    """The embedded server's shared_buffers set to ``size`` (a restart when it changes).

    pgserver starts PostgreSQL with the default 128 MB, less than the 100k bench corpus's HNSW
    index (about 200 MB) and table: most index pages would then come from the OS page cache,
    at about 0.6 ms of PostgreSQL CPU per query (measured). pgvector's advice, and any
    production server's configuration, is memory enough for the index."""
    from pgserver._commands import pg_ctl  # the restart pgserver itself would run

    if server.psql("SHOW shared_buffers;").split()[2] == size:
        return
    server.psql(f"ALTER SYSTEM SET shared_buffers = '{size}';")
    pg_ctl(["-w", "restart"], pgdata=data_dir, user=server.system_user)


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    rss: RssSampler
    idle_after_start: float = 0.0
    idle_after_load: float = 0.0


def start_server(database_url: str, log: Path, ef_search: int) -> Server:
    """One single-worker API process on a port of its own."""
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
        PYTHONPATH=str(ROOT),
    )
    command = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    output = log.open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
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


async def recall_at_10(
    pool: asyncpg.Pool, port: int, model: str, ids: list[uuid.UUID], filtered: bool
) -> tuple[float, float]:
    """Mean recall@10 of the plain HTTP answer against an exact search, and its minimum."""
    client = HttpClient(port)
    recalls = []
    where = "embedding_model = $2 AND id <> $3" + (" AND source = $4" if filtered else "")
    exact_sql = f"SELECT id FROM articles WHERE {where} ORDER BY embedding <=> $1 LIMIT {LIMIT}"
    async with pool.acquire() as conn:
        for article_id in ids:
            status, body = await client.get(related_path(str(article_id), "plain", filtered))
            if status != 200:
                raise SystemExit(f"related answered {status}: {body[:300]!r}")
            got = {item["id"] for item in json.loads(body)["items"]}
            async with conn.transaction():
                await conn.execute("SET LOCAL enable_indexscan = off")
                vector = await conn.fetchval(
                    "SELECT embedding FROM articles WHERE id = $1", article_id
                )
                args = [vector, model, article_id] + ([FILTER_SOURCE] if filtered else [])
                exact = {str(r["id"]) for r in await conn.fetch(exact_sql, *args)}
            recalls.append(len(got & exact) / len(exact))
    client.close()
    return statistics.mean(recalls), min(recalls)


def postmaster_tree(data_dir: Path | None) -> Callable[[], list[int]]:
    def pids() -> list[int]:
        if data_dir is None or not (data_dir / "postmaster.pid").exists():
            return []
        return process_tree(int((data_dir / "postmaster.pid").read_text().split()[0]))

    return pids


async def measure(args: argparse.Namespace, url: str, pg_data: Path | None) -> None:
    settings = Settings() if args.ef_search is None else Settings(hnsw_ef_search=args.ef_search)
    model = load_embedder(settings).name if args.model is None else args.model
    await build_corpus(url, args, model)

    conn = await asyncpg.connect(url)
    version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    await conn.close()
    iterative_scan = PgvectorVersion.parse(version).has_iterative_scan
    pool = await create_read_pool(
        url, settings.model_copy(update={"db_pool_size": max(args.clients)}), iterative_scan
    )
    sample = await pool.fetch("SELECT id FROM articles ORDER BY random() LIMIT 5000")
    ids = [r["id"] for r in sample]
    share = await pool.fetchval(
        "SELECT avg((source = $1)::int)::float FROM articles", FILTER_SOURCE
    )
    print(f"filter source={FILTER_SOURCE} keeps {100 * share:.2f}% of the corpus")
    print(f"PostgreSQL shared_buffers {await pool.fetchval('SHOW shared_buffers')}")
    direct = DirectSql(pool, model, settings.hnsw_ef_search)
    started = time.perf_counter()
    await warm_up(direct, ids)
    print(
        f"warm-up: each of the {len(ids):,} sampled articles asked once, direct, in "
        f"{time.perf_counter() - started:.0f} s (the pages they touch in shared_buffers, as on a "
        "server that has been answering for a while)"
    )

    logs = args.cache_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # "http wN": N single-worker API processes, the clients spread over them in turn.
    servers: dict[str, list[Server]] = {}
    try:
        for workers in args.workers:
            group = []
            for index in range(workers):
                log = logs / f"uvicorn-w{workers}-{index}.log"
                group.append(start_server(to_async_url(url), log, settings.hnsw_ef_search))
            for server in group:
                await wait_ready(server)
                server.idle_after_start = rss_mib(process_tree(server.process.pid))
            servers[f"http w{workers}"] = group
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
            parties[name.replace("http ", "api ")] = lambda g=group: [
                pid for server in g for pid in process_tree(server.process.pid)
            ]
        meter = CpuMeter(parties)

        runs: list[Run] = []
        for ranking in args.rankings:
            for filtered in (False, True):
                for n in args.clients:
                    offset = random.randrange(len(ids))

                    def pick(client: int, i: int, offset: int = offset) -> uuid.UUID:
                        return ids[(offset + client * 997 + i) % len(ids)]

                    async def direct_request(
                        client: int, i: int, ranking: str = ranking, filtered: bool = filtered
                    ) -> bool:
                        return await direct.related(pick(client, i), ranking, filtered)

                    run = Run(ranking, filtered, n, "direct")
                    await drive(n, args.seconds, direct_request, run, meter)
                    runs.append(run)
                    print_run(run)
                    for name, group in servers.items():

                        async def http_request(
                            client: int,
                            i: int,
                            name: str = name,
                            ranking: str = ranking,
                            filtered: bool = filtered,
                        ) -> bool:
                            path = related_path(str(pick(client, i)), ranking, filtered)
                            status, _ = await clients[name][client].get(path)
                            return status == 200

                        # Fresh connections: uvicorn closes keep-alive ones idle for 5 s.
                        for client in clients[name]:
                            client.close()
                        run = Run(ranking, filtered, n, name)
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
        first = next(iter(servers.values()))[0]
        recall_ids = ids[: args.recall_queries]
        recalls = None
        if recall_ids:
            recalls = (
                await recall_at_10(pool, first.port, model, recall_ids, False),
                await recall_at_10(pool, first.port, model, recall_ids, True),
            )

        print_table(runs)
        if recalls is not None:
            (plain_mean, plain_min), (filtered_mean, filtered_min) = recalls
            print(
                f"\nrecall@10, plain over HTTP vs exact, {len(recall_ids)} articles: "
                f"unfiltered mean {plain_mean:.3f} (min {plain_min:.2f}); "
                f"source={FILTER_SOURCE} ({100 * share:.1f}%) mean {filtered_mean:.3f} "
                f"(min {filtered_min:.2f})"
            )
        print("\nresident memory of the API (model loaded), VmRSS of its processes, summed:")
        for name, group in servers.items():
            processes = sum(len(process_tree(server.process.pid)) for server in group)
            print(
                f"  {name} ({processes} processes): idle after start-up "
                f"{sum(s.idle_after_start for s in group):,.0f} MiB, peak under load "
                f"{sum(s.rss.peak for s in group):,.0f} MiB, idle after the runs "
                f"{sum(s.idle_after_load for s in group):,.0f} MiB"
            )
        print_targets(runs, None if recalls is None else recalls[1][0])
        if args.chart:
            draw(runs, args.chart, args.articles)
            print(f"\nchart: {args.chart}")
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


def label(run: Run) -> str:
    return f"{run.ranking:<7} {'2% src' if run.filtered else 'none':<7} {run.clients:>3}"


def cpu_text(run: Run) -> str:
    return " ".join(f"{k} {v:.0f}%" for k, v in run.cpu.items() if v >= 0.5)


def cpu_per_request(run: Run) -> str:
    """CPU milliseconds per request of the API and of PostgreSQL: what other load changes least."""
    if not run.rate:
        return ""
    cores = os.cpu_count() or 1
    api = sum(v for k, v in run.cpu.items() if k.startswith("api "))
    if run.path == "direct":
        api = 0.0
    to_ms = 10 * cores / run.rate  # share % of the cores over a second -> ms per request
    return f"api {api * to_ms:.2f} pg {run.cpu.get('postgres', 0.0) * to_ms:.2f}"


def print_run(run: Run) -> None:
    print(
        f"  {label(run)} {run.path:<7} p50 {run.p(50):6.2f} ms  p99 {run.p(99):6.2f} ms  "
        f"{run.rate:7.0f} req/s  errors {run.errors}  load {run.load}  cpu: {cpu_text(run)}",
        flush=True,
    )


def print_table(runs: list[Run]) -> None:
    print(
        f"\n{'ranking':<7} {'filter':<7} {'cli':>3} {'path':<7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'req/s':>7} {'errors':>6} {'p50-direct':>10} {'CPU ms/request':<18} "
        f"{'load average':<15} CPU share of the 2 cores"
    )
    direct = {(r.ranking, r.filtered, r.clients): r for r in runs if r.path == "direct"}
    for run in runs:
        base = direct[(run.ranking, run.filtered, run.clients)]
        gap = "" if run is base else f"{run.p(50) - base.p(50):+.2f}"
        print(
            f"{label(run)} {run.path:<7} {run.p(50):>7.2f} {run.p(99):>7.2f} {run.rate:>7.0f} "
            f"{run.errors:>6} {gap:>10} {cpu_per_request(run):<18} {run.load:<15} {cpu_text(run)}"
        )


def print_targets(runs: list[Run], recall_filtered: float | None) -> None:
    http = [r for r in runs if r.path != "direct"]
    direct = {(r.ranking, r.filtered, r.clients): r for r in runs if r.path == "direct"}
    print("\ntargets (issue 4):")
    for ranking in sorted({r.ranking for r in runs}):
        ones = [r for r in http if r.ranking == ranking and r.clients == 1 and not r.filtered]
        gaps = [r.p(50) - direct[(ranking, False, 1)].p(50) for r in ones]
        most = max(x.clients for x in runs)
        many = [r for r in http if r.ranking == ranking and r.clients == most]
        filt = [r for r in http if r.ranking == ranking and r.filtered and r.clients == 1]
        best = max((r.rate for r in many if not r.filtered), default=float("nan"))
        print(
            f"  {ranking}: HTTP p50 - direct p50 at 1 client {min(gaps, default=float('nan')):+.2f}"
            f" ms (target <= 2); best req/s at {many[0].clients if many else '-'} clients "
            f"{best:.0f} (target >= 500); 2% filter p50 at 1 client "
            f"{min((r.p(50) for r in filt), default=float('nan')):.2f} ms (target < 10)"
        )
    errors = sum(r.errors for r in runs)
    recall = "not measured" if recall_filtered is None else f"{recall_filtered:.3f}"
    print(f"  errors over all runs: {errors} (target 0); filtered recall@10 {recall}")


def draw(runs: list[Run], path: Path, corpus: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rankings = sorted({r.ranking for r in runs}, key=lambda r: r != "plain")
    fig, axes = plt.subplots(
        len(rankings), 2, figsize=(11, 4 * len(rankings)), squeeze=False, sharex=True
    )
    colours = {"direct": "tab:gray", "http w1": "tab:blue", "http w2": "tab:orange"}
    for row, ranking in enumerate(rankings):
        for col, filtered in enumerate((False, True)):
            ax = axes[row][col]
            for run in runs:
                if run.ranking != ranking or run.filtered != filtered or not run.latencies:
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
            ax.set_title(
                f"{ranking}, {'source filter (2%)' if filtered else 'no filter'}", fontsize=10
            )
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
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=3000, help="real articles embedded")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured run")
    parser.add_argument("--clients", type=ints, default=[1, 16])
    parser.add_argument(
        "--workers", type=ints, default=[1, 2], help="API processes, one worker each"
    )
    parser.add_argument("--rankings", type=lambda s: s.split(","), default=["plain", "hybrid"])
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
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"load average at start {load_average()}; {os.cpu_count()} cores")

    runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    if args.database_url:
        url = args.database_url.replace("postgresql+asyncpg://", "postgresql://")
        runner.run(measure(args, url, None))
        return
    import pgserver

    data_dir = (args.data_dir or args.cache_dir / "related-pg").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    try:
        if "(1 row)" not in server.psql("SELECT 1 FROM pg_database WHERE datname = 'related';"):
            server.psql("CREATE DATABASE related;")
        ensure_shared_buffers(server, data_dir, args.shared_buffers)
        url = server.get_uri("related")
        migrate.upgrade(to_async_url(url))
        runner.run(measure(args, url, data_dir))
    finally:
        runner.close()
        server.cleanup()


if __name__ == "__main__":
    main()
