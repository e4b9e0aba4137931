"""Security headers on every kind of response, and pages that need no inline script."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from github_emulator import EmulatorServer
from webhook_app import create_app

from .conftest import Org, sign_in

TEMPLATES = Path(__file__).resolve().parents[2] / "webhook_app" / "templates"


def assert_secure(answer: Any, *, what: str) -> None:
    headers = answer.headers
    policy = headers.get("Content-Security-Policy", "")
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, what
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, what
    assert headers.get("X-Frame-Options") == "DENY", what
    assert headers.get("X-Content-Type-Options") == "nosniff", what
    assert headers.get("Referrer-Policy") == "same-origin", what
    assert headers.get("Cache-Control"), what


def test_every_kind_of_response_carries_the_headers(
    client: FlaskClient, github_emulator: EmulatorServer, org: Org
) -> None:
    anonymous = {
        "page": client.get("/setup"),
        "sign-in redirect": client.get("/"),
        "api 401": client.get("/api/v1/projects"),
        "unrouted 404": client.get("/no-such-page"),
        "api 404": client.get("/api/v1/no-such-thing"),
        "static": client.get("/static/site.css"),
        "webhook refusal": client.post("/webhooks/github", data=b"{}"),
        "health": client.get("/healthz"),
        "openapi": client.get("/api/v1/openapi.json"),
    }
    sign_in(client, login="alice")
    signed = {
        "status page": client.get("/"),
        "api": client.get(f"/api/v1/projects/{org.projects['widgets']}/memory"),
        "event stream": client.get(
            f"/api/v1/events/project-sync/{org.syncs['widgets'][1]}", buffered=True
        ),
        "403": client.post(f"/api/v1/projects/{org.projects['gadgets']}/syncs", json={}),
    }
    for what, answer in {**anonymous, **signed}.items():
        assert_secure(answer, what=what)
    assert signed["api"].headers["Cache-Control"] == "no-store"  # private contents
    assert signed["event stream"].headers["Cache-Control"] == "no-cache"  # its own choice
    assert "Strict-Transport-Security" not in signed["api"].headers  # plain http here


def test_the_form_action_allows_github_for_the_manifest_only(
    client: FlaskClient, github_emulator: EmulatorServer
) -> None:
    policy = client.get("/setup").headers["Content-Security-Policy"]
    assert f"form-action 'self' {github_emulator.url}" in policy


def test_hsts_once_the_public_url_is_https(
    app_settings: dict[str, Any], redis_url: str
) -> None:
    app: Flask = create_app({**app_settings, "PUBLIC_URL": "https://sync.example.com"})
    answer = app.test_client().get("/healthz", base_url="https://sync.example.com")
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=")


@pytest.mark.parametrize("template", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: p.name)
def test_templates_need_no_inline_script_or_style(template: Path) -> None:
    text = template.read_text()
    for tag in re.findall(r"<script\b[^>]*>", text):
        assert "src=" in tag, f"inline script in {template.name}: {tag}"
    assert not re.search(r"<script\b[^>]*>\s*(?!</script>)\S", text), template.name
    assert not re.search(r"\son[a-z]+\s*=", text), f"inline event handler in {template.name}"
    assert not re.search(r"\sstyle\s*=", text), f"inline style in {template.name}"
    assert "<style" not in text and "javascript:" not in text
