"""The branch-drift reconciler: what GitHub knows and a lost webhook kept from the database.

Webhooks are the fast path, and they can be lost (the receiver was down or answered
5xx, and GitHub never retries by itself). Two maintenance passes close the gap, each
called once a round by the maintenance process, inside an app context:

- :func:`reconcile_branches` (here) polls every tracked branch head with a conditional
  request and requests a ``reconcile`` sync where the head moved without a sync;
- :func:`sync_jobs.redelivery.redeliver_failed_deliveries` reads the App webhook's
  delivery log and asks GitHub to deliver again, once, each delivery that never
  reached the receiver.

What they remember lives in the database (``Project.branch_etag`` and
``reconciled_at``, a MaintenanceCheckpoint, RedeliveryRequest rows), never in Redis:
a Redis restart is one of the things they repair after.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import current_app
from githubkit.exception import RequestFailed
from sqlalchemy import select, update

from models import (
    Installation,
    Project,
    ProjectSync,
    Repository,
    SyncStatus,
    SyncTrigger,
    db,
)
from models.base import utcnow
from sync_jobs import defaults
from sync_jobs.connector import GitHubConnector
from sync_jobs.errors import (
    GitHubUnavailableError,
    PermanentSyncError,
    RateLimitedError,
    SyncReservationBusyError,
)
from sync_jobs.redis_client import redis_connection
from sync_jobs.scheduling import request_sync

log = logging.getLogger(__name__)

__all__ = ["reconcile_branches"]


@dataclass
class _Tracked:
    """What the poll of one project needs, read up front as plain values."""

    project_id: int
    branch: str
    full_name: str
    etag: str | None
    applied_head: str | None


def reconcile_branches() -> int:
    """Request a sync of every tracked project whose branch moved without one; return
    how many syncs were requested (a request that coalesced into a queued sync is not
    counted).

    Tracked means: tracked, not stopped, auto-sync on, repository not removed, installation
    neither deleted nor suspended. Each installation gets one connector (one token,
    usually from Redis), each project one conditional request: ``304`` while nothing
    moved, which costs no rate limit (except after a token renewal, see the
    connector). Every project polled gets ``reconciled_at``.

    GitHub's failures never raise: a rate limit or an outage ends that installation's
    round (its projects, least recently polled first, lead the next one), any other
    refusal skips the project. The database or Redis being down raises
    (``SQLAlchemyError``, ``RedisError``). Without an App configured it does nothing.
    """
    config = current_app.config
    if not (config.get("APP_ID") and config.get("PRIVATE_KEY")):
        return 0
    return sum(
        _reconcile_installation(installation_id, projects)
        for installation_id, projects in _tracked()
    )


def _tracked() -> list[tuple[int, list[_Tracked]]]:
    """Tracked projects by installation (GitHub's id), least recently polled first."""
    rows = db.session.execute(
        select(
            Installation.github_id,
            Project.id,
            Project.branch,
            Project.branch_etag,
            Repository.full_name,
            ProjectSync.head_commit_sha,
            ProjectSync.trigger,
        )
        .join(Repository, Project.repository_id == Repository.id)
        .join(Installation, Repository.installation_id == Installation.id)
        .outerjoin(ProjectSync, Project.current_sync_id == ProjectSync.id)
        .where(
            Project.stopped_reason.is_(None),
            Project.auto_sync.is_(True),
            Project.tracked.is_(True),
            Repository.removed_at.is_(None),
            Installation.deleted_at.is_(None),  # Installation.is_active, in SQL
            Installation.suspended_at.is_(None),
        )
        .order_by(Installation.github_id, Project.reconciled_at.asc().nulls_first(), Project.id)
    ).all()
    grouped: dict[int, list[_Tracked]] = {}
    for installation_id, project_id, branch, etag, full_name, head, trigger in rows:
        if trigger is SyncTrigger.RESTORE:
            head = _last_head_read(project_id)
        grouped.setdefault(installation_id, []).append(
            _Tracked(project_id, branch, full_name, etag, head)
        )
    return list(grouped.items())


def _last_head_read(project_id: int) -> str | None:
    """The newest head a sync read from GitHub, for a project whose current state is a
    restore: memory was put back on purpose, and only a branch that moves again since
    is drift (comparing with the restored head would undo the restore every round)."""
    return db.session.scalar(
        select(ProjectSync.head_commit_sha)
        .where(
            ProjectSync.project_id == project_id,
            ProjectSync.status == SyncStatus.SUCCEEDED,
            ProjectSync.trigger != SyncTrigger.RESTORE,
        )
        .order_by(ProjectSync.id.desc())
        .limit(1)
    )


def _connector(installation_id: int) -> GitHubConnector:
    config = current_app.config
    return GitHubConnector(
        base_url=config["GITHUB_API_URL"],
        app_id=config.get("APP_ID"),
        private_key=config.get("PRIVATE_KEY"),
        redis=redis_connection(),
        installation_id=installation_id,
        timeout=config.get("SYNC_HTTP_TIMEOUT_SECONDS", defaults.HTTP_TIMEOUT_SECONDS),
        rate_limit_max_wait=0,  # the next round comes soon enough; never sleep in a pass
    )


def _reconcile_installation(installation_id: int, projects: list[_Tracked]) -> int:
    """Poll an installation's projects in order until done or GitHub stops answering;
    return how many syncs were requested."""
    polled: list[dict[str, Any]] = []
    requested = 0
    try:
        with _connector(installation_id) as github:
            for project in projects:
                try:
                    etag, needs_sync = _poll(github, project)
                except RequestFailed as exc:
                    if exc.response.status_code == 401:
                        raise  # the installation's token is refused: stop its round
                    log.warning(
                        "project %s: GitHub answered %s to its branch poll; skipped this round",
                        project.project_id,
                        exc.response.status_code,
                    )
                    continue
                polled.append(
                    {"id": project.project_id, "branch_etag": etag, "reconciled_at": utcnow()}
                )
                if needs_sync is not None and _request(project, needs_sync):
                    requested += 1
    except RateLimitedError as exc:
        log.info(
            "installation %s is rate limited for %.0f s; %d of its projects wait for the "
            "next round",
            installation_id,
            exc.retry_after_seconds,
            len(projects) - len(polled),
        )
    except (GitHubUnavailableError, RequestFailed) as exc:
        log.warning("installation %s: branch polls stopped this round: %s", installation_id, exc)
    finally:
        if polled:
            db.session.execute(update(Project), polled)
            db.session.commit()
    return requested


_MISSING = "missing"
"""What :func:`_poll` asks for when the branch or repository is gone (see there)."""


def _poll(github: GitHubConnector, project: _Tracked) -> tuple[str | None, str | None]:
    """Read one branch head; return the ETag to store and, if a sync is needed, the head
    it should reach (or :data:`_MISSING`).

    The ETag is kept only while the project is at the head it describes: a later
    ``304`` must mean "still at the applied head", never hide a head not synced yet.
    """
    etag = project.etag if project.applied_head is not None else None
    try:
        head, answered = github.branch_head_if_changed(
            project.branch, etag, full_name=project.full_name
        )
    except PermanentSyncError as exc:
        log.info("project %s: %s", project.project_id, exc)
        return None, _MISSING
    if head is None:
        return answered, None
    if head.commit_sha == project.applied_head:
        return answered, None
    log.info(
        "project %s: %s is at %s, synced at %s; no webhook said so",
        project.project_id,
        project.branch,
        head.commit_sha[:12],
        (project.applied_head or "nothing")[:12],
    )
    return None, head.commit_sha


def _request(project: _Tracked, head_sha: str) -> bool:
    """Request a reconcile sync unless one already covers ``head_sha``; True if a new
    sync was created.

    A live queued sync covers any head (it reads the branch when it starts), and
    :func:`request_sync` coalesces into it; a running sync covers the head only if it
    read that head, otherwise the request queues its follow-up. For a missing branch
    or repository a sync is requested once, so the error is written on the project's
    history in a person's words; while the newest sync is unfinished or that failure,
    no more are.
    """
    if head_sha == _MISSING:
        newest = db.session.scalar(
            select(ProjectSync.status)
            .where(ProjectSync.project_id == project.project_id)
            .order_by(ProjectSync.id.desc())
            .limit(1)
        )
        if newest is not None and newest not in (SyncStatus.SUCCEEDED, SyncStatus.SUPERSEDED):
            return False
    unfinished = db.session.execute(
        select(ProjectSync.id, ProjectSync.status, ProjectSync.head_commit_sha).where(
            ProjectSync.project_id == project.project_id,
            ProjectSync.status.in_((SyncStatus.QUEUED, SyncStatus.RUNNING)),
        )
    ).all()
    if any(s.status is SyncStatus.RUNNING and s.head_commit_sha == head_sha for s in unfinished):
        return False
    try:
        sync = request_sync(project.project_id, trigger=SyncTrigger.RECONCILE)
    except SyncReservationBusyError:
        log.info("project %s: another request is queueing its sync", project.project_id)
        return False
    return sync.id not in {s.id for s in unfinished}
