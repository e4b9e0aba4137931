"""The controls behind the status pages, through the JSON API against the emulator:
idempotent and full resyncs, idempotent restores, untracking, auto-sync and the memory
lag it leaves. Pushes are the emulator's own push deliveries (as its post-receive hook
logs them), sent through the real webhook endpoint and processed by RQ's SimpleWorker."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from models import Project, ProjectSync, SyncRequest, SyncStatus, SyncTrigger, db
from sync_jobs.keys import sync_pending_key
from sync_jobs.redis_client import redis_connection
from tests.api.conftest import make_project, queued_job_ids, run_queued_jobs
from tests.sync.conftest import Tracked, assert_matches_git
from tests.webhooks.conftest import deliver, run_delivery_jobs
from webhook_app import api_actions


def _syncs(project_id: int) -> list[ProjectSync]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(ProjectSync).where(ProjectSync.project_id == project_id).order_by(ProjectSync.id)
        )
    )


def _project(project_id: int) -> Project:
    return db.session.get_one(Project, project_id, populate_existing=True)


def _push_delivered(app: Flask, client: FlaskClient, tracked: Tracked) -> tuple[str, Any]:
    """Commit, push to the emulator, and deliver the push webhook it logged; return the
    new head and the delivery row's outcome."""
    tracked.history.commit_random_change()
    head = tracked.push()
    record = [d for d in tracked.server.deliveries if d.event == "push"][-1]
    assert record.payload["after"] == head
    answer = deliver(client, "push", record.payload, delivery_id=str(uuid.uuid4()))
    assert answer.status_code == 202, answer.json
    run_delivery_jobs(app)
    return head, answer.json


def _status(client: FlaskClient, project_id: int) -> dict[str, Any]:
    # The test client's requests share this test's session; a real request starts with
    # a fresh one, so rows written by the delivery and sync jobs must be read again.
    db.session.expire_all()
    answer = client.get(f"/api/v1/projects/{project_id}/status")
    assert answer.status_code == 200, answer.json
    body: dict[str, Any] = answer.json
    return body


# --- Idempotent resync and restore ------------------------------------------------------------


def test_two_equal_resyncs_make_one_sync_even_after_it_ran(
    client: FlaskClient, synced: Tracked
) -> None:
    before = len(_syncs(synced.project_id))
    url = f"/api/v1/projects/{synced.project_id}/syncs"
    first = client.post(url, json={})
    assert first.status_code == 202
    run_queued_jobs()  # the sync ran: coalescing with a queued sync no longer applies
    second = client.post(url, json={})
    assert second.status_code == 202
    assert second.json["sync"]["id"] == first.json["sync"]["id"]
    assert len(_syncs(synced.project_id)) == before + 1
    assert queued_job_ids() == []


def test_a_resync_that_joined_a_queued_push_sync_is_answered_with_it_again(
    client: FlaskClient, synced: Tracked
) -> None:
    """The first request coalesced into a push's queued sync; after that sync ran, the
    repeated request (a double click) still gets it rather than a follow-up."""
    pushed = api_actions.request_sync(synced.project_id, trigger=SyncTrigger.PUSH)
    url = f"/api/v1/projects/{synced.project_id}/syncs"
    assert client.post(url, json={}).json["sync"]["id"] == pushed.id
    run_queued_jobs()
    before = len(_syncs(synced.project_id))
    assert client.post(url, json={}).json["sync"]["id"] == pushed.id
    assert len(_syncs(synced.project_id)) == before and queued_job_ids() == []


def test_a_full_resync_is_not_the_same_request_as_a_plain_one(
    client: FlaskClient, synced: Tracked
) -> None:
    url = f"/api/v1/projects/{synced.project_id}/syncs"
    plain = client.post(url, json={}).json["sync"]["id"]
    run_queued_jobs()
    full = client.post(url, json={"full": True}).json["sync"]["id"]
    assert full != plain
    run_queued_jobs()
    assert client.post(url, json={"full": True}).json["sync"]["id"] == full


def test_idempotency_key_returns_the_first_requests_sync(
    app: Flask, client: FlaskClient, synced: Tracked
) -> None:
    url = f"/api/v1/projects/{synced.project_id}/syncs"
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post(url, json={}, headers=key).json["sync"]["id"]
    run_queued_jobs()
    # Past the no-key window too: the key alone decides.
    app.config["SYNC_REQUEST_DEDUP_SECONDS"] = 0
    assert client.post(url, json={}, headers=key).json["sync"]["id"] == first
    other = client.post(url, json={}, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert other.json["sync"]["id"] != first
    reused = client.post(url, json={"full": True}, headers=key)
    assert reused.status_code == 422
    assert key["Idempotency-Key"] in reused.json["error"]
    assert db.session.scalar(select(func.count()).select_from(SyncRequest)) == 2


def test_without_a_key_the_window_is_the_setting(
    app: Flask, client: FlaskClient, synced: Tracked
) -> None:
    url = f"/api/v1/projects/{synced.project_id}/syncs"
    first = client.post(url, json={}).json["sync"]["id"]
    run_queued_jobs()
    app.config["SYNC_REQUEST_DEDUP_SECONDS"] = 0
    assert client.post(url, json={}).json["sync"]["id"] != first


def test_a_bad_idempotency_key_is_400(client: FlaskClient, synced: Tracked) -> None:
    url = f"/api/v1/projects/{synced.project_id}/syncs"
    answer = client.post(url, json={}, headers={"Idempotency-Key": "x" * 256})
    assert answer.status_code == 400 and "Idempotency-Key" in answer.json["error"]


def test_two_equal_restores_make_one_restore(client: FlaskClient, synced: Tracked) -> None:
    first_sync = _syncs(synced.project_id)[0]
    url = f"/api/v1/projects/{synced.project_id}/restore"
    one = client.post(url, json={"sync_id": first_sync.id})
    two = client.post(url, json={"sync_id": first_sync.id})
    assert one.status_code == two.status_code == 202
    assert one.json["sync"]["id"] == two.json["sync"]["id"]
    restores = [s for s in _syncs(synced.project_id) if s.trigger is SyncTrigger.RESTORE]
    assert len(restores) == 1 and len(queued_job_ids()) == 1
    run_queued_jobs()
    assert client.post(url, json={"sync_id": first_sync.id}).json["sync"]["id"] == (
        one.json["sync"]["id"]  # finished, but requested within the window
    )
    # A key names a request of its own: a new one, which its repetition gets again.
    key = {"Idempotency-Key": "restore-1"}
    three = client.post(url, json={"sync_id": first_sync.id}, headers=key).json["sync"]["id"]
    assert three != one.json["sync"]["id"]
    run_queued_jobs()
    again = client.post(url, json={"sync_id": first_sync.id}, headers=key).json["sync"]["id"]
    assert again == three


def test_two_restore_keys_make_two_restores(client: FlaskClient, synced: Tracked) -> None:
    first_sync = _syncs(synced.project_id)[0]
    url = f"/api/v1/projects/{synced.project_id}/restore"
    one = client.post(url, json={"sync_id": first_sync.id}, headers={"Idempotency-Key": "a"})
    two = client.post(url, json={"sync_id": first_sync.id}, headers={"Idempotency-Key": "b"})
    assert one.json["sync"]["id"] != two.json["sync"]["id"]
    reused = client.post(url, json={"sync_id": 1_000}, headers={"Idempotency-Key": "a"})
    assert reused.status_code in (404, 422)  # sync 1000 is no sync of the project


# --- Full sync ------------------------------------------------------------------------------


def test_a_full_resync_through_the_api_runs_full(client: FlaskClient, synced: Tracked) -> None:
    synced.history.commit_random_change()
    head = synced.push()
    answer = client.post(f"/api/v1/projects/{synced.project_id}/syncs", json={"full": True})
    assert answer.status_code == 202
    run_queued_jobs()
    sync = db.session.get_one(ProjectSync, answer.json["sync"]["id"], populate_existing=True)
    assert sync.status is SyncStatus.SUCCEEDED, sync.error
    assert sync.full_requested and sync.mode is not None and sync.mode.startswith("full")
    assert sync.full_sync_reason == "a full sync was requested"
    assert_matches_git(synced, head)


def test_a_plain_resync_after_a_commit_is_a_delta(client: FlaskClient, synced: Tracked) -> None:
    synced.history.commit_random_change()
    synced.push()
    answer = client.post(f"/api/v1/projects/{synced.project_id}/syncs", json={"full": False})
    run_queued_jobs()
    sync = db.session.get_one(ProjectSync, answer.json["sync"]["id"], populate_existing=True)
    assert sync.status is SyncStatus.SUCCEEDED and not sync.full_requested
    assert sync.mode is not None and sync.mode.startswith("delta")


def test_a_full_request_makes_a_queued_sync_full(client: FlaskClient, synced: Tracked) -> None:
    """A plain sync is still queued (a push asked for it): the full request coalesces
    into it and makes it full, rather than queueing a second sync."""
    queued = api_actions.request_sync(synced.project_id, trigger=SyncTrigger.PUSH)
    answer = client.post(f"/api/v1/projects/{synced.project_id}/syncs", json={"full": True})
    assert answer.json["sync"]["id"] == queued.id
    run_queued_jobs()
    sync = db.session.get_one(ProjectSync, queued.id, populate_existing=True)
    assert sync.status is SyncStatus.SUCCEEDED and sync.mode is not None
    assert sync.mode.startswith("full")


# --- 422 naming the field ------------------------------------------------------------------------


def test_sync_body_fields_are_checked(client: FlaskClient, app_context: object) -> None:
    project = make_project()
    url = f"/api/v1/projects/{project.id}/syncs"
    for body, named in [
        ({"fulll": True}, "Unknown field 'fulll'"),
        ({"full": "yes"}, "full must be true or false"),
        ({"full": 1}, "full must be true or false"),
        ({"full": None}, "full must be true or false"),
    ]:
        answer = client.post(url, json=body)
        assert answer.status_code == 422, body
        assert named in answer.json["error"], answer.json
    assert queued_job_ids() == []
    assert client.post(url, json=[]).status_code == 400


def test_patch_body_fields_are_checked(client: FlaskClient, app_context: object) -> None:
    project = make_project()
    url = f"/api/v1/projects/{project.id}"
    for body, named in [
        ({}, "auto_sync is required"),
        ({"auto_sync": "false"}, "auto_sync must be true or false"),
        ({"auto_sync": 0}, "auto_sync must be true or false"),
        ({"auto_sync": False, "tracked": False}, "Unknown field 'tracked'"),
    ]:
        answer = client.patch(url, json=body)
        assert answer.status_code == 422, body
        assert named in answer.json["error"], answer.json
    assert _project(project.id).auto_sync
    assert client.patch(url, data="auto_sync=false").status_code == 415
    assert client.patch("/api/v1/projects/999999", json={"auto_sync": False}).status_code == 404


# --- Untracking -------------------------------------------------------------------------------


def test_untrack_hides_the_project_and_a_push_no_longer_syncs(
    app: Flask, client: FlaskClient, synced: Tracked
) -> None:
    project_id = synced.project_id
    syncs_before = len(_syncs(project_id))
    answer = client.delete(f"/api/v1/projects/{project_id}")
    assert answer.status_code == 200
    assert answer.json["project"]["tracked"] is False
    assert answer.json["project"]["untracked_at"] is not None
    assert client.get("/api/v1/projects").json["items"] == []
    listed = client.get(f"/api/v1/projects/{project_id}/branches").json["items"]
    assert listed == []
    # Still readable by id, history kept.
    status = _status(client, project_id)
    assert status["project"]["tracked"] is False and status["current_sync"] is not None

    _push_delivered(app, client, synced)
    assert len(_syncs(project_id)) == syncs_before
    assert queued_job_ids() == []

    resync = client.post(f"/api/v1/projects/{project_id}/syncs", json={})
    assert resync.status_code == 409 and "not tracked" in resync.json["error"]
    assert client.delete(f"/api/v1/projects/{project_id}").status_code == 200  # no-op
    assert client.delete("/api/v1/projects/999999").status_code == 404


def test_untrack_supersedes_a_queued_sync_and_its_job_does_nothing(
    client: FlaskClient, synced: Tracked
) -> None:
    queued = client.post(f"/api/v1/projects/{synced.project_id}/syncs", json={}).json["sync"]
    assert client.delete(f"/api/v1/projects/{synced.project_id}").status_code == 200
    sync = db.session.get_one(ProjectSync, queued["id"], populate_existing=True)
    assert sync.status is SyncStatus.SUPERSEDED and sync.error == "the branch was untracked"
    assert redis_connection().get(sync_pending_key(synced.project_id)) is None
    run_queued_jobs()
    sync = db.session.get_one(ProjectSync, queued["id"], populate_existing=True)
    assert sync.status is SyncStatus.SUPERSEDED and sync.attempts == 0


def test_tracking_the_branch_again_brings_the_project_back(
    client: FlaskClient, synced: Tracked
) -> None:
    project_id = synced.project_id
    current = _project(project_id).current_sync_id
    client.delete(f"/api/v1/projects/{project_id}")
    other = make_project(full_name="octo/other")  # the person acts from another project
    assert other.id != project_id
    tracked = client.post(f"/api/v1/projects/{project_id}/branches", json={"branch": "main"})
    assert tracked.status_code == 201, tracked.json
    assert tracked.json["project"]["id"] == project_id
    assert tracked.json["project"]["tracked"] is True
    assert tracked.json["project"]["current_sync"]["id"] == current
    run_queued_jobs()
    assert [p["id"] for p in client.get("/api/v1/projects").json["items"]] == sorted(
        [project_id, other.id], key=lambda i: "octo/other" if i == other.id else "octo/repo"
    )


# --- Auto-sync and the memory lag -------------------------------------------------------------


def test_auto_sync_off_records_pushes_and_on_again_syncs_to_the_head(
    app: Flask, client: FlaskClient, synced: Tracked
) -> None:
    project_id = synced.project_id
    synced_head = _project(project_id).current_sync.head_commit_sha  # type: ignore[union-attr]
    assert _status(client, project_id)["memory_lag"] is None
    off = client.patch(f"/api/v1/projects/{project_id}", json={"auto_sync": False})
    assert off.status_code == 200 and off.json["project"]["auto_sync"] is False
    syncs_before = len(_syncs(project_id))

    _push_delivered(app, client, synced)
    head, _ = _push_delivered(app, client, synced)
    assert len(_syncs(project_id)) == syncs_before and queued_job_ids() == []
    project = _project(project_id)
    assert project.branch_head_sha == head
    lag = _status(client, project_id)["memory_lag"]
    assert lag == {
        "branch_head_sha": head,
        "synced_sha": synced_head,
        "behind_by": 2,
        "restored": False,
    }

    manual = client.post(f"/api/v1/projects/{project_id}/syncs", json={})
    assert manual.status_code == 202  # a manual resync still works with auto-sync off
    client.delete(f"/api/v1/projects/{project_id}")  # (and cancels it; tracked again below)
    client.post(f"/api/v1/projects/{project_id}/branches", json={"branch": "main"})
    run_queued_jobs()
    assert _status(client, project_id)["memory_lag"] is None

    _push_delivered(app, client, synced)
    newest, _ = _push_delivered(app, client, synced)
    assert _status(client, project_id)["memory_lag"]["behind_by"] == 2
    on = client.patch(f"/api/v1/projects/{project_id}", json={"auto_sync": True})
    assert on.status_code == 200 and on.json["project"]["auto_sync"] is True
    assert len(queued_job_ids()) == 1
    run_queued_jobs()
    current = _project(project_id).current_sync
    assert current is not None and current.head_commit_sha == newest
    assert_matches_git(synced, newest)
    assert _status(client, project_id)["memory_lag"] is None


def test_auto_sync_on_again_without_a_push_queues_nothing(
    client: FlaskClient, synced: Tracked
) -> None:
    url = f"/api/v1/projects/{synced.project_id}"
    client.patch(url, json={"auto_sync": False})
    client.patch(url, json={"auto_sync": True})
    assert queued_job_ids() == []


def test_a_restore_leaves_memory_behind_by_design(
    app: Flask, client: FlaskClient, synced: Tracked
) -> None:
    first, second = _syncs(synced.project_id)[:2]
    url = f"/api/v1/projects/{synced.project_id}/restore"
    answer = client.post(url, json={"sync_id": first.id})
    assert answer.status_code == 202
    run_queued_jobs()
    lag = _status(client, synced.project_id)["memory_lag"]
    assert lag == {
        "branch_head_sha": second.head_commit_sha,
        "synced_sha": first.head_commit_sha,
        "behind_by": 1,
        "restored": True,
    }
    client.post(f"/api/v1/projects/{synced.project_id}/syncs", json={})
    run_queued_jobs()
    assert _status(client, synced.project_id)["memory_lag"] is None


def test_an_older_push_delivered_late_does_not_move_the_known_head_back(
    app: Flask, client: FlaskClient, synced: Tracked
) -> None:
    client.patch(f"/api/v1/projects/{synced.project_id}", json={"auto_sync": False})
    synced.history.commit_random_change()
    synced.push()
    synced.history.commit_random_change()
    newest = synced.push()
    pushes = [d for d in synced.server.deliveries if d.event == "push"][-2:]
    for record in reversed(pushes):  # the newest first, then the older one
        deliver(client, "push", record.payload, delivery_id=str(uuid.uuid4()))
    run_delivery_jobs(app)
    assert _project(synced.project_id).branch_head_sha == newest


def test_memory_lag_degrades_when_github_cannot_count(
    app: Flask, client: FlaskClient, synced: Tracked
) -> None:
    client.patch(f"/api/v1/projects/{synced.project_id}", json={"auto_sync": False})
    head, _ = _push_delivered(app, client, synced)
    app.config["GITHUB_API_URL"] = "http://127.0.0.1:9"  # nothing listens there
    lag = _status(client, synced.project_id)["memory_lag"]
    assert lag["branch_head_sha"] == head and lag["behind_by"] is None


def test_ids_past_any_row_are_refused_naming_the_field(
    client: FlaskClient, synced: Tracked
) -> None:
    """Past 64 bits SQLite's driver fails instead of finding nothing; past 2**31 no row
    can match. Either is the client's mistake, answered before any query."""
    base = f"/api/v1/projects/{synced.project_id}"
    for huge in (2**31, 2**64, 10**30):
        answer = client.post(f"{base}/restore", json={"sync_id": huge})
        assert answer.status_code == 422, (huge, answer.status_code)
        assert "sync_id" in answer.json["error"]
        for listing in ("memory", "files"):
            answer = client.get(f"{base}/{listing}?sync={huge}")
            assert answer.status_code == 400, (listing, huge, answer.status_code)
            assert "sync" in answer.json["error"]
