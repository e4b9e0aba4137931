"""Restore: bring a project's memory back to the state of a past successful sync.

A restore is a sync like any other (trigger ``restore``): it computes the delta from the
current state to the restored one, applies it through the same compare-and-set
transaction, and joins the lineage, with ``restored_from_sync_id`` naming the sync it
returns to and each recreated memory entry naming the entry it restores. All content
is already stored, so it makes no GitHub call.
"""

from __future__ import annotations

from collections.abc import Generator

from models import Project, ProjectSync, db
from models.enums import SyncMode, SyncStatus, SyncTrigger
from models.queries import file_rows_at, memory_rows_at
from sync_jobs import defaults
from sync_jobs.apply import ApplyPlan, apply_sync, current_files
from sync_jobs.core.diff import diff_flat
from sync_jobs.core.tree import FileEntry
from sync_jobs.errors import LostRaceError, PermanentSyncError
from sync_jobs.progress import Phase, ProgressEvent


def restore_sync(project_id: int, *, from_sync_id: int, run: bool = True) -> ProjectSync:
    """Create (and by default run at once) a restore of ``from_sync_id``'s state.

    Raises :class:`PermanentSyncError` when the sync is not a successful sync of this
    project. With ``run=False`` the queued row is returned for a job to execute
    (``execute_sync`` runs restores too).
    """
    source = db.session.get(ProjectSync, from_sync_id)
    if source is None or source.project_id != project_id or source.sequence is None:
        raise PermanentSyncError(
            f"Sync {from_sync_id} is not a successful sync of project {project_id}; "
            "only syncs in the project's history can be restored."
        )
    sync = ProjectSync(
        project_id=project_id,
        trigger=SyncTrigger.RESTORE,
        restored_from_sync_id=from_sync_id,
        status=SyncStatus.QUEUED,
    )
    db.session.add(sync)
    db.session.commit()
    if run:
        from sync_jobs.pipeline import execute_sync

        execute_sync(sync.id)
        db.session.refresh(sync)
    return sync


def run_restore(sync: ProjectSync) -> Generator[ProgressEvent, None, SyncStatus]:
    """The restore pipeline: two reads, one apply, no GitHub."""
    from models.base import utcnow

    source = db.session.get(ProjectSync, sync.restored_from_sync_id or -1)
    if source is None or source.sequence is None:
        raise PermanentSyncError(f"Sync {sync.restored_from_sync_id} cannot be restored.")
    sync.status = SyncStatus.RUNNING
    sync.started_at = sync.started_at or utcnow()
    db.session.commit()
    for _attempt in range(defaults.APPLY_RACE_RETRIES):
        yield ProgressEvent(Phase.DIFF, 0, 1, f"comparing with sync {source.id}")
        project = db.session.get_one(Project, sync.project_id)
        db.session.refresh(project)
        current = (
            db.session.get(ProjectSync, project.current_sync_id)
            if project.current_sync_id
            else None
        )
        target = {
            path: FileEntry(mode, sha, size)
            for _id, path, mode, sha, size in db.session.execute(
                file_rows_at(project.id, sync=source)
            )
        }
        delta = diff_flat(current_files(project.id), target)
        entries = {
            path: entry_id
            for entry_id, path, _blob in db.session.execute(memory_rows_at(project.id, sync=source))
        }
        yield ProgressEvent(Phase.APPLY, 0, len(delta.changes), "writing the restored state")
        plan = ApplyPlan(
            sync_id=sync.id,
            project_id=project.id,
            repository_id=project.repository_id,
            expected_current_id=project.current_sync_id,
            delta=delta,
            head_commit_sha=source.head_commit_sha,
            head_tree_sha=source.head_tree_sha,
            base_commit_sha=current.head_commit_sha if current else None,
            total_files=len(target),
            mode=SyncMode.RESTORE,
            restored_from_sync_id=source.id,
            restored_entries=entries,
        )
        try:
            apply_sync(plan)
        except LostRaceError:
            db.session.expire_all()
            continue
        yield ProgressEvent(Phase.APPLY, len(delta.changes), len(delta.changes), "restored")
        return SyncStatus.SUCCEEDED
    raise LostRaceError(f"restore {sync.id} lost the apply race repeatedly")
