"""The reconcilers: what GitHub knows and a lost webhook kept from the database.

Webhooks are the fast path, and they can be lost (the receiver was down or answered
5xx, and GitHub never retries by itself). Two maintenance passes close the gap
(DESIGN.md, flow 5), each called once a round by the maintenance process, inside an
app context:

- :func:`reconcile_branches` polls every tracked branch head with a conditional
  request and requests a ``reconcile`` sync where the head moved without a sync;
- :func:`redeliver_failed_deliveries` reads the App webhook's delivery log and asks
  GitHub to deliver again, once, each delivery that never reached the receiver.

What they remember lives in the database (``Project.branch_etag`` and
``reconciled_at``, a MaintenanceCheckpoint, RedeliveryRequest rows), never in Redis:
a Redis restart is one of the things they repair after.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from githubkit.exception import RequestFailed
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from models import (
    Installation,
    MaintenanceCheckpoint,
    Project,
    ProjectSync,
    RedeliveryRequest,
    Repository,
    SyncStatus,
    SyncTrigger,
    WebhookDelivery,
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
from sync_jobs.github_auth import AppDeliveries
from sync_jobs.redis_client import redis_connection
from sync_jobs.scheduling import request_sync

log = logging.getLogger(__name__)

__all__ = ["reconcile_branches", "redeliver_failed_deliveries"]

CHECKPOINT = "redeliver"
"""MaintenanceCheckpoint of the failed-delivery pass: ``{"delivered_at": ISO time,
"id": hook delivery id}`` of the newest attempt up to which every delivery is settled
(succeeded, stored, or redelivered); the next scan reads back to it, less an overlap."""


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

    Tracked means: not stopped, auto-sync on, repository not removed, installation
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


# --- Failed deliveries ---------------------------------------------------------------------


@dataclass
class _Delivery:
    """The attempts of one delivery (one GUID) that a scan saw."""

    guid: str
    event: str
    oldest_id: int
    oldest_at: datetime
    newest_id: int
    newest_at: datetime
    succeeded: bool


def redeliver_failed_deliveries(*, per_page: int = defaults.REDELIVERY_PER_PAGE) -> int:
    """Ask GitHub to redeliver, oldest first and once each, every delivery that never
    reached the receiver; return how many GitHub accepted.

    The App's delivery log (``GET /app/hook/deliveries``, newest first) is read back to
    the checkpoint less an overlap, never past GitHub's three-day window. A delivery
    (a GUID) is redelivered when none of its attempts succeeded (2xx), the receiver
    did not store it, no redelivery was requested for it before, and its latest
    attempt is older than ``REDELIVERY_GRACE_SECONDS``.

    Each delivery is claimed (a RedeliveryRequest row, committed) before GitHub is
    asked and GitHub's answer is recorded after, so two passes never both ask, and a
    pass that dies in between is found out later (``REDELIVERY_IN_FLIGHT_SECONDS``)
    and asked again: the worst case is one duplicate, which the receiver drops by
    GUID. A rate limit, or the App's budget falling to ``REDELIVERY_RATE_LIMIT_RESERVE``,
    ends the round; the checkpoint never moves past a delivery not settled, so the next
    round resumes there. GitHub being down ends the round too (logged, not raised);
    a refusal of the log itself (a JWT GitHub does not accept: wrong key, clock skew)
    raises githubkit's ``RequestFailed``, and a database outage ``SQLAlchemyError``.
    Without an App configured it does nothing. ``per_page`` is the size of the log's
    pages (GitHub's maximum unless a test wants many pages).
    """
    config = current_app.config
    if not (config.get("APP_ID") and config.get("PRIVATE_KEY")):
        return 0
    with AppDeliveries(
        base_url=config["GITHUB_API_URL"],
        app_id=config["APP_ID"],
        private_key=config["PRIVATE_KEY"],
        timeout=config.get("SYNC_HTTP_TIMEOUT_SECONDS", defaults.HTTP_TIMEOUT_SECONDS),
    ) as github:
        return _redeliver_round(github, per_page)


def _redeliver_round(github: AppDeliveries, per_page: int) -> int:
    """Scan, decide, redeliver, move the checkpoint; the number GitHub accepted."""
    now = utcnow()
    checkpoint = db.session.get(MaintenanceCheckpoint, CHECKPOINT)
    try:
        scanned = _scan(github, _scan_boundary(checkpoint, now), per_page)
    except GitHubUnavailableError as exc:
        log.warning("the delivery log could not be read this round: %s", exc)
        return 0
    if scanned is None:
        return 0
    deliveries, newest = scanned
    todo, held = _triage(deliveries, now)
    accepted = 0
    for index, delivery in enumerate(todo):
        try:
            outcome = _redeliver(github, delivery, now)
        except (RateLimitedError, GitHubUnavailableError) as exc:
            log.warning("redeliveries stopped with %d left this round: %s", len(todo) - index, exc)
            held.extend(todo[index:])
            break
        if outcome is None:
            held.append(delivery)  # claimed by another pass, or no budget left: not settled
        elif outcome == ACCEPTED:
            accepted += 1
    _advance(checkpoint, newest, held)
    return accepted


def _scan_boundary(checkpoint: MaintenanceCheckpoint | None, now: datetime) -> datetime:
    floor = now - timedelta(seconds=defaults.REDELIVERY_WINDOW_SECONDS)
    if checkpoint is None or "delivered_at" not in checkpoint.value:
        return floor
    overlap = timedelta(seconds=defaults.REDELIVERY_CHECKPOINT_OVERLAP_SECONDS)
    return max(_time(checkpoint.value["delivered_at"]) - overlap, floor)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _below_reserve(github: AppDeliveries) -> bool:
    seen = github.rate_limit
    return seen is not None and seen.remaining <= defaults.REDELIVERY_RATE_LIMIT_RESERVE


def _scan(
    github: AppDeliveries, boundary: datetime, per_page: int
) -> tuple[list[_Delivery], tuple[datetime, int] | None] | None:
    """The deliveries with attempts since ``boundary`` and the newest attempt seen; None
    when the scan could not reach the boundary (rate limit or reserve: nothing is
    decided on a partial view, and the checkpoint stays)."""
    found: dict[str, _Delivery] = {}
    newest: tuple[datetime, int] | None = None
    try:
        for page in github.pages(per_page=per_page):
            for item in page:
                at = _time(str(item["delivered_at"]))
                if at < boundary:
                    return list(found.values()), newest
                if newest is None or at > newest[0]:
                    newest = (at, int(item["id"]))
                _add_attempt(found, item, at)
            if _below_reserve(github):
                log.info("the App's rate limit is at its reserve; redeliveries wait a round")
                return None
    except RateLimitedError as exc:
        log.info("the App is rate limited for %.0f s; redeliveries wait", exc.retry_after_seconds)
        return None
    return list(found.values()), newest


def _add_attempt(found: dict[str, _Delivery], item: dict[str, Any], at: datetime) -> None:
    attempt_id, guid = int(item["id"]), str(item["guid"])
    succeeded = 200 <= int(item.get("status_code") or 0) < 300
    delivery = found.get(guid)
    if delivery is None:
        event = str(item.get("event") or "")
        found[guid] = _Delivery(guid, event, attempt_id, at, attempt_id, at, succeeded)
        return
    delivery.succeeded = delivery.succeeded or succeeded
    if attempt_id < delivery.oldest_id:
        delivery.oldest_id, delivery.oldest_at = attempt_id, at
    if attempt_id > delivery.newest_id:
        delivery.newest_id, delivery.newest_at = attempt_id, at


def _triage(deliveries: list[_Delivery], now: datetime) -> tuple[list[_Delivery], list[_Delivery]]:
    """Split failed deliveries into those to redeliver now (oldest first) and those held
    for a later round (in their grace time, or being redelivered by another pass)."""
    failed = [d for d in deliveries if not d.succeeded]
    guids = [d.guid for d in failed]
    stored = set(
        _in_batches(select(WebhookDelivery.delivery_id), WebhookDelivery.delivery_id, guids)
    )
    requested = {
        row.guid: row
        for row in _in_batches(select(RedeliveryRequest), RedeliveryRequest.guid, guids)
    }
    in_flight_since = now - timedelta(seconds=defaults.REDELIVERY_IN_FLIGHT_SECONDS)
    grace_since = now - timedelta(seconds=defaults.REDELIVERY_GRACE_SECONDS)
    todo: list[_Delivery] = []
    held: list[_Delivery] = []
    for delivery in failed:
        if delivery.guid in stored:
            continue
        request = requested.get(delivery.guid)
        if request is not None and request.outcome is not None:
            continue
        if (request is not None and request.requested_at >= in_flight_since) or (
            delivery.newest_at > grace_since
        ):
            held.append(delivery)  # being redelivered by another pass, or still in grace
        else:
            todo.append(delivery)
    todo.sort(key=lambda d: d.oldest_id)
    return todo, held


def _in_batches(query: Any, column: Any, values: list[str]) -> Iterable[Any]:
    for start in range(0, len(values), defaults.DB_BATCH_ROWS):
        yield from db.session.scalars(
            query.where(column.in_(values[start : start + defaults.DB_BATCH_ROWS]))
        )


ACCEPTED = "accepted"
"""RedeliveryRequest.outcome when GitHub took the redelivery (202)."""


def _redeliver(github: AppDeliveries, delivery: _Delivery, now: datetime) -> str | None:
    """Claim, ask GitHub, record its answer; the outcome, or None if not asked (another
    pass holds the claim, or the budget is at its reserve). A rate limit or an outage
    releases the claim and raises."""
    if _below_reserve(github) or not _claim(delivery, now):
        return None
    try:
        github.redeliver(delivery.newest_id)
        outcome = ACCEPTED
    except RequestFailed as exc:
        # A refusal (too old, gone, already being redelivered) will not change: settle it.
        outcome = f"{exc.response.status_code} {_message(exc)}".strip()
    except (RateLimitedError, GitHubUnavailableError):
        db.session.execute(delete(RedeliveryRequest).where(RedeliveryRequest.guid == delivery.guid))
        db.session.commit()
        raise
    db.session.execute(
        update(RedeliveryRequest)
        .where(RedeliveryRequest.guid == delivery.guid)
        .values(outcome=outcome)
    )
    db.session.commit()
    log.info("delivery %s (%s): redelivery %s", delivery.guid, delivery.event, outcome)
    return outcome


def _claim(delivery: _Delivery, now: datetime) -> bool:
    """Record the redelivery before asking GitHub; False if another pass holds it."""
    db.session.add(
        RedeliveryRequest(
            guid=delivery.guid,
            hook_delivery_id=delivery.newest_id,
            event=delivery.event,
            requested_at=now,
        )
    )
    try:
        db.session.commit()
        return True
    except IntegrityError:
        db.session.rollback()
    # A claim exists: take it over only if its pass died before GitHub answered.
    taken = db.session.execute(
        update(RedeliveryRequest)
        .where(
            RedeliveryRequest.guid == delivery.guid,
            RedeliveryRequest.outcome.is_(None),
            RedeliveryRequest.requested_at
            < now - timedelta(seconds=defaults.REDELIVERY_IN_FLIGHT_SECONDS),
        )
        .values(requested_at=now, hook_delivery_id=delivery.newest_id)
    )
    db.session.commit()
    return bool(taken.rowcount)  # type: ignore[attr-defined]


def _message(exc: RequestFailed) -> str:
    try:
        body = exc.response.json()
    except ValueError:
        return exc.response.raw_response.text[:200]
    return str(body.get("message", "")) if isinstance(body, dict) else ""


def _advance(
    checkpoint: MaintenanceCheckpoint | None,
    newest: tuple[datetime, int] | None,
    held: list[_Delivery],
) -> None:
    """Move the checkpoint to the newest attempt examined, or back to the oldest attempt
    of a delivery not settled yet, so the next scan sees it again."""
    if newest is None:
        return
    at, delivery_id = newest
    if held:
        first = min(held, key=lambda d: d.oldest_at)
        at, delivery_id = first.oldest_at, first.oldest_id
    value = {"delivered_at": at.isoformat(), "id": delivery_id}
    if checkpoint is None:
        db.session.add(MaintenanceCheckpoint(name=CHECKPOINT, value=value))
    else:
        checkpoint.value = value
    db.session.commit()
