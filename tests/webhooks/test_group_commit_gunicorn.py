"""Group commit under real gunicorn: concurrent deliveries share commits, each answered
only for a row that is stored, duplicates recognised, and an outage answered 503."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from flask import Flask
from sqlalchemy.engine import make_url

from tests.conftest import TEST_WEBHOOK_SECRET
from tests.webhooks.conftest import ROOT, encode, free_port, payload, queued_count, signed_headers

pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)

GENUINE = 180
DUPLICATED = 20  # of the genuine ones, sent a second time in the same burst
FORGED = 10


def _admin(postgres_url: str) -> tuple[str, str, str]:
    """(admin conninfo, the test database's conninfo, its name)."""
    url = make_url(postgres_url).set(drivername="postgresql")
    return (
        url.set(database="postgres").render_as_string(hide_password=False),
        url.render_as_string(hide_password=False),
        str(url.database),
    )


@pytest.fixture
def gunicorn(app: Flask, postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[str]:
    """``gunicorn -c gunicorn.conf.py wsgi:app`` as deployed, on the test's database."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS", "APP_"))}
    env.update(
        PORT=str(port),
        DATABASE_URL=postgres_url,
        REDIS_URL=redis_url,
        SECRET_KEY="test-secret-key",
        WEBHOOK_SECRET=TEST_WEBHOOK_SECRET,
        WEB_CONCURRENCY="2",
        LOG_LEVEL="DEBUG",
        PYTHONPATH=str(ROOT),
    )
    log = open(tmp_path / "web.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if urllib.request.urlopen(f"{url}/healthz", timeout=1).status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"gunicorn did not answer: {(tmp_path / 'web.log').read_text()}")
                time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _requests() -> list[tuple[str, bytes, dict[str, str]]]:
    """(delivery id, body, headers): genuine pushes, some twice, and forgeries, shuffled
    so that a duplicate may land in the same batch as its first copy."""
    raw, content_type = encode(payload("push"))
    genuine = [str(uuid.uuid4()) for _ in range(GENUINE)]
    requests = [(d, raw, signed_headers("push", raw, content_type, delivery_id=d)) for d in genuine]
    requests += [
        (d, raw, signed_headers("push", raw, content_type, delivery_id=d))
        for d in genuine[:DUPLICATED]
    ]
    requests += [
        (d, raw, signed_headers("push", raw, content_type, delivery_id=d, secret="forged"))
        for d in (f"forged-{uuid.uuid4()}" for _ in range(FORGED))
    ]
    order = sorted(range(len(requests)), key=lambda i: uuid.uuid4().hex)
    return [requests[i] for i in order]


def _fire(
    url: str, requests: list[tuple[str, bytes, dict[str, str]]]
) -> list[tuple[str, int, Any]]:
    """Send every request at once, each on its own connection."""

    async def one(client: httpx.AsyncClient, item: tuple[str, bytes, dict[str, str]]) -> Any:
        delivery_id, body, headers = item
        response = await client.post(f"{url}/webhooks/github", content=body, headers=headers)
        body = response.json()
        if "Retry-After" in response.headers:
            body["Retry-After"] = response.headers["Retry-After"]
        return delivery_id, response.status_code, body

    async def burst() -> list[tuple[str, int, Any]]:
        limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            return list(await asyncio.gather(*(one(client, item) for item in requests)))

    return asyncio.run(burst())


def _commits(conninfo: str, name: str) -> int:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
        assert row is not None
        return int(row[0])


def _settled_commits(conninfo: str, name: str) -> int:
    """xact_commit once the backends have reported (they flush statistics at most once
    a second, and when they exit): the same value twice, 1.5 s apart."""
    last = _commits(conninfo, name)
    for _ in range(20):
        time.sleep(1.5)
        now = _commits(conninfo, name)
        if now == last:
            return now
        last = now
    return last


def _stored(conninfo: str) -> list[str]:
    with psycopg.connect(conninfo) as conn:
        return [r[0] for r in conn.execute("SELECT delivery_id FROM webhook_delivery")]


def test_concurrent_deliveries_share_commits_and_each_202_is_stored(
    app: Flask, gunicorn: str, postgres_url: str, tmp_path: Path
) -> None:
    admin, conninfo, name = _admin(postgres_url)
    raw, content_type = encode(payload("push"))
    warm = _fire(gunicorn, [("w", raw, signed_headers("push", raw, content_type))])
    assert warm[0][1] == 202
    requests = _requests()
    before = _settled_commits(admin, name)
    answers = _fire(gunicorn, requests)
    after = _settled_commits(admin, name)

    rows = _stored(conninfo)
    genuine = {d for d, _, _ in requests if not d.startswith("forged-")}
    by_id: dict[str, list[int]] = {}
    for delivery_id, status, _ in answers:
        by_id.setdefault(delivery_id, []).append(status)
    acknowledged = [d for d, status, _ in answers if status == 202]
    assert len(rows) == len(set(rows)) == GENUINE + 1  # the warm-up one too
    assert set(acknowledged) <= set(rows)
    assert set(acknowledged) == genuine  # every genuine one acknowledged once, stored once
    assert len(acknowledged) == GENUINE
    twice = [statuses for statuses in by_id.values() if len(statuses) == 2]
    assert len(twice) == DUPLICATED and all(sorted(s) == [200, 202] for s in twice)
    assert all(
        body == {"status": "duplicate", "delivery_id": d}
        for d, status, body in answers
        if status == 200
    )
    forged = [status for d, status, _ in answers if d not in genuine]
    assert forged == [401] * FORGED
    assert queued_count(app) == GENUINE + 1
    # Fewer commits than deliveries stored: rows shared INSERTs. (Connections opened
    # during the burst add a few transactions of their own to this count.)
    assert after - before < GENUINE, (before, after)
    batches = [
        json.loads(line)["message"]
        for line in (tmp_path / "web.log").read_text().splitlines()
        if "group commit:" in line
    ]
    sizes = [int(message.split(": ")[1].split()[0]) for message in batches]
    assert sum(sizes) == len(requests) - FORGED + 1
    assert max(sizes) > 1


def test_database_refusing_connections_is_503_for_every_waiter_then_stored_once(
    app: Flask, gunicorn: str, postgres_url: str
) -> None:
    """A whole batch fails together: every request of it hears 503 with Retry-After,
    nothing is stored or queued; the redelivery is stored once and queued once."""
    admin, conninfo, name = _admin(postgres_url)
    requests = [r for r in _requests() if not r[0].startswith("forged-")][:40]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
    try:
        answers = _fire(gunicorn, requests)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert {status for _, status, _ in answers} == {503}
    assert all("database unavailable" in body["error"] for _, _, body in answers)
    assert {body["Retry-After"] for _, _, body in answers} == {"30"}
    assert _stored(conninfo) == []
    assert queued_count(app) == 0
    again = _fire(gunicorn, requests)
    unique = {d for d, _, _ in requests}
    assert sorted(s for _, s, _ in again if s == 202) == [202] * len(unique)
    assert sorted(_stored(conninfo)) == sorted(unique)
    assert queued_count(app) == len(unique)
