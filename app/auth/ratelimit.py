"""Per-caller token buckets, in memory: each process limits on its own (N processes allow N
times the rate), which is enough to stop one runaway client without a shared store."""

import math
import time
from collections.abc import Callable

# Idle buckets are refilled to full and carry no information: drop them once this many exist,
# so clients keyed by IP cannot grow the table without bound.
_PRUNE_AT = 10_000


class RateLimiter:
    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, key: str) -> float | None:
        """None when the request may go ahead; otherwise the seconds until it would."""
        if not self.enabled:
            return None
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            self._prune(now)
            return None
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        if len(self._buckets) < _PRUNE_AT:
            return
        full_after = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}


def retry_after_header(seconds: float) -> str:
    # Retry-After takes whole seconds; rounding down would invite a retry that fails again.
    return str(max(1, math.ceil(seconds)))
