"""``POST /webhooks/github`` through the test client: SQLite and PostgreSQL, real Redis."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq.job import Job
from sqlalchemy import event, func, select
from sqlalchemy.engine.default import CACHE_HIT

from models import DeliveryStatus, WebhookDelivery, db
from sync_jobs.keys import delivery_job_id
from sync_jobs.redis_client import redis_connection
from tests.conftest import TEST_WEBHOOK_SECRET, base_settings
from tests.webhooks.conftest import PAYLOADS, deliver, encode, payload, queued_count, signed_headers
from webhook_app import create_app
from webhook_app.database import receiver_engine

HANDLED = sorted(p.stem for p in PAYLOADS.glob("*.json") if not p.stem.startswith("ping"))


def stored(app: Flask) -> list[WebhookDelivery]:
    with app.app_context():
        rows = list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
        db.session.expunge_all()
        return rows


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
@pytest.mark.parametrize("name", HANDLED)
def test_handled_delivery_is_stored_then_queued(
    app: Flask, client: FlaskClient, name: str, form: bool
) -> None:
    event = name.split(".")[0]
    body = payload(name)
    delivery_id = str(uuid.uuid4())
    response = deliver(client, event, body, form=form, delivery_id=delivery_id)
    assert response.status_code == 202
    assert response.json == {"status": "queued", "delivery_id": delivery_id}
    [row] = stored(app)
    assert (row.delivery_id, row.event, row.action) == (delivery_id, event, body.get("action"))
    assert row.status == DeliveryStatus.QUEUED
    assert row.installation_github_id == 31337
    assert row.hook_id == 77
    raw, _content_type = encode(body, form=form)
    assert row.payload is not None and row.payload.encode() == raw  # the signed bytes
    assert row.form_encoded is form
    with app.app_context():
        job = Job.fetch(delivery_job_id(delivery_id), connection=redis_connection())
        assert job.args == (delivery_id,)
    assert queued_count(app) == 1


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
def test_ping_answers_with_zen(app: Flask, client: FlaskClient, form: bool) -> None:
    response = deliver(client, "ping", payload("ping"), form=form)
    assert response.status_code == 200
    assert response.json == {"status": "pong", "zen": "Keep it logically awesome."}
    [row] = stored(app)
    assert (row.event, row.status) == ("ping", DeliveryStatus.PROCESSED)
    assert queued_count(app) == 0


def test_unknown_event_is_stored_as_ignored(app: Flask, client: FlaskClient) -> None:
    body = {"action": "created", "starred_at": "2024-01-01T00:00:00Z", **payload("delete.tag")}
    response = deliver(client, "star", body)
    assert response.status_code == 202
    assert response.json["status"] == "ignored"
    [row] = stored(app)
    assert (row.status, row.status_reason) == (DeliveryStatus.IGNORED, "event star is not handled")
    assert queued_count(app) == 0


def test_duplicate_is_acknowledged_and_not_requeued(app: Flask, client: FlaskClient) -> None:
    delivery_id = str(uuid.uuid4())
    assert deliver(client, "push", payload("push"), delivery_id=delivery_id).status_code == 202
    with app.app_context():
        redis_connection().delete("rq:queue:project-sync-deliveries")  # as if a worker took it
    again = deliver(client, "push", payload("push"), delivery_id=delivery_id)
    assert again.status_code == 200
    assert again.json == {"status": "duplicate", "delivery_id": delivery_id}
    assert len(stored(app)) == 1
    assert queued_count(app) == 0


@pytest.mark.parametrize(
    ("secret", "drop", "message"),
    [
        ("forged-secret", None, "does not match the payload"),
        (TEST_WEBHOOK_SECRET, "X-Hub-Signature-256", "missing X-Hub-Signature-256 header"),
    ],
    ids=["forged", "missing"],
)
def test_bad_signature_is_401_and_nothing_stored(
    app: Flask, client: FlaskClient, secret: str, drop: str | None, message: str
) -> None:
    raw, content_type = encode(payload("push"))
    headers = signed_headers("push", raw, content_type, secret=secret)
    if drop:
        del headers[drop]
    response = client.post("/webhooks/github", data=raw, headers=headers)
    assert response.status_code == 401
    assert message in response.json["error"]
    assert stored(app) == []
    assert queued_count(app) == 0


def test_sha1_only_signature_is_401(app: Flask, client: FlaskClient) -> None:
    raw, content_type = encode(payload("push"))
    headers = signed_headers("push", raw, content_type)
    headers["X-Hub-Signature-256"] = headers["X-Hub-Signature"].replace("sha1=", "sha256=")
    assert client.post("/webhooks/github", data=raw, headers=headers).status_code == 401
    del headers["X-Hub-Signature-256"]
    assert client.post("/webhooks/github", data=raw, headers=headers).status_code == 401
    assert stored(app) == []


@pytest.fixture
def rotation_settings(app_settings: dict[str, Any]) -> dict[str, Any]:
    return {**app_settings, "WEBHOOK_SECRETS": ("retiring-secret", TEST_WEBHOOK_SECRET)}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_rotated_secrets_both_verify(
    rotation_settings: dict[str, Any], app: Flask, redis_url: str
) -> None:
    rotated = create_app(rotation_settings)
    client = rotated.test_client()
    for secret in ("retiring-secret", TEST_WEBHOOK_SECRET):
        assert deliver(client, "push", payload("push"), secret=secret).status_code == 202  # type: ignore[arg-type]
    assert deliver(client, "push", payload("push"), secret="third").status_code == 401  # type: ignore[arg-type]
    assert len(stored(app)) == 2


@pytest.mark.parametrize("header", ["X-GitHub-Event", "X-GitHub-Delivery"])
def test_missing_github_header_is_400_naming_it(
    app: Flask, client: FlaskClient, header: str
) -> None:
    raw, content_type = encode(payload("push"))
    headers = signed_headers("push", raw, content_type)
    del headers[header]
    response = client.post("/webhooks/github", data=raw, headers=headers)
    assert response.status_code == 400
    assert response.json == {"error": f"missing {header} header"}
    assert stored(app) == []


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b'{"ref": "refs/heads/main",', "application/json"),
        (b"payload=%7B", "application/x-www-form-urlencoded"),
    ],
    ids=["json", "form"],
)
def test_malformed_body_is_400_and_kept_as_rejected(
    app: Flask, client: FlaskClient, raw: bytes, content_type: str
) -> None:
    headers = signed_headers("push", raw, content_type)
    response = client.post("/webhooks/github", data=raw, headers=headers)
    assert response.status_code == 400
    assert "payload is not valid JSON" in response.json["error"]
    assert response.json["status"] == "rejected"
    [row] = stored(app)
    assert row.status == DeliveryStatus.REJECTED
    assert row.status_reason == response.json["error"]
    assert row.payload is not None and row.payload.encode() == raw
    assert queued_count(app) == 0


@pytest.fixture
def small_cap_settings(app_settings: dict[str, Any]) -> dict[str, Any]:
    return {**app_settings, "MAX_WEBHOOK_BYTES": 4096}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_oversized_body_is_413_and_nothing_stored(
    small_cap_settings: dict[str, Any], app: Flask
) -> None:
    capped = create_app(small_cap_settings)
    client = capped.test_client()
    raw, content_type = encode(payload("push"))  # about 8 KB
    assert len(raw) > 4096
    response = client.post(
        "/webhooks/github", data=raw, headers=signed_headers("push", raw, content_type)
    )
    assert response.status_code == 413
    assert "larger than 4096 bytes" in response.json["error"]
    assert stored(app) == []


def test_setup_mode_refuses_with_503(app_settings: dict[str, Any], app: Flask) -> None:
    unconfigured = create_app({**app_settings, "WEBHOOK_SECRETS": ()})
    response = deliver(unconfigured.test_client(), "push", payload("push"))  # type: ignore[arg-type]
    assert response.status_code == 503
    assert "setup mode" in response.json["error"]
    assert stored(app) == []


def test_redis_down_stores_pending_and_still_answers_202(
    app_settings: dict[str, Any], app: Flask
) -> None:
    no_redis = create_app({**app_settings, "REDIS_URL": "redis://127.0.0.1:1/0"})
    response = deliver(no_redis.test_client(), "push", payload("push"))  # type: ignore[arg-type]
    assert response.status_code == 202
    assert response.json["status"] == "pending"
    [row] = stored(app)
    assert row.status == DeliveryStatus.PENDING


def test_database_unreachable_is_503_with_retry_after(
    app_settings: dict[str, Any], app: Flask
) -> None:
    settings = {**app_settings, "DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none"}
    no_database = create_app(settings)
    response = deliver(no_database.test_client(), "push", payload("push"))  # type: ignore[arg-type]
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert "database unavailable" in response.json["error"]
    assert queued_count(app) == 0
    assert stored(app) == []


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_database_stopped_then_back(app: Flask, client: FlaskClient, postgres_url: str) -> None:
    """The session database refuses connections for a while: 503, nothing half-stored,
    and the redelivery afterwards is stored exactly once."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    name = url.database
    delivery_id = str(uuid.uuid4())
    with app.app_context():
        db.engine.dispose()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
    try:
        response = deliver(client, "push", payload("push"), delivery_id=delivery_id)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "30"
        assert queued_count(app) == 0
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert stored(app) == []
    again = deliver(client, "push", payload("push"), delivery_id=delivery_id)
    assert again.status_code == 202
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
    assert queued_count(app) == 1


def test_settings_base_is_used(redis_url: str, tmp_path: Any) -> None:
    # the receiver needs nothing beyond the foundation's settings
    assert "WEBHOOK_SECRETS" in base_settings("sqlite://", redis_url, str(tmp_path))


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_first_delivery_after_connections_killed_is_stored(
    app: Flask, client: FlaskClient, postgres_url: str
) -> None:
    """The receiver's pool does not ping: when PostgreSQL has dropped its connections
    (a restart, an idle-connection killer), the next delivery retries on a fresh
    connection and is stored once, not answered 503."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    first = deliver(client, "push", payload("push"))
    assert first.status_code == 202
    with psycopg.connect(admin, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
            (url.database,),
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    delivery_id = str(uuid.uuid4())
    response = deliver(client, "push", payload("push"), delivery_id=delivery_id)
    assert response.status_code == 202
    assert response.json == {"status": "queued", "delivery_id": delivery_id}
    rows = [row.delivery_id for row in stored(app)]
    assert rows.count(delivery_id) == 1 and len(rows) == 2
    assert queued_count(app) == 2


def test_enqueue_writes_what_rq_enqueue_call_writes(app: Flask) -> None:
    """``enqueue_delivery`` writes the job itself (fewer commands); the hash and the
    queue must be what RQ's own ``enqueue_call`` produces, apart from timestamps."""
    from rq import Queue, Retry

    from sync_jobs import defaults
    from sync_jobs.deliveries import PROCESS_DELIVERY, deliveries_queue, enqueue_delivery

    with app.app_context():
        redis = redis_connection()
        ours = deliveries_queue(redis)
        enqueue_delivery(ours, delivery_id="ours")
        theirs = Queue("reference", connection=redis, default_timeout=ours._default_timeout)
        theirs.enqueue_call(
            PROCESS_DELIVERY,
            args=("ours",),
            job_id="reference-job",
            result_ttl=defaults.JOB_RESULT_TTL_SECONDS,
            failure_ttl=defaults.FAILURE_TTL_SECONDS,
            retry=Retry(
                max=defaults.DELIVERY_MAX_ATTEMPTS - 1,
                interval=list(defaults.DELIVERY_RETRY_INTERVALS_SECONDS),
            ),
        )
        written = redis.hgetall(f"rq:job:{delivery_job_id('ours')}")
        expected = redis.hgetall("rq:job:reference-job")
        varying = {b"created_at", b"enqueued_at", b"last_heartbeat", b"origin", b"data"}
        assert {k: v for k, v in written.items() if k not in varying} == {
            k: v for k, v in expected.items() if k not in varying
        }
        assert set(written) == set(expected)
        assert written[b"origin"] == ours.name.encode()
        assert redis.lrange(ours.key, 0, -1) == [delivery_job_id("ours").encode()]
        assert ours.key.encode() in redis.smembers("rq:queues")
        assert redis.ttl(f"rq:job:{delivery_job_id('ours')}") == redis.ttl("rq:job:reference-job")
        job = Job.fetch(delivery_job_id("ours"), connection=redis)
        assert (job.func_name, job.args, job.retries_left) == (PROCESS_DELIVERY, ("ours",), 2)
        assert job.get_status() == "queued"


def test_storing_a_delivery_compiles_no_sql(app: Flask, client: FlaskClient) -> None:
    """After the first delivery, the receiver's INSERT comes from SQLAlchemy's compiled
    cache: compiling it again on every request was a good part of its CPU."""
    hits: list[object] = []

    def seen(_conn: Any, _cursor: Any, statement: str, _p: Any, context: Any, _m: Any) -> None:
        if statement.startswith("INSERT INTO webhook_delivery"):
            hits.append(context.cache_hit)

    engine = receiver_engine(app)
    event.listen(engine, "after_cursor_execute", seen)
    try:
        for _ in range(3):
            assert deliver(client, "push", payload("push")).status_code == 202
    finally:
        event.remove(engine, "after_cursor_execute", seen)
    assert len(hits) == 3
    assert all(hit is CACHE_HIT for hit in hits[1:]), hits
