"""What a project's memory holds: versioned tree entries, content blobs, memory entries.

Tree entries and memory entries are versioned by sync rather than copied per sync:
a row is valid from the sync that introduced it until the sync that changed or removed
it. Storage grows with changes, not with syncs, and the state at any past sync is a
range query on ``ProjectSync.sequence`` (see ``models.queries``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import GitSha, Model, utcnow

UTF8 = "utf-8"


class Blob(Model):
    """Content addressed by (repository, blob SHA).

    A blob already stored is never fetched again, so reverts, renames, copies and
    other branches of the same repository cost no API call. Binary and oversized blobs
    keep their SHA and size only (``content`` is None).

    Text (git's rule: no NUL in the first 8,000 bytes) is stored so that the bytes come
    back exactly. ``content`` holds its characters; when those are not simply the
    blob's UTF-8 encoding, ``content_bytes`` holds the blob itself and ``encoding``
    the codec that decoded it. That is text in another encoding (Latin-1, EUC-JP,
    Shift-JIS...), and text with a NUL after the first 8,000 bytes: PostgreSQL's
    ``text`` cannot hold a NUL, so ``content`` shows each one as U+FFFD. UTF-8 text,
    nearly every blob, has neither, so it costs no more than before.
    """

    __tablename__ = "blob"
    __table_args__ = (UniqueConstraint("repository_id", "sha"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"))
    sha: Mapped[GitSha]
    size: Mapped[int]
    is_binary: Mapped[bool] = mapped_column(default=False)
    content: Mapped[str | None] = mapped_column(Text)
    # BYTEA on PostgreSQL, BLOB on SQLite; NULL when ``content`` in UTF-8 is the blob.
    content_bytes: Mapped[bytes | None] = mapped_column(LargeBinary)
    # A Python codec name (``latin_1``, ``euc_jp``...); NULL for UTF-8.
    encoding: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def codec(self) -> str:
        """The codec of the text: ``encoding``, or UTF-8 when none is recorded."""
        return self.encoding or UTF8

    @property
    def data(self) -> bytes | None:
        """The blob's bytes, exactly as git has them; None for binary and oversized."""
        if self.content_bytes is not None:
            return self.content_bytes
        return None if self.content is None else self.content.encode(UTF8)

    @property
    def text(self) -> str | None:
        """The blob's characters exactly, NULs included (``content`` shows them as
        U+FFFD); None for binary and oversized."""
        if self.content_bytes is not None:
            return self.content_bytes.decode(self.codec)
        return self.content


class GitTree(Model):
    """A git tree object's entries, kept so later syncs can diff without fetching it.

    Trees are immutable, so a stored tree is valid forever; comparing stored subtree
    SHAs is what lets a sync skip unchanged directories whole (the Merkle skip).
    ``entries`` is a list of ``[name, mode, type, sha]``.
    """

    __tablename__ = "git_tree"
    __table_args__ = (UniqueConstraint("repository_id", "sha"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"))
    sha: Mapped[GitSha]
    entries: Mapped[list[Any]] = mapped_column(JSON)


class RepositoryFile(Model):
    """One version of one tree entry (file, symlink or submodule) of a project."""

    __tablename__ = "repository_file"
    __table_args__ = (
        # At most one open version per path: the invariant every apply keeps.
        Index(
            "uq_repository_file_open_path",
            "project_id",
            "path",
            unique=True,
            postgresql_where=text("valid_to_sync_id IS NULL"),
            sqlite_where=text("valid_to_sync_id IS NULL"),
        ),
        Index("ix_repository_file_project_id_path", "project_id", "path"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    # Git's octal mode as text: 100644, 100755, 120000 (symlink), 160000 (submodule).
    mode: Mapped[str] = mapped_column(String(6))
    # The blob SHA, or the commit SHA for a submodule entry.
    sha: Mapped[GitSha]
    size: Mapped[int | None]
    valid_from_sync_id: Mapped[int] = mapped_column(
        ForeignKey("project_sync.id", ondelete="CASCADE"), index=True
    )
    valid_to_sync_id: Mapped[int | None] = mapped_column(
        ForeignKey("project_sync.id", ondelete="CASCADE"), index=True
    )


class MemoryEntry(Model):
    """The memory derived from one version of one text file.

    An entry is *active* until a later sync supersedes it (the file changed, was
    removed, or memory was restored to another state). Every read path shows active
    entries only unless a past sync is asked for explicitly.
    """

    __tablename__ = "memory_entry"
    __table_args__ = (
        Index(
            "uq_memory_entry_active_path",
            "project_id",
            "path",
            unique=True,
            postgresql_where=text("superseded_in_sync_id IS NULL"),
            sqlite_where=text("superseded_in_sync_id IS NULL"),
        ),
        Index("ix_memory_entry_project_id_path", "project_id", "path"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    blob_id: Mapped[int] = mapped_column(ForeignKey("blob.id", ondelete="CASCADE"), index=True)
    created_in_sync_id: Mapped[int] = mapped_column(
        ForeignKey("project_sync.id", ondelete="CASCADE"), index=True
    )
    superseded_in_sync_id: Mapped[int | None] = mapped_column(
        ForeignKey("project_sync.id", ondelete="CASCADE"), index=True
    )
    superseded_by_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("memory_entry.id", ondelete="SET NULL"), index=True
    )
    restored_from_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("memory_entry.id", ondelete="SET NULL"), index=True
    )

    blob: Mapped[Blob] = relationship()
    superseded_by: Mapped[MemoryEntry | None] = relationship(
        remote_side=[id], foreign_keys=[superseded_by_entry_id]
    )
    restored_from: Mapped[MemoryEntry | None] = relationship(
        remote_side=[id], foreign_keys=[restored_from_entry_id]
    )

    @property
    def is_active(self) -> bool:
        return self.superseded_in_sync_id is None
