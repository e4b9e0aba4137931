"""The HTML pages: they render, and their forms act only with the session's token."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from models import Project, ProjectSync, SyncStatus, SyncTrigger, db
from models.queries import lineage
from tests.api.conftest import make_project, queued_job_ids, run_queued_jobs
from tests.sync.conftest import Tracked


def token(client: FlaskClient, path: str = "/") -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has a form with a token"
    return match.group(1)


def test_status_page_lists_projects(client: FlaskClient, synced: Tracked) -> None:
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "octo/repo" in html and "<code>main</code>" in html
    assert synced.history.head is not None and synced.history.head[:10] in html
    assert "Resync" in html and "Track another branch" in html


def test_project_page_shows_lineage_memory_and_progress(
    client: FlaskClient, synced: Tracked
) -> None:
    project = db.session.get_one(Project, synced.project_id)
    queued = ProjectSync(project_id=project.id, trigger=SyncTrigger.MANUAL)
    db.session.add(queued)
    db.session.commit()
    html = client.get(f"/projects/{project.id}").get_data(as_text=True)
    assert "Restore memory to sync" in html
    assert f'data-events-url="/projects/{project.id}/events?after=' in html
    assert f'<tr data-sync-id="{queued.id}" data-status="queued"' in html
    assert f'<progress id="progress-bar-{queued.id}" role="progressbar"' in html
    assert "active entries" in html
    assert client.get("/projects/9999").status_code == 404


def test_resync_form_needs_the_token(client: FlaskClient, app_context: object) -> None:
    project = make_project()
    rejected = client.post(f"/projects/{project.id}/resync", data={})
    assert rejected.status_code == 400
    assert queued_job_ids() == []
    forged = client.post(f"/projects/{project.id}/resync", data={"csrf_token": "forged"})
    assert forged.status_code == 400
    answer = client.post(f"/projects/{project.id}/resync", data={"csrf_token": token(client)})
    assert answer.status_code == 303
    assert len(queued_job_ids()) == 1
    follow = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "queued" in follow


def test_restore_button_queues_a_restore(client: FlaskClient, synced: Tracked) -> None:
    first = min(db.session.scalars(lineage(synced.project_id)), key=lambda s: s.id)
    path = f"/projects/{synced.project_id}"
    form = {"csrf_token": token(client, path), "sync_id": str(first.id)}
    asked = client.post(f"{path}/restore", data=form)
    assert asked.status_code == 200 and 'id="confirm-restore"' in asked.get_data(as_text=True)
    assert queued_job_ids() == []  # nothing happens before the confirmation
    answer = client.post(f"{path}/restore", data={**form, "confirmed": "1"})
    assert answer.status_code == 303
    run_queued_jobs()
    project = db.session.get_one(Project, synced.project_id, populate_existing=True)
    assert project.current_sync is not None
    assert project.current_sync.restored_from_sync_id == first.id
    assert project.current_sync.status is SyncStatus.SUCCEEDED


def test_track_branch_form_and_error_flash(client: FlaskClient, app_context: object) -> None:
    project = make_project()
    csrf = token(client)
    added = client.post(
        f"/projects/{project.id}/branches", data={"csrf_token": csrf, "branch": "dev"}
    )
    assert added.status_code == 303
    again = client.post(
        f"/projects/{project.id}/branches",
        data={"csrf_token": csrf, "branch": "dev"},
        headers={"Referer": f"/projects/{project.id}"},
        follow_redirects=True,
    )
    assert "already tracked" in again.get_data(as_text=True)
