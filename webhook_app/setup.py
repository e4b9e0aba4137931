"""``/setup``: register the GitHub App through GitHub's manifest flow, as Probot does.

1. ``GET /setup`` (setup mode: no ``APP_ID``) shows what will happen and a form that
   posts the manifest (``app.yml`` with this host's URLs) to GitHub, with a random
   one-time ``state`` kept in the session. ``?org=<name>`` registers the App under an
   organisation instead of the person's account.
2. GitHub shows the person the App and, on "Create", redirects to
   ``/setup/complete?code=...&state=...``. The view accepts only the state it handed
   out, trades the one-time code for the App's id, key and secrets
   (``POST /app-manifests/{code}/conversions``, unauthenticated: the code is the
   credential), writes them to ``.env`` and asks for a restart; the running process
   stays in setup mode until then.

Credentials go to the ``.env`` that :func:`webhook_app.create_app` reads at start (the
first one found from the working directory up, else a new one in the working
directory), mode 0600, ``APP_ID`` written last so a half-written file never names an
App without its key. An ``APP_ID`` already configured (environment or ``.env``) is
never overwritten: that App's key and secrets would be lost for good.

Once an App is configured, ``/setup`` says so and links to the page where people
install it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from dotenv import dotenv_values, find_dotenv, set_key
from flask import Blueprint, current_app, render_template, request
from flask.typing import ResponseReturnValue
from githubkit.exception import GitHubException

from sync_jobs.errors import (
    AppAlreadyConfiguredError,
    AppNotConfiguredError,
    ManifestConversionError,
    OAuthStateError,
)
from sync_jobs.github_auth import app_client
from webhook_app.auth import base_url, new_state, take_state
from webhook_app.github_person import convert_manifest
from webhook_app.manifest import build_manifest, installation_url, registration_url

bp = Blueprint("setup", __name__)
log = logging.getLogger(__name__)

SETUP_STATE_KEY = "setup_state"
APP_SLUG_EXTENSION = "project_sync_app_slug"
"""Where the configured App's slug is kept once looked up (it names the install page)."""


def dotenv_path() -> Path:
    """The ``.env`` the app reads at its next start (the same search create_app does)."""
    found = find_dotenv(usecwd=True)
    return Path(found) if found else Path.cwd() / ".env"


def _app_id_in_dotenv(path: Path) -> str | None:
    return dotenv_values(path).get("APP_ID") if path.is_file() else None


def write_credentials(path: Path, app: dict[str, str]) -> None:
    """Write the new App's settings to ``path``, refusing to replace an existing App.

    Keys other than these are left as they are. The file is made 0600 before any secret
    is written to it.
    """
    if _app_id_in_dotenv(path):
        raise AppAlreadyConfiguredError(str(path))
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    os.close(fd)
    path.chmod(0o600)
    # One line per variable: many hosts take only one-line values, and config reads
    # "\n" escapes back into newlines (as Probot does).
    values = {
        "WEBHOOK_SECRET": app["webhook_secret"],
        "PRIVATE_KEY": app["pem"].strip().replace("\n", "\\n"),
        "GITHUB_CLIENT_ID": app["client_id"],
        "GITHUB_CLIENT_SECRET": app["client_secret"],
        "APP_ID": app["id"],  # last: the marker that the App is complete
    }
    for key, value in values.items():
        set_key(path, key, value, quote_mode="always")


def _convert(code: str) -> dict[str, str]:
    """The new App's id, slug and secrets for a manifest ``code`` (one use only)."""
    try:
        values = convert_manifest(code, api_url=current_app.config["GITHUB_API_URL"])
    except GitHubException as exc:
        raise ManifestConversionError(f"{type(exc).__name__}: {exc}") from exc
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise ManifestConversionError(f"GitHub's answer lacks {', '.join(missing)}")
    return values


def _configured_app_slug() -> str | None:
    """The configured App's slug, asked of GitHub (``GET /app``) once per process."""
    slug: str | None = current_app.extensions.get(APP_SLUG_EXTENSION)
    if slug:
        return slug
    config = current_app.config
    try:
        github = app_client(
            base_url=config["GITHUB_API_URL"],
            app_id=config["APP_ID"],
            private_key=config["PRIVATE_KEY"],
        )
        app = github.rest.apps.get_authenticated().parsed_data
    except (GitHubException, AppNotConfiguredError) as exc:
        log.warning("could not look up the App's slug: %s", exc)
        return None
    slug = app.slug if app is not None and isinstance(app.slug, str) else None
    if slug:
        current_app.extensions[APP_SLUG_EXTENSION] = slug
    return slug


def _configured_page() -> ResponseReturnValue:
    slug = _configured_app_slug()
    web = current_app.config["GITHUB_WEB_URL"]
    return render_template(
        "setup/configured.html",
        app_id=current_app.config["APP_ID"],
        install_url=installation_url(web, slug=slug) if slug else None,
        apps_url=f"{web}/settings/apps",
    )


@bp.get("/setup")
def start() -> ResponseReturnValue:
    """Offer registration in setup mode; otherwise say an App is configured."""
    if current_app.config.get("APP_ID"):
        return _configured_page()
    path = dotenv_path()
    if _app_id_in_dotenv(path):
        # Registered already (maybe by this process), not loaded yet.
        return render_template("setup/restart.html", dotenv=path, install_url=None), 409
    organization = (request.args.get("org") or "").strip() or None
    web = current_app.config["GITHUB_WEB_URL"]
    try:
        action = registration_url(web, organization=organization)
    except ValueError:
        page = render_template("setup/start.html", **_start_context(None), bad_org=organization)
        return page, 400
    return render_template(
        "setup/start.html",
        **_start_context(organization),
        action=action,
        state=new_state(SETUP_STATE_KEY),
    )


def _start_context(organization: str | None) -> dict[str, Any]:
    base = base_url()
    manifest = build_manifest(base)
    return {
        "manifest": manifest,
        "manifest_json": json.dumps(manifest),
        "organization": organization,
        "base": base,
        "github_web_url": current_app.config["GITHUB_WEB_URL"],
    }


@bp.get("/setup/complete")
def complete() -> ResponseReturnValue:
    """GitHub's redirect after "Create GitHub App": store the App's credentials."""
    if current_app.config.get("APP_ID"):
        return render_template("setup/refused.html", dotenv=None), 409
    try:
        take_state(SETUP_STATE_KEY, request.args.get("state"))
    except OAuthStateError:
        return render_template("setup/failed.html", reason="state"), 400
    code = request.args.get("code")
    if not code:
        return render_template("setup/failed.html", reason="code"), 400
    path = dotenv_path()
    # Checked before the exchange too: a code traded for an App that cannot be stored
    # would leave an orphan App on GitHub.
    if _app_id_in_dotenv(path):
        return render_template("setup/refused.html", dotenv=path), 409
    try:
        app = _convert(code)
    except ManifestConversionError as exc:
        log.warning("manifest conversion failed: %s", exc)
        return render_template("setup/failed.html", reason="github"), 502
    try:
        write_credentials(path, app)
    except AppAlreadyConfiguredError:
        # Lost a race with another completion: the App exists on GitHub but is not stored.
        log.error(
            "App %s (id %s) registered but not stored: %s has an APP_ID",
            app["slug"],
            app["id"],
            path,
        )
        return render_template("setup/refused.html", dotenv=path, orphan=app["slug"]), 409
    log.info("registered GitHub App %s (id %s); credentials in %s", app["slug"], app["id"], path)
    web = current_app.config["GITHUB_WEB_URL"]
    return render_template(
        "setup/restart.html",
        dotenv=path,
        app_name=app["name"],
        app_id=app["id"],
        install_url=installation_url(web, slug=app["slug"]),
    )
