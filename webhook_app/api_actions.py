"""What the API and the pages may ask for: a sync, a restore, another tracked branch,
untracking a branch, auto-sync on or off.

Each action only validates, writes the request and enqueues a job (the work and every
decision about it run in the worker), and turns failures into the ``ApiRequestError``
that both the JSON views and the page forms report.

Sync and restore requests are idempotent, so a double click, a retried POST or two
open tabs cost one sync:

- with a ``request_key`` (the API's ``Idempotency-Key`` header) the key is recorded as
  a :class:`~models.SyncRequest`; the same key again returns the sync the first request
  got, and the key reused for a different request is refused (422);
- without one, a request equal to one made within ``SYNC_REQUEST_DEDUP_SECONDS`` (same
  project, kind and parameters) returns that request's sync (recorded under an
  implicit key, kept only for the window), and a sync request while an equal sync is
  still queued coalesces into it (``request_sync``).

The check and the creation run under a per-project Redis lock, so two equal requests
arriving together cannot both create a sync.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from redis.exceptions import LockError, RedisError
from redis.lock import Lock
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from models import Project, ProjectSync, SyncRequest, SyncStatus, SyncTrigger, db
from sync_jobs import changes, defaults
from sync_jobs.errors import PermanentSyncError, SyncReservationBusyError
from sync_jobs.keys import sync_pending_key, sync_request_lock_key
from sync_jobs.redis_client import redis_connection
from sync_jobs.restore_job import request_restore
from sync_jobs.scheduling import delete_if_equal, request_sync
from webhook_app.api_queries import (
    UnprocessableRequestError,
    head_moved_since_sync,
    sync_of_project,
)
from webhook_app.errors import ConflictError, InvalidParameterError, QueueUnavailableError

BRANCH_NAME = re.compile(
    r"^(?!/|.*//|.*\.\.|.*@\{|.*\.lock$|.*/$|.*\.$)"  # forbidden sequences
    r"[^\x00-\x20\x7f~^:?*\[\\]{1,255}$"  # forbidden characters, length
)
"""A branch name git accepts (``git check-ref-format --branch``, the common rules):
no spaces or control characters, none of ``~^:?*[\\``, no ``..``, ``@{``, ``//``, no
leading or trailing ``/``, no trailing ``.`` or ``.lock``."""

REQUEST_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
"""What an idempotency key may be: 1 to 255 visible ASCII characters (a UUID, a
random token); it is stored as is."""

IMPLICIT_KEY_PREFIX = "implicit "
"""Requests without a key are recorded too, under this prefix and a random id, so an
equal request within the window finds the sync the first one got."""

UNTRACKED_REASON = "the branch was untracked"
"""The error written on syncs still queued when their project is untracked."""


# --- Sync and restore ---------------------------------------------------------------------


def start_sync(
    project: Project, *, full: bool = False, request_key: str | None = None
) -> ProjectSync:
    """A manual resync, idempotent (see the module docstring); ``full`` compares every
    file instead of the stored trees, as ``flask sync --full`` does."""
    _require_tracked(project)
    parameters = {"full": bool(full)}

    def create() -> ProjectSync:
        return request_sync(project.id, trigger=SyncTrigger.MANUAL, full=bool(full))

    return _idempotent(project, "sync", parameters, request_key, create, _recent_sync)


def start_restore(
    project: Project, sync_id: int, *, request_key: str | None = None
) -> ProjectSync:
    """Queue a restore of the state at ``sync_id``, a successful sync of ``project``;
    idempotent like :func:`start_sync`."""
    _require_tracked(project)
    sync_of_project(project, sync_id, in_lineage=True)
    parameters = {"sync_id": sync_id}

    def create() -> ProjectSync:
        try:
            return request_restore(project.id, from_sync_id=sync_id)
        except PermanentSyncError as exc:
            db.session.rollback()
            raise ConflictError(str(exc)) from exc

    return _idempotent(project, "restore", parameters, request_key, create, _recent_restore)


def _idempotent(
    project: Project,
    kind: str,
    parameters: dict[str, Any],
    request_key: str | None,
    create: Callable[[], ProjectSync],
    recent: Callable[[Project, dict[str, Any], datetime], ProjectSync | None],
) -> ProjectSync:
    """The sync an equal earlier request got, or a new one made by ``create``."""
    key = _checked_key(request_key)
    canonical = json.dumps(parameters, sort_keys=True, separators=(",", ":"))
    what = "sync" if kind == "sync" else "restore"
    try:
        with _request_lock(project.id, what):
            if key is not None:
                earlier = _keyed_request(project, key, kind, canonical)
            else:
                since = _dedup_since()
                earlier = _recent_request(project, kind, canonical, since) or recent(
                    project, parameters, since
                )
            if earlier is not None:
                return earlier
            sync = create()
            if key is None:
                _forget_requests_before(project, _dedup_since())
            return _record_key(project, key or _implicit_key(), kind, canonical, sync)
    except (RedisError, SyncReservationBusyError) as exc:
        db.session.rollback()
        raise QueueUnavailableError(
            f"The {what} could not be queued ({type(exc).__name__}); try again shortly."
        ) from exc


@contextmanager
def _request_lock(project_id: int, what: str) -> Iterator[None]:
    lock = Lock(
        redis_connection(),
        sync_request_lock_key(project_id),
        timeout=defaults.SYNC_REQUEST_LOCK_SECONDS,
        blocking=True,
        blocking_timeout=defaults.SYNC_REQUEST_LOCK_WAIT_SECONDS,
        thread_local=False,
    )
    if not lock.acquire():
        raise QueueUnavailableError(
            f"Another {what} request of this project is still being queued; try again."
        )
    try:
        yield
    finally:
        with suppress(LockError):  # expired (a very slow request): nothing of ours to free
            lock.release()


def _checked_key(request_key: str | None) -> str | None:
    if request_key is None:
        return None
    if not isinstance(request_key, str) or not REQUEST_KEY.match(request_key):
        raise InvalidParameterError(
            "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID, say)."
        )
    return request_key


def _dedup_since() -> datetime:
    seconds = current_app.config.get(
        "SYNC_REQUEST_DEDUP_SECONDS", defaults.SYNC_REQUEST_DEDUP_SECONDS
    )
    return datetime.now(UTC) - timedelta(seconds=seconds)


def _implicit_key() -> str:
    """The key a request without one is recorded under; the space keeps it apart from
    every key a client can send (:data:`REQUEST_KEY`)."""
    return f"{IMPLICIT_KEY_PREFIX}{uuid.uuid4().hex}"


def _recent_request(
    project: Project, kind: str, canonical: str, since: datetime
) -> ProjectSync | None:
    """The sync an equal request without a key got since ``since`` (whatever sync that
    was: its own, or a queued push sync it coalesced into), unless that sync failed."""
    earlier = db.session.scalar(
        select(SyncRequest)
        .where(
            SyncRequest.project_id == project.id,
            SyncRequest.kind == kind,
            SyncRequest.parameters == canonical,
            SyncRequest.key.startswith(IMPLICIT_KEY_PREFIX, autoescape=True),
            SyncRequest.created_at >= since,
        )
        .order_by(SyncRequest.id.desc())
        .limit(1)
    )
    if earlier is None or earlier.sync.status is SyncStatus.FAILED:
        return None
    return earlier.sync


def _forget_requests_before(project: Project, since: datetime) -> None:
    """Requests without a key matter only within the window: older ones are deleted as
    new ones come, so the table holds keyed requests and a few seconds of the rest."""
    db.session.execute(
        delete(SyncRequest).where(
            SyncRequest.project_id == project.id,
            SyncRequest.key.startswith(IMPLICIT_KEY_PREFIX, autoescape=True),
            SyncRequest.created_at < since,
        )
    )


def _keyed_request(project: Project, key: str, kind: str, canonical: str) -> ProjectSync | None:
    earlier = db.session.scalar(
        select(SyncRequest).where(SyncRequest.project_id == project.id, SyncRequest.key == key)
    )
    if earlier is None:
        return None
    if earlier.kind != kind or earlier.parameters != canonical:
        raise UnprocessableRequestError(
            f"Idempotency-Key {key!r} was already used for a {earlier.kind} request "
            f"with {earlier.parameters}; use a new key for a different request."
        )
    return earlier.sync


def _record_key(
    project: Project, key: str, kind: str, canonical: str, sync: ProjectSync
) -> ProjectSync:
    db.session.add(
        SyncRequest(project_id=project.id, key=key, kind=kind, parameters=canonical, sync=sync)
    )
    try:
        db.session.commit()
    except IntegrityError:
        # Only a request that outlived the lock gets here: the key is recorded
        # already, and its sync is the answer.
        db.session.rollback()
        earlier = _keyed_request(project, key, kind, canonical)
        if earlier is None:
            raise
        return earlier
    return sync


def _recent_sync(
    project: Project, parameters: dict[str, Any], since: datetime
) -> ProjectSync | None:
    """A manual sync with the same parameters requested since ``since`` that has not
    failed (a person asking again after a failure wants a new try)."""
    return db.session.scalar(
        select(ProjectSync)
        .where(
            ProjectSync.project_id == project.id,
            ProjectSync.trigger == SyncTrigger.MANUAL,
            ProjectSync.full_requested.is_(parameters["full"]),
            ProjectSync.status != SyncStatus.FAILED,
            ProjectSync.queued_at >= since,
        )
        .order_by(ProjectSync.id.desc())
        .limit(1)
    )


def _recent_restore(
    project: Project, parameters: dict[str, Any], since: datetime
) -> ProjectSync | None:
    """A restore of the same sync that is still queued, or was requested since ``since``
    and has not failed."""
    return db.session.scalar(
        select(ProjectSync)
        .where(
            ProjectSync.project_id == project.id,
            ProjectSync.trigger == SyncTrigger.RESTORE,
            ProjectSync.restored_from_sync_id == parameters["sync_id"],
            ProjectSync.status != SyncStatus.FAILED,
            (ProjectSync.queued_at >= since) | (ProjectSync.status == SyncStatus.QUEUED),
        )
        .order_by(ProjectSync.id.desc())
        .limit(1)
    )


def _require_tracked(project: Project) -> None:
    if not project.tracked:
        raise ConflictError(
            f"Branch {project.branch!r} is not tracked any more; track it again to sync it."
        )


# --- Tracking -----------------------------------------------------------------------------


def track_branch(project: Project, branch: object) -> tuple[Project, ProjectSync]:
    """Track ``branch`` of ``project``'s repository and request its first sync.

    A branch tracked before and untracked since comes back with its history (and is
    synced to its head). Whether the branch exists on GitHub is the first sync's
    business: a missing branch ends it as failed with a readable error, without a
    GitHub call in the request.
    """
    if not isinstance(branch, str) or not BRANCH_NAME.match(branch.strip()):
        raise InvalidParameterError(f"branch must be a valid git branch name, got {branch!r}.")
    branch = branch.strip()
    repository_id = project.repository_id
    existing = db.session.scalar(
        select(Project).where(Project.repository_id == repository_id, Project.branch == branch)
    )
    if existing is not None and existing.tracked:
        raise ConflictError(f"Branch {branch!r} is already tracked as project {existing.id}.")
    if existing is not None:
        existing.tracked, existing.untracked_at = True, None
        db.session.commit()
        _announce(existing.id, "tracked")
        return existing, _queue(existing)
    tracked = Project(repository_id=repository_id, branch=branch)
    db.session.add(tracked)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ConflictError(f"Branch {branch!r} is already tracked.") from None
    _announce(tracked.id, "tracked")
    return tracked, _queue(tracked)


def _announce(project_id: int, change: str) -> None:
    """Tell open pages (the API's callers change projects too); never raises."""
    try:
        redis = redis_connection()
    except RedisError:
        return
    changes.project_changed(redis, project_id=project_id, change=change)


def _queue(project: Project) -> ProjectSync:
    try:
        return request_sync(project.id, trigger=SyncTrigger.MANUAL)
    except (RedisError, SyncReservationBusyError) as exc:
        db.session.rollback()
        raise QueueUnavailableError(
            f"The sync could not be queued ({type(exc).__name__}); try again shortly."
        ) from exc


def untrack_branch(project: Project) -> None:
    """Stop tracking the project's branch: no more syncs, hidden from every list.

    A soft delete: the row, its lineage and memory stay (readable by id), and
    tracking the branch again brings them back. Syncs still queued are superseded
    (their jobs find them final and do nothing); a sync already running finishes and
    applies as usual, since its apply step is one transaction whatever happens here.
    Untracking an untracked project changes nothing.
    """
    if not project.tracked:
        return
    project.tracked = False
    project.untracked_at = datetime.now(UTC)
    queued = list(
        db.session.scalars(
            select(ProjectSync.id).where(
                ProjectSync.project_id == project.id, ProjectSync.status == SyncStatus.QUEUED
            )
        )
    )
    if queued:
        db.session.execute(
            update(ProjectSync)
            .where(ProjectSync.id.in_(queued), ProjectSync.status == SyncStatus.QUEUED)
            .values(
                status=SyncStatus.SUPERSEDED,
                finished_at=datetime.now(UTC),
                error=UNTRACKED_REASON,
                retry_at=None,
                waiting_reason=None,
            )
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    _forget_pending(project.id, queued)
    _announce(project.id, "untracked")


def _forget_pending(project_id: int, sync_ids: list[int]) -> None:
    """Drop the pending marker if it names a cancelled sync; a marker left behind is
    harmless (it is trusted only while its sync is queued), so Redis errors pass."""
    try:
        redis = redis_connection()
        for sync_id in sync_ids:
            delete_if_equal(redis, sync_pending_key(project_id), str(sync_id))
    except RedisError:
        pass


def set_auto_sync(project: Project, enabled: bool) -> Project:
    """Turn syncing on push on or off.

    Off, a push only records the branch's new head (so memory can be shown behind) and
    reconcile leaves the project alone; a manual resync still works. Turned back on,
    the project is synced to its head if the last known head is not what memory holds.
    ``enabled`` is a bool already: the API's body model and the page's form say so.
    """
    was = project.auto_sync
    project.auto_sync = enabled
    db.session.commit()
    _announce(project.id, "settings")
    resumed = enabled and not was and project.tracked and project.stopped_reason is None
    if resumed and head_moved_since_sync(project):
        try:
            request_sync(project.id, trigger=SyncTrigger.MANUAL)
        except (RedisError, SyncReservationBusyError):
            db.session.rollback()  # the reconcile pass syncs it at its next round
    return project
