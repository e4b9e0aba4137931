"""The failed-delivery reconciler: deliveries GitHub could not deliver, asked for again.

GitHub records every delivery attempt of the App's webhook, including those that
failed (the app was down, answered 5xx, or timed out), and never retries them by
itself. :func:`redeliver_failed_deliveries` reads that log back to its checkpoint and
asks GitHub to redeliver, once and oldest first, each delivery that no attempt got
through and that is not stored. Called by the maintenance process inside an app
context; what it remembers lives in the database, never in Redis.
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

from models import MaintenanceCheckpoint, RedeliveryRequest, WebhookDelivery, db
from models.base import utcnow
from sync_jobs import defaults
from sync_jobs.errors import GitHubUnavailableError, RateLimitedError
from sync_jobs.github_auth import AppDeliveries

log = logging.getLogger(__name__)

__all__ = ["redeliver_failed_deliveries"]

CHECKPOINT = "redeliver"
"""MaintenanceCheckpoint of the failed-delivery pass: ``{"delivered_at": ISO time,
"id": hook delivery id}`` of the newest attempt up to which every delivery is settled
(succeeded, stored, or redelivered); the next scan reads back to it, less an overlap."""


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
