"""Counts of every request by endpoint, so benchmarks can report API calls made."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestCounts:
    """A snapshot: ``by_endpoint`` keys look like ``GET /repos/{owner}/{repo}``."""

    total: int
    bytes_served: int
    not_modified: int
    by_endpoint: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"total": self.total, "bytes_served": self.bytes_served,
                "not_modified": self.not_modified, "by_endpoint": dict(self.by_endpoint)}


class RequestCounter:
    """Thread-safe tally; internal ``/_emulator`` calls are never counted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_endpoint: Counter[str] = Counter()
        self._bytes = 0
        self._not_modified = 0

    def record(self, endpoint: str, *, status: int, size: int) -> None:
        with self._lock:
            self._by_endpoint[endpoint] += 1
            self._bytes += size
            if status == 304:
                self._not_modified += 1

    def snapshot(self) -> RequestCounts:
        with self._lock:
            return RequestCounts(sum(self._by_endpoint.values()), self._bytes,
                                 self._not_modified, dict(self._by_endpoint))

    def reset(self) -> None:
        with self._lock:
            self._by_endpoint.clear()
            self._bytes = 0
            self._not_modified = 0
