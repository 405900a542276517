"""Every setting of the service, read once from the environment (prefix ``RELATED_``).

Invalid values stop the process at start-up with a message naming the setting, rather than
failing on the first request that happens to need it.
"""

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def default_data_dir() -> Path:
    """$XDG_DATA_HOME/related, else ~/.local/share/related: never relative to the current
    directory, so the API and every CLI command use one embedded database."""
    base = os.environ.get("XDG_DATA_HOME") or "~/.local/share"
    return Path(base).expanduser() / "related"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELATED_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "RELATED_DATABASE_URL"),
        description="PostgreSQL with pgvector. Unset: an embedded server in data_dir.",
    )
    database_replica_url: str | None = Field(
        default=None,
        description="A streaming replica of DATABASE_URL for reads (related, get, list), in "
        "read-only transactions; writes stay on the primary. Unset: everything on the primary.",
    )
    distribution: Literal["auto", "single", "citus"] = Field(
        default="auto",
        description="`citus`: DATABASE_URL is a Citus coordinator with `articles` distributed "
        "by site (migration 0016 does it where the citus extension is installed); start-up "
        "fails otherwise. `single`: one PostgreSQL. `auto`: whichever the database is.",
    )
    data_dir: Path = Field(
        default_factory=lambda: default_data_dir(),
        description="Where the embedded PostgreSQL keeps its data (used without DATABASE_URL); "
        "the same whatever the current directory, so every `related` command finds it.",
    )
    # True for development (`make run`, the embedded server): a fresh checkout just works. The
    # image sets it false: in production migrations are a release step (`related db upgrade`).
    migrate_on_start: bool = Field(
        default=True,
        description="Run `related db upgrade` when a process starts (one at a time: the "
        "migrators take turns). The container image sets false.",
    )
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    db_connect_timeout_s: float = Field(default=5.0, gt=0)

    embedding_model: str = Field(
        default=DEFAULT_MODEL,
        description="all-MiniLM-L6-v2 (packaged, offline) or a path to a local "
        "sentence-transformers model directory.",
    )
    embedding_backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        default="onnx-int8",
        description="onnx-int8 (ONNX Runtime, dynamically quantized: the fastest, with P@10 "
        "within 0.005 of torch on every evaluation corpus, docs/relevance.md), onnx (ONNX "
        "Runtime, float: torch's vectors) or torch (sentence-transformers). The ONNX models are "
        "exported locally, once.",
    )
    embedding_batch_size: int = Field(default=32, ge=1, le=1024)
    embedding_streams: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Batches the model encodes at once, each on its own thread with the "
        "process's cores shared out between them (2 on 2 cores: 1 compute thread each).",
    )
    embedding_device: str = Field(default="cpu", description="torch device (torch backend).")
    embedder_factory: str | None = Field(
        default=None,
        description="`module:callable` returning an Embedder to use instead of loading "
        "embedding_model (tests and custom encoders). Unset: the model.",
    )
    embedding_worker_in_process: bool = Field(
        default=True,
        description="Embed pending articles inside the API process. Off when separate "
        "`related worker` processes do it.",
    )
    embedding_claim_size: int = Field(
        default=128,
        ge=1,
        le=4096,
        description="Pending articles a worker claims (and writes back) at a time.",
    )
    embedding_lease_s: float = Field(
        default=120.0,
        gt=0,
        description="How long a claim lasts: a killed worker's articles are claimed again after.",
    )
    embedding_max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Claims of one article before it is marked failed (its worker kept dying).",
    )
    embedding_poll_s: float = Field(
        default=1.0,
        gt=0,
        description="Longest pause of an idle worker between looks at the queue.",
    )
    embedding_wait_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Longest `?wait=true` on ingest blocks; after it the answer says pending.",
    )
    model_cache_dir: Path = Field(
        default=Path("~/.cache/related"),
        description="Where ONNX exports of the model are kept, so each is made once.",
    )

    hnsw_ef_search: int = Field(
        default=40,
        ge=10,
        le=1000,
        description="HNSW candidate list size per related query (recall versus latency).",
    )
    term_statistics_refresh_seconds: float = Field(
        default=300,
        gt=0,
        description="How often each process re-reads the corpus' word statistics "
        "(pg_stats, kept by ANALYZE) for related ranking.",
    )
    max_concurrent_requests: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Requests one process works on at once; past it, 503 overloaded with "
        "Retry-After at once (probes and /metrics excepted). Default: twice db_pool_size.",
    )
    max_header_bytes: int = Field(
        default=32 * 1024,
        ge=1024,
        description="Largest total size of a request's headers; larger is a 431.",
    )
    embedding_queue_max_texts: int = Field(
        default=1024,
        ge=1,
        description="Texts of interactive requests (drafts) waiting for the model; past it, "
        "503 overloaded. Bulk work is bounded by the workers' claims.",
    )
    embedding_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest an interactive request waits for its vectors before a 503.",
    )
    max_batch_articles: int = Field(default=1000, ge=1, le=10000)
    max_request_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    # The schemas hold the hard ceilings (what the columns and the model are sized for); these
    # settings can only tighten them.
    max_title_chars: int = Field(
        default=1000, ge=1, le=1000, description="Longest title accepted (characters)."
    )
    max_summary_chars: int = Field(
        default=10_000, ge=1, le=10_000, description="Longest summary accepted (characters)."
    )
    max_body_chars: int = Field(
        default=200_000, ge=1, le=200_000, description="Longest body accepted (characters)."
    )

    anonymous_reads: bool = Field(
        default=False,
        description="Let callers without a key read (list, get, related, drafts); writes "
        "always need a key with the write scope.",
    )
    anonymous_read_sites: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["default"],
        description="The sites anonymous reads see, comma-separated (`*`: every site); "
        "`default` by default, the site of every article sent without one.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API, comma-separated; none by default.",
    )
    rate_limit_per_s: float = Field(
        default=0,
        ge=0,
        description="Requests per second each key (or anonymous client IP) may make, per "
        "process; 0 turns rate limiting off.",
    )
    publishable_rate_limit_per_s: float = Field(
        default=2,
        ge=0,
        description="Requests per second a publishable key may make per reader (client IP), "
        "per process, whatever rate_limit_per_s is; 0 turns it off.",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses or networks of the proxies in front of the service (comma-"
        "separated, e.g. 10.0.0.0/8): their X-Forwarded-For gives the client address that "
        "anonymous rate limits and logs use. Empty: the socket's address.",
    )
    rate_limit_burst: int = Field(
        default=20, ge=1, description="Requests a key may make at once before the rate applies."
    )
    cache_max_age_s: int = Field(
        default=60, ge=0, description="max-age of the Cache-Control header on article reads."
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = Field(
        default="json", description="json: one JSON object per line (request logs included)."
    )

    @property
    def request_limit(self) -> int:
        """Requests in progress per process before shedding. Past the pool's connections a
        request only queues; twice the pool keeps the queue to about one request's time, and
        keeps the CPU work ahead of a request to be shed short (bench/burst.py)."""
        return self.max_concurrent_requests or 2 * self.db_pool_size

    @property
    def anonymous_sites(self) -> frozenset[str] | None:
        """anonymous_read_sites as a caller's sites (None: every site)."""
        if "*" in self.anonymous_read_sites:
            return None
        return frozenset(self.anonymous_read_sites)

    @field_validator("cors_origins", "trusted_proxies", "anonymous_read_sites", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("database_url", "database_replica_url", mode="before")
    @classmethod
    def _postgres_url_or_unset(cls, value: object) -> object:
        if value in ("", None):
            return None
        # Unix-socket URLs (postgresql://user@/db?host=/run/pg) have no host, so no PostgresDsn.
        if not str(value).startswith(("postgresql://", "postgres://", "postgresql+")):
            raise ValueError("must be a postgresql:// URL")
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
