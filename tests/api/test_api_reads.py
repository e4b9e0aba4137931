"""The JSON API's read endpoints on both databases: projects, branches, status, history,
memory and files (through models.queries), pagination, visibility and errors."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import select

from models import Project, ProjectSync, SyncStatus, db
from models.queries import lineage
from tests.api.conftest import add_sync, make_project
from tests.sync.conftest import Tracked, git_tree
from webhook_app.access import Access
from webhook_app.api_queries import restrict_to_visible


def test_projects_lists_current_sync(client: FlaskClient, synced: Tracked) -> None:
    answer = client.get("/api/v1/projects")
    assert answer.status_code == 200
    (project,) = answer.json["items"]
    assert project["repository"] == "octo/repo" and project["branch"] == "main"
    assert project["auto_sync"] is True and project["stopped_reason"] is None
    assert project["stop_kind"] is None
    current = project["current_sync"]
    assert current["status"] == "succeeded" and current["sequence"] == 2
    assert current["head_commit_sha"] == synced.history.head


def test_unknown_project_is_404_json(client: FlaskClient, app_context: object) -> None:
    for path in ("status", "branches", "history", "memory", "files"):
        answer = client.get(f"/api/v1/projects/999/{path}")
        assert answer.status_code == 404, path
        assert answer.json == {"error": "No project 999."}


def test_branches_lists_tracked_branches(client: FlaskClient, app_context: object) -> None:
    main = make_project()
    make_project(branch="dev")
    answer = client.get(f"/api/v1/projects/{main.id}/branches")
    assert answer.status_code == 200
    assert answer.json["repository"] == "octo/plain"
    assert [(b["name"], b["default"]) for b in answer.json["items"]] == [
        ("dev", False),
        ("main", True),
    ]


def test_status_shows_current_and_unfinished(client: FlaskClient, synced: Tracked) -> None:
    project = db.session.get_one(Project, synced.project_id)
    answer = client.get(f"/api/v1/projects/{project.id}/status").json
    assert answer["current_sync"]["id"] == project.current_sync_id
    assert answer["active_sync"] is None and answer["events_url"] is None
    running = add_sync(project, SyncStatus.RUNNING)
    answer = client.get(f"/api/v1/projects/{project.id}/status").json
    assert answer["active_sync"]["id"] == running.id
    assert answer["events_url"].endswith(f"/api/v1/events/project-sync/{running.id}")


def test_history_is_the_lineage_unless_all(client: FlaskClient, synced: Tracked) -> None:
    project = db.session.get_one(Project, synced.project_id)
    failed = add_sync(project, SyncStatus.FAILED, error="boom")
    answer = client.get(f"/api/v1/projects/{project.id}/history")
    assert answer.status_code == 200
    chain = [s.id for s in db.session.scalars(lineage(project.id))]
    assert [s["id"] for s in answer.json["items"]] == chain and len(chain) == 2
    everything = client.get(f"/api/v1/projects/{project.id}/history?all=1").json
    assert everything["items"][0]["id"] == failed.id
    assert everything["total"] == 3


def test_history_pagination_and_link_headers(client: FlaskClient, app_context: object) -> None:
    project = make_project()
    previous = None
    for sequence in range(1, 6):
        sync = add_sync(project, SyncStatus.SUCCEEDED, sequence=sequence, previous_sync_id=previous)
        previous = sync.id
    answer = client.get(f"/api/v1/projects/{project.id}/history?per_page=2&page=2")
    assert answer.status_code == 200
    assert [s["sequence"] for s in answer.json["items"]] == [3, 2]
    assert answer.json["total"] == 5 and answer.json["pages"] == 3
    links = answer.headers["Link"]
    for rel, page in (("first", 1), ("last", 3), ("prev", 1), ("next", 3)):
        assert f'page={page}&per_page=2>; rel="{rel}"' in links, (rel, links)
    assert answer.headers["X-Total-Count"] == "5"
    last = client.get(f"/api/v1/projects/{project.id}/history?per_page=2&page=3")
    assert 'rel="next"' not in last.headers["Link"]


def test_bad_paging_parameters_are_400(client: FlaskClient, app_context: object) -> None:
    project = make_project()
    for query in ("page=0", "per_page=x", "per_page=100000", "page=-1", "sync=abc"):
        answer = client.get(f"/api/v1/projects/{project.id}/memory?{query}")
        assert answer.status_code == 400, query
        assert "error" in answer.json


def test_a_path_prefix_with_a_nul_is_400_naming_it(
    client: FlaskClient, app_context: object
) -> None:
    project = make_project()
    for listing in ("memory", "files"):
        answer = client.get(f"/api/v1/projects/{project.id}/{listing}?path_prefix=docs%00x")
        assert answer.status_code == 400, answer.data
        assert "path_prefix must be a path prefix, without NUL characters" in answer.json["error"]


def test_memory_and_files_now_and_at_a_past_sync(client: FlaskClient, synced: Tracked) -> None:
    project = db.session.get_one(Project, synced.project_id)
    first, second = sorted(db.session.scalars(lineage(project.id)), key=lambda s: s.id)
    for sync in (first, second):
        expected = git_tree(synced.git_dir, sync.head_commit_sha)
        files = client.get(f"/api/v1/projects/{project.id}/files?sync={sync.id}&per_page=500")
        assert {f["path"]: (f["mode"], f["sha"]) for f in files.json["items"]} == expected
        memory = client.get(f"/api/v1/projects/{project.id}/memory?sync={sync.id}&per_page=500")
        texts = {p for p, (mode, _sha) in expected.items() if mode.startswith("100")}
        assert {m["path"] for m in memory.json["items"]} <= texts
    now = client.get(f"/api/v1/projects/{project.id}/memory?per_page=500").json["items"]
    at_second = client.get(
        f"/api/v1/projects/{project.id}/memory?per_page=500&sync={second.id}"
    ).json["items"]
    assert now == at_second
    assert all(m["superseded_in_sync_id"] is None for m in now)


def test_memory_path_prefix_and_content(client: FlaskClient, synced: Tracked) -> None:
    project_id = synced.project_id
    everything = client.get(f"/api/v1/projects/{project_id}/memory?per_page=500").json["items"]
    prefix = everything[0]["path"].split("/")[0]
    some = client.get(
        f"/api/v1/projects/{project_id}/memory?per_page=500&content=1&path_prefix={prefix}"
    ).json["items"]
    assert some and all(m["path"].startswith(prefix) for m in some)
    assert all(isinstance(m["content"], str) for m in some)
    assert "content" not in everything[0]


def test_state_at_a_sync_outside_the_lineage(client: FlaskClient, synced: Tracked) -> None:
    project = db.session.get_one(Project, synced.project_id)
    failed = add_sync(project, SyncStatus.FAILED)
    answer = client.get(f"/api/v1/projects/{project.id}/files?sync={failed.id}")
    assert answer.status_code == 409
    other = make_project(full_name="octo/other")
    foreign = add_sync(other, SyncStatus.SUCCEEDED, sequence=1)
    answer = client.get(f"/api/v1/projects/{project.id}/memory?sync={foreign.id}")
    assert answer.status_code == 404


def test_visibility_filter_is_a_function_of_the_access(app_context: object) -> None:
    mine = make_project(installation_github_id=1, full_name="me/a")
    also_mine = make_project(installation_github_id=1, full_name="me/b")
    theirs = make_project(installation_github_id=2, full_name="them/b")
    query = select(Project.id).order_by(Project.id)

    def ids(access: Access) -> list[int]:
        return list(db.session.scalars(restrict_to_visible(query, access)))

    def listed(*projects: Project, installation: int = 1) -> Access:
        return Access(
            login="p",
            repositories={installation: {p.repository.github_id: "pull" for p in projects}},
        )

    assert ids(Access(read_all=True)) == [mine.id, also_mine.id, theirs.id]
    assert ids(listed(mine)) == [mine.id]  # one repository of the installation, not all
    assert ids(listed(mine, also_mine)) == [mine.id, also_mine.id]
    assert ids(listed(theirs, installation=2)) == [theirs.id]
    # Listed under another installation than the row's (a transfer not yet seen): hidden.
    assert ids(listed(theirs, installation=1)) == []
    assert ids(Access(login="p")) == []
    assert ids(Access()) == []


def test_non_integer_ids_never_reach_a_view(client: FlaskClient, app_context: object) -> None:
    assert client.get("/api/v1/projects/abc/status").status_code == 404
    assert db.session.scalar(select(ProjectSync.id)) is None
