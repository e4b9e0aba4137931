"""Sign-in with GitHub and the installations a person may see, against the emulator."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from flask import Flask, jsonify, session
from flask.testing import FlaskClient

from github_emulator import EmulatorServer
from webhook_app import create_app
from webhook_app.access import require_person, visible_installation_ids
from webhook_app.auth import INSTALLATIONS_KEY, LOGIN_KEY, TOKEN_KEY

from .conftest import path_of, sign_in


@pytest.fixture(autouse=True)
def probe(app: Flask) -> None:
    """``GET /_probe``: what access says for the client's session, saved back as usual."""

    def answer() -> Any:
        ids = visible_installation_ids()
        denied = require_person()
        return jsonify(
            ids=None if ids is None else sorted(ids),
            login=session.get(LOGIN_KEY),
            token=session.get(TOKEN_KEY),
            api_status=None if denied is None else denied.status_code,
        )

    app.add_url_rule("/_probe", "probe", answer)


def seen(client: FlaskClient) -> dict[str, Any]:
    answer = client.get("/_probe").get_json()
    assert isinstance(answer, dict)
    return answer


@pytest.fixture
def two_installations(github_emulator: EmulatorServer) -> dict[str, int]:
    """acme (alice is a member) and globex (bob is a member)."""
    github_emulator.create_repository("acme", "widgets")
    github_emulator.create_repository("globex", "gadgets")
    return {
        "acme": github_emulator.install(
            "acme", None, account_type="Organization", members=("alice",)
        ),
        "globex": github_emulator.install(
            "globex", None, account_type="Organization", members=("bob",)
        ),
    }


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


def test_sign_in_round_trip_keeps_the_login_and_returns_where_the_person_was(
    client: FlaskClient, github_emulator: EmulatorServer
) -> None:
    github_emulator.signed_in_user = "alice"
    back = sign_in(client, next_path="/setup?x=1")
    assert back.status_code == 302 and back.headers["Location"] == "/setup?x=1"
    with client.session_transaction() as stored:
        assert stored[LOGIN_KEY] == "alice" and stored[TOKEN_KEY].startswith("gho_")
        assert "oauth_state" not in stored
    page = client.get("/setup")
    assert "Signed in as <strong>alice</strong>" in page.text
    assert stored[TOKEN_KEY] not in page.text


def test_next_must_be_a_path_on_this_site(
    client: FlaskClient, github_emulator: EmulatorServer
) -> None:
    back = sign_in(client, next_path="//evil.example/phish")
    assert back.headers["Location"] == "/"


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


def test_visible_installations_are_exactly_the_persons(
    client: FlaskClient, github_emulator: EmulatorServer, two_installations: dict[str, int]
) -> None:
    github_emulator.signed_in_user = "alice"
    sign_in(client)
    assert seen(client)["ids"] == [two_installations["acme"]]
    client.post("/logout", data={"csrf_token": _csrf(client)})

    github_emulator.signed_in_user = "bob"
    sign_in(client)
    assert seen(client)["ids"] == [two_installations["globex"]]
    with client.session_transaction() as stored:
        assert stored[INSTALLATIONS_KEY]["ids"] == [two_installations["globex"]]


def test_the_list_is_cached_then_asked_again(
    client: FlaskClient, github_emulator: EmulatorServer, two_installations: dict[str, int]
) -> None:
    github_emulator.signed_in_user = "alice"
    sign_in(client)
    assert seen(client)["ids"] == [two_installations["acme"]]
    github_emulator.installation(two_installations["globex"]).members.add("alice")
    assert seen(client)["ids"] == [two_installations["acme"]]  # from the session
    with client.session_transaction() as stored:
        stored[INSTALLATIONS_KEY] = {**stored[INSTALLATIONS_KEY], "at": 0}
    assert seen(client)["ids"] == sorted(two_installations.values())


def test_a_token_github_refuses_signs_the_person_out(
    client: FlaskClient, github_emulator: EmulatorServer, two_installations: dict[str, int]
) -> None:
    github_emulator.signed_in_user = "alice"
    sign_in(client)
    with client.session_transaction() as stored:
        del github_emulator.state.tokens[stored[TOKEN_KEY]]
    assert seen(client) == {"ids": [], "login": None, "token": None, "api_status": 401}


def test_anonymous_sees_nothing_and_the_api_helper_answers_401(app: Flask) -> None:
    with app.test_request_context("/api/v1/projects"):
        assert visible_installation_ids() == frozenset()
        denied = require_person()
        assert denied is not None and denied.status_code == 401
        assert denied.get_json()["login"] == "/login"


def test_the_api_helper_lets_a_signed_in_person_through(
    client: FlaskClient, github_emulator: EmulatorServer
) -> None:
    sign_in(client)
    answer = seen(client)
    assert answer["api_status"] is None and answer["login"] == github_emulator.signed_in_user


def test_without_sign_in_configured_everything_is_visible(
    app_settings: dict[str, Any], redis_url: str
) -> None:
    settings = {
        k: v
        for k, v in app_settings.items()
        if k not in ("GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET")
    }
    app = create_app(settings)
    with app.test_request_context("/"):
        assert visible_installation_ids() is None
        assert require_person() is None
    client = app.test_client()
    assert client.get("/login").status_code == 404
    assert 'id="sign-in"' not in client.get("/setup").text


def test_logout_needs_the_csrf_token_and_clears_the_person(
    client: FlaskClient, github_emulator: EmulatorServer, two_installations: dict[str, int]
) -> None:
    github_emulator.signed_in_user = "alice"
    sign_in(client)
    assert client.post("/logout").status_code == 400
    with client.session_transaction() as stored:
        assert stored[LOGIN_KEY] == "alice"
    assert client.post("/logout", data={"csrf_token": _csrf(client)}).status_code == 302
    assert seen(client) == {"ids": [], "login": None, "token": None, "api_status": 401}
    assert 'id="sign-in"' in client.get("/setup").text


def _csrf(client: FlaskClient) -> str:
    page = client.get("/setup").text
    marker = 'name="csrf_token" value="'
    return page.split(marker, 1)[1].split('"', 1)[0]
