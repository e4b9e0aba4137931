"""Counts of every request by endpoint, so benchmarks can report API calls made.

``304 Not Modified`` answers are also tallied on their own: GitHub does not charge
them to the rate limit, and tests of conditional reads assert exactly how many of
their requests were answered that way.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestCounts:
    """A snapshot: endpoint keys look like ``GET /repos/{owner}/{repo}``.

    ``by_endpoint`` counts every answer, 304s included; ``not_modified_by_endpoint``
    holds only the 304s (endpoints without one are absent).
    """

    total: int
    bytes_served: int
    not_modified: int
    by_endpoint: dict[str, int] = field(default_factory=dict)
    not_modified_by_endpoint: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"total": self.total, "bytes_served": self.bytes_served,
                "not_modified": self.not_modified, "by_endpoint": dict(self.by_endpoint),
                "not_modified_by_endpoint": dict(self.not_modified_by_endpoint)}


class RequestCounter:
    """Thread-safe tally; internal ``/_emulator`` calls are never counted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_endpoint: Counter[str] = Counter()
        self._not_modified: Counter[str] = Counter()
        self._bytes = 0

    def record(self, endpoint: str, *, status: int, size: int) -> None:
        with self._lock:
            self._by_endpoint[endpoint] += 1
            self._bytes += size
            if status == 304:
                self._not_modified[endpoint] += 1

    def snapshot(self) -> RequestCounts:
        with self._lock:
            return RequestCounts(sum(self._by_endpoint.values()), self._bytes,
                                 sum(self._not_modified.values()), dict(self._by_endpoint),
                                 dict(self._not_modified))

    def reset(self) -> None:
        with self._lock:
            self._by_endpoint.clear()
            self._not_modified.clear()
            self._bytes = 0
