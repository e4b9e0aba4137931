"""What each handled delivery does to the database: installations, repositories, pushes.

Every handler reads the plain JSON fields it needs (never githubkit's typed models, so
a field or enum value GitHub added yesterday cannot make a delivery fail), writes rows
keyed by GitHub's ids, and is idempotent: running a delivery twice leaves the same
rows. A sync is requested only when something becomes tracked (a new project, a
project resumed) or a tracked branch moves; :func:`sync_jobs.scheduling.request_sync`
coalesces the rest.

Handlers return an :class:`Outcome`; the delivery job stores it on the delivery, so
"why did nothing happen" is answered by the delivery row itself.

Fields are read through :mod:`sync_jobs.payloads`, which checks each value's JSON type
and that a column can hold it: a string id, a list where an object belongs, a NUL in a
branch name raise :class:`~sync_jobs.errors.InvalidPayloadError` naming the field, and
the delivery ends failed at once instead of meeting the same error on every retry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from sqlalchemy import delete, select, update

from models import (
    DeliveryStatus,
    Installation,
    Project,
    ProjectSync,
    Repository,
    StopKind,
    SyncTrigger,
    db,
)
from sync_jobs import payloads
from sync_jobs.core.plan import PushedHead
from sync_jobs.scheduling import request_sync

Payload = Mapping[str, Any]

ZERO_SHA = "0" * 40
"""The ``before``/``after`` of a push that created or deleted a ref."""

GIT_SHA = re.compile(r"[0-9a-f]{40}")
"""A commit SHA as push payloads spell it."""

NAME_MAX_LENGTH = 255
"""Longest login, repository name or branch the rows hold (``String(255)`` columns)."""

ACCOUNT_TYPE_MAX_LENGTH = 32
"""Longest account type the installation row holds (``User``, ``Organization``)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a delivery's processing ended, in words a person reads on the delivery row."""

    status: DeliveryStatus
    reason: str


def processed(reason: str) -> Outcome:
    return Outcome(DeliveryStatus.PROCESSED, reason)


def ignored(reason: str) -> Outcome:
    return Outcome(DeliveryStatus.IGNORED, reason)


def _connector_default_branch(*, installation_github_id: int, full_name: str) -> str:
    """Ask GitHub for a repository's default branch (installation events do not carry it).

    A failure raises, so the delivery job is retried: louder than guessing ``main``.
    """
    from sync_jobs.connector import GitHubConnector
    from sync_jobs.redis_client import redis_connection

    config = current_app.config
    with GitHubConnector(
        base_url=config["GITHUB_API_URL"],
        app_id=config["APP_ID"],
        private_key=config["PRIVATE_KEY"],
        redis=redis_connection(),
        installation_id=installation_github_id,
        full_name=full_name,
    ) as github:
        return github.default_branch()


default_branch_lookup: Callable[..., str] = _connector_default_branch
"""How a repository's default branch is found when a payload lists the repository
without it (``installation`` and ``installation_repositories`` do). Called with
keyword-only ``installation_github_id`` and ``full_name``. Production asks GitHub
through the connector; tests may replace it with a canned answer."""


def _now() -> datetime:
    return datetime.now(UTC)


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


# --- Rows ------------------------------------------------------------------------------


def _account(data: Payload) -> dict[str, Any]:
    """The installation's account fields that are present, checked."""
    account = payloads.optional_mapping(data.get("account"), field="installation.account")
    if account is None:
        return {}
    fields: dict[str, Any] = {}
    if account.get("login") is not None:
        fields["login"] = payloads.text(
            account["login"], field="installation.account.login", max_length=NAME_MAX_LENGTH
        )
    if account.get("id") is not None:
        fields["id"] = payloads.github_id(account["id"], field="installation.account.id")
    if account.get("type") is not None:
        fields["type"] = payloads.text(
            account["type"], field="installation.account.type", max_length=ACCOUNT_TYPE_MAX_LENGTH
        )
    return fields


def _installation(payload: Payload) -> Installation:
    """The payload's installation row, created if new, refreshed from what the payload says."""
    data = payloads.mapping(payload.get("installation"), field="installation")
    github_id = payloads.github_id(data.get("id"), field="installation.id")
    account = _account(data)
    row = db.session.scalar(select(Installation).filter_by(github_id=github_id))
    if row is None:
        row = Installation(
            github_id=github_id,
            account_login=account.get("login") or "unknown",
            permissions={},
        )
        db.session.add(row)
    row.account_login = account.get("login", row.account_login)
    row.account_id = account.get("id", row.account_id)
    row.account_type = account.get("type", row.account_type)
    if isinstance(data.get("permissions"), Mapping):
        row.permissions = dict(data["permissions"])
    if "suspended_at" in data:
        row.suspended_at = _timestamp(data["suspended_at"])
    return row


def _summary(value: Any, *, field: str) -> dict[str, Any]:
    """A repository object of a payload with its stored fields checked: ``id`` and
    ``full_name`` required, ``default_branch`` kept only if it is a string."""
    summary = payloads.mapping(value, field=field)
    checked = {
        **summary,
        "id": payloads.github_id(summary.get("id"), field=f"{field}.id"),
        "full_name": payloads.text(
            summary.get("full_name"), field=f"{field}.full_name", max_length=NAME_MAX_LENGTH
        ),
    }
    if isinstance(summary.get("default_branch"), str):
        payloads.text(
            summary["default_branch"],
            field=f"{field}.default_branch",
            max_length=NAME_MAX_LENGTH,
        )
    else:
        checked.pop("default_branch", None)
    return checked


def _repository(summary: Payload, installation: Installation | None) -> Repository:
    """Upsert a repository by GitHub id, so a rename or transfer keeps its history.

    ``summary`` has been through :func:`_summary`."""
    row = db.session.scalar(select(Repository).filter_by(github_id=summary["id"]))
    if row is None:
        row = Repository(github_id=summary["id"], full_name=summary["full_name"])
        db.session.add(row)
    row.full_name = summary["full_name"]
    row.private = bool(summary.get("private", row.private))
    if "default_branch" in summary:
        row.default_branch = summary["default_branch"]
    if installation is not None:
        row.installation = installation
    return row


def _projects(repository: Repository) -> list[Project]:
    return list(db.session.scalars(select(Project).filter_by(repository_id=repository.id)))


def _track(repository: Repository) -> Project | None:
    """Track the repository's default branch; return the project if it needs a sync.

    A project needs a sync when it is new, or when it was stopped and is resumed; a
    project already tracked is left alone, which keeps a rerun from queueing again.
    """
    repository.removed_at = None
    db.session.flush()
    project = db.session.scalar(
        select(Project).filter_by(repository_id=repository.id, branch=repository.default_branch)
    )
    if project is None:
        project = Project(repository=repository, branch=repository.default_branch)
        db.session.add(project)
        db.session.flush()
        return project
    if project.resume():
        return project
    return None


def branch_deleted_reason(branch: str) -> str:
    """The stop reason, in words, of a project whose branch was deleted on GitHub."""
    return f"the branch {branch} was deleted on GitHub"


def _stopped_by_branch_deletion(project: Project) -> bool:
    """The one stop a push can undo: the branch created again."""
    return project.stop_kind == StopKind.BRANCH_DELETED


def _stop(projects: Iterable[Project], kind: StopKind, reason: str) -> int:
    """Stop the projects not stopped yet (:meth:`Project.stop`); returns how many."""
    return sum(project.stop(kind, reason) for project in projects)


def _purge(repository_ids: list[int]) -> None:
    """Delete repositories with everything stored for them.

    The lineage links (``previous_sync_id``, ``restored_from_sync_id``) restrict
    deletes, so they are cut first; everything else cascades from the repository.
    """
    if not repository_ids:
        return
    project_ids = select(Project.id).where(Project.repository_id.in_(repository_ids))
    db.session.execute(
        update(Project).where(Project.id.in_(project_ids)).values(current_sync_id=None)
    )
    db.session.execute(
        update(ProjectSync)
        .where(ProjectSync.project_id.in_(project_ids))
        .values(previous_sync_id=None, restored_from_sync_id=None)
    )
    db.session.execute(delete(Repository).where(Repository.id.in_(repository_ids)))


def _remove(repositories: list[Repository], kind: StopKind, reason: str) -> str:
    """Stop tracking repositories: keep their data readable, or purge it (the setting)."""
    if current_app.config["PURGE_ON_UNINSTALL"]:
        _purge([repository.id for repository in repositories])
        return f"purged {len(repositories)} repositories ({reason})"
    stopped = 0
    for repository in repositories:
        if repository.removed_at is None:
            repository.removed_at = _now()
        stopped += _stop(_projects(repository), kind, reason)
    return f"stopped {stopped} projects of {len(repositories)} repositories ({reason})"


def _add_repositories(
    installation: Installation, payload: Payload, field: str, *, delivery_id: str
) -> str:
    """Upsert repositories, track their default branches, and queue the first syncs.

    The first syncs are requested for every tracked project of these repositories
    that has never synced, not only for those this run created: if a previous run
    committed the rows and then failed before requesting (Redis down, a worker
    killed), its retry still requests them. ``request_sync`` coalesces the rest.
    """
    summaries = [
        _summary(item, field=f"{field}[{index}]")
        for index, item in enumerate(payloads.mappings(payload.get(field), field=field))
    ]
    repositories: list[Repository] = []
    resumed: set[int] = set()
    for summary in summaries:
        if "default_branch" not in summary:
            existing = db.session.scalar(select(Repository).filter_by(github_id=summary["id"]))
            if existing is None or existing.removed_at is not None:
                summary = {
                    **summary,
                    "default_branch": default_branch_lookup(
                        installation_github_id=installation.github_id,
                        full_name=summary["full_name"],
                    ),
                }
        repository = _repository(summary, installation)
        repositories.append(repository)
        project = _track(repository)
        if project is not None:
            resumed.add(project.id)
    # The rows must be committed before a sync job can read them.
    db.session.commit()
    to_sync = [
        project
        for repository in repositories
        for project in _projects(repository)
        if project.stopped_reason is None
        and project.auto_sync
        and project.tracked
        and (project.id in resumed or project.current_sync_id is None)
    ]
    if installation.is_active:
        for project in to_sync:
            request_sync(project.id, trigger=SyncTrigger.INSTALL, delivery_id=delivery_id)
    return f"{len(repositories)} repositories tracked, {len(to_sync)} first syncs requested"


# --- installation -----------------------------------------------------------------------


def installation_created(payload: Payload, *, delivery_id: str) -> Outcome:
    installation = _installation(payload)
    installation.deleted_at = None
    return processed(
        _add_repositories(installation, payload, "repositories", delivery_id=delivery_id)
    )


def installation_deleted(payload: Payload, *, delivery_id: str) -> Outcome:
    installation = _installation(payload)
    if installation.deleted_at is None:
        installation.deleted_at = _now()
    repositories = list(
        db.session.scalars(select(Repository).filter_by(installation_id=installation.id))
    )
    reason = _remove(
        repositories,
        StopKind.APP_UNINSTALLED,
        f"the App was uninstalled from {installation.account_login}",
    )
    db.session.commit()
    return processed(reason)


def installation_suspended(payload: Payload, *, delivery_id: str) -> Outcome:
    installation = _installation(payload)
    if installation.suspended_at is None:
        installation.suspended_at = _now()
    db.session.commit()
    return processed("installation suspended; pushes are ignored until it is unsuspended")


def installation_unsuspended(payload: Payload, *, delivery_id: str) -> Outcome:
    """Resume: one catch-up sync per tracked project, since pushes were ignored meanwhile.

    Requested whether or not the row still says suspended: a rerun of this delivery
    (the first run committed, then failed before requesting) must still request them;
    a catch-up sync of a project already at its head costs one call.
    """
    installation = _installation(payload)
    installation.suspended_at = None
    db.session.commit()
    projects = db.session.scalars(
        select(Project)
        .join(Repository)
        .where(
            Repository.installation_id == installation.id,
            Repository.removed_at.is_(None),
            Project.stopped_reason.is_(None),
            Project.auto_sync.is_(True),
            Project.tracked.is_(True),
        )
    ).all()
    for project in projects:
        request_sync(project.id, trigger=SyncTrigger.RECONCILE, delivery_id=delivery_id)
    return processed(f"installation resumed, {len(projects)} catch-up syncs requested")


def installation_refreshed(payload: Payload, *, delivery_id: str) -> Outcome:
    _installation(payload)
    db.session.commit()
    return processed("installation permissions refreshed")


# --- installation_repositories -----------------------------------------------------------


def repositories_added(payload: Payload, *, delivery_id: str) -> Outcome:
    installation = _installation(payload)
    return processed(
        _add_repositories(installation, payload, "repositories_added", delivery_id=delivery_id)
    )


def repositories_removed(payload: Payload, *, delivery_id: str) -> Outcome:
    _installation(payload)
    field = "repositories_removed"
    ids = [
        payloads.github_id(summary.get("id"), field=f"{field}[{index}].id")
        for index, summary in enumerate(payloads.mappings(payload.get(field), field=field))
    ]
    repositories = list(db.session.scalars(select(Repository).where(Repository.github_id.in_(ids))))
    reason = _remove(
        repositories,
        StopKind.REPOSITORY_REMOVED,
        "the repository was removed from the installation",
    )
    db.session.commit()
    return processed(reason)


# --- repository, delete, push -------------------------------------------------------------


def _known_repository(payload: Payload) -> Repository | None:
    data = payloads.optional_mapping(payload.get("repository"), field="repository")
    if data is None:
        return None
    github_id = payloads.github_id(data.get("id"), field="repository.id")
    return db.session.scalar(select(Repository).filter_by(github_id=github_id))


def repository_updated(payload: Payload, *, delivery_id: str) -> Outcome:
    """Renamed, transferred, edited: the row is keyed by GitHub id, so history stays.

    GitHub sends ``transferred`` only to the new owner's installation, so the repository
    moves to the installation the payload names; without one it leaves its old
    installation (which no longer covers it) and is hidden until one claims it.
    """
    if _known_repository(payload) is None:
        return ignored("repository is not tracked by any installation")
    transferred = payload.get("action") == "transferred"
    claimed = _installation(payload) if transferred and payload.get("installation") else None
    repository = _repository(_summary(payload["repository"], field="repository"), claimed)
    if transferred and claimed is None:
        repository.installation = None
        _stop(
            _projects(repository),
            StopKind.REPOSITORY_TRANSFERRED,
            f"transferred to {repository.full_name}; not synced "
            "until the App is installed on it there",
        )
    db.session.commit()
    return processed(f"repository is now {repository.full_name}")


def repository_deleted(payload: Payload, *, delivery_id: str) -> Outcome:
    repository = _known_repository(payload)
    if repository is None:
        return ignored("repository is not tracked by any installation")
    reason = _remove(
        [repository],
        StopKind.REPOSITORY_DELETED,
        f"the repository {repository.full_name} was deleted on GitHub",
    )
    db.session.commit()
    return processed(reason)


def _branch_deleted(repository: Repository, branch: str) -> Outcome:
    project = db.session.scalar(
        select(Project).filter_by(repository_id=repository.id, branch=branch)
    )
    if project is None:
        return ignored(f"branch {branch} is not tracked")
    _stop([project], StopKind.BRANCH_DELETED, branch_deleted_reason(branch))
    db.session.commit()
    return processed(f"project {project.id} stopped: branch {branch} deleted")


def ref_deleted(payload: Payload, *, delivery_id: str) -> Outcome:
    repository = _known_repository(payload)
    if repository is None:
        return ignored("repository is not tracked by any installation")
    if payload.get("ref_type") != "branch":
        return ignored(f"{payload.get('ref_type')} deleted; only branches are tracked")
    return _branch_deleted(repository, payloads.text(payload.get("ref"), field="ref"))


def push(payload: Payload, *, delivery_id: str) -> Outcome:
    """A push to a tracked branch requests a sync; the sync reads the branch's head then.

    Deliveries can arrive out of order, so the payload's ``after`` is a hint, never the
    head: it is passed on only for a push newer than every one heard of before
    (:func:`_pushed_head`), and the sync fetches it without asking for the head only
    when the push starts from the commit it has synced (see
    :mod:`sync_jobs.scheduling`). A sync can never move a project backwards.
    """
    repository = _known_repository(payload)
    if repository is None:
        return ignored("repository is not tracked by any installation")
    ref = payloads.text(payload.get("ref", ""), field="ref")
    if not ref.startswith("refs/heads/"):
        return ignored(f"{ref} is not a branch")
    branch = ref.removeprefix("refs/heads/")
    if payload.get("deleted") or payload.get("after") == ZERO_SHA:
        return _branch_deleted(repository, branch)
    installation = repository.installation
    if installation is None or not installation.is_active:
        return ignored("the installation is suspended or uninstalled")
    if repository.removed_at is not None:
        return ignored("the repository is no longer tracked")
    project = db.session.scalar(
        select(Project).filter_by(repository_id=repository.id, branch=branch)
    )
    if project is None or not project.tracked:
        return ignored(f"branch {branch} is not tracked")
    if project.stopped_reason is not None:
        if payload.get("created") and _stopped_by_branch_deletion(project):
            project.resume()  # the branch was recreated: track it again
        else:
            return ignored(f"project {project.id} is stopped: {project.stopped_reason}")
    pushed = _pushed_head(project, payload)
    recorded = _record_head(project, payload)
    db.session.commit()
    if not project.auto_sync:
        return ignored(f"project {project.id} has auto-sync off; {recorded}")
    sync = request_sync(
        project.id, trigger=SyncTrigger.PUSH, delivery_id=delivery_id, pushed=pushed
    )
    return processed(f"sync {sync.id} of project {project.id} requested")


def _pushed_at(payload: Payload) -> datetime | None:
    """When GitHub took the push: ``repository.pushed_at``, a Unix time in push
    payloads (an ISO time elsewhere); None if absent or unreadable."""
    data = payload.get("repository")
    value = data.get("pushed_at") if isinstance(data, Mapping) else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**33:
        return datetime.fromtimestamp(value, UTC)
    return _timestamp(value)


def _pushed_head(project: Project, payload: Payload) -> PushedHead | None:
    """The push's ``before`` and ``after`` for its sync, or None: only for a push whose
    time on GitHub (``repository.pushed_at``, to the second) is later than every push
    recorded before it. A push delivered late, or one in the same second as another
    (whose order the payloads cannot tell, a force push back included), leaves its sync
    to read the branch head."""
    before, after, seen = payload.get("before"), payload.get("after"), _pushed_at(payload)
    if not (isinstance(before, str) and GIT_SHA.fullmatch(before) and before != ZERO_SHA):
        return None
    if not (isinstance(after, str) and GIT_SHA.fullmatch(after)) or seen is None:
        return None
    stored = project.branch_head_seen_at
    if stored is not None and seen <= stored:
        return None
    return PushedHead(before, after)


def _record_head(project: Project, payload: Payload) -> str:
    """Remember the pushed head as the branch's last known head, unless GitHub saw a
    newer one already (deliveries arrive out of order): the "memory is behind" hint
    reads it, a sync never does. Pushes within one second of each other (the payload's
    resolution) are ordered by their chain: ``before`` is the head recorded."""
    after = payload.get("after")
    if not isinstance(after, str) or not GIT_SHA.fullmatch(after):
        return "no head recorded (no usable after)"
    seen = _pushed_at(payload) or _now()
    stored = project.branch_head_seen_at
    in_chain = payload.get("before") == project.branch_head_sha
    if stored is None or seen > stored or (seen == stored and in_chain):
        project.branch_head_sha, project.branch_head_seen_at = after, seen
        return f"head {after[:12]} recorded"
    return f"head {after[:12]} is older than the one recorded"
