"""Secure by default: what the app refuses to start with, where it listens, and who may
read and act without signing in in each configuration."""

from __future__ import annotations

import runpy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask

from models import SyncStatus, db
from tests.api.conftest import add_sync, make_project
from webhook_app import create_app
from webhook_app.config import listen_host, settings_from_environment
from webhook_app.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def app_environment(pem: str, **overrides: str) -> dict[str, str]:
    environ = {"APP_ID": "12345", "PRIVATE_KEY": pem, "WEBHOOK_SECRET": "s3cret"}
    environ.update(overrides)
    return {k: v for k, v in environ.items() if v != "<unset>"}


@pytest.mark.parametrize(
    ("overrides", "variable", "words"),
    [
        # Half an OAuth client: the missing half is named.
        ({"GITHUB_CLIENT_ID": "Iv1.abc"}, "GITHUB_CLIENT_SECRET", "required with GITHUB_CLIENT_ID"),
        ({"GITHUB_CLIENT_SECRET": "shh"}, "GITHUB_CLIENT_ID", "required with GITHUB_CLIENT_SECRET"),
        # An App reachable from elsewhere without sign-in.
        ({"PUBLIC_URL": "https://sync.example.com"}, "GITHUB_CLIENT_ID", "PUBLIC_DASHBOARD=read"),
        (
            {"WEB_HOST": "0.0.0.0", "PUBLIC_URL": "http://10.1.2.3:5000"},
            "GITHUB_CLIENT_ID",
            "listens on 0.0.0.0",
        ),
        # Listening beyond this machine without saying under which address.
        ({"WEB_HOST": "0.0.0.0"}, "PUBLIC_URL", "WEB_HOST=0.0.0.0"),
        ({"PUBLIC_DASHBOARD": "write"}, "PUBLIC_DASHBOARD", "one of off, read"),
        ({"ACTION_PERMISSION": "write"}, "ACTION_PERMISSION", "pull, triage, push"),
    ],
)
def test_an_insecure_configuration_stops_the_start(
    pem: str, overrides: dict[str, str], variable: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_environment(app_environment(pem, **overrides))
    assert caught.value.name == variable and words in str(caught.value)


def test_the_configurations_that_start(pem: str) -> None:
    local = settings_from_environment(app_environment(pem))
    assert "GITHUB_CLIENT_ID" not in local  # the demo: no sign-in, 127.0.0.1 only
    public_read = settings_from_environment(
        app_environment(pem, PUBLIC_URL="https://sync.example.com", PUBLIC_DASHBOARD="read")
    )
    assert public_read["PUBLIC_DASHBOARD"] == "read"
    signed = settings_from_environment(
        app_environment(
            pem,
            PUBLIC_URL="https://sync.example.com",
            GITHUB_CLIENT_ID="Iv1.abc",
            GITHUB_CLIENT_SECRET="shh",
            ACTION_PERMISSION="Maintain",
        )
    )
    assert signed["ACTION_PERMISSION"] == "maintain"
    # Setup mode may be public: there is nothing to read yet, and /setup needs its code.
    assert settings_from_environment({"PUBLIC_URL": "https://sync.example.com"})


@pytest.mark.parametrize(
    ("web_host", "public_url", "listens"),
    [
        (None, None, "127.0.0.1"),
        (None, "http://127.0.0.1:5000", "127.0.0.1"),
        (None, "http://localhost:5000", "127.0.0.1"),
        (None, "https://sync.example.com", "0.0.0.0"),
        ("10.0.0.7", "https://sync.example.com", "10.0.0.7"),
        ("::1", None, "::1"),
    ],
)
def test_where_the_web_process_listens(
    web_host: str | None, public_url: str | None, listens: str
) -> None:
    assert listen_host(web_host=web_host, public_url=public_url) == listens


def test_gunicorn_binds_where_the_settings_say(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PORT", "5123")
    for name in ("WEB_HOST", "PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["bind"] == "127.0.0.1:5123"
    # A PUBLIC_URL in .env counts, as it does for the app.
    (tmp_path / ".env").write_text("PUBLIC_URL=https://sync.example.com\n")
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["bind"] == "0.0.0.0:5123"


# --- who reads and acts without signing in ------------------------------------------------


@pytest.fixture
def build(app_settings: dict[str, Any], redis_url: str) -> Iterator[Callable[..., Flask]]:
    """Apps on the test database with sign-in off unless settings turn it on."""
    made: list[Flask] = []

    def make(**settings: Any) -> Flask:
        base = {k: v for k, v in app_settings.items() if not k.startswith("GITHUB_CLIENT")}
        application = create_app({**base, **settings})
        with application.app_context():
            db.create_all()
        made.append(application)
        return application

    yield make
    for application in made:
        with application.app_context():
            db.engine.dispose()


def test_the_local_demo_is_open_and_says_so(build: Callable[..., Flask]) -> None:
    app = build()
    client = app.test_client()
    with app.app_context():
        project_id = make_project().id
    page = client.get("/")
    assert page.status_code == 200 and 'id="dashboard-notice"' in page.text
    assert "127.0.0.1 only" in page.text and "Resync" in page.text
    assert client.post(f"/api/v1/projects/{project_id}/syncs", json={}).status_code == 202
    # A page elsewhere reaching it through DNS rebinding names another host: refused.
    rebound = client.get("/api/v1/projects", headers={"Host": "evil.example"})
    assert rebound.status_code == 403
    remote = client.get("/", environ_overrides={"REMOTE_ADDR": "10.0.0.9"})
    assert remote.status_code == 403


def test_a_public_dashboard_reads_but_never_acts(build: Callable[..., Flask]) -> None:
    app = build(
        PUBLIC_DASHBOARD="read",
        PUBLIC_URL="https://sync.example.com",
        LOCAL_ONLY=False,
    )
    client = app.test_client()
    with app.app_context():
        project = make_project()
        sync = add_sync(project, SyncStatus.SUCCEEDED, sequence=1)
        project_id, sync_id = project.id, sync.id
    assert client.get("/api/v1/projects").json["items"][0]["id"] == project_id
    page = client.get(f"/projects/{project_id}", base_url="https://sync.example.com")
    assert page.status_code == 200 and "Resync now" not in page.text
    assert "Public read-only dashboard" in page.text
    assert client.get(f"/api/v1/events/project-sync/{sync_id}").status_code == 200
    actions = (("syncs", {}), ("restore", {"sync_id": sync_id}), ("branches", {"branch": "x"}))
    for path, body in actions:
        answer = client.post(f"/api/v1/projects/{project_id}/{path}", json=body)
        assert answer.status_code == 401, path


def test_sign_in_configured_means_nothing_for_anonymous_even_on_127_0_0_1(
    build: Callable[..., Flask],
) -> None:
    app = build(GITHUB_CLIENT_ID="Iv1.abc", GITHUB_CLIENT_SECRET="shh", LOCAL_ONLY=True)
    client = app.test_client()
    with app.app_context():
        make_project()
    assert client.get("/api/v1/projects").status_code == 401
    assert client.get("/").status_code == 302
    assert 'id="dashboard-notice"' not in client.get("/setup").text


def test_database_errors_carry_no_values(app: Flask) -> None:
    """SQLAlchemy's error text (it reaches the logs) never shows bound parameters."""
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from models import Installation
    from webhook_app.database import receiver_engine

    with app.app_context():
        row = {"github_id": 7, "account_login": "payload-value-41f3"}
        db.session.execute(insert(Installation).values(**row))
        db.session.commit()
        for engine in (db.engine, receiver_engine()):
            with pytest.raises(IntegrityError) as caught, engine.begin() as conn:
                conn.execute(insert(Installation).values(**row))
            assert "payload-value-41f3" not in str(caught.value)
            assert "hide_parameters" in str(caught.value)
