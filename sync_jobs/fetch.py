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

import tarfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import select

from models import Blob, db
from models.base import utcnow
from sync_jobs import defaults
from sync_jobs.apply import copy_ignoring_conflicts, table_of
from sync_jobs.connector import GitHubConnector
from sync_jobs.core.plan import ContentKind, classify_content, tar_member_mode, tar_member_path
from sync_jobs.core.tree import BlobHasher, FileEntry, FlatTree, blob_sha
from sync_jobs.errors import SyncDataError

Progress = Callable[[int, int], None]
"""Called with (done, total) as blobs arrive."""


def chunks(items: list[Any], size: int = defaults.DB_BATCH_ROWS) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def stored_blob_shas(repository_id: int, shas: Iterable[str]) -> set[str]:
    """Which of ``shas`` the repository already has (their content is never refetched)."""
    found: set[str] = set()
    for batch in chunks(sorted(set(shas))):
        found.update(
            db.session.scalars(
                select(Blob.sha).where(Blob.repository_id == repository_id, Blob.sha.in_(batch))
            )
        )
    return found


def has_any_blob(repository_id: int) -> bool:
    return (
        db.session.scalar(select(Blob.id).where(Blob.repository_id == repository_id).limit(1))
        is not None
    )


def blob_row(
    repository_id: int, sha: str, data: bytes | None, size: int, *, max_bytes: int
) -> dict[str, Any]:
    if data is None:
        kind, text = ContentKind.OVERSIZED, None
    else:
        kind, text = classify_content(data, max_bytes=max_bytes)
    return {
        "repository_id": repository_id,
        "sha": sha,
        "size": size,
        "is_binary": kind is ContentKind.BINARY,
        "content": text,
        "created_at": utcnow(),
    }


class BlobWriter:
    """Buffers blob rows and writes them in committed batches (bounded memory)."""

    def __init__(self, repository_id: int, *, max_bytes: int) -> None:
        self.repository_id = repository_id
        self.max_bytes = max_bytes
        self._rows: list[dict[str, Any]] = []
        self._buffered = 0
        self.written = 0

    def add(self, sha: str, data: bytes | None, size: int) -> None:
        self._rows.append(blob_row(self.repository_id, sha, data, size, max_bytes=self.max_bytes))
        self._buffered += len(data or b"")
        if self._buffered >= defaults.BLOB_FLUSH_BYTES or len(self._rows) >= defaults.DB_BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            copy_ignoring_conflicts(table_of(Blob), self._rows, ("repository_id", "sha"))
            db.session.commit()
            self.written += len(self._rows)
        self._rows, self._buffered = [], 0


def fetch_blobs(
    connector: GitHubConnector,
    writer: BlobWriter,
    needed: Mapping[str, int | None],
    progress: Progress,
) -> None:
    """Fetch ``needed`` (sha → size from the tree) one call per blob, several at a time.

    Oversized blobs are recorded from the tree's size alone: their content is never
    downloaded.
    """
    total = len(needed)
    done = 0
    to_fetch = []
    for sha, size in needed.items():
        if size is not None and size > writer.max_bytes:
            writer.add(sha, None, size)
            done += 1
        else:
            to_fetch.append(sha)
    batch_size = defaults.FETCH_CONCURRENCY * 16
    for batch in chunks(to_fetch, batch_size):
        for sha, data in connector.blobs(batch):
            if blob_sha(data) != sha:
                raise SyncDataError(f"blob {sha} from GitHub hashes to {blob_sha(data)}")
            writer.add(sha, data, len(data))
            done += 1
        progress(done, total)
    writer.flush()
    progress(done, total)


def read_tarball(
    connector: GitHubConnector,
    writer: BlobWriter,
    commit_sha: str,
    *,
    wanted: set[str] | None,
    progress: Progress,
    expected_files: int = 0,
) -> FlatTree:
    """Stream the commit's tarball; store the wanted blobs (all when ``wanted`` is None).

    Returns the flat tree the archive describes, with blob SHAs computed from content.
    It lacks submodules and reflects export-ignore/export-subst, so callers check it
    against the real tree (root SHA, or per-blob SHA) before trusting it.
    """
    flat: FlatTree = {}
    with connector.tarball(commit_sha) as stream, tarfile.open(fileobj=stream, mode="r|gz") as tar:
        for member in tar:
            path = tar_member_path(member.name)
            if path is None or not (member.isfile() or member.issym()):
                continue
            mode = tar_member_mode(is_symlink=member.issym(), permissions=member.mode)
            if member.issym():
                data: bytes | None = member.linkname.encode("utf-8", "surrogateescape")
                sha, size = blob_sha(data), len(data)  # type: ignore[arg-type]
            else:
                sha, data, size = _hash_member(tar, member, writer.max_bytes)
            flat[path] = FileEntry(mode, sha, size)
            if wanted is None or sha in wanted:
                writer.add(sha, data, size)
                if wanted is not None:
                    wanted.discard(sha)
            if len(flat) % 1000 == 0:
                progress(len(flat), max(expected_files, len(flat)))
    writer.flush()
    progress(len(flat), max(expected_files, len(flat)))
    return flat


def _hash_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, max_bytes: int
) -> tuple[str, bytes | None, int]:
    """A member's blob SHA, and its content unless larger than ``max_bytes``."""
    handle = tar.extractfile(member)
    if handle is None:
        raise SyncDataError(f"archive member {member.name} has no content")
    if member.size <= max_bytes:
        data = handle.read()
        return blob_sha(data), data, len(data)
    hasher = BlobHasher(member.size)
    while chunk := handle.read(1 << 20):
        hasher.update(chunk)
    return hasher.hexdigest(), None, member.size
