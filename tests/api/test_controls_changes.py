"""Changes made through the JSON API reach open pages as the pages' own forms do:
untracking and auto-sync through the API publish the same change events."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from sync_jobs.changes import ChangeKind, read_changes
from sync_jobs.redis_client import redis_connection
from tests.api.conftest import make_project


def _project_changes(project_id: int) -> list[str]:
    found = read_changes(redis_connection(), project_id=project_id)
    return [
        str(change.data["change"]) for _id, change in found if change.kind == ChangeKind.PROJECT
    ]


def test_untracking_through_the_api_tells_open_pages(
    app_context: Flask, client: FlaskClient
) -> None:
    project = make_project()
    answer = client.delete(f"/api/v1/projects/{project.id}")
    assert answer.status_code == 200, answer.json
    assert _project_changes(project.id) == ["untracked"]


def test_auto_sync_through_the_api_tells_open_pages(
    app_context: Flask, client: FlaskClient
) -> None:
    project = make_project()
    answer = client.patch(f"/api/v1/projects/{project.id}", json={"auto_sync": False})
    assert answer.status_code == 200, answer.json
    assert _project_changes(project.id) == ["settings"]
