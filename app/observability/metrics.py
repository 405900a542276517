"""Prometheus metrics of one app instance (its own registry, so several apps in one process, as
in the tests, do not collide)."""

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.pool import Pool

# Request latency: from a cached article read (~ms) to a large batch being embedded (~s).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
ENCODE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["method", "route", "status"]
        self.requests = Counter(
            "related_http_requests", "HTTP requests answered.", labels, registry=self.registry
        )
        self.latency = Histogram(
            "related_http_request_duration_seconds",
            "Time from request to the end of the response.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.encode_seconds = Histogram(
            "related_embedding_batch_duration_seconds",
            "Time the model takes for one batch.",
            buckets=ENCODE_BUCKETS,
            registry=self.registry,
        )
        self.shed = Counter(
            "related_http_requests_shed",
            "Requests answered 503 overloaded at once: the process had "
            "RELATED_MAX_CONCURRENT_REQUESTS in progress.",
            registry=self.registry,
        )
        self.encoded_texts = Counter(
            "related_embedding_texts", "Texts encoded by the model.", registry=self.registry
        )
        self._request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._queues: dict[str, Callable[[], float]] = {}
        self._pool: Pool | None = None
        self.registry.register(_Gauges(self))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # The labelled children, looked up once per series: labels() takes a lock and
        # validates the values on every call, and this runs on every request.
        key = (method, route, status)
        series = self._request_series.get(key)
        if series is None:
            labels = (method, route, str(status))
            series = self._request_series[key] = (
                self.requests.labels(*labels),
                self.latency.labels(*labels),
            )
        count, latency = series
        count.inc()
        latency.observe(seconds)

    def observe_encode(self, texts: int, seconds: float) -> None:
        """The Encoder's batch hook."""
        self.encode_seconds.observe(seconds)
        self.encoded_texts.inc(texts)

    def add_queue(self, name: str, depth: Callable[[], float]) -> None:
        """Report ``depth()`` as related_embedding_queue_depth{queue=name} at each scrape.

        The in-process encoder queue is one; a queue of articles waiting in the database for
        a background worker can be another (a callback that reads a count it keeps fresh: a
        scrape must not run a query on the event loop's behalf).
        """
        self._queues[name] = depth

    def watch_pool(self, pool: Pool) -> None:
        self._pool = pool


class _Gauges(Collector):
    """Values read at scrape time from the objects that own them."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily(
            "related_embedding_queue_depth", "Embedding work waiting, by queue.", labels=["queue"]
        )
        for name, depth in self.metrics._queues.items():
            queue.add_metric([name], float(depth()))
        yield queue
        pool = self.metrics._pool
        if pool is not None:
            # QueuePool's API; other pool classes (NullPool in some set-ups) have no size.
            size = getattr(pool, "size", None)
            checkedout = getattr(pool, "checkedout", None)
            if callable(size) and callable(checkedout):
                yield GaugeMetricFamily(
                    "related_db_pool_size", "Connections the pool keeps open.", value=size()
                )
                yield GaugeMetricFamily(
                    "related_db_pool_in_use",
                    "Connections checked out by requests (overflow included).",
                    value=checkedout(),
                )
