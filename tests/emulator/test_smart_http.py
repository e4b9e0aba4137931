"""git's smart HTTP on the emulator, driven by the real git client: clone and fetch
over protocol v2 and v0, partial clones, GitHub's 401/403/404 answers, pushes that
deliver the push webhook, and the git request counters."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from githubkit import GitHub

from github_emulator import EmulatorServer, defaults
from github_emulator.history import generate_repository, push
from github_emulator.receiver import WebhookReceiver
from github_emulator.testing import SampleRepository, installation_token, with_credentials

BIG_FILE_BYTES = 5000
"""Larger than the 1k filter of the partial-clone test."""


def git(*args: str, cwd: Path | None = None, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """git with no prompts, no credential helper and no personal configuration, so a
    refused request fails at once instead of waiting for a person."""
    isolated = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "Tester",
                "GIT_AUTHOR_EMAIL": "tester@example.com", "GIT_COMMITTER_NAME": "Tester",
                "GIT_COMMITTER_EMAIL": "tester@example.com", **(env or {})}
    result = subprocess.run(["git", "-c", "credential.helper=", *args], cwd=cwd,
                            capture_output=True, text=True, env=isolated, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result


def head_of(path: Path, ref: str = "HEAD") -> str:
    return git("rev-parse", ref, cwd=path).stdout.strip()


@pytest.fixture
def private_repository(github_emulator: EmulatorServer, tmp_path: Path) -> SampleRepository:
    """``octo/secret``, private, with a seeded history and two files above 1k."""
    record = github_emulator.create_repository("octo", "secret", private=True)
    installation_id = github_emulator.install("octo", [record])
    work_dir = tmp_path / "secret-work"
    history = generate_repository(work_dir, seed=77, files=30, directories=5, commits=2)
    for name in ("big-a.txt", "big-b.txt"):
        (work_dir / name).write_text(name * (BIG_FILE_BYTES // len(name)))
    git("add", "big-a.txt", "big-b.txt", cwd=work_dir)
    git("commit", "-q", "-m", "Two big files", cwd=work_dir)
    clone_url = github_emulator.clone_url(record)
    push(work_dir, clone_url)
    return SampleRepository(record, work_dir, history, installation_id, clone_url)


@pytest.mark.parametrize("version", ["2", "0"])
def test_clone_with_an_installation_token(github_emulator: EmulatorServer,
                                          private_repository: SampleRepository,
                                          tmp_path: Path, version: str) -> None:
    token = installation_token(github_emulator, private_repository.installation_id)
    url = with_credentials(github_emulator.http_clone_url(private_repository.record),
                           token)
    clone = tmp_path / "clone"
    result = git("-c", f"protocol.version={version}", "clone", url, str(clone),
                 env={"GIT_TRACE_PACKET": "1"})
    assert head_of(clone) == head_of(private_repository.work_dir)
    assert (clone / "big-a.txt").read_bytes() == (
        private_repository.work_dir / "big-a.txt").read_bytes()
    spoke_v2 = "git< version 2" in result.stderr
    assert spoke_v2 is (version == "2")


def test_clone_without_or_with_bad_credentials_is_challenged(
        github_emulator: EmulatorServer, private_repository: SampleRepository,
        tmp_path: Path) -> None:
    url = github_emulator.http_clone_url(private_repository.record)
    refused = git("clone", url, str(tmp_path / "anonymous"), check=False)
    assert refused.returncode != 0 and "could not read Username" in refused.stderr
    bad = git("clone", with_credentials(url, "ghs_" + "x" * 36),
              str(tmp_path / "bad"), check=False)
    assert bad.returncode != 0 and "Authentication failed" in bad.stderr
    for auth in (None, ("x-access-token", "ghs_unknown"), ("octo", "a password")):
        answer = httpx.get(f"{url}/info/refs", params={"service": "git-upload-pack"},
                           auth=auth)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="GitHub"'


def test_no_access_is_404_and_read_only_push_is_403(github_emulator: EmulatorServer,
                                                    private_repository: SampleRepository,
                                                    sample_repository: SampleRepository
                                                    ) -> None:
    """A token whose installation does not see the repository learns nothing (404);
    one that reads it may not push (403)."""
    other_token = installation_token(github_emulator, sample_repository.installation_id)
    token = installation_token(github_emulator, private_repository.installation_id)
    url = github_emulator.http_clone_url(private_repository.record)
    hidden = httpx.get(f"{url}/info/refs", params={"service": "git-upload-pack"},
                       auth=("x-access-token", other_token))
    assert hidden.status_code == 404 and "Repository not found" in hidden.text
    push_refused = httpx.get(f"{url}/info/refs", params={"service": "git-receive-pack"},
                             auth=("x-access-token", token))
    assert push_refused.status_code == 403
    assert "denied to project-sync[bot]" in push_refused.text
    public = github_emulator.http_clone_url(sample_repository.record)
    anonymous_read = httpx.get(f"{public}/info/refs", params={"service": "git-upload-pack"})
    assert anonymous_read.status_code == 200
    assert anonymous_read.headers["Content-Type"] == (
        "application/x-git-upload-pack-advertisement")
    anonymous_push = httpx.get(f"{public}/info/refs",
                               params={"service": "git-receive-pack"})
    assert anonymous_push.status_code == 401


def test_fetch_after_one_commit_transfers_only_its_objects(
        github_emulator: EmulatorServer, sample_repository: SampleRepository,
        tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    github_emulator.reset_counts()
    git("clone", github_emulator.http_clone_url(sample_repository.record), str(clone))
    clone_bytes = github_emulator.request_counts().git_bytes_sent
    old_head = head_of(clone)
    change = sample_repository.history.commit_random_change()
    sample_repository.push()
    new_objects = git("rev-list", "--objects", change.sha, f"^{old_head}",
                      cwd=sample_repository.work_dir).stdout.splitlines()
    github_emulator.reset_counts()
    # Unpacked as loose objects, so what arrived can be counted one by one.
    git("-c", "fetch.unpackLimit=1000000", "fetch", "origin", cwd=clone)
    assert head_of(clone, "origin/main") == change.sha
    loose = git("count-objects", "-v", cwd=clone).stdout.splitlines()
    assert f"count: {len(new_objects)}" in loose
    assert github_emulator.request_counts().git_bytes_sent < clone_bytes / 3


def test_partial_clone_omits_blobs_over_the_limit(github_emulator: EmulatorServer,
                                                  private_repository: SampleRepository,
                                                  tmp_path: Path) -> None:
    token = installation_token(github_emulator, private_repository.installation_id)
    url = with_credentials(github_emulator.http_clone_url(private_repository.record),
                           token)
    clone = tmp_path / "partial"
    git("clone", "--no-checkout", "--filter=blob:limit=1k", url, str(clone))
    listing = git("rev-list", "--objects", "--missing=print", "--all",
                  cwd=clone).stdout.split()
    missing = {line[1:] for line in listing if line.startswith("?")}
    origin = github_emulator.git(private_repository.record).path
    sizes = subprocess.run(
        ["git", "--git-dir", str(origin), "cat-file", "--batch-all-objects",
         "--batch-check=%(objecttype) %(objectname) %(objectsize)"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    big = {sha for kind, sha, size in (line.split() for line in sizes)
           if kind == "blob" and int(size) >= 1024}
    assert big and missing == big
    git("checkout", "main", cwd=clone)  # the missing blobs are fetched on demand
    assert (clone / "big-b.txt").stat().st_size >= BIG_FILE_BYTES - 20


def test_push_with_the_demo_token_delivers_push_webhooks(
        github_emulator: EmulatorServer, webhook_receiver: WebhookReceiver,
        tmp_path: Path) -> None:
    record = github_emulator.create_repository(defaults.DEMO_LOGIN, "sample")
    installation_id = github_emulator.install(defaults.DEMO_LOGIN, [record])
    work = tmp_path / "demo-work"
    history = generate_repository(work, seed=5, files=20, directories=3, commits=1)
    push(work, github_emulator.clone_url(record))
    github_emulator.webhook_url = webhook_receiver.url
    earlier = len(github_emulator.deliveries)
    remote = with_credentials(github_emulator.http_clone_url(record),
                              defaults.DEMO_PERSONAL_TOKEN, username=defaults.DEMO_LOGIN)
    before = history.head
    change = history.commit_random_change()
    git("push", remote, "main", "main:refs/heads/topic", cwd=work)
    first, second = (r.payload for r in github_emulator.deliveries[-2:])
    assert len(webhook_receiver.events("push")) == 2
    by_ref = {first["ref"]: first, second["ref"]: second}
    main, topic = by_ref["refs/heads/main"], by_ref["refs/heads/topic"]
    assert (main["before"], main["after"]) == (before, change.sha)
    assert not main["created"] and not main["forced"] and not main["deleted"]
    assert [c["id"] for c in main["commits"]] == [change.sha]
    assert main["pusher"]["name"] == defaults.DEMO_LOGIN
    assert main["installation"]["id"] == installation_id
    assert topic["created"] and topic["before"] == defaults.ZERO_SHA
    rewrite = history.force_push_rewrite()
    git("push", "--force", remote, "main", ":refs/heads/topic", cwd=work)
    forced, deleted = sorted((r.payload for r in github_emulator.deliveries[-2:]),
                             key=lambda p: p["ref"])
    assert forced["forced"] and (forced["before"], forced["after"]) == (change.sha,
                                                                         rewrite.sha)
    assert deleted["deleted"] and deleted["after"] == defaults.ZERO_SHA
    sent = github_emulator.deliveries[earlier:]
    assert len(sent) == 4 and all(r.ok and r.event == "push" for r in sent)
    assert len(webhook_receiver.events("push")) == 4


def test_installation_with_contents_write_pushes_as_its_bot(
        github_emulator: EmulatorServer, sample_repository: SampleRepository) -> None:
    github_emulator.accept_new_permissions(sample_repository.installation_id,
                                           {"contents": "write"})
    token = installation_token(github_emulator, sample_repository.installation_id)
    change = sample_repository.history.commit_random_change()
    remote = with_credentials(github_emulator.http_clone_url(sample_repository.record),
                              token)
    git("push", remote, "main", cwd=sample_repository.work_dir)
    assert head_of(github_emulator.git(sample_repository.record).path, "main") == change.sha
    delivery = github_emulator.deliveries[-1]
    assert delivery.event == "push" and delivery.payload["after"] == change.sha
    assert delivery.payload["pusher"]["name"] == "project-sync[bot]"


def test_git_requests_are_counted_apart_from_rest(github_emulator: EmulatorServer,
                                                  sample_repository: SampleRepository,
                                                  installation_github: GitHub,
                                                  tmp_path: Path) -> None:
    installation_github.rest.repos.get("octo", "sample")
    github_emulator.reset_counts()
    git("clone", github_emulator.http_clone_url(sample_repository.record),
        str(tmp_path / "clone"))
    counts = github_emulator.request_counts()
    assert counts.total == 0 and counts.by_endpoint == {}
    assert counts.git_by_service == {"git-upload-pack": counts.git_requests}
    assert counts.git_by_endpoint["GET /{owner}/{repo}/info/refs"] == 1
    assert counts.git_by_endpoint["POST /{owner}/{repo}/git-upload-pack"] >= 1
    assert counts.git_bytes_sent > 1000
    over_http = httpx.get(f"{github_emulator.url}/_emulator/counts").json()
    assert over_http["git_requests"] == counts.git_requests
    assert over_http["git_bytes_sent"] == counts.git_bytes_sent


def pkt_line(text: str) -> bytes:
    return f"{len(text) + 4:04x}{text}".encode()


def test_gzipped_protocol_v2_request_is_understood(github_emulator: EmulatorServer,
                                                   sample_repository: SampleRepository
                                                   ) -> None:
    """git gzips large negotiation bodies; here a v2 ``ls-refs`` sent by hand."""
    body = pkt_line("command=ls-refs\n") + b"0001" + pkt_line("peel\n") + b"0000"
    answer = httpx.post(
        f"{github_emulator.http_clone_url(sample_repository.record)}/git-upload-pack",
        content=gzip.compress(body),
        headers={"Content-Type": "application/x-git-upload-pack-request",
                 "Content-Encoding": "gzip", "Git-Protocol": "version=2"})
    assert answer.status_code == 200
    head = sample_repository.history.head
    assert f"{head} refs/heads/main".encode() in answer.content


def test_clone_url_and_html_url_of_the_rest_payload_work(
        github_emulator: EmulatorServer, private_repository: SampleRepository,
        tmp_path: Path) -> None:
    token = installation_token(github_emulator, private_repository.installation_id)
    client = GitHub(token, base_url=github_emulator.url + "/")
    repo = client.rest.repos.get("octo", "secret").parsed_data
    clone = tmp_path / "from-payload"
    git("clone", with_credentials(repo.clone_url, token), str(clone))
    assert head_of(clone) == head_of(private_repository.work_dir)
    assert httpx.get(repo.html_url).status_code == 404  # private: hidden from visitors
    public = github_emulator.create_repository("octo", "open", description="An open one")
    page = httpx.get(f"{github_emulator.url}/octo/open")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "octo/open" in page.text and "An open one" in page.text
    assert f"git clone {github_emulator.http_clone_url(public)}" in page.text
    dotted = httpx.get(github_emulator.http_clone_url(public))
    assert dotted.status_code == 301 and dotted.headers["Location"].endswith("/octo/open")


@pytest.mark.parametrize("version", ["2", "0"])
def test_a_commit_that_is_no_ref_tip_can_be_fetched_by_sha(
        github_emulator: EmulatorServer, sample_repository: SampleRepository,
        tmp_path: Path, version: str) -> None:
    """GitHub allows any object in a ``want``, which fetching one old commit needs
    (git's default refuses wants that are not advertised tips under v0)."""
    older = sample_repository.history.commits[0]
    target = tmp_path / "by-sha"
    git("init", "-q", str(target))
    git("-c", f"protocol.version={version}", "fetch", "--depth=1",
        github_emulator.http_clone_url(sample_repository.record), older, cwd=target)
    assert head_of(target, "FETCH_HEAD") == older
