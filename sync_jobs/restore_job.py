"""Queueing a restore for a worker, so a web request never runs one inline.

:func:`sync_jobs.restore.restore_sync` with ``run=False`` creates the queued restore
row; the job enqueued here is the ordinary sync job (``run_sync``), whose engine runs
restores too. It therefore takes the project's running lock like any other sync, so a
restore never applies concurrently with a push sync of the same project.

Restores do not take the pending marker: a restore names a fixed target, so it cannot be
coalesced with a sync to the branch head, and a push during a queued restore still
gets its own sync.
"""

from __future__ import annotations

from datetime import UTC, datetime

from redis.exceptions import RedisError

from models import ProjectSync, SyncStatus, db
from sync_jobs import changes
from sync_jobs.keys import sync_job_id
from sync_jobs.redis_client import redis_connection
from sync_jobs.restore import restore_sync
from sync_jobs.scheduling import enqueue_run, syncs_queue


def request_restore(project_id: int, *, from_sync_id: int) -> ProjectSync:
    """Commit a queued restore of ``from_sync_id``'s state and enqueue its job.

    Raises ``PermanentSyncError`` (nothing written) when the sync is not in the
    project's lineage, and ``RedisError`` after marking the new row failed when Redis is
    unreachable, as :func:`~sync_jobs.scheduling.request_sync` does.
    """
    sync = restore_sync(project_id, from_sync_id=from_sync_id, run=False)
    sync.rq_job_id = sync_job_id(sync.id)
    db.session.commit()
    changes.sync_queued(redis_connection(), sync)  # before the job, which may run at once
    try:
        enqueue_run(syncs_queue(redis_connection()), sync_id=sync.id, job_id=sync.rq_job_id)
    except RedisError as exc:
        sync.status = SyncStatus.FAILED
        sync.finished_at = datetime.now(UTC)
        sync.error = f"Could not queue the restore: Redis is unreachable ({exc}). Request it again."
        db.session.commit()
        raise
    return sync
