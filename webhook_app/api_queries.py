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

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, and_, false, func, or_, select
from sqlalchemy.orm import selectinload

from models import Installation, Project, ProjectSync, Repository, SyncStatus, db
from sync_jobs import defaults
from sync_jobs.errors import ConflictError, InvalidParameterError, NotVisibleError
from webhook_app.access import Access, current_access, require_action

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
    """The current person's projects, by repository name then branch."""
    query = (
        select(Project)
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


def project_summary(project: Project) -> dict[str, Any]:
    repository = project.repository
    return {
        "id": project.id,
        "repository": repository.full_name,
        "repository_id": repository.id,
        "branch": project.branch,
        "default_branch": repository.default_branch,
        "auto_sync": project.auto_sync,
        "stopped_reason": project.stopped_reason,
        "current_sync": sync_summary(project.current_sync),
    }
