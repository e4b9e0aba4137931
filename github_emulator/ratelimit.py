"""Primary and secondary rate limits, with GitHub's ``X-RateLimit-*`` headers.

Each caller identity (an installation, an App, a user, an anonymous address) has its
own budget per window, as on GitHub. A ``304 Not Modified`` answer does not spend
budget, which is why conditional requests are the cheap way to poll.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from . import defaults


@dataclass
class Bucket:
    limit: int
    used: int
    reset_at: float


@dataclass
class SecondaryLimit:
    """Answer the next ``remaining`` requests with a secondary-limit error."""

    remaining: int
    status: int  # 403 or 429; GitHub uses both
    retry_after: int


class RateLimiter:
    """Budgets per identity plus an optional armed secondary limit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, Bucket] = {}
        self.limit: int | None = None
        """Override of the per-window limit for every identity; None keeps GitHub's."""
        self.window = defaults.RATE_LIMIT_WINDOW_SECONDS
        self._secondary: SecondaryLimit | None = None

    def configure(self, *, limit: int | None = None, window: int | None = None) -> None:
        """Set the limit (and window) for all identities and start fresh budgets."""
        with self._lock:
            self.limit = limit
            if window is not None:
                self.window = window
            self._buckets.clear()

    def reset(self) -> None:
        with self._lock:
            self.limit = None
            self.window = defaults.RATE_LIMIT_WINDOW_SECONDS
            self._buckets.clear()
            self._secondary = None

    def arm_secondary(self, *, count: int = 1, status: int = 429,
                      retry_after: int = defaults.SECONDARY_LIMIT_RETRY_AFTER_SECONDS) -> None:
        """Make the next ``count`` API requests hit a secondary rate limit."""
        with self._lock:
            self._secondary = SecondaryLimit(count, status, retry_after)

    def take_secondary(self) -> SecondaryLimit | None:
        with self._lock:
            armed = self._secondary
            if armed is None or armed.remaining <= 0:
                return None
            armed.remaining -= 1
            return armed

    def _bucket(self, identity: str, authenticated: bool) -> Bucket:
        now = time.time()
        bucket = self._buckets.get(identity)
        if bucket is None or bucket.reset_at <= now:
            default = (defaults.RATE_LIMIT_AUTHENTICATED if authenticated
                       else defaults.RATE_LIMIT_ANONYMOUS)
            bucket = Bucket(self.limit if self.limit is not None else default, 0,
                            now + self.window)
            self._buckets[identity] = bucket
        return bucket

    def exhausted(self, identity: str, *, authenticated: bool) -> bool:
        with self._lock:
            bucket = self._bucket(identity, authenticated)
            return bucket.used >= bucket.limit

    def spend(self, identity: str, *, authenticated: bool) -> None:
        with self._lock:
            self._bucket(identity, authenticated).used += 1

    def headers(self, identity: str, *, authenticated: bool) -> dict[str, str]:
        with self._lock:
            bucket = self._bucket(identity, authenticated)
            return {
                "X-RateLimit-Limit": str(bucket.limit),
                "X-RateLimit-Remaining": str(max(bucket.limit - bucket.used, 0)),
                "X-RateLimit-Reset": str(math.ceil(bucket.reset_at)),
                "X-RateLimit-Used": str(bucket.used),
                "X-RateLimit-Resource": defaults.RATE_LIMIT_RESOURCE,
            }
