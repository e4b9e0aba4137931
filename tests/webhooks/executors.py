"""Stand-ins for the sync engine, as top-level functions (RQ imports jobs by name).

``record_run`` does what the contract asks of ``execute_sync`` that coalescing can
observe: marks the sync running, takes some time, reads the branch's *current* head
(here a Redis key the test moves with every push), and records it as the synced head.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from models import ProjectSync, SyncStatus, db
from sync_jobs.redis_client import redis_connection

HEAD_KEY = "test:head:{project_id}"
DURATION_KEY = "test:sync-seconds"


def record_run(sync_id: int) -> None:
    sync = db.session.get(ProjectSync, sync_id)
    assert sync is not None
    sync.status = SyncStatus.RUNNING
    sync.started_at = datetime.now(UTC)
    db.session.commit()
    redis = redis_connection()
    time.sleep(float(redis.get(DURATION_KEY) or 0.2))
    head = redis.get(HEAD_KEY.format(project_id=sync.project_id))
    sync.head_commit_sha = head.decode() if head else None
    sync.status = SyncStatus.SUCCEEDED
    sync.finished_at = datetime.now(UTC)
    db.session.commit()


def pooled_connections_at_start() -> int:
    """How many database connections the job's pool already holds when it starts (a
    horse must hold none of its parent's)."""
    return int(db.engine.pool.checkedin())  # type: ignore[attr-defined]
