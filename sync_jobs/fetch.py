"""Fetch phase: bring the content of the blobs a sync needs into the Blob table.

Blobs are content-addressed and immutable, so they are written as they arrive, in
their own short transactions, and never as part of the apply: a worker killed during
the fetch leaves only blobs that a retried sync will not fetch again, and memory stays
bounded by :data:`~sync_jobs.defaults.BLOB_FLUSH_BYTES` whatever the repository's size.

Two strategies (chosen by :func:`sync_jobs.core.plan.choose_fetch`): one ``git/blobs``
call per blob with bounded concurrency, or one streamed tarball. Every blob's SHA is
computed from its content and must match the SHA the tree names.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select

from models import Blob, db
from models.base import utcnow
from sync_jobs import defaults
from sync_jobs.apply import copy_ignoring_conflicts, table_of
from sync_jobs.connector import GitHubConnector
from sync_jobs.core.content import stored_text
from sync_jobs.core.plan import (
    BlobContent,
    ContentKind,
    read_content,
    tar_member_mode,
    tar_member_path,
)
from sync_jobs.core.tarstream import gunzip, read_entries
from sync_jobs.core.tree import FileEntry, FlatTree, blob_sha
from sync_jobs.errors import SyncDataError

T = TypeVar("T")


@dataclass(frozen=True)
class Fetched:
    """How far a fetch got: files stored, of how many (0: not known yet), and bytes."""

    files: int
    total: int
    bytes: int


FetchProgress = Generator[Fetched, None, T]
"""A fetch that yields its progress as content arrives and returns its result."""


class Ticker:
    """True at most every ``interval`` seconds: fetches report as they go, not per blob."""

    def __init__(self, interval: float = defaults.PROGRESS_MIN_INTERVAL_SECONDS) -> None:
        self._interval = interval
        self._last = time.monotonic()

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self._interval:
            return False
        self._last = now
        return True


def chunks(items: list[Any], size: int = defaults.DB_BATCH_ROWS) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def stored_blob_shas(repository_id: int, shas: Iterable[str]) -> set[str]:
    """Which of ``shas`` the repository already has (their content is never refetched)."""
    wanted = set(shas)
    query = select(Blob.sha).where(Blob.repository_id == repository_id)
    if len(wanted) > defaults.LOOKUP_ALL_ABOVE:
        return {sha for sha in db.session.scalars(query) if sha in wanted}
    found: set[str] = set()
    for batch in chunks(sorted(wanted)):
        found.update(db.session.scalars(query.where(Blob.sha.in_(batch))))
    return found


def has_any_blob(repository_id: int) -> bool:
    return (
        db.session.scalar(select(Blob.id).where(Blob.repository_id == repository_id).limit(1))
        is not None
    )


def blob_row(
    repository_id: int, sha: str, data: bytes | None, size: int, *, max_bytes: int
) -> dict[str, Any]:
    """A Blob row: binary and oversized blobs keep SHA and size, text its exact bytes
    (:func:`sync_jobs.core.content.stored_text`)."""
    text = None
    if data is None:
        content = BlobContent(ContentKind.OVERSIZED)
    else:
        content = read_content(data, max_bytes=max_bytes)
        if content.decoded is not None:
            text = stored_text(data, content.decoded)
    return {
        "repository_id": repository_id,
        "sha": sha,
        "size": size,
        "is_binary": content.kind is ContentKind.BINARY,
        "content": text.content if text else None,
        "content_bytes": text.content_bytes if text else None,
        "encoding": text.encoding if text else None,
        "created_at": utcnow(),
    }


class BlobWriter:
    """Buffers blob rows and writes them in committed batches (bounded memory).

    On PostgreSQL the batches are written by one background thread on its own
    connection, so the database works while the next batch is downloaded and hashed
    (a first sync spends about as long in each). At most
    :data:`~sync_jobs.defaults.BLOB_WRITE_QUEUE` batches wait, which bounds memory;
    :meth:`flush` returns once every batch is committed and re-raises a failed write.
    """

    def __init__(self, repository_id: int, *, max_bytes: int) -> None:
        self.repository_id = repository_id
        self.max_bytes = max_bytes
        self._rows: list[dict[str, Any]] = []
        self._buffered = 0
        self.written = 0
        engine = db.engine
        self._engine = engine if engine.dialect.name == "postgresql" else None
        self._queue: queue.Queue[list[dict[str, Any]] | None] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def add(self, sha: str, data: bytes | None, size: int) -> None:
        self._rows.append(blob_row(self.repository_id, sha, data, size, max_bytes=self.max_bytes))
        self._buffered += len(data or b"")
        if self._buffered >= defaults.BLOB_FLUSH_BYTES or len(self._rows) >= defaults.DB_BATCH_ROWS:
            self._hand_off()

    def flush(self) -> None:
        """Write everything added so far; return when it is committed."""
        self._hand_off()
        self._stop()
        self._raise_failure()

    @contextmanager
    def writing(self) -> Iterator[BlobWriter]:
        """Flush at the end; on an error, stop the writer thread without flushing."""
        try:
            yield self
        except BaseException:
            self._rows, self._buffered = [], 0
            self._stop()
            raise
        self.flush()

    def _stop(self) -> None:
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
        self._thread = self._queue = None

    def _hand_off(self) -> None:
        rows, self._rows, self._buffered = self._rows, [], 0
        if not rows:
            return
        self._raise_failure()
        if self._engine is None:
            copy_ignoring_conflicts(table_of(Blob), rows, ("repository_id", "sha"))
            db.session.commit()
            self.written += len(rows)
            return
        if self._queue is None:
            self._queue = queue.Queue(maxsize=defaults.BLOB_WRITE_QUEUE)
            self._thread = threading.Thread(
                target=self._write_batches, args=(self._queue,), name="blob-writer", daemon=True
            )
            self._thread.start()
        self._queue.put(rows)

    def _write_batches(self, batches: queue.Queue[list[dict[str, Any]] | None]) -> None:
        assert self._engine is not None
        while (rows := batches.get()) is not None:
            if self._error is not None:
                continue  # drain: the pipeline raises the first failure
            try:
                with self._engine.begin() as connection:
                    copy_ignoring_conflicts(
                        table_of(Blob), rows, ("repository_id", "sha"), connection=connection
                    )
                self.written += len(rows)
            except BaseException as exc:  # re-raised in the pipeline's thread
                self._error = exc

    def _raise_failure(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def fetch_blobs(
    connector: GitHubConnector,
    writer: BlobWriter,
    needed: Mapping[str, int | None],
) -> FetchProgress[None]:
    """Fetch ``needed`` (sha → size from the tree) one call per blob, several at a time.

    Yields progress while the blobs arrive (every few hundred ms, and once at the end).
    Oversized blobs are recorded from the tree's size alone: their content is never
    downloaded.
    """
    total = len(needed)
    done = size = 0
    to_fetch = []
    for sha, known in needed.items():
        if known is not None and known > writer.max_bytes:
            writer.add(sha, None, known)
            done += 1
        else:
            to_fetch.append(sha)
    ticker = Ticker()
    # Batches bound how many downloaded blobs wait in memory for the ones before them.
    with writer.writing():
        for batch in chunks(to_fetch, defaults.FETCH_CONCURRENCY * 16):
            for sha, data in connector.blobs(batch):
                if blob_sha(data) != sha:
                    raise SyncDataError(f"blob {sha} from GitHub hashes to {blob_sha(data)}")
                writer.add(sha, data, len(data))
                done += 1
                size += len(data)
                if ticker.due():
                    yield Fetched(done, total, size)
    yield Fetched(done, total, size)


def read_tarball(
    connector: GitHubConnector,
    writer: BlobWriter,
    commit_sha: str,
    *,
    wanted: set[str] | None,
    expected_files: int = 0,
) -> FetchProgress[FlatTree]:
    """Stream the commit's tarball; store the wanted blobs (all when ``wanted`` is None).

    Yields progress as the archive is read (files and bytes so far, of
    ``expected_files`` when known), every few hundred ms and once at the end.
    Returns the flat tree the archive describes, with blob SHAs computed from content.
    It lacks submodules and reflects export-ignore/export-subst, so callers check it
    against the real tree (root SHA, or per-blob SHA) before trusting it.
    """
    flat: FlatTree = {}
    size = 0
    ticker = Ticker()
    with writer.writing(), connector.tarball(commit_sha) as chunks:
        for entry in read_entries(gunzip(chunks), max_bytes=writer.max_bytes):
            path = tar_member_path(entry.name)
            if path is None:
                continue
            mode = tar_member_mode(is_symlink=entry.is_symlink, permissions=entry.permissions)
            flat[path] = FileEntry(mode, entry.sha, entry.size)
            if wanted is None or entry.sha in wanted:
                writer.add(entry.sha, entry.data, entry.size)
                if wanted is not None:
                    wanted.discard(entry.sha)
            size += entry.size
            if ticker.due():
                known = max(expected_files, len(flat)) if expected_files else 0
                yield Fetched(len(flat), known, size)
    yield Fetched(len(flat), len(flat), size)
    return flat
