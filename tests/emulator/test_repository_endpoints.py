"""Repository data endpoints, each checked against git and githubkit's models."""

from __future__ import annotations

import base64
import io
import subprocess
import tarfile
from pathlib import Path

import httpx
import pytest
from githubkit import GitHub
from githubkit.exception import RequestFailed

from github_emulator import EmulatorServer
from github_emulator.history import push
from github_emulator.testing import SampleRepository, installation_client


def git(work_dir: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=work_dir, capture_output=True,
                          check=True).stdout


def ls_tree(work_dir: Path, rev: str) -> dict[str, tuple[str, str, str]]:
    """path -> (mode, type, sha) of ``git ls-tree -r -t``."""
    entries = {}
    for record in git(work_dir, "ls-tree", "-r", "-t", "-z", rev).split(b"\0"):
        if record:
            meta, _, path = record.partition(b"\t")
            mode, kind, sha = meta.decode().split()
            entries[path.decode()] = (mode, kind, sha)
    return entries


def test_repository_and_installation_listing(installation_github: GitHub,
                                             sample_repository: SampleRepository) -> None:
    repo = installation_github.rest.repos.get("octo", "sample").parsed_data
    assert (repo.id, repo.full_name, repo.default_branch) == (
        sample_repository.record.id, "octo/sample", "main")
    listing = installation_github.rest.apps.list_repos_accessible_to_installation()
    assert [r.full_name for r in listing.parsed_data.repositories] == ["octo/sample"]


def test_recursive_tree_matches_git_ls_tree(installation_github: GitHub,
                                            sample_repository: SampleRepository) -> None:
    head = sample_repository.history.head
    assert head is not None
    commit = installation_github.rest.git.get_commit("octo", "sample", head).parsed_data
    tree = installation_github.rest.git.get_tree("octo", "sample", commit.tree.sha,
                                                 recursive="1").parsed_data
    served = {e.path: (e.mode, e.type, e.sha) for e in tree.tree}
    assert served == ls_tree(sample_repository.work_dir, head)
    assert tree.truncated is False
    modes = {mode for mode, _, _ in served.values()}
    assert {"100644", "100755", "120000", "160000", "040000"} <= modes


def test_top_level_tree_is_not_recursive(installation_github: GitHub,
                                         sample_repository: SampleRepository) -> None:
    tree = installation_github.rest.git.get_tree("octo", "sample", "main").parsed_data
    expected = git(sample_repository.work_dir, "ls-tree", "--name-only", "-z", "main")
    assert sorted(e.path for e in tree.tree) == sorted(
        p.decode() for p in expected.split(b"\0") if p)


def test_blobs_match_git_cat_file(installation_github: GitHub,
                                  sample_repository: SampleRepository) -> None:
    tree = installation_github.rest.git.get_tree("octo", "sample", "main",
                                                 recursive="1").parsed_data
    blobs = [e for e in tree.tree if e.type == "blob"]
    for entry in blobs[:15] + [e for e in blobs if e.path in ("empty.txt", "image.png")]:
        blob = installation_github.rest.git.get_blob("octo", "sample", entry.sha).parsed_data
        content = base64.b64decode(blob.content)
        assert content == git(sample_repository.work_dir, "cat-file", "blob", entry.sha)
        assert blob.size == entry.size == len(content)
        assert blob.encoding == "base64"


def test_branch_ref_and_commits(installation_github: GitHub,
                                sample_repository: SampleRepository) -> None:
    head = sample_repository.history.head
    work = sample_repository.work_dir
    branch = installation_github.rest.repos.get_branch("octo", "sample", "main").parsed_data
    assert branch.commit.sha == head
    assert branch.commit.commit.tree.sha == git(work, "rev-parse", "main^{tree}").decode().strip()
    ref = installation_github.rest.git.get_ref("octo", "sample", "heads/main").parsed_data
    assert ref.object_.sha == head and ref.ref == "refs/heads/main"
    refs = installation_github.rest.git.list_matching_refs("octo", "sample", "heads").parsed_data
    assert [r.ref for r in refs] == ["refs/heads/main"]
    git_commit = installation_github.rest.git.get_commit("octo", "sample", head).parsed_data
    assert [p.sha for p in git_commit.parents] == git(work, "rev-parse", "main^").decode().split()
    raw = git(work, "cat-file", "commit", "main").decode()
    assert git_commit.message == raw.partition("\n\n")[2]
    commit = installation_github.rest.repos.get_commit("octo", "sample", "main").parsed_data
    changed = git(work, "diff-tree", "-r", "-M", "--name-only", "-z", "main^", "main")
    assert sorted(f.filename for f in commit.files or []) == sorted(
        p.decode() for p in changed.split(b"\0") if p)


def test_branches_paginate_with_link_headers(github_emulator: EmulatorServer,
                                             installation_github: GitHub,
                                             sample_repository: SampleRepository) -> None:
    for number in range(5):
        git(sample_repository.work_dir, "branch", f"topic-{number}")
        push(sample_repository.work_dir, sample_repository.clone_url, branch=f"topic-{number}")
    first = installation_github.rest.repos.list_branches("octo", "sample", per_page=2)
    assert [b.name for b in first.parsed_data] == ["main", "topic-0"]
    link = first.headers["Link"]
    assert 'rel="next"' in link and 'rel="last"' in link and "page=3" in link
    names = [b.name for b in installation_github.rest.paginate(
        installation_github.rest.repos.list_branches, owner="octo", repo="sample",
        per_page=2)]
    assert names == ["main"] + [f"topic-{n}" for n in range(5)]


def test_compare_counts_and_files(installation_github: GitHub,
                                  sample_repository: SampleRepository) -> None:
    history = sample_repository.history
    base = history.commits[1]
    comparison = installation_github.rest.repos.compare_commits(
        "octo", "sample", f"{base}...main").parsed_data
    assert comparison.status == "ahead"
    assert comparison.ahead_by == 2 and comparison.behind_by == 0
    assert [c.sha for c in comparison.commits] == history.commits[2:]
    reverse = installation_github.rest.repos.compare_commits(
        "octo", "sample", f"main...{base}").parsed_data
    assert reverse.status == "behind" and reverse.behind_by == 2


def test_tarball_redirects_to_archive_like_codeload(github_emulator: EmulatorServer,
                                                    sample_repository: SampleRepository) -> None:
    token = _installation_token(github_emulator, sample_repository.installation_id)
    response = httpx.get(f"{github_emulator.url}/repos/octo/sample/tarball/main",
                         headers={"Authorization": f"token {token}"})
    assert response.status_code == 302
    archive = httpx.get(response.headers["Location"])
    head = sample_repository.history.head or ""
    prefix = f"octo-sample-{head[:7]}/"
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        names = tar.getnames()
        assert all(n.startswith(prefix.rstrip("/")) for n in names)
        member = tar.extractfile(prefix + "empty.txt")
        assert member is not None and member.read() == b""
    client = installation_client(github_emulator, sample_repository.installation_id)
    download = client.rest.repos.download_tarball_archive("octo", "sample", "main")
    assert download.content[:2] == b"\x1f\x8b"


def _installation_token(server: EmulatorServer, installation_id: int) -> str:
    from github_emulator.testing import app_client

    client = app_client(server)
    return client.rest.apps.create_installation_access_token(
        installation_id).parsed_data.token


@pytest.mark.parametrize("path", [
    "git/blobs/" + "0" * 40, "git/trees/" + "1" * 40, "git/commits/" + "2" * 40,
    "branches/nope", "git/ref/heads/nope", "commits/nope",
])
def test_missing_objects_answer_404(github_emulator: EmulatorServer,
                                    sample_repository: SampleRepository, path: str) -> None:
    token = _installation_token(github_emulator, sample_repository.installation_id)
    response = httpx.get(f"{github_emulator.url}/repos/octo/sample/{path}",
                         headers={"Authorization": f"token {token}"})
    assert response.status_code == 404
    assert response.json()["documentation_url"].startswith("https://docs.github.com")


def test_empty_repository_answers_409(github_emulator: EmulatorServer) -> None:
    repo = github_emulator.create_repository("octo", "empty")
    installation_id = github_emulator.install("octo", [repo])
    client = installation_client(github_emulator, installation_id)
    with pytest.raises(RequestFailed) as failure:
        client.rest.git.get_ref("octo", "empty", "heads/main")
    assert failure.value.response.status_code == 409
    assert failure.value.response.json()["message"] == "Git Repository is empty."
    assert client.rest.repos.list_branches("octo", "empty").parsed_data == []


def test_repository_outside_installation_is_hidden(github_emulator: EmulatorServer,
                                                   installation_github: GitHub) -> None:
    github_emulator.create_repository("octo", "secret", private=True)
    github_emulator.create_repository("other", "public")
    for owner, name in (("octo", "secret"), ("other", "public")):
        with pytest.raises(RequestFailed) as failure:
            installation_github.rest.repos.get(owner, name)
        assert failure.value.response.status_code == 404
    anonymous = httpx.get(f"{github_emulator.url}/repos/octo/secret")
    assert anonymous.status_code == 404
