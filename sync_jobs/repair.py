"""The repair pass: every unfinished sync has a live job, every tracked project a sync.

Workers die mid-sync, Redis restarts empty, a database outage stops a job from
rescheduling itself: each leaves a ProjectSync ``queued`` or ``running`` whose job
will never run. RQ notices only some of these, late, and only while Redis still has
the job. This pass compares the database (which syncs are unfinished) with RQ and the
running locks (which jobs are alive) and closes the gap:

- A sync is dead when :func:`~sync_jobs.scheduling.run_is_alive` says no twice,
  :data:`~sync_jobs.defaults.REPAIR_CONFIRM_SECONDS` apart (a running job whose lock
  vanished with Redis takes it again within one heartbeat; a job being rescheduled
  exists again within milliseconds).
- Of a project's dead syncs to its branch head, the newest runs again under a new job
  (its pending marker restored, so pushes coalesce into it) unless a live one exists;
  the older ones end ``superseded``, since one sync to the head serves them all.
  Restores name a fixed target and always run again.
- A sync that has started :data:`~sync_jobs.defaults.SYNC_MAX_UNEXPECTED_FAILURES`
  times and died each time ends ``failed`` (it may be killing its worker).
- A tracked project that never had any sync (its first sync was never requested: the
  request failed after the rows were committed) gets one.

Every sync the pass ends or queues again publishes what a sync ending or waiting in a
job publishes (:mod:`sync_jobs.changes`): ``final`` (with the final event on the sync's
own stream) or ``sync``, so an open page shows it without a reload.

It runs in the maintenance process (:mod:`sync_jobs.maintenance`) every
``REPAIR_INTERVAL_SECONDS``. Judging from the database first means a flushed Redis
loses nothing: every unfinished row is found again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby

from redis import Redis
from sqlalchemy import exists, select

from models import Installation, Project, ProjectSync, Repository, SyncStatus, SyncTrigger, db
from sync_jobs import defaults
from sync_jobs.changes import sync_queued
from sync_jobs.keys import sync_job_id, sync_pending_key
from sync_jobs.progress import Phase, ProgressEvent, ProgressPublisher
from sync_jobs.scheduling import enqueue_run, request_sync, run_is_alive, syncs_queue

log = logging.getLogger(__name__)

UNFINISHED = (SyncStatus.QUEUED, SyncStatus.RUNNING)


@dataclass
class RepairReport:
    """What one repair pass did, for the log and the metrics."""

    requeued: int = 0
    superseded: int = 0
    failed: int = 0
    first_syncs: int = 0

    @property
    def repairs(self) -> int:
        return self.requeued + self.superseded + self.failed + self.first_syncs


def repair_syncs(
    redis: Redis, *, confirm_seconds: float = defaults.REPAIR_CONFIRM_SECONDS
) -> RepairReport:
    """Run one repair pass (needs an app context); see the module docstring."""
    report = RepairReport()
    suspects = _dead(redis, _unfinished())
    if suspects:
        time.sleep(confirm_seconds)
        db.session.rollback()  # read again in a fresh transaction
        again = {sync.id: sync for sync in _dead(redis, _unfinished())}
        dead = [
            again[s.id] for s in suspects if s.id in again and again[s.id].rq_job_id == s.rq_job_id
        ]
        _repair_dead(redis, dead, report)
    report.first_syncs = _request_first_syncs()
    if report.repairs:
        log.info("repair pass: %s", report)
    return report


def _unfinished() -> list[ProjectSync]:
    return list(
        db.session.scalars(
            select(ProjectSync)
            .where(ProjectSync.status.in_(UNFINISHED))
            .order_by(ProjectSync.project_id, ProjectSync.id)
        )
    )


def _dead(redis: Redis, syncs: list[ProjectSync]) -> list[ProjectSync]:
    return [
        sync
        for sync in syncs
        if not run_is_alive(redis, project_id=sync.project_id, job_id=sync.rq_job_id)
    ]


def _repair_dead(redis: Redis, dead: list[ProjectSync], report: RepairReport) -> None:
    """Per project: run the newest dead sync again, close the older ones."""
    dead_ids = {sync.id for sync in dead}
    for project_id, group in groupby(dead, key=lambda sync: sync.project_id):
        syncs = list(group)
        restores = [sync for sync in syncs if sync.trigger is SyncTrigger.RESTORE]
        to_head = [sync for sync in syncs if sync.trigger is not SyncTrigger.RESTORE]
        for sync in restores:
            _run_again(redis, sync, report, claim_marker=False)
        if not to_head:
            continue
        newest = to_head[-1]
        live_later = db.session.scalar(
            select(ProjectSync.id).where(
                ProjectSync.project_id == project_id,
                ProjectSync.status.in_(UNFINISHED),
                ProjectSync.trigger != SyncTrigger.RESTORE,
                ProjectSync.id.not_in(dead_ids),
            )
        )
        keep = None if live_later is not None else newest
        closed = []
        for sync in to_head:
            if sync is keep:
                _run_again(redis, sync, report, claim_marker=True)
            else:
                replacement = live_later if live_later is not None else newest.id
                _close(sync, f"its job was lost; sync {replacement} brings the branch to its head")
                closed.append(sync)
                report.superseded += 1
        db.session.commit()
        for sync in closed:
            publish_ended(redis, sync, sync.error or "superseded")


def _run_again(
    redis: Redis, sync: ProjectSync, report: RepairReport, *, claim_marker: bool
) -> None:
    if sync.attempts >= defaults.SYNC_MAX_UNEXPECTED_FAILURES:
        sync.status = SyncStatus.FAILED
        sync.finished_at = datetime.now(UTC)
        sync.error = (
            f"its worker stopped during each of {sync.attempts} runs (killed, or out of "
            "memory?). Start a new sync when the cause is fixed."
        )
        sync.waiting_reason = None
        db.session.commit()
        publish_ended(redis, sync, sync.error)
        report.failed += 1
        return
    was_running = sync.status is SyncStatus.RUNNING
    delay = _remaining_wait(sync)
    job_id = sync_job_id(sync.id)
    sync.status = SyncStatus.QUEUED
    sync.rq_job_id = job_id
    sync.waiting_reason = (
        "its worker stopped; running it again"
        if was_running
        else "its queued job was lost; queued again"
    )
    db.session.commit()
    sync_queued(redis, sync)  # before the job, which may run at once
    enqueue_run(syncs_queue(redis), sync_id=sync.id, job_id=job_id, delay_seconds=delay)
    if claim_marker:
        # Only if free: a newer request may already have published its own sync.
        redis.set(
            sync_pending_key(sync.project_id),
            str(sync.id),
            nx=True,
            ex=defaults.SYNC_PENDING_TTL_SECONDS,
        )
    log.warning("sync %s of project %s: %s", sync.id, sync.project_id, sync.waiting_reason)
    report.requeued += 1


def publish_ended(redis: Redis, sync: ProjectSync, message: str) -> None:
    """The final event a sync ended by its own job publishes: on its stream (a page
    watching it stops there) and as a ``final`` change of its project (never raises)."""
    final = ProgressEvent(Phase.DONE, 1, 1, message, outcome=sync.status)
    publisher = ProgressPublisher(redis, sync_id=sync.id, project_id=sync.project_id)
    publisher.publish(final, force=True)


def _remaining_wait(sync: ProjectSync) -> float:
    """Seconds until a waiting sync was due (a rate-limit reset), 0 if it is due now."""
    if sync.retry_at is None:
        return 0
    retry_at = sync.retry_at if sync.retry_at.tzinfo else sync.retry_at.replace(tzinfo=UTC)
    return max((retry_at - datetime.now(UTC)) / timedelta(seconds=1), 0)


def _close(sync: ProjectSync, reason: str) -> None:
    sync.status = SyncStatus.SUPERSEDED
    sync.finished_at = datetime.now(UTC)
    sync.waiting_reason = None
    sync.error = reason
    log.info("sync %s of project %s superseded: %s", sync.id, sync.project_id, reason)


def _request_first_syncs() -> int:
    """Request a sync for every tracked project that never had one."""
    never_synced = db.session.scalars(
        select(Project.id)
        .join(Repository, Project.repository_id == Repository.id)
        .join(Installation, Repository.installation_id == Installation.id)
        .where(
            Project.stopped_reason.is_(None),
            Project.auto_sync.is_(True),
            Project.tracked.is_(True),
            Project.current_sync_id.is_(None),
            Repository.removed_at.is_(None),
            Installation.suspended_at.is_(None),
            Installation.deleted_at.is_(None),
            ~exists().where(ProjectSync.project_id == Project.id),
        )
    ).all()
    for project_id in never_synced:
        request_sync(project_id, trigger=SyncTrigger.INSTALL)
    return len(never_synced)
