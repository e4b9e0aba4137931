"""The one place that decides which versioned rows a read sees.

Every reader (JSON API, pages, sync pipeline, restore) goes through these functions,
so superseded entries are filtered the same way everywhere: the default is the
project's current state (open rows only); a past state is returned only when a sync is
named explicitly.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import aliased

from models.content import MemoryEntry, RepositoryFile
from models.project import ProjectSync


def _sequence_of(sync: ProjectSync) -> int:
    if sync.sequence is None:
        raise ValueError(f"sync {sync.id} is not part of the lineage (status {sync.status})")
    return sync.sequence


def _valid_at(
    query: Select[Any], *, opened: Any, closed: Any, sync: ProjectSync | None
) -> Select[Any]:
    """The versioning rule shared by files and memory entries.

    A row opened by one sync and closed (changed, removed, superseded) by a later one
    is visible now if it is still open, and at sync N if it was opened at or before N
    and not closed at or before N.
    """
    if sync is None:
        return query.where(closed.is_(None))
    sequence = _sequence_of(sync)
    opened_by = aliased(ProjectSync)
    closed_by = aliased(ProjectSync)
    return (
        query.join(opened_by, opened == opened_by.id)
        .outerjoin(closed_by, closed == closed_by.id)
        .where(
            opened_by.sequence <= sequence,
            or_(closed_by.id.is_(None), closed_by.sequence > sequence),
        )
    )


def files_at(project_id: int, *, sync: ProjectSync | None = None) -> Select[tuple[RepositoryFile]]:
    """Tree entries of a project, now (``sync=None``) or as of a past successful sync."""
    query = select(RepositoryFile).where(RepositoryFile.project_id == project_id)
    return _valid_at(
        query,
        opened=RepositoryFile.valid_from_sync_id,
        closed=RepositoryFile.valid_to_sync_id,
        sync=sync,
    ).order_by(RepositoryFile.path)


def memory_entries(
    project_id: int, *, sync: ProjectSync | None = None
) -> Select[tuple[MemoryEntry]]:
    """Memory entries of a project: active ones only, or those active at a past sync."""
    query = select(MemoryEntry).where(MemoryEntry.project_id == project_id)
    return _valid_at(
        query,
        opened=MemoryEntry.created_in_sync_id,
        closed=MemoryEntry.superseded_in_sync_id,
        sync=sync,
    ).order_by(MemoryEntry.path)


def lineage(project_id: int) -> Select[tuple[ProjectSync]]:
    """A project's successful syncs, newest first (the chain through previous_sync_id)."""
    return (
        select(ProjectSync)
        .where(ProjectSync.project_id == project_id, ProjectSync.sequence.is_not(None))
        .order_by(ProjectSync.sequence.desc())
    )


def file_rows_at(project_id: int, *, sync: ProjectSync | None = None) -> Select[Any]:
    """``(id, path, mode, sha, size)`` of the tree entries; the column form of
    :func:`files_at` for readers that handle many rows (the sync pipeline)."""
    entity = files_at(project_id, sync=sync).subquery()
    return select(entity.c.id, entity.c.path, entity.c.mode, entity.c.sha, entity.c.size)


def memory_rows_at(project_id: int, *, sync: ProjectSync | None = None) -> Select[Any]:
    """``(id, path, blob_id)`` of the memory entries; column form of :func:`memory_entries`."""
    entity = memory_entries(project_id, sync=sync).subquery()
    return select(entity.c.id, entity.c.path, entity.c.blob_id)
