"""The API's actions: manual resync, restore and tracking another branch, queued for a
worker (run here in-process by an RQ SimpleWorker) and followed to their end."""

from __future__ import annotations

import subprocess

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from github_emulator.history import push
from models import Project, ProjectSync, SyncStatus, SyncTrigger, db
from models.queries import lineage
from sync_jobs.redis_client import EXTENSION_NAME
from tests.api.conftest import add_sync, make_project, queued_job_ids, run_queued_jobs
from tests.api.sse_client import messages
from tests.sync.conftest import Tracked, assert_matches_git

JSON = {"Content-Type": "application/json"}


def test_manual_resync_is_queued_coalesced_and_runs(client: FlaskClient, synced: Tracked) -> None:
    synced.history.commit_random_change()
    head = synced.push()
    url = f"/api/v1/projects/{synced.project_id}/syncs"
    first = client.post(url, json={})
    assert first.status_code == 202
    sync_id = first.json["sync"]["id"]
    assert first.json["sync"]["trigger"] == "manual" and first.json["sync"]["status"] == "queued"
    assert first.json["events_url"].endswith(f"/api/v1/events/project-sync/{sync_id}")
    assert first.headers["Location"] == first.json["events_url"]
    assert client.post(url, json={}).json["sync"]["id"] == sync_id  # coalesced
    assert len(queued_job_ids()) == 1
    run_queued_jobs()
    sync = db.session.get_one(ProjectSync, sync_id, populate_existing=True)
    assert sync.status is SyncStatus.SUCCEEDED, sync.error
    assert_matches_git(synced, head)
    events = list(messages(client.get(first.json["events_url"], buffered=False).iter_encoded()))
    assert events[-1].event == "final" and events[-1].data["outcome"] == "succeeded"


def test_posts_need_json(client: FlaskClient, app_context: object) -> None:
    project = make_project()
    for path in ("syncs", "restore", "branches"):
        answer = client.post(f"/api/v1/projects/{project.id}/{path}", data="x=1")
        assert answer.status_code == 415, path
        assert answer.json == {"error": "Send Content-Type: application/json."}
    bad = client.post(f"/api/v1/projects/{project.id}/syncs", data="{", headers=JSON)
    assert bad.status_code == 400
    assert client.post("/api/v1/projects/404/syncs", json={}).status_code == 404


def test_redis_down_is_503(client: FlaskClient, app: Flask, app_context: object) -> None:
    project = make_project()
    app.extensions[EXTENSION_NAME] = Redis(port=1, socket_connect_timeout=0.2)
    answer = client.post(f"/api/v1/projects/{project.id}/syncs", json={})
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert "error" in answer.json


def test_restore_runs_in_a_worker(client: FlaskClient, synced: Tracked) -> None:
    first = min(db.session.scalars(lineage(synced.project_id)), key=lambda s: s.id)
    first_head = first.head_commit_sha
    answer = client.post(
        f"/api/v1/projects/{synced.project_id}/restore", json={"sync_id": first.id}
    )
    assert answer.status_code == 202, answer.json
    restore = answer.json["sync"]
    assert restore["trigger"] == "restore" and restore["restored_from_sync_id"] == first.id
    assert restore["status"] == "queued"
    run_queued_jobs()
    done = db.session.get_one(ProjectSync, restore["id"], populate_existing=True)
    assert done.status is SyncStatus.SUCCEEDED, done.error
    project = db.session.get_one(Project, synced.project_id, populate_existing=True)
    assert project.current_sync_id == done.id
    assert_matches_git(synced, first_head)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "sync_id is required"),
        ({"sync_id": "1"}, "sync_id must be an integer"),
        ({"sync_id": True}, "sync_id must be an integer"),
        ({"sync_id": None}, "sync_id must be an integer"),
        ({"sync_id": 0}, "sync_id must be the id"),
        ({"sync_id": 1, "force": True}, "Unknown field 'force'"),
    ],
)
def test_restore_bad_fields_are_422_naming_the_field(
    client: FlaskClient, app_context: object, body: object, named: str
) -> None:
    project = make_project()
    answer = client.post(f"/api/v1/projects/{project.id}/restore", json=body)
    assert answer.status_code == 422
    assert named in answer.json["error"]
    assert queued_job_ids() == []


def test_restore_body_that_is_no_object_is_400(client: FlaskClient, app_context: object) -> None:
    project = make_project()
    assert client.post(f"/api/v1/projects/{project.id}/restore", json=[]).status_code == 400


def test_restore_outside_the_lineage(client: FlaskClient, app_context: object) -> None:
    project = make_project()
    failed = add_sync(project, SyncStatus.FAILED)
    answer = client.post(f"/api/v1/projects/{project.id}/restore", json={"sync_id": failed.id})
    assert answer.status_code == 409 and "lineage" in answer.json["error"]
    other = add_sync(make_project(full_name="octo/other"), SyncStatus.SUCCEEDED, sequence=1)
    answer = client.post(f"/api/v1/projects/{project.id}/restore", json={"sync_id": other.id})
    assert answer.status_code == 404
    assert queued_job_ids() == []


def test_track_another_branch(client: FlaskClient, synced: Tracked) -> None:
    work = synced.history.work_dir
    subprocess.run(["git", "branch", "feature"], cwd=work, check=True)
    push(work, synced.clone_url, branch="feature")
    url = f"/api/v1/projects/{synced.project_id}/branches"
    answer = client.post(url, json={"branch": "feature"})
    assert answer.status_code == 201, answer.json
    new_id = answer.json["project"]["id"]
    assert answer.json["project"]["branch"] == "feature"
    assert answer.json["sync"]["trigger"] == str(SyncTrigger.MANUAL)
    run_queued_jobs()
    project = db.session.get_one(Project, new_id, populate_existing=True)
    assert project.current_sync is not None
    assert project.current_sync.status is SyncStatus.SUCCEEDED, project.current_sync.error
    names = [b["name"] for b in client.get(url).json["items"]]
    assert names == ["feature", "main"]
    assert client.post(url, json={"branch": "feature"}).status_code == 409
    for bad in ("", "a b", "x..y", "/x", "x.lock"):
        assert client.post(url, json={"branch": bad}).status_code == 400, bad
    for mistyped in (7, None):  # not a string at all: 422 naming the field
        answer = client.post(url, json={"branch": mistyped})
        assert answer.status_code == 422 and "branch must be a string" in answer.json["error"]
