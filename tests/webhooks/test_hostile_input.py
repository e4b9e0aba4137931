"""Signed requests a leaked secret (or a bug upstream) could send, and payloads that
cannot be processed: each is a 4xx naming the problem or a delivery that ends at once.

Every case here was seen as a 500, a 503 inviting endless redeliveries, or a delivery
retried three times over 70 s for an error no retry can fix. Both databases; the
processing cases run under RQ's own worker (one job) and under ours (a batch).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from models import DeliveryStatus, WebhookDelivery, db
from sync_jobs import installations
from sync_jobs.deliveries import deliveries_queue, enqueue_delivery
from sync_jobs.errors import GitHubUnavailableError
from sync_jobs.redis_client import redis_connection
from tests.webhooks.conftest import (
    deliver,
    payload,
    queued_count,
    run_delivery_batches,
    run_delivery_jobs,
    signed_headers,
)

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
DEEP = "[" * 1000 + "]" * 1000


def _form(document: str) -> bytes:
    return urlencode({"payload": document}).encode()


def _push_with(**fields: Any) -> bytes:
    return json.dumps({**payload("push"), **fields}, separators=(",", ":")).encode()


REJECTED = [
    ("deep-json", DEEP.encode(), JSON, "nests deeper than 100 levels"),
    ("deep-object", ('{"action":"x","a":' + DEEP + "}").encode(), JSON, "nests deeper"),
    ("deep-form", _form(DEEP), FORM, "nests deeper than 100 levels"),
    ("surrogate-action", b'{"action": "\\ud800"}', JSON, "action contains a lone surrogate"),
    ("nul-action", b'{"action": "op\\u0000en"}', JSON, "action contains a NUL character"),
    ("long-action", json.dumps({"action": "a" * 65}).encode(), JSON, "action is 65 characters"),
    ("number-action", b'{"action": 5}', JSON, "action must be a string, not a number"),
    (
        "installation-id-2**63",
        _push_with(installation={"id": 2**63}),
        JSON,
        "installation.id must be between 1 and 2**63 - 1",
    ),
    (
        "repository-id-2**63",
        _push_with(repository={**payload("push")["repository"], "id": 2**63}),
        JSON,
        "repository.id must be between 1 and 2**63 - 1",
    ),
    (
        "repository-id-string",
        _push_with(repository={**payload("push")["repository"], "id": "700001"}),
        JSON,
        "repository.id must be a number, not a string",
    ),
    ("huge-integer", b'{"action": "x", "n": ' + b"9" * 5000 + b"}", JSON, "not valid JSON"),
    ("form-percent-FF", b"payload=%7B%22a%22%3A%22%FF%22%7D", FORM, "not UTF-8 once percent"),
]


@pytest.mark.parametrize(
    ("raw", "content_type", "message"),
    [case[1:] for case in REJECTED],
    ids=[case[0] for case in REJECTED],
)
def test_unusable_signed_body_is_400_and_kept_as_rejected(
    app: Flask, client: FlaskClient, raw: bytes, content_type: str, message: str
) -> None:
    delivery_id = str(uuid.uuid4())
    headers = signed_headers("push", raw, content_type, delivery_id=delivery_id)
    response = client.post("/webhooks/github", data=raw, headers=headers)
    assert response.status_code == 400, response.json
    assert message in response.json["error"]
    assert response.json["status"] == "rejected"
    with app.app_context():
        row = db.session.scalar(select(WebhookDelivery).filter_by(delivery_id=delivery_id))
        assert row is not None
        assert row.status == DeliveryStatus.REJECTED
        assert row.status_reason == response.json["error"]
        # Exactly the signed bytes: %FF stays %FF, nothing becomes U+FFFD.
        assert row.payload is not None and row.payload.encode() == raw
        assert row.form_encoded is (content_type == FORM)
    assert queued_count(app) == 0
    again = client.post("/webhooks/github", data=raw, headers=headers)
    assert again.status_code == 400 and again.json["error"] == response.json["error"]


HOOK_IDS = [
    ("unicode-digit", "²"),
    ("5000-digits", "9" * 5000),
    ("2**63", str(2**63)),
    ("negative", "-1"),
]


@pytest.mark.parametrize("hook_id", [case[1] for case in HOOK_IDS], ids=[c[0] for c in HOOK_IDS])
def test_bad_hook_id_is_400_and_kept_as_rejected(
    app: Flask, client: FlaskClient, hook_id: str
) -> None:
    raw = _push_with()
    headers = {**signed_headers("push", raw, JSON), "X-GitHub-Hook-ID": hook_id}
    response = client.post("/webhooks/github", data=raw, headers=headers)
    assert response.status_code == 400
    assert "X-GitHub-Hook-ID must be a number below 2**63" in response.json["error"]
    with app.app_context():
        row = db.session.scalar(select(WebhookDelivery))
        assert row is not None and row.status == DeliveryStatus.REJECTED
        assert row.hook_id is None and row.repository_github_id == 700001


def test_hook_id_below_2_63_is_stored(app: Flask, client: FlaskClient) -> None:
    raw = _push_with()
    headers = {**signed_headers("push", raw, JSON), "X-GitHub-Hook-ID": str(2**63 - 1)}
    assert client.post("/webhooks/github", data=raw, headers=headers).status_code == 202
    with app.app_context():
        row = db.session.scalar(select(WebhookDelivery))
        assert row is not None and row.hook_id == 2**63 - 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [(b"\xff{}", "body is not UTF-8"), (b'{"a":"\x00"}', "body contains a NUL byte")],
    ids=["not-utf8", "raw-nul"],
)
def test_body_no_row_can_hold_is_400_and_not_stored(
    app: Flask, client: FlaskClient, raw: bytes, message: str
) -> None:
    response = client.post("/webhooks/github", data=raw, headers=signed_headers("push", raw, JSON))
    assert response.status_code == 400
    assert message in response.json["error"]
    with app.app_context():
        assert db.session.scalar(select(WebhookDelivery)) is None


def test_form_delivery_is_stored_as_signed_and_processed(
    app: Flask, client: FlaskClient, default_branches: dict[str, str]
) -> None:
    """The stored form body is the signed bytes, and processing reads the document
    from its payload field."""
    body = {**payload("push"), "head_commit": {"message": "caf\u00e9 %FF & = +"}}
    delivery_id = str(uuid.uuid4())
    assert deliver(client, "push", body, form=True, delivery_id=delivery_id).status_code == 202
    run_delivery_jobs(app)
    with app.app_context():
        row = db.session.scalar(select(WebhookDelivery).filter_by(delivery_id=delivery_id))
        assert row is not None and row.payload is not None
        assert row.payload == urlencode({"payload": json.dumps(body, separators=(",", ":"))})
        assert row.status == DeliveryStatus.IGNORED  # the repository is not tracked


# --- processing ---------------------------------------------------------------------------

Runner = Callable[[Flask], int]
RUNNERS = {"rq": run_delivery_jobs, "batch": run_delivery_batches}


@pytest.fixture(params=sorted(RUNNERS))
def run(request: pytest.FixtureRequest) -> Runner:
    return RUNNERS[request.param]


def _installation_created(**fields: Any) -> dict[str, Any]:
    return {**payload("installation.created"), **fields}


def _added_with(**repository: Any) -> dict[str, Any]:
    body = payload("installation_repositories.added")
    body["repositories_added"] = [{**body["repositories_added"][0], **repository}]
    return body


PERMANENT = [
    (
        "dict-for-list",
        "installation",
        _installation_created(repositories={"id": 1}),
        "repositories must be an array, not an object",
    ),
    (
        "string-id-in-list",
        "installation_repositories",
        _added_with(id="700001"),
        "repositories_added[0].id must be a number, not a string",
    ),
    (
        "surrogate-full-name",
        "installation_repositories",
        _added_with(full_name="octo-org/\ud83d"),
        "repositories_added[0].full_name contains a lone surrogate",
    ),
    (
        "nul-branch",
        "installation_repositories",
        _added_with(default_branch="ma\u0000in"),
        "default_branch contains a NUL character",
    ),
    (
        "list-account",
        "installation",
        {**payload("installation.new_permissions_accepted"), "installation": {
            **payload("installation.new_permissions_accepted")["installation"], "account": [1]}},
        "installation.account must be an object, not an array",
    ),
]


@pytest.mark.usefixtures("default_branches")
@pytest.mark.parametrize(
    ("event", "body", "message"), [c[1:] for c in PERMANENT], ids=[c[0] for c in PERMANENT]
)
def test_wrong_json_types_fail_at_once_with_a_reason(
    app: Flask, client: FlaskClient, run: Runner, event: str, body: dict[str, Any], message: str
) -> None:
    delivery_id = str(uuid.uuid4())
    response = deliver(client, event, body, delivery_id=delivery_id)
    assert response.status_code == 202, response.json
    assert run(app) == 1
    with app.app_context():
        row = db.session.scalar(select(WebhookDelivery).filter_by(delivery_id=delivery_id))
        assert row is not None
        assert row.status == DeliveryStatus.FAILED, row.status_reason
        assert row.attempts == 1
        assert message in (row.status_reason or "")
        assert "not retried" in (row.status_reason or "")
        assert ScheduledJobRegistry(queue=deliveries_queue(redis_connection())).count == 0
    assert queued_count(app) == 0


def test_a_row_stored_with_a_string_id_fails_at_once(app: Flask, run: Runner) -> None:
    """Rows stored before the receiver checked ids (or by hand) get the same treatment."""
    body = {**payload("push"), "repository": {"id": "700001", "full_name": "octo-org/widgets"}}
    with app.app_context():
        db.session.add(
            WebhookDelivery(
                delivery_id="d-string-id",
                event="push",
                payload=json.dumps(body),
                status=DeliveryStatus.QUEUED,
            )
        )
        db.session.commit()
        enqueue_delivery(deliveries_queue(redis_connection()), delivery_id="d-string-id")
    run(app)
    with app.app_context():
        row = db.session.scalar(select(WebhookDelivery).filter_by(delivery_id="d-string-id"))
        assert row is not None and row.status == DeliveryStatus.FAILED and row.attempts == 1
        assert "repository.id must be a number, not a string" in (row.status_reason or "")


def test_a_transient_error_is_still_retried(app: Flask, client: FlaskClient, run: Runner) -> None:
    def unavailable(*, installation_github_id: int, full_name: str) -> str:
        raise GitHubUnavailableError("GitHub answered 502 five times")

    original = installations.default_branch_lookup
    installations.default_branch_lookup = unavailable
    try:
        delivery_id = str(uuid.uuid4())
        deliver(client, "installation", payload("installation.created"), delivery_id=delivery_id)
        run(app)
    finally:
        installations.default_branch_lookup = original
    with app.app_context():
        row = db.session.scalar(select(WebhookDelivery).filter_by(delivery_id=delivery_id))
        assert row is not None and row.status == DeliveryStatus.QUEUED and row.attempts == 1
        assert "attempt 1 failed: GitHubUnavailableError" in (row.status_reason or "")
        scheduled = ScheduledJobRegistry(queue=deliveries_queue(redis_connection()))
        assert scheduled.count == 1  # RQ runs it again in 10 s
