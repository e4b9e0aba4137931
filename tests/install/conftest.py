"""Fixtures for setup and sign-in: the app pointed at the GitHub emulator over HTTP.

Every test runs in its own working directory (``.env`` is written and read there) and
on SQLite only: nothing here depends on the database backend.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from github_emulator import EmulatorServer

PERSON_SETTINGS = (
    "APP_ID",
    "PRIVATE_KEY",
    "PRIVATE_KEY_PATH",
    "WEBHOOK_SECRET",
    "GITHUB_CLIENT_ID",
    "GITHUB_CLIENT_SECRET",
    "GITHUB_API_URL",
    "GITHUB_WEB_URL",
    "PUBLIC_URL",
)


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture(autouse=True)
def working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory, and none of the developer's own App settings."""
    work = tmp_path / "workdir"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in PERSON_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return work


@pytest.fixture
def app_settings(app_settings: dict[str, Any], github_emulator: EmulatorServer) -> dict[str, Any]:
    """Setup mode (no APP_ID) with sign-in configured against the emulator's App."""
    return {
        **app_settings,
        "GITHUB_API_URL": github_emulator.url,
        "GITHUB_WEB_URL": github_emulator.url,
        "GITHUB_CLIENT_ID": github_emulator.app.client_id,
        "GITHUB_CLIENT_SECRET": github_emulator.app.client_secret,
    }


def form_fields(page: str, form_id: str) -> tuple[str, dict[str, str]]:
    """The action and hidden fields of one form on an HTML page."""
    match = re.search(
        rf'<form id="{form_id}" method="post" action="([^"]*)">(.*?)</form>', page, re.S
    )
    assert match, f"no form {form_id!r} on the page"
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', match.group(2)))
    return html.unescape(match.group(1)), {k: html.unescape(v) for k, v in fields.items()}


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def press_create_on_github(action: str, fields: dict[str, str]) -> str:
    """Post the setup form to the emulator and press its "Create GitHub App" button;
    return where GitHub redirects the browser."""
    page = httpx.post(action, data=fields)
    assert page.status_code == 200, page.text
    emulator_fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page.text))
    confirm_url = action.split("/settings/apps/new")[0].split("/organizations/")[0]
    confirm = httpx.post(
        f"{confirm_url}/settings/apps/new/confirm",
        data={k: html.unescape(v) for k, v in emulator_fields.items()},
    )
    assert confirm.status_code == 302
    return str(confirm.headers["Location"])


def sign_in(client: FlaskClient, *, next_path: str | None = None) -> TestResponse:
    """Drive sign-in: /login -> the emulator's authorize page -> /login/callback."""
    start = client.get("/login", query_string={"next": next_path} if next_path else None)
    assert start.status_code == 302
    authorize = httpx.get(start.headers["Location"])
    assert authorize.status_code == 302
    return client.get(path_of(authorize.headers["Location"]))
