"""The reconcilers against the emulator over real HTTP, a real database and Redis.

Branch drift: a push whose webhook never arrived is found by a conditional branch read
and becomes one ``reconcile`` sync; while nothing moves, polls are 304s that spend no
rate limit. Failed deliveries: what GitHub could not deliver is redelivered once,
oldest first, to the app served over HTTP, and the checkpoint keeps each scan short.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import make_server

from github_emulator.deliveries import DeliveryRecord
from github_emulator.receiver import WebhookReceiver
from github_emulator.server import EmulatorServer
from models import (
    Installation,
    MaintenanceCheckpoint,
    Project,
    ProjectSync,
    RedeliveryRequest,
    Repository,
    StopKind,
    SyncStatus,
    SyncTrigger,
    WebhookDelivery,
    db,
)
from sync_jobs import defaults, metrics
from sync_jobs.pipeline import execute_sync
from sync_jobs.reconcile import reconcile_branches
from sync_jobs.redelivery import CHECKPOINT, redeliver_failed_deliveries
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.sync.conftest import Tracked, track

BRANCH_READ = "GET /repos/{owner}/{repo}/branches/{branch}"
DELIVERY_LIST = "GET /app/hook/deliveries"
REDELIVERY = "POST /app/hook/deliveries/{delivery_id}/attempts"


@pytest.fixture
def app_settings(app_settings: dict[str, Any], github_emulator: EmulatorServer) -> dict[str, Any]:
    # The app served over HTTP verifies what the emulator signs.
    return {
        **app_settings,
        "WEBHOOK_SECRETS": (TEST_WEBHOOK_SECRET, github_emulator.webhook_secret),
    }


def calls(server: EmulatorServer, endpoint: str) -> int:
    return server.request_counts().by_endpoint.get(endpoint, 0)


def installation_of(project_id: int) -> int:
    return db.session.execute(
        select(Installation.github_id)
        .join(Repository, Repository.installation_id == Installation.id)
        .join(Project, Project.repository_id == Repository.id)
        .where(Project.id == project_id)
    ).scalar_one()


def budget(server: EmulatorServer, project_id: int) -> int:
    """X-RateLimit-Remaining of the project's installation, as the emulator keeps it."""
    headers = server.rate_limiter.headers(
        f"installation:{installation_of(project_id)}", authenticated=True
    )
    return int(headers["X-RateLimit-Remaining"])


def project(project_id: int) -> Project:
    row = db.session.get_one(Project, project_id)
    db.session.refresh(row)
    return row


def syncs(project_id: int) -> list[ProjectSync]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(ProjectSync).where(ProjectSync.project_id == project_id).order_by(ProjectSync.id)
        )
    )


def sync_now(tracked: Tracked) -> ProjectSync:
    sync_id = tracked.new_sync()
    execute_sync(sync_id)
    sync = db.session.get_one(ProjectSync, sync_id)
    assert sync.status is SyncStatus.SUCCEEDED, sync.error
    return sync


def push_change(tracked: Tracked) -> str:
    tracked.history.commit_random_change()
    return tracked.push()


# --- Branch drift ------------------------------------------------------------------------


def test_a_push_without_webhook_becomes_one_reconcile_sync_and_quiet_polls_are_free(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    synced = sync_now(tracked)
    assert reconcile_branches() == 0  # at its head: the ETag is kept from now on
    assert project(tracked.project_id).branch_etag is not None
    polled_at = project(tracked.project_id).reconciled_at
    assert polled_at is not None

    remaining = budget(github_emulator, tracked.project_id)
    before = github_emulator.request_counts()
    assert reconcile_branches() == 0
    after = github_emulator.request_counts()
    assert after.total - before.total == 1  # the token came from Redis: one branch read
    assert after.not_modified - before.not_modified == 1
    assert budget(github_emulator, tracked.project_id) == remaining
    assert project(tracked.project_id).reconciled_at > polled_at  # type: ignore[operator]

    head = push_change(tracked)
    assert not github_emulator.deliveries[-1].ok  # no webhook URL: the push went unheard
    assert reconcile_branches() == 1
    queued = syncs(tracked.project_id)[-1]
    assert (queued.trigger, queued.status) == (SyncTrigger.RECONCILE, SyncStatus.QUEUED)
    assert project(tracked.project_id).branch_etag is None  # not at that head yet

    # The queued sync reads the newest head when it runs: nothing more is requested.
    assert reconcile_branches() == 0
    assert [s.id for s in syncs(tracked.project_id)] == [synced.id, queued.id]

    execute_sync(queued.id)
    assert syncs(tracked.project_id)[-1].head_commit_sha == head
    assert reconcile_branches() == 0
    before = github_emulator.request_counts()
    assert reconcile_branches() == 0
    assert github_emulator.request_counts().not_modified - before.not_modified == 1


def test_only_tracked_projects_are_polled_and_a_never_synced_one_gets_a_sync(
    tracked: Tracked, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    others = {
        reason: track(github_emulator, tmp_path / reason, name=reason, files=3)
        for reason in ("stopped", "manual", "removed", "suspended")
    }
    project(others["stopped"].project_id).stop(
        StopKind.BRANCH_DELETED, "the branch main was deleted on GitHub"
    )
    project(others["manual"].project_id).auto_sync = False
    repository = db.session.get_one(Repository, others["removed"].repository_id)
    repository.removed_at = datetime.now(UTC)
    suspended = db.session.get_one(Repository, others["suspended"].repository_id)
    assert suspended.installation is not None
    suspended.installation.suspended_at = datetime.now(UTC)
    db.session.commit()
    reads = calls(github_emulator, BRANCH_READ)

    assert reconcile_branches() == 1
    assert calls(github_emulator, BRANCH_READ) == reads + 1
    [requested] = syncs(tracked.project_id)
    assert requested.trigger is SyncTrigger.RECONCILE
    assert project(tracked.project_id).branch_etag is None  # never synced: nothing to keep
    for other in others.values():
        assert syncs(other.project_id) == []
        assert project(other.project_id).reconciled_at is None


def test_a_restored_project_is_not_synced_back_until_its_branch_moves(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    from sync_jobs.restore import restore_sync

    first = sync_now(tracked)
    push_change(tracked)
    sync_now(tracked)
    restored = restore_sync(tracked.project_id, from_sync_id=first.id)
    assert restored.status is SyncStatus.SUCCEEDED, restored.error
    assert reconcile_branches() == 0
    assert reconcile_branches() == 0  # and from now on a 304
    push_change(tracked)
    assert reconcile_branches() == 1


def test_a_missing_branch_asks_for_one_sync_that_shows_the_error(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    sync_now(tracked)
    project(tracked.project_id).branch = "gone"
    db.session.commit()
    assert reconcile_branches() == 1
    shown = syncs(tracked.project_id)[-1]
    assert shown.status is SyncStatus.QUEUED
    assert reconcile_branches() == 0  # that sync is still to run
    shown.status, shown.error = SyncStatus.FAILED, "Branch 'gone' does not exist"
    db.session.commit()
    assert reconcile_branches() == 0  # the failure is on show; no sync a round
    assert project(tracked.project_id).reconciled_at is not None


def test_a_rate_limited_installation_waits_and_the_others_go_on(
    tracked: Tracked, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    other = track(github_emulator, tmp_path / "other", name="other", files=3)
    limiter = github_emulator.rate_limiter
    limiter.configure(limit=2)  # two token mints for the App; two reads per installation
    for _ in range(2):
        limiter.spend(f"installation:{installation_of(tracked.project_id)}", authenticated=True)

    assert reconcile_branches() == 1  # no error, no sleep through the reset
    assert syncs(tracked.project_id) == []
    assert project(tracked.project_id).reconciled_at is None  # first in line next round
    assert [s.trigger for s in syncs(other.project_id)] == [SyncTrigger.RECONCILE]


def test_the_connector_reports_its_calls_and_the_installations_rate_limit(
    tracked: Tracked, github_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports: list[tuple[str, dict[str, int]]] = []
    monkeypatch.setattr(metrics, "record_rate_limit", lambda **seen: reports.append(("rate", seen)))
    monkeypatch.setattr(metrics, "record_api_calls", lambda **seen: reports.append(("calls", seen)))
    assert reconcile_branches() == 1
    installation = installation_of(tracked.project_id)
    rate = {
        "installation_id": installation,
        "remaining": budget(github_emulator, tracked.project_id),
        "limit": 5000,
    }
    assert [
        (kind, {k: v for k, v in seen.items() if k != "reset_epoch"}) for kind, seen in reports
    ] == [
        ("rate", rate),  # the branch read's headers (the token mint spends the App's budget)
        ("calls", {"installation_id": installation, "calls": 2}),  # the mint and the read
    ]


def test_without_an_app_nothing_is_asked(
    app_context: Flask, tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    app_context.config["APP_ID"] = None
    before = github_emulator.request_counts().total
    assert reconcile_branches() == 0
    assert redeliver_failed_deliveries() == 0
    assert github_emulator.request_counts().total == before


# --- Failed deliveries -------------------------------------------------------------------


@pytest.fixture
def receiver(app: Flask, github_emulator: EmulatorServer) -> Iterator[Callable[[], None]]:
    """Serve the app over HTTP; calling the fixture's value points the emulator at it."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def connect() -> None:
        github_emulator.webhook_url = f"http://127.0.0.1:{server.server_port}/webhooks/github"

    yield connect
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def set_ages(records: list[DeliveryRecord], *, minutes: list[float]) -> None:
    """Move attempts into the past (the log's order by id stays its order in time)."""
    now = datetime.now(UTC)
    for record, age in zip(records, minutes, strict=True):
        record.delivered_at = now - timedelta(minutes=age)


def spread(records: list[DeliveryRecord], *, oldest: float = 60, step: float = 2) -> None:
    set_ages(records, minutes=[oldest - step * i for i in range(len(records))])


def redelivered(server: EmulatorServer) -> list[str]:
    return [r.guid for r in server.deliveries if r.redelivery]


def stored_guids() -> set[str]:
    db.session.expire_all()
    return set(db.session.scalars(select(WebhookDelivery.delivery_id)))


def test_failed_deliveries_are_redelivered_once_each_oldest_first_across_pages(
    tracked: Tracked, github_emulator: EmulatorServer, receiver: Callable[[], None]
) -> None:
    for _ in range(3):
        push_change(tracked)
    failed = github_emulator.deliveries
    assert [r.event for r in failed] == ["installation", "push", "push", "push", "push"]
    assert not any(r.ok for r in failed)
    spread(failed)
    receiver()

    assert redeliver_failed_deliveries(per_page=2) == 5
    assert redelivered(github_emulator) == [r.guid for r in failed]
    assert all(r.ok for r in github_emulator.deliveries if r.redelivery)
    assert stored_guids() == {r.guid for r in failed}
    requests = db.session.scalars(select(RedeliveryRequest)).all()
    assert {(r.guid, r.outcome) for r in requests} == {(r.guid, "accepted") for r in failed}
    assert {r.hook_delivery_id for r in requests} == {r.id for r in failed}

    posts = calls(github_emulator, REDELIVERY)
    assert redeliver_failed_deliveries(per_page=2) == 0
    assert calls(github_emulator, REDELIVERY) == posts


def test_succeeded_stored_too_old_and_too_recent_deliveries_are_left_alone(
    tracked: Tracked,
    github_emulator: EmulatorServer,
    receiver: Callable[[], None],
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed, stored = github_emulator.deliveries
    db.session.add(WebhookDelivery(delivery_id=stored.guid, event="push", payload="{}"))
    db.session.commit()
    github_emulator.webhook_url = webhook_receiver.url  # answers 202, stores nothing here
    push_change(tracked)
    github_emulator.webhook_url = None
    push_change(tracked)
    push_change(tracked)
    _, _, succeeded, due, recent = github_emulator.deliveries
    assert succeeded.ok and not due.ok and not recent.ok
    set_ages([installed, stored, succeeded, due, recent], minutes=[4 * 24 * 60, 20, 15, 10, 0])
    receiver()

    assert redeliver_failed_deliveries() == 1
    assert redelivered(github_emulator) == [due.guid]
    # The recent one was in its grace time, so the checkpoint stayed at it.
    monkeypatch.setattr(defaults, "REDELIVERY_GRACE_SECONDS", 0)
    assert redeliver_failed_deliveries() == 1
    assert redelivered(github_emulator) == [due.guid, recent.guid]
    assert installed.guid not in stored_guids()


def test_the_checkpoint_ends_each_scan_where_the_last_one_began(
    tracked: Tracked, github_emulator: EmulatorServer, receiver: Callable[[], None]
) -> None:
    for _ in range(8):
        push_change(tracked)
    originals = github_emulator.deliveries
    spread(originals, oldest=60)  # 60 ... 42 minutes ago
    receiver()
    lists = calls(github_emulator, DELIVERY_LIST)
    assert redeliver_failed_deliveries(per_page=2) == 10
    assert calls(github_emulator, DELIVERY_LIST) - lists == 5  # all ten, two a page

    spread([r for r in github_emulator.deliveries if r.redelivery], oldest=39)  # ... 21
    lists = calls(github_emulator, DELIVERY_LIST)
    assert redeliver_failed_deliveries(per_page=2) == 0
    assert calls(github_emulator, DELIVERY_LIST) - lists == 6  # the ten redeliveries, +1

    github_emulator.webhook_url = None
    push_change(tracked)
    newest = github_emulator.deliveries[-1]
    set_ages([newest], minutes=[5])
    receiver()
    lists = calls(github_emulator, DELIVERY_LIST)
    assert redeliver_failed_deliveries(per_page=2) == 1
    assert calls(github_emulator, DELIVERY_LIST) - lists == 2  # of 11 pages in the log
    assert redelivered(github_emulator)[-1] == newest.guid
    checkpoint = db.session.get_one(MaintenanceCheckpoint, CHECKPOINT)
    assert checkpoint.value["id"] == newest.id


def test_the_rate_limit_reserve_and_a_rate_limit_end_a_round_that_the_next_resumes(
    tracked: Tracked, github_emulator: EmulatorServer, receiver: Callable[[], None]
) -> None:
    for _ in range(3):
        push_change(tracked)
    failed = github_emulator.deliveries
    spread(failed)
    receiver()
    limiter = github_emulator.rate_limiter
    # One list call and two redeliveries leave the App exactly its reserve.
    limiter.configure(limit=defaults.REDELIVERY_RATE_LIMIT_RESERVE + 3)
    assert redeliver_failed_deliveries() == 2
    assert redelivered(github_emulator) == [r.guid for r in failed[:2]]
    checkpoint = db.session.get_one(MaintenanceCheckpoint, CHECKPOINT)
    assert checkpoint.value["id"] == failed[2].id  # the first one not handled

    limiter.reset()
    assert redeliver_failed_deliveries() == 3
    assert redelivered(github_emulator) == [r.guid for r in failed]

    github_emulator.webhook_url = None
    push_change(tracked)
    set_ages(github_emulator.deliveries[-1:], minutes=[1])
    receiver()
    limiter.arm_secondary(count=1, retry_after=60)
    assert redeliver_failed_deliveries() == 0  # refused, quietly
    assert redeliver_failed_deliveries() == 1


def test_a_redelivery_github_fails_is_released_and_asked_for_next_round(
    tracked: Tracked, github_emulator: EmulatorServer, receiver: Callable[[], None]
) -> None:
    installed, pushed = github_emulator.deliveries
    spread([installed, pushed])
    receiver()
    github_emulator.knobs.add_fault(r"/attempts$", "500", count=1, method="POST")
    assert redeliver_failed_deliveries() == 0
    assert db.session.scalars(select(RedeliveryRequest)).all() == []
    assert redeliver_failed_deliveries() == 2
    assert redelivered(github_emulator) == [installed.guid, pushed.guid]


def test_a_claim_whose_pass_died_is_taken_over_and_a_live_one_is_respected(
    tracked: Tracked, github_emulator: EmulatorServer, receiver: Callable[[], None]
) -> None:
    installed, pushed = github_emulator.deliveries
    spread([installed, pushed])
    now = datetime.now(UTC)
    lost = timedelta(seconds=defaults.REDELIVERY_IN_FLIGHT_SECONDS + 1)
    db.session.add_all(
        [
            RedeliveryRequest(
                guid=installed.guid,
                hook_delivery_id=installed.id,
                event="installation",
                requested_at=now - lost,
            ),
            RedeliveryRequest(
                guid=pushed.guid, hook_delivery_id=pushed.id, event="push", requested_at=now
            ),
        ]
    )
    db.session.commit()
    receiver()
    assert redeliver_failed_deliveries() == 1
    assert redelivered(github_emulator) == [installed.guid]
    db.session.expire_all()
    assert db.session.get_one(RedeliveryRequest, installed.guid).outcome == "accepted"
    assert db.session.get_one(RedeliveryRequest, pushed.guid).outcome is None
    checkpoint = db.session.get_one(MaintenanceCheckpoint, CHECKPOINT)
    assert checkpoint.value["id"] == pushed.id  # held until that claim settles or dies
