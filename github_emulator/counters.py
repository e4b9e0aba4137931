"""Counts of every request by endpoint, so benchmarks can report API calls made.

``304 Not Modified`` answers are also tallied on their own: GitHub does not charge
them to the rate limit, and tests of conditional reads assert exactly how many of
their requests were answered that way.

git's smart HTTP requests (clone, fetch, push) are counted apart, by service, with
the bytes sent: they are not REST calls, so ``total`` and ``by_endpoint`` leave them
out and a benchmark can report REST, git and archive requests side by side.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestCounts:
    """A snapshot: endpoint keys look like ``GET /repos/{owner}/{repo}``.

    ``by_endpoint`` counts every answer, 304s included; ``not_modified_by_endpoint``
    holds only the 304s (endpoints without one are absent). ``git_by_service`` keys
    are ``git-upload-pack`` (clone, fetch) and ``git-receive-pack`` (push), each
    counting the ref advertisement and the RPC requests; ``git_bytes_sent`` is what
    the emulator wrote back (packs, advertisements, status reports).
    """

    total: int
    bytes_served: int
    not_modified: int
    by_endpoint: dict[str, int] = field(default_factory=dict)
    not_modified_by_endpoint: dict[str, int] = field(default_factory=dict)
    git_requests: int = 0
    git_bytes_sent: int = 0
    git_by_service: dict[str, int] = field(default_factory=dict)
    git_by_endpoint: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"total": self.total, "bytes_served": self.bytes_served,
                "not_modified": self.not_modified, "by_endpoint": dict(self.by_endpoint),
                "not_modified_by_endpoint": dict(self.not_modified_by_endpoint),
                "git_requests": self.git_requests, "git_bytes_sent": self.git_bytes_sent,
                "git_by_service": dict(self.git_by_service),
                "git_by_endpoint": dict(self.git_by_endpoint)}


class RequestCounter:
    """Thread-safe tally; internal ``/_emulator`` calls are never counted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_endpoint: Counter[str] = Counter()
        self._not_modified: Counter[str] = Counter()
        self._bytes = 0
        self._git_by_service: Counter[str] = Counter()
        self._git_by_endpoint: Counter[str] = Counter()
        self._git_bytes = 0

    def record(self, endpoint: str, *, status: int, size: int) -> None:
        with self._lock:
            self._by_endpoint[endpoint] += 1
            self._bytes += size
            if status == 304:
                self._not_modified[endpoint] += 1

    def record_git(self, endpoint: str, *, service: str) -> None:
        """One smart HTTP request; its bytes follow through :meth:`add_git_bytes`."""
        with self._lock:
            self._git_by_service[service] += 1
            self._git_by_endpoint[endpoint] += 1

    def add_git_bytes(self, size: int) -> None:
        with self._lock:
            self._git_bytes += size

    def counting_git_bytes(self, chunks: Iterable[str] | Iterable[bytes]) -> Iterable[bytes]:
        """``chunks`` passed through, each counted before it is handed on, so the
        tally is complete by the time the client has read the last byte."""
        return _CountedChunks(chunks, self.add_git_bytes)

    def snapshot(self) -> RequestCounts:
        with self._lock:
            return RequestCounts(sum(self._by_endpoint.values()), self._bytes,
                                 sum(self._not_modified.values()), dict(self._by_endpoint),
                                 dict(self._not_modified),
                                 sum(self._git_by_service.values()), self._git_bytes,
                                 dict(self._git_by_service), dict(self._git_by_endpoint))

    def reset(self) -> None:
        with self._lock:
            self._by_endpoint.clear()
            self._not_modified.clear()
            self._bytes = 0
            self._git_by_service.clear()
            self._git_by_endpoint.clear()
            self._git_bytes = 0


class _CountedChunks:
    """An answer body that reports each chunk's size as it goes out.

    A class rather than a generator: WSGI servers call ``close()`` even when they never
    started iterating, and a generator's ``finally`` would not run then, leaving the
    wrapped body (a git process) unclosed.
    """

    def __init__(self, chunks: Iterable[str] | Iterable[bytes],
                 on_chunk: Callable[[int], None]) -> None:
        self._chunks = chunks
        self._on_chunk = on_chunk

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            encoded = chunk.encode() if isinstance(chunk, str) else chunk
            self._on_chunk(len(encoded))
            yield encoded

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
