"""``GET /repos/{owner}/{repo}/compare/{base}...{head}`` against git's own answer:
status, ahead/behind counts, merge base and the commits, for every relation of two
branches (ahead, behind, diverged, identical)."""

from __future__ import annotations

import subprocess

import httpx
from githubkit import GitHub

from github_emulator import EmulatorServer
from github_emulator.history import push
from github_emulator.testing import SampleRepository


def git_out(sample: SampleRepository, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=sample.work_dir, capture_output=True,
                          text=True, check=True).stdout.strip()


def diverge(sample: SampleRepository) -> tuple[str, str, str]:
    """A ``topic`` branch one commit off ``main``'s older head, ``main`` two commits
    further on; returns (merge base, topic head, main head)."""
    fork_point = sample.history.head or ""
    sample.history.commit_random_change()
    sample.history.commit_random_change()
    push(sample.work_dir, sample.clone_url)
    main_head = sample.history.head or ""
    topic_head = git_out(sample, "-c", "user.name=T", "-c", "user.email=t@example.com",
                         "commit-tree", "-p", fork_point, "-m", "topic work",
                         f"{main_head}^{{tree}}")
    subprocess.run(["git", "push", "--quiet", sample.clone_url,
                    f"{topic_head}:refs/heads/topic"], cwd=sample.work_dir, check=True)
    return fork_point, topic_head, main_head


def test_diverged_branches_compare_as_git_counts_them(
        installation_github: GitHub, sample_repository: SampleRepository) -> None:
    merge_base, topic, main = diverge(sample_repository)
    comparison = installation_github.rest.repos.compare_commits(
        "octo", "sample", "main...topic").parsed_data
    assert comparison.status == "diverged"
    assert (comparison.ahead_by, comparison.behind_by) == (1, 2)
    assert comparison.total_commits == 1
    assert comparison.base_commit.sha == main
    assert comparison.merge_base_commit.sha == merge_base
    assert [c.sha for c in comparison.commits] == [topic]
    counted = git_out(sample_repository, "rev-list", "--left-right", "--count",
                      f"{main}...{topic}")
    assert counted.split() == [str(comparison.behind_by), str(comparison.ahead_by)]


def test_identical_and_unknown_refs(github_emulator: EmulatorServer,
                                    installation_github: GitHub,
                                    sample_repository: SampleRepository) -> None:
    head = sample_repository.history.head
    same = installation_github.rest.repos.compare_commits(
        "octo", "sample", f"main...{head}").parsed_data
    assert same.status == "identical" and same.ahead_by == same.behind_by == 0
    assert same.commits == [] and same.merge_base_commit.sha == head
    answer = httpx.get(f"{github_emulator.url}/repos/octo/sample/compare/main...nope")
    assert answer.status_code == 404 and "No commit found" in answer.json()["message"]
