"""``/setup``: register the GitHub App through GitHub's manifest flow, as Probot does,
completed only by the operator.

1. In setup mode (no ``APP_ID``) the web process prints a one-time **setup code** in
   its log when it starts (as Jupyter prints its token; ``make run`` shows the log).
   ``GET /setup`` asks for it; ``POST /setup`` compares it in constant time and marks
   the browser's session as the operator's. Whoever merely reaches the host first
   registers nothing.
2. The page then shows what will happen and a form that posts the manifest (``app.yml``
   with this host's URLs) to GitHub, with a random one-time ``state`` kept in the
   session. ``?org=<name>`` registers the App under an organisation.
3. GitHub shows the person the App and, on "Create", redirects to
   ``/setup/complete?code=...&state=...``. The view accepts only the operator's session
   and the state it handed out, trades the one-time code for the App's id, key and
   secrets (``POST /app-manifests/{code}/conversions``, unauthenticated: the code is
   the credential), writes them to ``.env`` and asks for a restart; the setup code is
   spent. The running process stays in setup mode until the restart.

Credentials go to ``.env`` in the working directory only (the file
:func:`webhook_app.create_app` reads), mode 0600, ``APP_ID`` written last so a
half-written file never names an App without its key. An ``APP_ID`` already
configured (environment or ``.env``) is never overwritten: that App's key and secrets
would be lost for good. The manifest's URLs come from ``PUBLIC_URL``, required
whenever the app listens beyond 127.0.0.1, so a forged Host header cannot name them.

Once an App is configured, ``/setup`` says so and links to the page where people
install it.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from dotenv import dotenv_values, set_key
from flask import (
    Blueprint,
    Flask,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from githubkit.exception import GitHubException
from redis.exceptions import RedisError

from sync_jobs import defaults, keys
from sync_jobs.errors import AppNotConfiguredError
from sync_jobs.github_auth import app_client
from sync_jobs.redis_client import redis_connection
from webhook_app import DOTENV_NAME
from webhook_app.auth import base_url, check_csrf, new_state, take_state
from webhook_app.errors import AppAlreadyConfiguredError, ManifestConversionError, OAuthStateError
from webhook_app.github_person import convert_manifest
from webhook_app.manifest import build_manifest, installation_url, registration_url

bp = Blueprint("setup", __name__)
log = logging.getLogger(__name__)

SETUP_STATE_KEY = "setup_state"
SETUP_UNLOCKED_KEY = "setup_unlocked"
"""Session key: this browser entered the setup code."""

SETUP_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
"""Letters and digits without look-alikes (0/O, 1/I), for a code read from a log."""

SETUP_CODE_LENGTH = 20
"""Characters of a setup code: 100 bits, beyond guessing over HTTP."""
APP_SLUG_EXTENSION = "project_sync_app_slug"
"""Where the configured App's slug is kept once looked up (it names the install page)."""


def dotenv_path() -> Path:
    """The ``.env`` the app reads at its next start: in the working directory."""
    return Path.cwd() / DOTENV_NAME


# --- the setup code ------------------------------------------------------------------------


def _new_code() -> str:
    raw = "".join(secrets.choice(SETUP_CODE_ALPHABET) for _ in range(SETUP_CODE_LENGTH))
    return "-".join(raw[i : i + 5] for i in range(0, len(raw), 5))


def setup_code(app: Flask) -> tuple[str, bool]:
    """The current setup code (shared by every web process through Redis), and whether
    this call made it. Raises ``RedisError`` when Redis does not answer."""
    redis = redis_connection(app)
    made = bool(redis.set(keys.setup_code_key(), _new_code(), nx=True,
                          ex=defaults.SETUP_CODE_TTL_SECONDS))
    current = redis.get(keys.setup_code_key())
    if current is None:  # expired between the two calls
        return setup_code(app)
    return (current.decode() if isinstance(current, bytes) else str(current)), made


def announce_setup_code(app: Flask) -> None:
    """Print the setup code in the log, in setup mode only (``gunicorn.conf.py`` calls
    this as each web worker starts; /setup calls it when it had to make a new code)."""
    if app.config.get("APP_ID"):
        return
    try:
        code, _ = setup_code(app)
    except RedisError as exc:
        log.error("setup mode, but no setup code: Redis does not answer (%s); /setup "
                  "stays locked until it does", type(exc).__name__)
        return
    log.warning("Setup mode: to register the GitHub App, open %s/setup and enter the "
                "setup code %s", app.config.get("PUBLIC_URL") or "", code)


def _code_matches(posted: str) -> bool:
    try:
        code, made = setup_code(current_app._get_current_object())  # type: ignore[attr-defined]
    except RedisError:
        return False
    if made:
        # Nobody could have read this one yet (the old one expired or Redis was flushed).
        announce_setup_code(current_app._get_current_object())  # type: ignore[attr-defined]
        return False
    def bare(text: str) -> bytes:
        return "".join(c for c in text.upper() if c.isalnum()).encode()

    return hmac.compare_digest(bare(posted), bare(code))


def _spend_code() -> None:
    with contextlib.suppress(RedisError):  # it expires with SETUP_CODE_TTL_SECONDS
        redis_connection().delete(keys.setup_code_key())


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
    """Offer registration in setup mode (after the setup code); otherwise say an App is
    configured."""
    if current_app.config.get("APP_ID"):
        return _configured_page()
    path = dotenv_path()
    if _app_id_in_dotenv(path):
        # Registered already (maybe by this process), not loaded yet.
        return render_template("setup/restart.html", dotenv=path, install_url=None), 409
    if not session.get(SETUP_UNLOCKED_KEY):
        return render_template("setup/code.html", org=request.args.get("org", ""))
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
    manifest = build_manifest(base, webhook_url=current_app.config.get("WEBHOOK_PROXY_URL"))
    return {
        "manifest": manifest,
        "manifest_json": json.dumps(manifest),
        "organization": organization,
        "base": base,
        "github_web_url": current_app.config["GITHUB_WEB_URL"],
    }


@bp.post("/setup")
def unlock() -> ResponseReturnValue:
    """Check the setup code; the right one opens registration for this browser."""
    check_csrf()
    if current_app.config.get("APP_ID"):
        return _configured_page()
    if not _code_matches(request.form.get("setup_code", "")):
        log.warning("a wrong setup code was entered at /setup from %s", request.remote_addr)
        page = render_template("setup/code.html", org=request.form.get("org", ""), wrong=True)
        return page, 403
    session[SETUP_UNLOCKED_KEY] = True
    organization = (request.form.get("org") or "").strip()
    target = url_for("setup.start", org=organization) if organization else url_for("setup.start")
    return redirect(target, code=303)


@bp.get("/setup/complete")
def complete() -> ResponseReturnValue:
    """GitHub's redirect after "Create GitHub App": store the App's credentials."""
    if current_app.config.get("APP_ID"):
        return render_template("setup/refused.html", dotenv=None), 409
    if not session.get(SETUP_UNLOCKED_KEY):
        return render_template("setup/failed.html", reason="code-needed"), 403
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
    _spend_code()
    session.pop(SETUP_UNLOCKED_KEY, None)
    log.info("registered GitHub App %s (id %s); credentials in %s", app["slug"], app["id"], path)
    web = current_app.config["GITHUB_WEB_URL"]
    return render_template(
        "setup/restart.html",
        dotenv=path,
        app_name=app["name"],
        app_id=app["id"],
        install_url=installation_url(web, slug=app["slug"]),
    )
