"""Fixtures for setup, sign-in and access: the app pointed at the GitHub emulator over
HTTP, and an organisation whose people GitHub gives different repository access.

Every test runs in its own working directory (``.env`` is written and read there) and
on SQLite only: nothing here depends on the database backend.
"""

from __future__ import annotations

import html
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from github_emulator import EmulatorServer
from github_emulator.state import RepositoryRecord
from models import Installation, Project, ProjectSync, Repository, SyncStatus, SyncTrigger, db

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
    "WEB_HOST",
    "PUBLIC_DASHBOARD",
    "ACTION_PERMISSION",
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


def sign_in(
    client: FlaskClient, *, next_path: str | None = None, login: str | None = None
) -> TestResponse:
    """Drive sign-in: /login -> the emulator's authorize page -> /login/callback.

    ``login`` names who signs in on GitHub (the emulator's ``?login=``); by default its
    ``signed_in_user``.
    """
    start = client.get("/login", query_string={"next": next_path} if next_path else None)
    assert start.status_code == 302
    url = start.headers["Location"] + (f"&login={login}" if login else "")
    authorize = httpx.get(url)
    assert authorize.status_code == 302
    return client.get(path_of(authorize.headers["Location"]))


def csrf_of(client: FlaskClient, path: str = "/setup") -> str:
    """The session's CSRF token, read from a page with a form."""
    page = client.get(path).text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, f"no form with a CSRF token on {path}"
    return match.group(1)


def session_cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie("session")
    return cookie.value if cookie is not None else None


# --- an organisation with people of different access ---------------------------------------


@dataclass
class Org:
    """``acme`` on the emulator and in the database.

    GitHub: the App is installed on all of acme's repositories; members get nothing by
    default (base permission ``none``). alice may write to ``widgets`` and read
    ``gadgets``; bob may read ``widgets``; nobody but acme's owners sees ``vault``.
    Each repository has a project on ``main`` with two successful syncs (the second
    current), so restore has something to go back to.
    """

    installation_id: int
    repositories: dict[str, RepositoryRecord]
    projects: dict[str, int]
    syncs: dict[str, tuple[int, int]]  # name -> (older, current)


def add_project(record: RepositoryRecord, installation_id: int) -> tuple[int, int, int]:
    """Rows for an emulated repository (its real GitHub ids); returns the project id and
    its two syncs."""
    installation = db.session.scalar(
        select(Installation).filter_by(github_id=installation_id)
    ) or Installation(github_id=installation_id, account_login=record.owner.login)
    repository = Repository(
        github_id=record.id, installation=installation, full_name=record.full_name
    )
    project = Project(repository=repository, branch="main")
    db.session.add_all([installation, repository, project])
    db.session.commit()
    syncs = []
    for sequence in (1, 2):
        sync = ProjectSync(
            project_id=project.id,
            trigger=SyncTrigger.MANUAL,
            status=SyncStatus.SUCCEEDED,
            sequence=sequence,
            head_commit_sha=f"{zlib.crc32(record.full_name.encode()):08x}".ljust(40, "0"),
            previous_sync_id=syncs[-1].id if syncs else None,
        )
        db.session.add(sync)
        db.session.commit()
        syncs.append(sync)
    project.current_sync_id = syncs[-1].id
    db.session.commit()
    return project.id, syncs[0].id, syncs[1].id


@pytest.fixture
def org(app: Flask, github_emulator: EmulatorServer) -> Org:
    for name in ("widgets", "gadgets", "vault"):
        github_emulator.create_repository("acme", name, private=True, owner_type="Organization")
    github_emulator.set_base_permission("acme", "none")
    installation_id = github_emulator.install(
        "acme", None, account_type="Organization", members=("alice", "bob")
    )
    github_emulator.grant("acme/widgets", "alice", "write")
    github_emulator.grant("acme/gadgets", "alice", "read")
    github_emulator.grant("acme/widgets", "bob", "read")
    records = {n: github_emulator.repository(f"acme/{n}") for n in ("widgets", "gadgets", "vault")}
    projects, syncs = {}, {}
    with app.app_context():
        for name, record in records.items():
            project_id, older, current = add_project(record, installation_id)
            projects[name], syncs[name] = project_id, (older, current)
    return Org(installation_id, records, projects, syncs)
