"""Conditional requests: ETags that follow the content, 304 answers that spend no rate
budget and are counted apart, as the self-healing branch checks rely on."""

from __future__ import annotations

import httpx
from githubkit import GitHub

from github_emulator import EmulatorServer
from github_emulator.testing import SampleRepository

BRANCH = "/repos/octo/sample/branches/main"
BRANCH_LABEL = "GET /repos/{owner}/{repo}/branches/{branch}"


def new_token(app_github: GitHub, sample_repository: SampleRepository) -> str:
    return app_github.rest.apps.create_installation_access_token(
        sample_repository.installation_id).parsed_data.token


def get(server: EmulatorServer, token: str, path: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", headers={"Authorization": f"token {token}",
                                                      **headers}, timeout=5)


def test_conditional_branch_reads_answer_304_without_spending_budget(
        github_emulator: EmulatorServer, app_github: GitHub,
        sample_repository: SampleRepository) -> None:
    token = new_token(app_github, sample_repository)
    github_emulator.reset_counts()
    first = get(github_emulator, token, BRANCH)
    assert first.status_code == 200 and first.headers["ETag"].startswith('W/"')
    remaining = int(first.headers["X-RateLimit-Remaining"])
    answers = [get(github_emulator, token, BRANCH, **{"If-None-Match": first.headers["ETag"]})
               for _ in range(3)]
    assert [a.status_code for a in answers] == [304, 304, 304]
    assert all(a.content == b"" and a.headers["ETag"] == first.headers["ETag"]
               for a in answers)
    assert [int(a.headers["X-RateLimit-Remaining"]) for a in answers] == [remaining] * 3
    counts = github_emulator.request_counts()
    assert counts.by_endpoint[BRANCH_LABEL] == 4
    assert counts.not_modified == 3 and counts.not_modified_by_endpoint == {BRANCH_LABEL: 3}
    over_http = httpx.get(f"{github_emulator.url}/_emulator/counts").json()
    assert over_http["not_modified"] == 3
    assert over_http["not_modified_by_endpoint"] == {BRANCH_LABEL: 3}
    github_emulator.reset_counts()
    assert github_emulator.request_counts().not_modified_by_endpoint == {}


def test_branch_etag_follows_the_content_not_the_token(
        github_emulator: EmulatorServer, app_github: GitHub,
        sample_repository: SampleRepository) -> None:
    first_token = new_token(app_github, sample_repository)
    etag = get(github_emulator, first_token, BRANCH).headers["ETag"]
    assert get(github_emulator, first_token, BRANCH).headers["ETag"] == etag
    rotated = new_token(app_github, sample_repository)
    assert rotated != first_token
    assert get(github_emulator, rotated, BRANCH).headers["ETag"] == etag
    assert get(github_emulator, rotated, BRANCH,
               **{"If-None-Match": etag}).status_code == 304
    sample_repository.history.commit_random_change()
    sample_repository.push()
    moved = get(github_emulator, rotated, BRANCH, **{"If-None-Match": etag})
    assert moved.status_code == 200 and moved.headers["ETag"] != etag
    assert moved.json()["commit"]["sha"] == sample_repository.history.head
