"""What the API and the pages may ask for: a sync, a restore, another tracked branch.

Each action only validates, writes the request and enqueues a job (the work and every
decision about it run in the worker), and turns failures into the ``ApiRequestError``
that both the JSON views and the page forms report.
"""

from __future__ import annotations

import re

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from models import Project, ProjectSync, SyncTrigger, db
from sync_jobs.errors import (
    ConflictError,
    InvalidParameterError,
    PermanentSyncError,
    QueueUnavailableError,
    SyncReservationBusyError,
)
from sync_jobs.restore_job import request_restore
from sync_jobs.scheduling import request_sync
from webhook_app.api_queries import sync_of_project

BRANCH_NAME = re.compile(
    r"^(?!/|.*//|.*\.\.|.*@\{|.*\.lock$|.*/$|.*\.$)"  # forbidden sequences
    r"[^\x00-\x20\x7f~^:?*\[\\]{1,255}$"  # forbidden characters, length
)
"""A branch name git accepts (``git check-ref-format --branch``, the common rules):
no spaces or control characters, none of ``~^:?*[\\``, no ``..``, ``@{``, ``//``, no
leading or trailing ``/``, no trailing ``.`` or ``.lock``."""


def start_sync(project: Project) -> ProjectSync:
    """A manual resync; coalesces with a sync already queued for the project."""
    try:
        return request_sync(project.id, trigger=SyncTrigger.MANUAL)
    except (RedisError, SyncReservationBusyError) as exc:
        db.session.rollback()
        raise QueueUnavailableError(
            f"The sync could not be queued ({type(exc).__name__}); try again shortly."
        ) from exc


def start_restore(project: Project, sync_id: int) -> ProjectSync:
    """Queue a restore of the state at ``sync_id``, a successful sync of ``project``."""
    sync_of_project(project, sync_id, in_lineage=True)
    try:
        return request_restore(project.id, from_sync_id=sync_id)
    except PermanentSyncError as exc:
        db.session.rollback()
        raise ConflictError(str(exc)) from exc
    except RedisError as exc:
        db.session.rollback()
        raise QueueUnavailableError(
            f"The restore could not be queued ({type(exc).__name__}); try again shortly."
        ) from exc


def track_branch(project: Project, branch: object) -> tuple[Project, ProjectSync]:
    """Track ``branch`` of ``project``'s repository and request its first sync.

    Whether the branch exists on GitHub is the first sync's business: a missing branch
    ends it as failed with a readable error, without a GitHub call in the request.
    """
    if not isinstance(branch, str) or not BRANCH_NAME.match(branch.strip()):
        raise InvalidParameterError(f"branch must be a valid git branch name, got {branch!r}.")
    branch = branch.strip()
    repository_id = project.repository_id
    existing = db.session.scalar(
        select(Project).where(Project.repository_id == repository_id, Project.branch == branch)
    )
    if existing is not None:
        raise ConflictError(f"Branch {branch!r} is already tracked as project {existing.id}.")
    tracked = Project(repository_id=repository_id, branch=branch)
    db.session.add(tracked)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ConflictError(f"Branch {branch!r} is already tracked.") from None
    return tracked, start_sync(tracked)
