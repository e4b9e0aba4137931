"""``POST /webhooks/github``: verify, store, acknowledge, enqueue. Nothing is decided here.

GitHub gives a delivery 10 seconds and never retries by itself, so the view does the
least that makes a delivery durable: check the signature, read a few fields, one
INSERT and commit (the delivery table is the outbox), one enqueue, answer 202. All
decisions run in :mod:`sync_jobs.deliveries`.

Answers: 202 stored (``queued``, or ``pending`` if Redis is down: the sweeper enqueues
it later; ``ignored`` for events nothing handles), 200 ``duplicate`` for a delivery id
seen before, 200 with the zen for ``ping``, 400/401/413 with a JSON ``error`` saying
what is wrong, 503 with ``Retry-After`` when the database is unreachable (nothing is
stored; the reconciler asks GitHub to redeliver) or in setup mode (no secret to
verify with). A 4xx is never a database's doing: every value the row gets is checked
first (:mod:`webhook_app.events`), so 503 means an outage and nothing else.

A signed delivery whose body can be stored but not used (see ``events``) is stored as
``rejected`` with the reason, never queued, and answered 400 with that reason and
``"status": "rejected"``: the person debugging their App finds it both in GitHub's
delivery log and on the row, and the failed-delivery reconciler, which skips stored
deliveries, does not ask for it again.

Every answer is counted (``project_sync_deliveries_received_total{event,outcome}``):
one more pipelined Redis round trip per delivery, after the answer is decided. The
enqueue's own pipeline lives in :func:`~sync_jobs.deliveries.enqueue_delivery`; the
count could ride on it, at the cost of that function knowing about metrics.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response, current_app, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import DataError, SQLAlchemyError

from models import DeliveryStatus
from models.base import utcnow
from sync_jobs import defaults, metrics, routing
from sync_jobs.logs import log_context
from sync_jobs.metrics import DeliveryOutcome
from webhook_app import delivery_store, events
from webhook_app.delivery_store import Stored
from webhook_app.errors import PayloadTooLargeError, WebhookRejectedError

bp = Blueprint("webhooks", __name__)
log = logging.getLogger(__name__)

UNVERIFIED_EVENT = "other"
"""Event label of unverified deliveries whose claimed event is not one we handle."""

SETUP_MODE_MESSAGE = (
    "this app has no webhook secret yet (setup mode), so it cannot verify deliveries; "
    "register the GitHub App at /setup or set WEBHOOK_SECRET"
)


def _answer(status: int, body: dict[str, Any], **headers: str) -> Response:
    # json.dumps straight into a Response: jsonify goes through the app's JSON provider
    # and sorts keys, which costs more than everything else the answer needs.
    return Response(json.dumps(body), status, headers, mimetype="application/json")


def _read_body(limit: int) -> bytes:
    """The raw body, refusing anything over ``limit`` without reading all of it."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLargeError(f"payload larger than {limit} bytes")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLargeError(f"payload larger than {limit} bytes")
    return body


def _row(delivery: events.Delivery, status: DeliveryStatus, reason: str | None) -> dict[str, Any]:
    return {
        "delivery_id": delivery.delivery_id,
        "event": delivery.event,
        "action": delivery.action,
        "hook_id": delivery.hook_id,
        "installation_github_id": delivery.installation_github_id,
        "repository_github_id": delivery.repository_github_id,
        "payload": delivery.body_text,
        "form_encoded": delivery.form_encoded,
        "status": status,
        "status_reason": reason,
        "attempts": 0,
        "received_at": utcnow(),
    }


def _claimed_event() -> str:
    """The event label of a delivery that was not verified: the header's value only if
    it names an event we know, so forged requests cannot mint new label values."""
    claimed = request.headers.get(events.EVENT_HEADER, "")
    if claimed == routing.PING_EVENT or routing.handles(claimed):
        return claimed
    return UNVERIFIED_EVENT


@bp.post("/webhooks/github")
def receive() -> ResponseReturnValue:
    """Verify, store, queue; every answer is counted by event and outcome."""
    secrets: tuple[str, ...] = current_app.config["WEBHOOK_SECRETS"]
    if not secrets:
        metrics.record_delivery_received(_claimed_event(), DeliveryOutcome.UNAVAILABLE)
        return _answer(503, {"error": SETUP_MODE_MESSAGE})
    try:
        body = _read_body(current_app.config["MAX_WEBHOOK_BYTES"])
        delivery = events.parse_delivery(request.headers, body, secrets=secrets)  # type: ignore[arg-type]
    except WebhookRejectedError as exc:
        metrics.record_delivery_received(_claimed_event(), DeliveryOutcome.REJECTED)
        return _answer(exc.status, {"error": exc.message})
    with log_context(
        delivery_id=delivery.delivery_id, installation_id=delivery.installation_github_id
    ):
        response, outcome = _accept(delivery)
        metrics.record_delivery_received(delivery.event, outcome)
    return response


def _rejected(delivery: events.Delivery, reason: str) -> Response:
    answer = {"error": reason, "status": "rejected", "delivery_id": delivery.delivery_id}
    return _answer(400, answer)


def _accept(delivery: events.Delivery) -> tuple[Response, DeliveryOutcome]:
    """Store and queue a verified delivery; the answer and how to count it."""
    answer: dict[str, Any]
    if delivery.rejection is not None:
        status, reason = DeliveryStatus.REJECTED, delivery.rejection
    elif delivery.event == routing.PING_EVENT:
        status, reason = DeliveryStatus.PROCESSED, "ping"
    elif routing.handles(delivery.event):
        status, reason = DeliveryStatus.QUEUED, None
    else:
        status, reason = DeliveryStatus.IGNORED, routing.describe(delivery.event, delivery.action)

    try:
        stored = delivery_store.store(
            _row(delivery, status, reason), enqueue=status == DeliveryStatus.QUEUED
        )
    except (DataError, ValueError) as exc:
        # The checks in events should make this unreachable; if a value still slips
        # through, the sender hears what it was rather than a retry-inviting 503.
        log.error("delivery %s refused by the database: %s", delivery.delivery_id, exc)
        message = f"the database cannot store this delivery: {type(exc).__name__}"
        return _answer(400, {"error": message}), DeliveryOutcome.REJECTED
    except SQLAlchemyError as exc:
        log.warning("delivery %s not stored, database unavailable: %s", delivery.delivery_id, exc)
        return _answer(
            503,
            {"error": "database unavailable; the delivery was not stored, redeliver it later"},
            **{"Retry-After": str(defaults.DATABASE_RETRY_AFTER_SECONDS)},
        ), DeliveryOutcome.UNAVAILABLE

    if stored is Stored.DUPLICATE:
        if status == DeliveryStatus.REJECTED:
            return _rejected(delivery, str(reason)), DeliveryOutcome.REJECTED
        answer = {"status": "duplicate", "delivery_id": delivery.delivery_id}
        return _answer(200, answer), DeliveryOutcome.DUPLICATE
    if status == DeliveryStatus.REJECTED:
        log.warning("delivery %s stored as rejected: %s", delivery.delivery_id, reason)
        return _rejected(delivery, str(reason)), DeliveryOutcome.REJECTED
    if delivery.event == routing.PING_EVENT:
        answer = {"status": "pong", "zen": delivery.data.get("zen")}
        return _answer(200, answer), DeliveryOutcome.ACCEPTED
    if status == DeliveryStatus.IGNORED:
        answer = {"status": "ignored", "delivery_id": delivery.delivery_id, "reason": reason}
        return _answer(202, answer), DeliveryOutcome.ACCEPTED
    if stored is Stored.PENDING:
        answer = {"status": "pending", "delivery_id": delivery.delivery_id}
        return _answer(202, answer), DeliveryOutcome.PENDING
    answer = {"status": "queued", "delivery_id": delivery.delivery_id}
    return _answer(202, answer), DeliveryOutcome.ACCEPTED
