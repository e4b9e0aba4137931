"""App JWTs, installation tokens and their expiry, as GitHub enforces them."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
from githubkit import GitHub

from github_emulator import EmulatorServer
from github_emulator.state import generate_private_key_pem
from github_emulator.testing import SampleRepository, installation_client


def app_jwt(server: EmulatorServer, *, key: str | None = None, iat_offset: int = -60,
            exp_offset: int = 540) -> str:
    now = int(time.time())
    return jwt.encode({"iss": str(server.app_id), "iat": now + iat_offset,
                       "exp": now + exp_offset}, key or server.private_key_pem,
                      algorithm="RS256")


def get_app(server: EmulatorServer, token: str) -> httpx.Response:
    return httpx.get(f"{server.url}/app", headers={"Authorization": f"Bearer {token}"})


def test_app_jwt_accepted_and_parsed(app_github: GitHub, github_emulator: EmulatorServer) -> None:
    app = app_github.rest.apps.get_authenticated().parsed_data
    assert app is not None and app.id == github_emulator.app_id
    assert get_app(github_emulator, app_jwt(github_emulator)).status_code == 200


@pytest.mark.parametrize(("name", "iat_offset", "exp_offset"), [
    ("expired", -700, -10), ("issued in the future", 300, 500),
    ("expiry too far ahead", -60, 1200),
])
def test_bad_jwt_times_are_rejected(github_emulator: EmulatorServer, name: str,
                                    iat_offset: int, exp_offset: int) -> None:
    token = app_jwt(github_emulator, iat_offset=iat_offset, exp_offset=exp_offset)
    response = get_app(github_emulator, token)
    assert response.status_code == 401, name
    assert "message" in response.json()


def test_jwt_signed_by_another_key_is_rejected(github_emulator: EmulatorServer) -> None:
    token = app_jwt(github_emulator, key=generate_private_key_pem())
    assert get_app(github_emulator, token).status_code == 401
    assert get_app(github_emulator, "not.a.jwt").status_code == 401


def test_installation_endpoints(app_github: GitHub, github_emulator: EmulatorServer,
                                sample_repository: SampleRepository) -> None:
    installation_id = sample_repository.installation_id
    one = app_github.rest.apps.get_installation(installation_id).parsed_data
    assert one.account is not None and one.id == installation_id
    by_repo = app_github.rest.apps.get_repo_installation("octo", "sample").parsed_data
    assert by_repo.id == installation_id
    token = app_github.rest.apps.create_installation_access_token(installation_id).parsed_data
    assert token.token.startswith("ghs_") and token.expires_at.endswith("Z")
    listing = httpx.get(f"{github_emulator.url}/installation/repositories",
                        headers={"Authorization": f"token {token.token}"})
    assert listing.json()["total_count"] == 1
    jwt_on_repo = httpx.get(f"{github_emulator.url}/repos/octo/sample",
                            headers={"Authorization": f"Bearer {app_jwt(github_emulator)}"})
    assert jwt_on_repo.status_code == 403


def test_installation_repositories_paginate(github_emulator: EmulatorServer) -> None:
    repos = [github_emulator.create_repository("many", f"r{n}") for n in range(5)]
    installation_id = github_emulator.install("many", repos)
    client = installation_client(github_emulator, installation_id)
    first = client.rest.apps.list_repos_accessible_to_installation(per_page=2)
    assert len(first.parsed_data.repositories) == 2
    assert 'rel="next"' in first.headers["Link"]
    names = [r.name for r in client.rest.paginate(
        client.rest.apps.list_repos_accessible_to_installation, per_page=2,
        map_func=lambda response: response.parsed_data.repositories)]
    assert names == [f"r{n}" for n in range(5)]


def test_tokens_expire_and_unknown_tokens_fail(github_emulator: EmulatorServer,
                                               app_github: GitHub,
                                               sample_repository: SampleRepository) -> None:
    github_emulator.knobs.token_ttl = 1
    token = app_github.rest.apps.create_installation_access_token(
        sample_repository.installation_id).parsed_data.token
    url = f"{github_emulator.url}/repos/octo/sample"
    assert httpx.get(url, headers={"Authorization": f"token {token}"}).status_code == 200
    time.sleep(1.1)
    assert httpx.get(url, headers={"Authorization": f"token {token}"}).status_code == 401
    unknown = httpx.get(url, headers={"Authorization": "token ghs_unknown"})
    assert unknown.status_code == 401 and unknown.json()["message"] == "Bad credentials"


def test_token_narrowed_to_repositories(github_emulator: EmulatorServer, app_github: GitHub,
                                        sample_repository: SampleRepository) -> None:
    other = github_emulator.create_repository("octo", "other")
    github_emulator.add_repositories(sample_repository.installation_id, [other])
    token = app_github.rest.apps.create_installation_access_token(
        sample_repository.installation_id, repositories=["other"]).parsed_data
    headers = {"Authorization": f"token {token.token}"}
    assert httpx.get(f"{github_emulator.url}/repos/octo/other", headers=headers).status_code \
        == 200
    assert httpx.get(f"{github_emulator.url}/repos/octo/sample", headers=headers).status_code \
        == 404
