"""GitHub's branch list of a project's repository, read page by page from the emulator
with the App's token, the tracked branches marked; GitHub's failures as clear errors."""

from __future__ import annotations

import subprocess

from flask import Flask
from flask.testing import FlaskClient

from github_emulator.server import EmulatorServer
from sync_jobs import defaults
from tests.api.conftest import make_project, run_queued_jobs
from tests.sync.conftest import Tracked, git_lines
from webhook_app.api_queries import github_branches

BRANCHES = defaults.GITHUB_BRANCHES_PER_PAGE + 30
"""More branches than one page holds, so the list must follow a second page."""


def _many_branches(tracked: Tracked) -> dict[str, str]:
    """Push ``BRANCHES`` more branches at the head; return git's own name -> sha map."""
    work = tracked.history.work_dir
    for number in range(BRANCHES):
        subprocess.run(["git", "-C", str(work), "branch", f"feature-{number:03}"], check=True)
    subprocess.run(
        ["git", "-C", str(work), "push", "--quiet", tracked.clone_url, "refs/heads/*:refs/heads/*"],
        check=True,
        capture_output=True,
    )
    refs = git_lines(tracked.git_dir, "for-each-ref", "--format=%(refname:short) %(objectname)")
    return dict(line.split(" ", 1) for line in refs.decode().splitlines())


def test_github_branches_lists_every_page_and_marks_the_tracked_ones(
    client: FlaskClient, synced: Tracked, github_emulator: EmulatorServer
) -> None:
    expected = _many_branches(synced)
    assert len(expected) == BRANCHES + 1
    tracked = client.post(
        f"/api/v1/projects/{synced.project_id}/branches", json={"branch": "feature-007"}
    )
    assert tracked.status_code == 201
    other_id = tracked.json["project"]["id"]
    run_queued_jobs()
    client.delete(f"/api/v1/projects/{other_id}")  # untracked again: no longer marked
    client.post(f"/api/v1/projects/{synced.project_id}/branches", json={"branch": "feature-011"})
    eleventh = client.get(f"/api/v1/projects/{synced.project_id}/branches").json["items"]
    eleventh_id = next(b["project_id"] for b in eleventh if b["name"] == "feature-011")

    before = github_emulator.request_counts().by_endpoint.get(
        "GET /repos/{owner}/{repo}/branches", 0
    )
    answer = client.get(f"/api/v1/projects/{synced.project_id}/github-branches")
    assert answer.status_code == 200, answer.json
    pages = github_emulator.request_counts().by_endpoint["GET /repos/{owner}/{repo}/branches"]
    assert pages - before == 2
    body = answer.json
    assert body["repository"] == "octo/repo" and body["truncated"] is False
    items = {item["name"]: item for item in body["items"]}
    assert {name: item["sha"] for name, item in items.items()} == expected
    assert items["main"] == {
        "name": "main",
        "sha": expected["main"],
        "tracked": True,
        "project_id": synced.project_id,
        "default": True,
    }
    assert items["feature-011"]["tracked"] and items["feature-011"]["project_id"] == eleventh_id
    assert items["feature-007"]["tracked"] is False and items["feature-007"]["project_id"] is None
    marked = sorted(name for name, item in items.items() if item["tracked"])
    assert marked == ["feature-011", "main"]


def test_github_branches_function_gives_the_same_list(
    app_context: Flask, synced: Tracked
) -> None:
    from models import Project, db

    branches = github_branches(db.session.get_one(Project, synced.project_id))
    assert branches == [
        {"name": "main", "sha": branches[0]["sha"], "tracked": True,
         "project_id": synced.project_id, "default": True}
    ]
    assert branches[0]["sha"] == synced.history.head


def test_github_branches_when_github_does_not_answer_is_a_clear_502(
    app: Flask, client: FlaskClient, synced: Tracked
) -> None:
    app.config["GITHUB_API_URL"] = "http://127.0.0.1:9"  # nothing listens there
    answer = client.get(f"/api/v1/projects/{synced.project_id}/github-branches")
    assert answer.status_code == 502
    assert "GitHub did not answer the branch list of octo/repo" in answer.json["error"]


def test_github_branches_of_a_repository_github_refuses_is_409(
    client: FlaskClient, app_context: Flask, github_emulator: EmulatorServer
) -> None:
    project = make_project()  # installation 101, which the emulator never made
    answer = client.get(f"/api/v1/projects/{project.id}/github-branches")
    assert answer.status_code == 409
    assert "octo/plain" in answer.json["error"] and "installation" in answer.json["error"]


def test_github_branches_of_an_unknown_project_is_404(client: FlaskClient) -> None:
    assert client.get("/api/v1/projects/999999/github-branches").status_code == 404
