"""/setup: the manifest flow against the emulator, ending in a .env a restart can use."""

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

from .conftest import form_fields, path_of, press_create_on_github


def test_setup_page_posts_the_manifest_from_app_yml_with_this_hosts_urls(
    client: FlaskClient, github_emulator: EmulatorServer
) -> None:
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
    page = app.test_client().get("/setup", base_url="http://10.0.0.5:8000")
    manifest = json.loads(form_fields(page.text, "register-app")[1]["manifest"])
    assert manifest["hook_attributes"]["url"] == "https://sync.example.com/webhooks/github"
    assert manifest["callback_urls"] == ["https://sync.example.com/login/callback"]


def test_an_organization_gets_its_own_registration_page(
    client: FlaskClient, github_emulator: EmulatorServer
) -> None:
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
    action, fields = form_fields(client.get("/setup").text, "register-app")
    location = press_create_on_github(action, {**fields, "state": "forged"})
    answer = client.get(path_of(location))
    assert answer.status_code == 400 and "did not come from a registration" in answer.text
    assert not (working_directory / ".env").exists()
    code = location.split("code=")[1].split("&")[0]
    assert httpx.post(f"{github_emulator.url}/app-manifests/{code}/conversions").status_code == 201


def test_a_state_is_used_once(client: FlaskClient, github_emulator: EmulatorServer) -> None:
    action, fields = form_fields(client.get("/setup").text, "register-app")
    location = press_create_on_github(action, fields)
    assert client.get(path_of(location)).status_code == 200
    (Path.cwd() / ".env").unlink()
    assert client.get(path_of(location)).status_code == 400


def test_an_existing_app_id_is_never_overwritten(
    client: FlaskClient, github_emulator: EmulatorServer, working_directory: Path
) -> None:
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
