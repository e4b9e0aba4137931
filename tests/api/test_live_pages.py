"""What the pages show besides the stream: error pages, the favicon, human units,
confirmation steps and the controls behind the JSON API's actions."""

from __future__ import annotations

import re
import subprocess

from flask.testing import FlaskClient

from github_emulator.history import push
from models import Project, ProjectSync, SyncStatus, SyncTrigger, db
from models.queries import lineage
from tests.api.conftest import make_project, queued_job_ids, run_queued_jobs
from tests.api.test_pages import token
from tests.sync.conftest import Tracked


def test_an_unknown_url_gets_the_styled_page_and_the_api_keeps_json(
    client: FlaskClient, app_context: object
) -> None:
    page = client.get("/no/such/page")
    assert page.status_code == 404 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'id="error" data-status-code="404"' in html and "site.css" in html
    assert "Content-Security-Policy" in page.headers
    hidden = client.get("/projects/9999")
    assert hidden.status_code == 404 and 'data-status-code="404"' in hidden.text
    wrong_method = client.delete("/")
    assert wrong_method.status_code == 405 and 'data-status-code="405"' in wrong_method.text
    api = client.get("/api/v1/no-such-thing")
    assert api.status_code == 404 and api.json is not None and "error" in api.json
    assert client.get("/projects/9999/events").status_code == 404


def test_favicon_is_linked_and_answers(client: FlaskClient, app_context: object) -> None:
    html = client.get("/").get_data(as_text=True)
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert icon.get_data().lstrip().startswith(b"<svg")
    assert client.get("/static/favicon.svg").status_code == 200


def test_no_inline_script_or_style(client: FlaskClient, synced: Tracked) -> None:
    for path in ("/", f"/projects/{synced.project_id}", "/nowhere"):
        html = client.get(path).get_data(as_text=True)
        assert re.search(r"<script(?![^>]*\ssrc=)", html) is None, path
        assert " style=" not in html and "<style" not in html, path
        assert re.search(r"\son[a-z]+=", html) is None, path


def test_project_page_in_human_units(client: FlaskClient, synced: Tracked) -> None:
    html = client.get(f"/projects/{synced.project_id}").get_data(as_text=True)
    assert re.search(
        r'<time datetime="[^"]+\+00:00" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"', html
    )
    assert re.search(r"data-relative>(just now|\d+ s ago)</time>", html)
    assert re.search(r">\d+(\.\d)? (B|KiB|MiB)</td>", html)  # sizes, not bare bytes
    assert "binary files, symlinks and submodules have no memory entry" in html


def test_running_sync_row_shows_progress_not_zeros(client: FlaskClient, synced: Tracked) -> None:
    running = ProjectSync(
        project_id=synced.project_id, trigger=SyncTrigger.PUSH, status=SyncStatus.RUNNING
    )
    db.session.add(running)
    db.session.commit()
    html = client.get(f"/projects/{synced.project_id}").get_data(as_text=True)
    row = re.search(rf'<tr data-sync-id="{running.id}".*?</tr>', html, re.S)
    assert row is not None
    assert 'data-status="running"' in row.group(0) and "in progress" in row.group(0)
    assert '<td class="num">0</td>' not in row.group(0)
    assert f'id="progress-bar-{running.id}" role="progressbar"' in html


def test_restore_asks_first(client: FlaskClient, synced: Tracked) -> None:
    first = min(db.session.scalars(lineage(synced.project_id)), key=lambda s: s.id)
    path = f"/projects/{synced.project_id}"
    asked = client.post(
        f"{path}/restore", data={"csrf_token": token(client, path), "sync_id": str(first.id)}
    )
    assert asked.status_code == 200
    html = asked.get_data(as_text=True)
    assert 'id="confirm-restore"' in html and 'name="confirmed" value="1"' in html
    assert "moves it back to the head" in html
    assert queued_job_ids() == []


def test_restore_of_a_sync_id_that_is_no_row_id_says_so(
    client: FlaskClient, synced: Tracked
) -> None:
    """Back to the project page with the problem in words, as every form of it does."""
    path = f"/projects/{synced.project_id}"
    # A Unicode digit (str.isdigit accepts it, int refuses), past Python's int limit,
    # past the column's range, signed, empty.
    for raw in ("\u00b2", "1" * 5000, "9" * 20, "-1", "+1", " 1", ""):
        for confirmed in ({}, {"confirmed": "1"}):
            form = {"csrf_token": token(client, path), "sync_id": raw, **confirmed}
            answer = client.post(f"{path}/restore", data=form, follow_redirects=True)
            assert answer.status_code == 200, (raw[:10], answer.status_code)
            assert "Choose a sync to restore" in answer.get_data(as_text=True), raw[:10]
    assert queued_job_ids() == []


def test_untrack_asks_then_untracks(client: FlaskClient, synced: Tracked) -> None:
    path = f"/projects/{synced.project_id}"
    form = {"csrf_token": token(client, path)}
    asked = client.post(f"{path}/untrack", data=form)
    assert asked.status_code == 200 and 'id="confirm-untrack"' in asked.text
    project = db.session.get_one(Project, synced.project_id, populate_existing=True)
    assert project.tracked
    done = client.post(f"{path}/untrack", data={**form, "confirmed": "1"})
    assert done.status_code == 303 and done.headers["Location"] == "/"
    project = db.session.get_one(Project, synced.project_id, populate_existing=True)
    assert not project.tracked
    assert client.post(f"{path}/untrack", data={"confirmed": "1"}).status_code == 400  # no token


def test_auto_sync_toggle(client: FlaskClient, app_context: object) -> None:
    project = make_project()
    path = f"/projects/{project.id}"
    html = client.get(path).get_data(as_text=True)
    assert 'data-auto-sync="on"' in html and 'id="auto-sync-toggle"' in html
    off = client.post(
        f"{path}/auto-sync", data={"csrf_token": token(client, path), "enabled": "off"}
    )
    assert off.status_code == 303
    assert db.session.get_one(Project, project.id, populate_existing=True).auto_sync is False
    assert 'data-auto-sync="off"' in client.get(path).get_data(as_text=True)
    bad = client.post(
        f"{path}/auto-sync",
        data={"csrf_token": token(client, path), "enabled": "maybe"},
        follow_redirects=True,
    )
    assert "Choose whether auto-sync is on or off" in bad.get_data(as_text=True)


def test_force_a_full_sync(client: FlaskClient, synced: Tracked) -> None:
    path = f"/projects/{synced.project_id}"
    html = client.get(path).get_data(as_text=True)
    assert 'id="full-sync"' in html
    answer = client.post(f"{path}/resync", data={"csrf_token": token(client, path), "full": "1"})
    assert answer.status_code == 303
    run_queued_jobs()
    newest = db.session.scalars(
        db.select(ProjectSync)
        .where(ProjectSync.project_id == synced.project_id)
        .order_by(ProjectSync.id.desc())
    ).first()
    assert newest is not None and newest.mode is not None and newest.mode.startswith("full")


def test_branch_picker_lists_untracked_github_branches(
    client: FlaskClient, synced: Tracked
) -> None:
    work = synced.history.work_dir
    subprocess.run(["git", "-C", str(work), "branch", "topic"], check=True)
    push(work, synced.clone_url, branch="topic")  # a second branch on GitHub
    html = client.get(f"/projects/{synced.project_id}").get_data(as_text=True)
    options = re.findall(r'<option value="([^"]+)" data-sha=', html)
    assert options == ["topic"]  # main is tracked already
    assert 'list="branch-options"' in html
    # The page's script re-reads it for its live parts only: no GitHub call for those.
    before = synced.server.request_counts().total
    live = client.get(f"/projects/{synced.project_id}", headers={"X-Live-Refresh": "1"})
    assert live.status_code == 200 and 'id="syncs-region"' in live.text
    assert synced.server.request_counts().total == before


def test_memory_behind_the_head_and_after_a_restore(client: FlaskClient, synced: Tracked) -> None:
    first = min(db.session.scalars(lineage(synced.project_id)), key=lambda s: s.id)
    path = f"/projects/{synced.project_id}"
    client.post(
        f"{path}/restore",
        data={"csrf_token": token(client, path), "sync_id": str(first.id), "confirmed": "1"},
    )
    run_queued_jobs()
    html = client.get(path).get_data(as_text=True)
    assert "the next resync" in html and "moves memory back to the" in html
    lag = re.search(r'id="memory-lag" data-behind-by="(\d*)" data-restored="(\w+)"', html)
    assert lag is not None and lag.group(1) == "1" and lag.group(2) == "true"
