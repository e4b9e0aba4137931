"""/setup: the manifest flow against the emulator, opened only with the setup code the
web process prints in its log, ending in a .env (working directory only) a restart can
use."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dotenv import dotenv_values
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from github_emulator import EmulatorServer
from models import db
from webhook_app import create_app
from webhook_app.manifest import MANIFEST_PATH
from webhook_app.setup import announce_setup_code, setup_code

from .conftest import csrf_of, form_fields, path_of, press_create_on_github


def unlock(client: FlaskClient, *, base_url: str = "http://localhost") -> None:
    """Enter the setup code, as the operator does after reading it in the log."""
    with client.application.app_context():
        code, _ = setup_code(client.application)
    csrf = csrf_of_setup(client, base_url)
    answer = client.post(
        "/setup", data={"csrf_token": csrf, "setup_code": code}, base_url=base_url
    )
    assert answer.status_code == 303, answer.text


def csrf_of_setup(client: FlaskClient, base_url: str) -> str:
    page = client.get("/setup", base_url=base_url).text
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def test_setup_page_posts_the_manifest_from_app_yml_with_this_hosts_urls(
    client: FlaskClient, github_emulator: EmulatorServer
) -> None:
    unlock(client)
    page = client.get("/setup")
    assert page.status_code == 200
    action, fields = form_fields(page.text, "register-app")
    assert action == f"{github_emulator.url}/settings/apps/new"
    manifest = json.loads(fields["manifest"])
    expected = yaml.safe_load(MANIFEST_PATH.read_text())
    expected["hook_attributes"]["url"] = "http://localhost/webhooks/github"
    expected["redirect_url"] = "http://localhost/setup/complete"
    expected["callback_urls"] = ["http://localhost/login/callback"]
    expected["setup_url"] = "http://localhost/"
    assert manifest == expected
    with client.session_transaction() as session:
        assert session["setup_state"] == fields["state"] and len(fields["state"]) >= 32


def test_public_url_names_the_callbacks_and_makes_the_cookie_secure(
    app_settings: dict[str, Any], redis_url: str
) -> None:
    app = create_app({**app_settings, "PUBLIC_URL": "https://sync.example.com"})
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    other = app.test_client()
    unlock(other, base_url="http://10.0.0.5:8000")
    page = other.get("/setup", base_url="http://10.0.0.5:8000")
    manifest = json.loads(form_fields(page.text, "register-app")[1]["manifest"])
    assert manifest["hook_attributes"]["url"] == "https://sync.example.com/webhooks/github"
    assert manifest["callback_urls"] == ["https://sync.example.com/login/callback"]


def test_an_organization_gets_its_own_registration_page(
    client: FlaskClient, github_emulator: EmulatorServer
) -> None:
    unlock(client)
    page = client.get("/setup?org=acme-corp")
    action, _ = form_fields(page.text, "register-app")
    assert action == f"{github_emulator.url}/organizations/acme-corp/settings/apps/new"
    bad = client.get("/setup", query_string={"org": "../../evil"})
    assert bad.status_code == 400 and 'id="register-app"' not in bad.text


@pytest.fixture
def served(redis_url: str) -> Iterator[Any]:
    """Serve an app over real HTTP on a loopback port; yields a function taking the app
    and returning its base URL."""
    servers = []

    def serve(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_manifest_round_trip_writes_a_env_the_restarted_app_runs_on(
    client: FlaskClient,
    github_emulator: EmulatorServer,
    working_directory: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    served: Any,
) -> None:
    unlock(client)
    action, fields = form_fields(client.get("/setup").text, "register-app")
    location = press_create_on_github(action, fields)
    assert location.startswith("http://localhost/setup/complete?code=")

    done = client.get(path_of(location))
    assert done.status_code == 200, done.text
    env_file = working_directory / ".env"
    values = dotenv_values(env_file)
    new_app = github_emulator.state.apps[int(values["APP_ID"] or 0)]
    assert f"/apps/{new_app.slug}/installations/new" in done.text
    assert "Restart" in done.text and new_app.private_key_pem not in done.text
    assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
    assert values["WEBHOOK_SECRET"] == new_app.webhook_secret
    assert values["GITHUB_CLIENT_ID"] == new_app.client_id
    assert values["GITHUB_CLIENT_SECRET"] == new_app.client_secret
    assert "\n" not in (values["PRIVATE_KEY"] or "")
    # The same running process now says to restart rather than register again.
    assert client.get("/setup").status_code == 409

    # The restart: create_app() with only the environment a host would give it.
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{working_directory / 'fresh.sqlite3'}")
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SECRET_KEY", "restarted")
    monkeypatch.setenv("GITHUB_API_URL", github_emulator.url)
    restarted = create_app()
    assert restarted.config["APP_ID"] == new_app.id
    assert restarted.config["PRIVATE_KEY"].strip() == new_app.private_key_pem.strip()
    with restarted.app_context():
        db.create_all()
    url = served(restarted)

    new_app.webhook_url = f"{url}/webhooks/github"
    assert github_emulator.ping(new_app).status_code == 200
    # The emulator's other App signs with another secret: refused.
    github_emulator.app.webhook_url = f"{url}/webhooks/github"
    assert github_emulator.ping().status_code == 401

    configured = restarted.test_client().get("/setup")
    assert f"/apps/{new_app.slug}/installations/new" in configured.text
    with restarted.app_context():
        db.engine.dispose()


def test_a_wrong_state_is_refused_and_the_code_left_unused(
    client: FlaskClient, github_emulator: EmulatorServer, working_directory: Path
) -> None:
    unlock(client)
    action, fields = form_fields(client.get("/setup").text, "register-app")
    location = press_create_on_github(action, {**fields, "state": "forged"})
    answer = client.get(path_of(location))
    assert answer.status_code == 400 and "did not come from a registration" in answer.text
    assert not (working_directory / ".env").exists()
    code = location.split("code=")[1].split("&")[0]
    assert httpx.post(f"{github_emulator.url}/app-manifests/{code}/conversions").status_code == 201


def test_a_state_is_used_once(client: FlaskClient, github_emulator: EmulatorServer) -> None:
    unlock(client)
    action, fields = form_fields(client.get("/setup").text, "register-app")
    location = press_create_on_github(action, fields)
    assert client.get(path_of(location)).status_code == 200
    (Path.cwd() / ".env").unlink()
    # Both are spent: the browser's setup code (403) and the state.
    assert client.get(path_of(location)).status_code == 403
    unlock(client)
    assert client.get(path_of(location)).status_code == 400


def test_an_existing_app_id_is_never_overwritten(
    client: FlaskClient, github_emulator: EmulatorServer, working_directory: Path
) -> None:
    unlock(client)
    action, fields = form_fields(client.get("/setup").text, "register-app")
    location = press_create_on_github(action, fields)
    env_file = working_directory / ".env"
    env_file.write_text("APP_ID=777\nWEBHOOK_SECRET=old\n")
    answer = client.get(path_of(location))
    assert answer.status_code == 409 and "will not replace" in answer.text
    assert env_file.read_text() == "APP_ID=777\nWEBHOOK_SECRET=old\n"
    code = location.split("code=")[1].split("&")[0]
    assert (
        httpx.post(f"{github_emulator.url}/app-manifests/{code}/conversions").status_code == 201
    ), "the code must not be spent on an unstorable App"


def test_a_configured_app_links_to_its_installation_page(
    app_settings: dict[str, Any], github_emulator: EmulatorServer, redis_url: str
) -> None:
    app = create_app(
        {
            **app_settings,
            "APP_ID": github_emulator.app_id,
            "PRIVATE_KEY": github_emulator.private_key_pem,
        }
    )
    client = app.test_client()
    page = client.get("/setup")
    assert page.status_code == 200 and 'id="register-app"' not in page.text
    expected = f"{github_emulator.url}/apps/{github_emulator.app.slug}/installations/new"
    assert f'href="{expected}"' in page.text
    with client.session_transaction() as session:
        session["setup_state"] = "s"
    assert client.get("/setup/complete?code=x&state=s").status_code == 409


# --- the setup code ----------------------------------------------------------------------


def test_setup_asks_for_the_code_from_the_log_before_anything_else(
    app: Flask, client: FlaskClient, github_emulator: EmulatorServer, caplog: Any
) -> None:
    with caplog.at_level("WARNING", logger="webhook_app.setup"):
        announce_setup_code(app)
    with app.app_context():
        code, _ = setup_code(app)
    assert f"enter the setup code {code}" in caplog.text
    page = client.get("/setup")
    assert page.status_code == 200 and 'id="setup-code"' in page.text
    assert 'id="register-app"' not in page.text and code not in page.text
    csrf = csrf_of(client)
    wrong = client.post("/setup", data={"csrf_token": csrf, "setup_code": "ABCDE-FGHIJ"})
    assert wrong.status_code == 403 and 'id="register-app"' not in wrong.text
    assert client.post("/setup", data={"setup_code": code}).status_code == 400  # no CSRF
    # Typed without dashes, in lower case: still the code.
    bare = code.replace("-", "").lower()
    right = client.post("/setup", data={"csrf_token": csrf, "setup_code": bare, "org": "acme"})
    assert right.status_code == 303 and right.headers["Location"] == "/setup?org=acme"
    assert 'id="register-app"' in client.get("/setup").text


def test_completing_without_the_code_stores_nothing(
    client: FlaskClient, github_emulator: EmulatorServer, working_directory: Path
) -> None:
    stranger = client.application.test_client()
    unlock(client)
    action, fields = form_fields(client.get("/setup").text, "register-app")
    location = press_create_on_github(action, fields)
    # Someone else's browser, even with the code and state GitHub sent: refused.
    answer = stranger.get(path_of(location))
    assert answer.status_code == 403 and not (working_directory / ".env").exists()
    assert client.get(path_of(location)).status_code == 200  # the operator's browser


def test_the_code_is_spent_by_a_registration_and_a_new_one_printed(
    app: Flask, client: FlaskClient, github_emulator: EmulatorServer, caplog: Any
) -> None:
    with app.app_context():
        first, made = setup_code(app)
    assert made and len(first.replace("-", "")) == 20
    unlock(client)
    action, fields = form_fields(client.get("/setup").text, "register-app")
    assert client.get(path_of(press_create_on_github(action, fields))).status_code == 200
    (Path.cwd() / ".env").unlink()  # as if the operator started over
    fresh = app.test_client()
    with caplog.at_level("WARNING", logger="webhook_app.setup"):
        refused = fresh.post(
            "/setup", data={"csrf_token": csrf_of(fresh), "setup_code": first}
        )
    assert refused.status_code == 403
    with app.app_context():
        second, made = setup_code(app)
    assert not made and second != first and second in caplog.text


def test_gunicorn_prints_the_code_as_each_worker_starts(
    app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    import runpy

    monkeypatch.delenv("WEB_HOST", raising=False)
    config = runpy.run_path(str(MANIFEST_PATH.parent / "gunicorn.conf.py"))
    assert config["bind"].startswith("127.0.0.1:")

    class Worker:
        wsgi = app

    with caplog.at_level("WARNING", logger="webhook_app.setup"):
        config["post_worker_init"](Worker())
    with app.app_context():
        code, _ = setup_code(app)
    assert code in caplog.text


def test_dotenv_is_read_and_written_in_the_working_directory_only(
    working_directory: Path,
    client: FlaskClient,
    github_emulator: EmulatorServer,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parent = working_directory.parent / ".env"
    parent.write_text("APP_ID=4242\nSECRET_KEY=from-the-parent\n")
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{working_directory / 'x.sqlite3'}")
    assert create_app().config.get("APP_ID") is None  # the parent's file is not ours
    unlock(client)
    action, fields = form_fields(client.get("/setup").text, "register-app")
    assert client.get(path_of(press_create_on_github(action, fields))).status_code == 200
    assert (working_directory / ".env").is_file()
    assert parent.read_text() == "APP_ID=4242\nSECRET_KEY=from-the-parent\n"
