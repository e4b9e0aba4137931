"""Sign-in with GitHub against the emulator: the OAuth round trip, where the token lives
(on the server only), where a person may be sent afterwards, refresh, and sign-out."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from github_emulator import EmulatorServer
from github_emulator.testing import app_client
from sync_jobs import defaults, keys
from webhook_app.auth import (
    LOGIN_KEY,
    REFRESH_KEY,
    TOKEN_EXPIRES_KEY,
    TOKEN_KEY,
    forget_listing,
    local_path,
)
from webhook_app.sessions import EXPIRES_KEY

from .conftest import Org, csrf_of, path_of, session_cookie, sign_in


def stored_token(client: FlaskClient) -> str | None:
    with client.session_transaction() as stored:
        token = stored.get(TOKEN_KEY)
    return token if isinstance(token, str) else None


def session_entries(redis_url: str) -> list[bytes]:
    client = redis.Redis.from_url(redis_url)
    return [client.get(key) or b"" for key in client.scan_iter(keys.session_key("*"))]


def test_login_redirects_to_github_with_a_one_time_state(
    client: FlaskClient, github_emulator: EmulatorServer
) -> None:
    start = client.get("/login")
    assert start.status_code == 302
    target = urlsplit(start.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == (
        f"{github_emulator.url}/login/oauth/authorize"
    )
    query = parse_qs(target.query)
    assert query["client_id"] == [github_emulator.app.client_id]
    assert query["redirect_uri"] == ["http://localhost/login/callback"]
    with client.session_transaction() as stored:
        assert stored["oauth_state"] == query["state"][0]


def test_the_token_stays_on_the_server_and_the_session_id_is_new(
    client: FlaskClient, github_emulator: EmulatorServer, redis_url: str
) -> None:
    client.get("/login")
    before = session_cookie(client)
    back = sign_in(client, next_path="/setup?x=1", login="alice")
    assert back.status_code == 302 and back.headers["Location"] == "/setup?x=1"
    after = session_cookie(client)
    assert before and after and after != before  # no fixation: a new id at sign-in
    token = stored_token(client)
    assert token and token.startswith("gho_")
    # The cookie is a random id; Redis holds the session encrypted; no page shows it.
    assert token not in after and len(after) == 43
    entries = session_entries(redis_url)
    assert len(entries) == 1 and token.encode() not in entries[0] and b"alice" not in entries[0]
    page = client.get("/setup")
    assert "Signed in as <strong>alice</strong>" in page.text and token not in page.text
    assert "gho_" not in str(page.headers)


@pytest.mark.parametrize(
    ("target", "kept"),
    [
        ("/projects/3?tab=memory", True),
        ("/", True),
        ("//evil.example/phish", False),
        ("/\t/evil.example", False),  # /%09/evil.example: browsers drop the tab
        ("/\n/evil.example", False),
        ("/\\evil.example", False),  # browsers read \ as /
        ("/ /evil.example", False),
        ("https://evil.example/", False),
        ("javascript:alert(1)", False),
        ("evil.example", False),
        ("", False),
    ],
)
def test_only_a_path_on_this_site_is_a_redirect_target(target: str, kept: bool) -> None:
    assert local_path(target) == (target if kept else None)


def test_next_with_a_tab_ends_at_home(client: FlaskClient, github_emulator: EmulatorServer) -> None:
    back = sign_in(client, next_path="/\t/evil.example")
    assert back.headers["Location"] == "/"
    # The raw query string of the report: /login?next=/%09/evil.example
    start = client.get("/login?next=/%09/evil.example")
    with client.session_transaction() as stored:
        assert stored["login_next"] == "/"
    assert start.status_code == 302


def test_a_callback_with_a_wrong_or_reused_state_signs_nobody_in(
    client: FlaskClient, github_emulator: EmulatorServer
) -> None:
    start = client.get("/login")
    authorize = path_of(httpx.get(start.headers["Location"]).headers["Location"])
    forged = authorize.replace("state=", "state=x")
    assert client.get(forged).status_code == 400
    # The state was consumed by the failed attempt: the real one no longer works either.
    assert client.get(authorize).status_code == 400
    with client.session_transaction() as stored:
        assert LOGIN_KEY not in stored


def test_anonymous_pages_ask_for_sign_in_and_the_api_answers_401(
    client: FlaskClient, org: Org
) -> None:
    page = client.get(f"/projects/{org.projects['widgets']}?x=1")
    assert page.status_code == 302
    assert page.headers["Location"] == f"/login?next=/projects/{org.projects['widgets']}?x%3D1"
    answer = client.get("/api/v1/projects")
    assert answer.status_code == 401 and answer.json["login"] == "/login"
    assert "Bearer" in answer.headers["WWW-Authenticate"]


def test_a_token_github_refuses_signs_the_person_out(
    client: FlaskClient, github_emulator: EmulatorServer, org: Org
) -> None:
    sign_in(client, login="alice")
    token = stored_token(client)
    assert token is not None
    assert client.get("/api/v1/projects").status_code == 200
    del github_emulator.state.tokens[token]
    with client.application.app_context():
        forget_listing(token)  # as if the cached listing had expired
    assert client.get("/api/v1/projects").status_code == 401
    with client.session_transaction() as stored:
        assert LOGIN_KEY not in stored and TOKEN_KEY not in stored


def test_logout_revokes_the_token_and_deletes_the_session(
    client: FlaskClient, github_emulator: EmulatorServer, org: Org, redis_url: str
) -> None:
    sign_in(client, login="alice")
    token = stored_token(client)
    cookie = session_cookie(client)
    assert token and cookie
    assert client.post("/logout").status_code == 400  # no CSRF token: nothing happens
    assert client.get("/api/v1/projects").status_code == 200
    answer = client.post("/logout", data={"csrf_token": csrf_of(client)})
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    assert github_emulator.state.revoked_tokens == [token]
    assert token not in github_emulator.state.tokens
    assert session_entries(redis_url) == []
    # A copy of the old cookie opens nothing.
    thief = client.application.test_client()
    thief.set_cookie("session", cookie)
    assert thief.get("/api/v1/projects").status_code == 401
    # And the token itself no longer works on GitHub.
    user = httpx.get(f"{github_emulator.url}/user", headers={"Authorization": f"token {token}"})
    assert user.status_code == 401


def test_a_session_ends_with_a_token_that_does_not_refresh(
    client: FlaskClient, github_emulator: EmulatorServer, org: Org
) -> None:
    sign_in(client, login="alice")
    with client.session_transaction() as stored:
        assert stored[TOKEN_EXPIRES_KEY] is None and REFRESH_KEY not in stored
        lifetime = stored[EXPIRES_KEY] - time.time()
    assert abs(lifetime - defaults.NON_EXPIRING_TOKEN_SESSION_SECONDS) < 60
    with client.session_transaction() as stored:
        stored[EXPIRES_KEY] = time.time() - 1
    assert client.get("/api/v1/projects").status_code == 401


def test_expiring_tokens_are_refreshed_before_they_expire(
    client: FlaskClient, github_emulator: EmulatorServer, org: Org
) -> None:
    github_emulator.app.expiring_user_tokens = True
    sign_in(client, login="alice")
    first = stored_token(client)
    with client.session_transaction() as stored:
        refresh = stored[REFRESH_KEY]
        assert refresh.startswith("ghr_") and stored[TOKEN_EXPIRES_KEY] > time.time()
        assert stored[EXPIRES_KEY] <= time.time() + defaults.SESSION_MAX_SECONDS
        stored[TOKEN_EXPIRES_KEY] = time.time()  # about to expire
    assert client.get("/api/v1/projects").status_code == 200
    second = stored_token(client)
    assert second and second != first and first not in github_emulator.state.tokens
    with client.session_transaction() as stored:
        assert stored[REFRESH_KEY] != refresh  # a refresh token works once
        stored[TOKEN_EXPIRES_KEY] = time.time()
        stored[REFRESH_KEY] = refresh  # the spent one
    assert client.get("/api/v1/projects").status_code == 401  # GitHub refused: signed out
    with client.session_transaction() as stored:
        assert LOGIN_KEY not in stored


def test_a_bearer_token_works_for_the_api_and_nothing_else(
    app: Flask, client: FlaskClient, github_emulator: EmulatorServer, org: Org
) -> None:
    sign_in(client, login="alice")
    token = stored_token(client)
    script = app.test_client()
    listed = script.get("/api/v1/projects", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200
    assert {p["repository"] for p in listed.json["items"]} == {"acme/widgets", "acme/gadgets"}
    assert script.get_cookie("session") is None  # no session made for a script
    page = script.get("/", headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 302  # pages sign in through the browser flow only
    bad = script.get("/api/v1/projects", headers={"Authorization": "Bearer gho_nonsense"})
    assert bad.status_code == 401
    # An installation token is not a person.
    as_app = app_client(github_emulator)  # keep a reference: ``rest`` holds it weakly
    app_token = as_app.rest.apps.create_installation_access_token(
        org.installation_id
    ).parsed_data.token
    answer = script.get("/api/v1/projects", headers={"Authorization": f"Bearer {app_token}"})
    assert answer.status_code == 401
