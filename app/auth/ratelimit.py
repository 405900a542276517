"""Per-caller token buckets, in memory: each process limits on its own (N processes allow N
times the rate), which is enough to stop one runaway client without a shared store.

Memory is bounded: at most ``max_keys`` buckets, the least recently used dropped first. A
dropped caller starts again with a full bucket, which only matters when more than that many
callers are active within one refill time; then the limit is loose, never the memory.
"""

import math
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_KEYS = 100_000


class RateLimiter:
    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    @property
    def size(self) -> int:
        return len(self._buckets)

    def acquire(self, key: str) -> float | None:
        """None when the request may go ahead; otherwise the seconds until it would."""
        if not self.enabled:
            return None
        now = self.clock()
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = None if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[key] = (tokens - 1 if wait is None else tokens, now)  # most recent last
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def retry_after_header(seconds: float) -> str:
    # Retry-After takes whole seconds; rounding down would invite a retry that fails again.
    return str(max(1, math.ceil(seconds)))
