"""Reads shared by the JSON API, the event stream and the pages: who sees which project,
how a row is shown, and how a list is cut into pages.

Visibility is a pure function of a query and an :class:`~webhook_app.access.Access`
(:func:`restrict_to_visible`), so it is tested without a signed-in person; every view
reaches projects only through :func:`visible_projects`, :func:`visible_project` or
:func:`actionable_project` (which also checks the permission to act). Versioned rows
(files, memory entries, lineage) are read only through ``models.queries``, which owns
superseded-entry filtering.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from flask import current_app
from githubkit.exception import RequestError, RequestFailed
from redis.exceptions import RedisError
from sqlalchemy import Select, and_, false, func, or_, select
from sqlalchemy.orm import selectinload

from models import (
    Blob,
    Installation,
    Project,
    ProjectSync,
    Repository,
    SyncStatus,
    SyncTrigger,
    db,
)
from sync_jobs import defaults
from sync_jobs.connector import GitHubConnector
from sync_jobs.errors import GitHubUnavailableError, PermanentSyncError, RateLimitedError
from sync_jobs.keys import compare_cache_key
from sync_jobs.redis_client import redis_connection
from webhook_app.access import Access, current_access, require_action
from webhook_app.errors import (
    ApiRequestError,
    ConflictError,
    InvalidParameterError,
    NotVisibleError,
)

log = logging.getLogger(__name__)

T = TypeVar("T", bound=tuple[Any, ...])


def restrict_to_visible(query: Select[T], access: Access) -> Select[T]:
    """Limit a query over ``Project`` to the repositories ``access`` may read.

    A repository counts only under the installation GitHub listed it for: a row still
    pointing at an installation that lost the repository (a transfer not yet seen) is
    hidden. A repository without an installation is visible only to ``read_all``.
    """
    if access.read_all:
        return query
    clauses = [
        and_(Installation.github_id == installation_id, Repository.github_id.in_(sorted(repos)))
        for installation_id, repos in sorted(access.repositories.items())
        if repos
    ]
    joined = query.join(Repository, Project.repository_id == Repository.id).join(
        Installation, Repository.installation_id == Installation.id
    )
    return joined.where(or_(*clauses) if clauses else false())


def visible_projects() -> list[Project]:
    """The current person's tracked projects, by repository name then branch (an
    untracked one is still readable by id, see :func:`visible_project`)."""
    query = (
        select(Project)
        .where(Project.tracked.is_(True))
        .options(
            selectinload(Project.repository).selectinload(Repository.installation),
            selectinload(Project.current_sync),
        )
        .order_by(Project.id)
    )
    projects = list(db.session.scalars(restrict_to_visible(query, current_access())))
    return sorted(projects, key=lambda p: (p.repository.full_name.lower(), p.branch))


ROW_ID_LIMIT = 2**31
"""Row ids are INTEGER columns: a larger id in a request names no row, and is answered
404 before the database, which refuses it (a 500 otherwise), sees it."""


def visible_project(project_id: int) -> Project:
    """The project if the current person may see it; :class:`NotVisibleError` otherwise."""
    if not 0 < project_id < ROW_ID_LIMIT:
        raise NotVisibleError(f"No project {project_id}.")
    query = restrict_to_visible(select(Project).where(Project.id == project_id), current_access())
    project = db.session.scalar(query)
    if project is None:
        raise NotVisibleError(f"No project {project_id}.")
    return project


def actionable_project(project_id: int) -> Project:
    """The project if the current person may see it (404 otherwise) and act on it (401
    for nobody signed in, 403 for a person without ``ACTION_PERMISSION``)."""
    project = visible_project(project_id)
    repository = project.repository
    installation = repository.installation
    require_action(
        installation_id=installation.github_id if installation is not None else None,
        repository_id=repository.github_id,
        name=repository.full_name,
    )
    return project


def visible_sync(sync_id: int) -> ProjectSync:
    """A sync whose project the current person may see; :class:`NotVisibleError` otherwise."""
    sync = db.session.get(ProjectSync, sync_id) if 0 < sync_id < ROW_ID_LIMIT else None
    if sync is None:
        raise NotVisibleError(f"No sync {sync_id}.")
    try:
        visible_project(sync.project_id)
    except NotVisibleError:
        raise NotVisibleError(f"No sync {sync_id}.") from None
    return sync


def sync_of_project(project: Project, sync_id: int, *, in_lineage: bool) -> ProjectSync:
    """Sync ``sync_id`` of ``project``: 404 if it belongs to another project, 409 if it is
    not a successful sync but one is needed (state at a sync, restore)."""
    sync = db.session.get(ProjectSync, sync_id) if 0 < sync_id < ROW_ID_LIMIT else None
    if sync is None or sync.project_id != project.id:
        raise NotVisibleError(f"Project {project.id} has no sync {sync_id}.")
    if in_lineage and sync.sequence is None:
        raise ConflictError(
            f"Sync {sync_id} is {sync.status}, not part of the project's lineage; "
            "only successful syncs have a state."
        )
    return sync


def latest_unfinished(project_id: int) -> ProjectSync | None:
    """The newest queued or running sync of a project, if any."""
    return db.session.scalar(
        select(ProjectSync)
        .where(
            ProjectSync.project_id == project_id,
            ProjectSync.status.in_([SyncStatus.QUEUED, SyncStatus.RUNNING]),
        )
        .order_by(ProjectSync.id.desc())
        .limit(1)
    )


def all_attempts(project_id: int) -> Select[tuple[ProjectSync]]:
    """Every sync attempt of a project, newest first, whatever its status."""
    return (
        select(ProjectSync)
        .where(ProjectSync.project_id == project_id)
        .order_by(ProjectSync.id.desc())
    )


# --- Pagination ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page of a list: ``number`` counts from 1; ``total`` counts every item."""

    number: int
    per_page: int
    total: int

    @property
    def last(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.per_page


def positive_int(args: Any, name: str, default: int | None = None) -> int | None:
    """An optional positive integer query parameter; 400 if it is anything else."""
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameterError(f"{name} must be a positive integer, got {raw!r}.") from None
    if value < 1:
        raise InvalidParameterError(f"{name} must be a positive integer, got {raw!r}.")
    return value


def paginate(query: Select[T], args: Any) -> tuple[list[Any], Page]:
    """Rows of the requested page (``page``, ``per_page``) and the page it is."""
    number = positive_int(args, "page", 1) or 1
    per_page = positive_int(args, "per_page", defaults.API_DEFAULT_PER_PAGE)
    assert per_page is not None
    if per_page > defaults.API_MAX_PER_PAGE:
        raise InvalidParameterError(f"per_page may be at most {defaults.API_MAX_PER_PAGE}.")
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    page = Page(number, per_page, total or 0)
    rows = list(db.session.scalars(query.offset(page.offset).limit(per_page)))
    return rows, page


# --- How rows are shown ---------------------------------------------------------------------


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def sync_summary(sync: ProjectSync | None) -> dict[str, Any] | None:
    """A sync as the API shows it in lists and status answers."""
    if sync is None:
        return None
    return {
        "id": sync.id,
        "project_id": sync.project_id,
        "status": str(sync.status),
        "trigger": str(sync.trigger),
        "sequence": sync.sequence,
        "previous_sync_id": sync.previous_sync_id,
        "restored_from_sync_id": sync.restored_from_sync_id,
        "base_commit_sha": sync.base_commit_sha,
        "head_commit_sha": sync.head_commit_sha,
        "head_tree_sha": sync.head_tree_sha,
        "files": {
            "added": sync.files_added,
            "modified": sync.files_modified,
            "removed": sync.files_removed,
            "unchanged": sync.files_unchanged,
        },
        "api_calls": sync.api_calls,
        "bytes_fetched": sync.bytes_fetched,
        "mode": sync.mode,
        "full_sync_reason": sync.full_sync_reason,
        "phase_seconds": sync.phase_seconds,
        "queued_at": _time(sync.queued_at),
        "started_at": _time(sync.started_at),
        "finished_at": _time(sync.finished_at),
        "duration_seconds": sync.duration_seconds,
        "error": sync.error,
        "attempts": sync.attempts,
        "waiting_reason": sync.waiting_reason,
        "retry_at": _time(sync.retry_at),
        "delivery_id": sync.delivery_id,
    }


def memory_content(blob: Blob) -> dict[str, Any]:
    """A memory entry's text as the API shows it: the file's characters exactly (NULs
    included, which the ``content`` column holds as U+FFFD) and the codec that gives
    back its bytes (``utf-8``, ``latin_1``, ``euc_jp``, ``shift_jis``...)."""
    return {"content": blob.text, "encoding": blob.codec}


def project_summary(project: Project) -> dict[str, Any]:
    repository = project.repository
    return {
        "id": project.id,
        "repository": repository.full_name,
        "repository_id": repository.id,
        "branch": project.branch,
        "default_branch": repository.default_branch,
        "auto_sync": project.auto_sync,
        "tracked": project.tracked,
        "untracked_at": _time(project.untracked_at),
        "stop_kind": project.stop_kind,
        "stopped_reason": project.stopped_reason,
        "current_sync": sync_summary(project.current_sync),
    }


# --- What GitHub says: branches, and whether memory is behind -------------------------------


class UnprocessableRequestError(ApiRequestError):
    """The body is JSON but a field is unknown or of the wrong type, or an idempotency
    key is reused for a different request: 422 naming the field."""

    status = 422


class GitHubRequestError(ApiRequestError):
    """GitHub did not answer an App-side read made for the request (down, refused,
    rate limited); nothing is guessed in its place."""

    status = 502


class GitHubNotConfiguredError(ApiRequestError):
    """No GitHub App is configured (setup mode), so the App cannot ask GitHub."""

    status = 503


def _connector(project: Project) -> GitHubConnector:
    """A connector for the project's repository, as the worker builds it, that never
    sleeps through a rate limit while a person waits."""
    config = current_app.config
    if not (config.get("APP_ID") and config.get("PRIVATE_KEY")):
        raise GitHubNotConfiguredError(
            "The GitHub App is not configured; register it at /setup first."
        )
    repository = project.repository
    installation = repository.installation
    if installation is None or not installation.is_active:
        raise ConflictError(
            f"{repository.full_name} is not covered by an active installation of the App; "
            "install the App on it (or unsuspend it) first."
        )
    return GitHubConnector(
        base_url=config["GITHUB_API_URL"],
        app_id=config["APP_ID"],
        private_key=config["PRIVATE_KEY"],
        redis=redis_connection(),
        installation_id=installation.github_id,
        full_name=repository.full_name,
        timeout=defaults.WEB_GITHUB_TIMEOUT_SECONDS,
        rate_limit_max_wait=0,
    )


def _github_failure(exc: Exception, what: str) -> ApiRequestError:
    """The answer for a GitHub read that failed: a refusal (the App lost access) is a
    conflict with the stored state, 409; GitHub down or rate limited is 502."""
    if isinstance(exc, RateLimitedError):
        return GitHubRequestError(
            f"GitHub's rate limit stops {what} for {exc.retry_after_seconds:.0f} s; try later."
        )
    if isinstance(exc, RequestFailed) and exc.response.status_code < 500:
        return ConflictError(
            f"GitHub answered {exc.response.status_code} to {what}: the App's installation "
            "no longer covers the repository, or it is gone. Re-add it to the installation."
        )
    return GitHubRequestError(f"GitHub did not answer {what} ({exc}); try again shortly.")


GITHUB_FAILURES = (RateLimitedError, GitHubUnavailableError, RequestError, PermanentSyncError)
"""What a GitHub read for a person's request can meet besides a refusal (``RequestFailed``
is a ``RequestError``): each becomes :class:`GitHubRequestError`."""


def github_branch_list(project: Project) -> tuple[list[dict[str, Any]], bool]:
    """:func:`github_branches`, and whether GitHub has more branches than were read
    (``GITHUB_BRANCHES_MAX_PAGES`` pages of ``GITHUB_BRANCHES_PER_PAGE``)."""
    repository = project.repository
    tracked = dict(
        db.session.execute(
            select(Project.branch, Project.id).where(
                Project.repository_id == repository.id, Project.tracked.is_(True)
            )
        )
        .tuples()
        .all()
    )
    what = f"the branch list of {repository.full_name}"
    try:
        with _connector(project) as github:
            found, truncated = github.branches(
                per_page=defaults.GITHUB_BRANCHES_PER_PAGE,
                max_pages=defaults.GITHUB_BRANCHES_MAX_PAGES,
            )
    except GITHUB_FAILURES as exc:
        raise _github_failure(exc, what) from exc
    branches = [
        {
            "name": name,
            "sha": sha,
            "tracked": name in tracked,
            "project_id": tracked.get(name),
            "default": name == repository.default_branch,
        }
        for name, sha in found
    ]
    return branches, truncated


def github_branches(project: Project) -> list[dict[str, Any]]:
    """GitHub's branches of the project's repository, each ``{name, sha, tracked,
    project_id, default}``; ``project_id`` is the tracking project's, or None.

    Raises :class:`GitHubRequestError` (502) when GitHub does not answer or refuses,
    :class:`GitHubNotConfiguredError` (503) without an App, ``ConflictError`` (409)
    when no active installation covers the repository.
    """
    return github_branch_list(project)[0]


def _last_head_read(project: Project) -> tuple[str, datetime] | None:
    """The head the newest sync read from GitHub (restores read none), and when."""
    row = db.session.execute(
        select(ProjectSync.head_commit_sha, ProjectSync.started_at, ProjectSync.queued_at)
        .where(
            ProjectSync.project_id == project.id,
            ProjectSync.status == SyncStatus.SUCCEEDED,
            ProjectSync.trigger != SyncTrigger.RESTORE,
            ProjectSync.head_commit_sha.is_not(None),
        )
        .order_by(ProjectSync.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    sha, started_at, queued_at = row
    return sha, started_at or queued_at


PUSHED_AT_RESOLUTION = timedelta(seconds=1)
"""A push payload's ``pushed_at`` is in whole seconds: a sync that read the branch in
the same second may have read the head before or after that push."""


def known_branch_head(project: Project) -> str | None:
    """The newest branch head known without asking GitHub: the one a push recorded
    (``Project.branch_head_sha``), or the one the last sync read, whichever GitHub saw
    later; within the same second, the recorded one (the compare then tells which is
    newer, see :func:`memory_lag`)."""
    read = _last_head_read(project)
    recorded, seen = project.branch_head_sha, project.branch_head_seen_at
    if recorded is None or seen is None:
        return read[0] if read else recorded
    if read is None or read[1] < seen + PUSHED_AT_RESOLUTION:
        return recorded
    return read[0]


def head_moved_since_sync(project: Project) -> bool:
    """Whether the branch is known to have moved since a sync last read it (or was
    never synced): then turning auto-sync back on syncs it. A restore does not count:
    memory put back on purpose stays until the branch moves."""
    read = _last_head_read(project)
    return read is None or known_branch_head(project) != read[0]


def memory_lag(project: Project) -> dict[str, Any] | None:
    """Whether memory is behind the branch head: None when it is not (or nothing is
    known yet: never synced, no head seen); otherwise ``{branch_head_sha, synced_sha,
    behind_by, restored}``.

    ``behind_by`` is GitHub's count of commits on the head that memory lacks (compare
    API, cached ``COMPARE_CACHE_TTL_SECONDS``), None when GitHub could not say.
    ``restored`` is True when memory holds a restored state: behind by design, and the
    next resync moves it to the head. No GitHub call while memory is at the head.
    """
    current = project.current_sync
    if current is None or current.head_commit_sha is None:
        return None
    synced = current.head_commit_sha
    head = known_branch_head(project)
    if head is None or head == synced:
        return None
    behind_by = _commits_behind(project, synced, head)
    if behind_by == 0:
        return None  # the recorded head is older than memory (a sync read a newer one)
    return {
        "branch_head_sha": head,
        "synced_sha": synced,
        "behind_by": behind_by,
        "restored": current.trigger == SyncTrigger.RESTORE,
    }


def _commits_behind(project: Project, synced: str, head: str) -> int | None:
    """Commits in ``head`` not in ``synced``, from Redis or GitHub; None on any failure
    (the hint degrades, the status answer does not)."""
    key = compare_cache_key(project.repository_id, synced, head)
    try:
        redis = redis_connection()
        cached: bytes | None = redis.get(key)  # type: ignore[assignment]
        if cached is not None:
            return int(cached)
    except (RedisError, ValueError):
        redis = None
    try:
        with _connector(project) as github:
            _status, ahead_by = github.commits_ahead(synced, head)
    except (ApiRequestError, *GITHUB_FAILURES, KeyError, ValueError, TypeError) as exc:
        log.info("project %s: no commit count for %s...%s: %s", project.id, synced, head, exc)
        return None
    if redis is not None:
        with suppress(RedisError):
            redis.set(key, str(ahead_by), ex=defaults.COMPARE_CACHE_TTL_SECONDS)
    return ahead_by
