"""Each realism knob shown to work over real HTTP."""

from __future__ import annotations

import time

import httpx
import pytest
from githubkit import AppInstallationAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import PrimaryRateLimitExceeded, SecondaryRateLimitExceeded

from github_emulator import EmulatorServer, FaultKind
from github_emulator.testing import SampleRepository


@pytest.fixture
def token(app_github: GitHub, sample_repository: SampleRepository) -> str:
    return app_github.rest.apps.create_installation_access_token(
        sample_repository.installation_id).parsed_data.token


def get(server: EmulatorServer, token: str, path: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", headers={"Authorization": f"token {token}",
                                                      **headers}, timeout=5)


def test_latency_delays_every_request(github_emulator: EmulatorServer, token: str) -> None:
    github_emulator.knobs.latency = 0.3
    started = time.perf_counter()
    get(github_emulator, token, "/repos/octo/sample")
    assert time.perf_counter() - started >= 0.3


def test_rate_limit_headers_and_primary_exhaustion(github_emulator: EmulatorServer,
                                                   token: str) -> None:
    github_emulator.rate_limiter.configure(limit=3)
    answers = [get(github_emulator, token, "/repos/octo/sample") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 403]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert answers[0].headers["X-RateLimit-Limit"] == "3"
    assert answers[2].headers["X-RateLimit-Used"] == "3"
    assert answers[0].headers["X-RateLimit-Resource"] == "core"
    assert int(answers[3].headers["X-RateLimit-Reset"]) > time.time()
    assert "rate limit" in answers[3].json()["message"]


@pytest.mark.parametrize("status", [429, 403])
def test_secondary_limit_answers_with_retry_after(github_emulator: EmulatorServer,
                                                  token: str, status: int) -> None:
    github_emulator.rate_limiter.arm_secondary(count=1, status=status, retry_after=7)
    limited = get(github_emulator, token, "/repos/octo/sample")
    assert limited.status_code == status and limited.headers["Retry-After"] == "7"
    assert "secondary rate limit" in limited.json()["message"]
    assert get(github_emulator, token, "/repos/octo/sample").status_code == 200


def test_faults_by_pattern_and_count(github_emulator: EmulatorServer, token: str) -> None:
    github_emulator.knobs.add_fault(r"/git/trees/", FaultKind.SERVER_ERROR, count=2)
    github_emulator.knobs.add_fault(r"/branches$", FaultKind.BAD_GATEWAY)
    assert [get(github_emulator, token, "/repos/octo/sample/git/trees/main").status_code
            for _ in range(3)] == [500, 500, 200]
    assert get(github_emulator, token, "/repos/octo/sample/branches").status_code == 502
    assert get(github_emulator, token, "/repos/octo/sample/branches").status_code == 200


@pytest.mark.parametrize(("kind", "hang", "limit"), [(FaultKind.RESET, 0.0, 2.0),
                                                    (FaultKind.TIMEOUT, 0.5, 3.0)])
def test_reset_and_timeout_faults_reset_the_connection(github_emulator: EmulatorServer,
                                                       token: str, kind: FaultKind,
                                                       hang: float, limit: float) -> None:
    # The client would wait 30 s for an answer; a real reset ends the wait at once.
    github_emulator.knobs.fault_hang_seconds = hang
    github_emulator.knobs.add_fault("/repos/octo/sample$", kind)
    with httpx.Client(base_url=github_emulator.url, timeout=30,
                      headers={"Authorization": f"token {token}"}) as client:
        started = time.perf_counter()
        with pytest.raises(httpx.TransportError) as failure:
            client.get("/repos/octo/sample")
        elapsed = time.perf_counter() - started
        assert hang <= elapsed < limit
        assert isinstance(failure.value, httpx.ReadError | httpx.RemoteProtocolError)
        assert client.get("/repos/octo/sample").status_code == 200


def test_tree_truncation_by_entries_and_bytes(github_emulator: EmulatorServer,
                                              installation_github: GitHub) -> None:
    full = installation_github.rest.git.get_tree("octo", "sample", "main",
                                                 recursive="1").parsed_data
    github_emulator.knobs.tree_max_entries = 10
    by_entries = installation_github.rest.git.get_tree("octo", "sample", "main",
                                                       recursive="1").parsed_data
    assert by_entries.truncated and len(by_entries.tree) == 10
    assert [e.path for e in by_entries.tree] == [e.path for e in full.tree[:10]]
    github_emulator.knobs.tree_max_entries = 100_000
    github_emulator.knobs.tree_max_bytes = 2_000
    by_bytes = installation_github.rest.git.get_tree("octo", "sample", "main",
                                                     recursive="1").parsed_data
    assert by_bytes.truncated and 0 < len(by_bytes.tree) < len(full.tree)


def test_request_counts_by_endpoint_and_reset(github_emulator: EmulatorServer,
                                              installation_github: GitHub) -> None:
    github_emulator.reset_counts()
    installation_github.rest.repos.get("octo", "sample")
    installation_github.rest.repos.get("octo", "sample")
    installation_github.rest.git.get_tree("octo", "sample", "main")
    counts = github_emulator.request_counts()
    assert counts.by_endpoint["GET /repos/{owner}/{repo}"] == 2
    assert counts.by_endpoint["GET /repos/{owner}/{repo}/git/trees/{sha}"] == 1
    # githubkit fetched a token first and revalidated the repeat with If-None-Match.
    assert counts.by_endpoint["POST /app/installations/{installation_id}/access_tokens"] == 1
    assert counts.total == 4 and counts.not_modified == 1 and counts.bytes_served > 0
    github_emulator.reset_counts()
    assert github_emulator.request_counts().total == 0


def test_knobs_over_http_for_other_processes(github_emulator: EmulatorServer,
                                             token: str) -> None:
    control = f"{github_emulator.url}/_emulator"
    assert httpx.patch(f"{control}/knobs", json={"tree_max_entries": 5}).status_code == 200
    assert github_emulator.knobs.tree_max_entries == 5
    assert httpx.patch(f"{control}/knobs", json={"bogus": 1}).status_code == 422
    httpx.post(f"{control}/faults", json={"pattern": "/branches", "kind": "502"})
    assert get(github_emulator, token, "/repos/octo/sample/branches").status_code == 502
    httpx.post(f"{control}/rate-limit", json={"limit": 1})
    httpx.post(f"{control}/rate-limit", json={"secondary": {"count": 1, "retry_after": 3}})
    assert get(github_emulator, token, "/repos/octo/sample").status_code == 429
    counts = httpx.get(f"{control}/counts").json()
    assert counts["by_endpoint"]["GET /repos/{owner}/{repo}/branches"] == 1
    assert httpx.delete(f"{control}/counts").status_code == 204
    assert httpx.get(f"{control}/counts").json()["total"] == 0
    httpx.post(f"{control}/knobs/reset")
    assert github_emulator.knobs.tree_max_entries == 100_000


def test_githubkit_recognises_the_rate_limit_answers(github_emulator: EmulatorServer,
                                                     sample_repository: SampleRepository
                                                     ) -> None:
    client = GitHub(AppInstallationAuthStrategy(
        str(github_emulator.app_id), github_emulator.private_key_pem,
        sample_repository.installation_id), base_url=github_emulator.url + "/",
        auto_retry=False, cache_strategy=MemCacheStrategy())
    client.rest.repos.get("octo", "sample")
    github_emulator.rate_limiter.configure(limit=0)
    with pytest.raises(PrimaryRateLimitExceeded):
        client.rest.repos.get("octo", "sample")
    github_emulator.rate_limiter.configure(limit=None)
    github_emulator.rate_limiter.arm_secondary(status=403, retry_after=2)
    with pytest.raises(SecondaryRateLimitExceeded) as failure:
        client.rest.repos.get("octo", "sample")
    assert failure.value.retry_after.total_seconds() == 2
