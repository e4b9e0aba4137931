"""The one place that decides which versioned rows a read sees.

Every reader (JSON API, pages, sync pipeline, restore) goes through these functions,
so superseded entries are filtered the same way everywhere: the default is the
project's current state (open rows only); a past state is returned only when a sync is
named explicitly.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import aliased

from models.content import MemoryEntry, RepositoryFile
from models.project import ProjectSync


def _sequence_of(sync: ProjectSync) -> int:
    if sync.sequence is None:
        raise ValueError(f"sync {sync.id} is not part of the lineage (status {sync.status})")
    return sync.sequence


def files_at(project_id: int, *, sync: ProjectSync | None = None) -> Select[tuple[RepositoryFile]]:
    """Tree entries of a project, now (``sync=None``) or as of a past successful sync."""
    query = select(RepositoryFile).where(RepositoryFile.project_id == project_id)
    if sync is None:
        return query.where(RepositoryFile.valid_to_sync_id.is_(None)).order_by(RepositoryFile.path)
    sequence = _sequence_of(sync)
    valid_from = aliased(ProjectSync)
    valid_to = aliased(ProjectSync)
    return (
        query.join(valid_from, RepositoryFile.valid_from_sync_id == valid_from.id)
        .outerjoin(valid_to, RepositoryFile.valid_to_sync_id == valid_to.id)
        .where(
            valid_from.sequence <= sequence,
            or_(valid_to.id.is_(None), valid_to.sequence > sequence),
        )
        .order_by(RepositoryFile.path)
    )


def memory_entries(
    project_id: int, *, sync: ProjectSync | None = None
) -> Select[tuple[MemoryEntry]]:
    """Memory entries of a project: active ones only, or those active at a past sync."""
    query = select(MemoryEntry).where(MemoryEntry.project_id == project_id)
    if sync is None:
        return query.where(MemoryEntry.superseded_in_sync_id.is_(None)).order_by(MemoryEntry.path)
    sequence = _sequence_of(sync)
    created = aliased(ProjectSync)
    superseded = aliased(ProjectSync)
    return (
        query.join(created, MemoryEntry.created_in_sync_id == created.id)
        .outerjoin(
            superseded,
            and_(MemoryEntry.superseded_in_sync_id == superseded.id),
        )
        .where(
            created.sequence <= sequence,
            or_(superseded.id.is_(None), superseded.sequence > sequence),
        )
        .order_by(MemoryEntry.path)
    )


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
