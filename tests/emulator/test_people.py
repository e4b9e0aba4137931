"""People on the emulated GitHub: repository roles, what each person's listing shows,
expiring user tokens with refresh tokens, and revoking a token through the App."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from githubkit import GitHub, OAuthAppAuthStrategy, TokenAuthStrategy
from githubkit.cache import MemCacheStrategy

from github_emulator import EmulatorServer


def user_token(github: EmulatorServer, login: str) -> dict[str, Any]:
    app = github.app
    authorize = httpx.get(f"{github.url}/login/oauth/authorize", params={
        "client_id": app.client_id, "redirect_uri": "http://app.test/cb", "login": login})
    code = parse_qs(urlsplit(authorize.headers["Location"]).query)["code"][0]
    answer = httpx.post(f"{github.url}/login/oauth/access_token", headers={
        "Accept": "application/json"}, data={"client_id": app.client_id,
                                             "client_secret": app.client_secret, "code": code})
    return dict(answer.json())


def as_user(github: EmulatorServer, token: str) -> GitHub[Any]:
    return GitHub(TokenAuthStrategy(token), base_url=github.url + "/",
                  cache_strategy=MemCacheStrategy())


PERMISSIONS = ("pull", "triage", "push", "maintain", "admin")


def listing(github: EmulatorServer, token: str, installation_id: int) -> dict[str, str]:
    """Repository name -> the highest permission GitHub shows the person."""
    client = as_user(github, token)
    repos = client.rest.apps.list_installation_repos_for_authenticated_user(
        installation_id).parsed_data.repositories
    return {r.name: [p for p in PERMISSIONS if getattr(r.permissions, p, False)][-1]
            for r in repos}


def test_each_person_lists_their_own_repositories_and_permissions(
    github_emulator: EmulatorServer,
) -> None:
    for name in ("widgets", "gadgets", "vault"):
        github_emulator.create_repository("acme", name, owner_type="Organization")
    installation_id = github_emulator.install("acme", None, members=("alice", "bob"))
    github_emulator.set_base_permission("acme", "none")
    github_emulator.grant("acme/widgets", "alice", "write")
    github_emulator.grant("acme/gadgets", "alice", "triage")
    github_emulator.grant("acme/widgets", "bob", "read")
    github_emulator.grant("acme/vault", "dana", "admin")  # an outside collaborator
    alice = user_token(github_emulator, "alice")["access_token"]
    bob = user_token(github_emulator, "bob")["access_token"]
    dana = user_token(github_emulator, "dana")["access_token"]
    eve = user_token(github_emulator, "eve")["access_token"]
    assert listing(github_emulator, alice, installation_id) == {
        "widgets": "push", "gadgets": "triage"}
    assert listing(github_emulator, bob, installation_id) == {"widgets": "pull"}
    assert listing(github_emulator, dana, installation_id) == {"vault": "admin"}
    eve_client = as_user(github_emulator, eve)
    installations = eve_client.rest.apps.list_installations_for_authenticated_user().parsed_data
    assert installations.total_count == 0
    # Members get the organisation's base permission on everything else.
    github_emulator.set_base_permission("acme", "read")
    assert listing(github_emulator, bob, installation_id) == {
        "widgets": "pull", "gadgets": "pull", "vault": "pull"}


def test_expiring_tokens_refresh_once(github_emulator: EmulatorServer) -> None:
    github_emulator.app.expiring_user_tokens = True
    first = user_token(github_emulator, "alice")
    assert first["refresh_token"].startswith("ghr_") and first["refresh_token_expires_in"] > 0
    app = github_emulator.app
    body = {"client_id": app.client_id, "client_secret": app.client_secret,
            "grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    second = httpx.post(f"{github_emulator.url}/login/oauth/access_token", json=body,
                        headers={"Accept": "application/json"}).json()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    # The old access token died with the refresh; the old refresh token is spent.
    old = httpx.get(f"{github_emulator.url}/user",
                    headers={"Authorization": f"token {first['access_token']}"})
    assert old.status_code == 401
    again = httpx.post(f"{github_emulator.url}/login/oauth/access_token", json=body,
                       headers={"Accept": "application/json"}).json()
    assert again["error"] == "bad_refresh_token"


def test_the_app_revokes_a_user_token(github_emulator: EmulatorServer) -> None:
    token = user_token(github_emulator, "alice")["access_token"]
    app = github_emulator.app
    answer = httpx.request(
        "DELETE", f"{github_emulator.url}/applications/{app.client_id}/token",
        json={"access_token": token}, auth=(app.client_id, "not-the-secret"))
    assert answer.status_code == 401
    client = GitHub(OAuthAppAuthStrategy(app.client_id, app.client_secret),
                    base_url=github_emulator.url + "/")
    assert client.rest.apps.delete_token(app.client_id, access_token=token).status_code == 204
    assert github_emulator.state.revoked_tokens == [token]
    user = httpx.get(f"{github_emulator.url}/user", headers={"Authorization": f"token {token}"})
    assert user.status_code == 401
    unknown = httpx.request(
        "DELETE", f"{github_emulator.url}/applications/{app.client_id}/token",
        json={"access_token": token}, auth=(app.client_id, app.client_secret))
    assert unknown.status_code == 404
