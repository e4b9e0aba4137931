"""Sign-in with GitHub: the OAuth web flow of the App's own client id and secret.

``GET /login`` sends the person to GitHub with a fresh random ``state`` kept in their
session; ``GET /login/callback`` accepts only that state, trades the code for a user
access token (githubkit's web-flow exchange), asks ``GET /user`` who it is, and keeps
the login and the token in the session. ``POST /logout`` (with the CSRF token every
page form carries) forgets both. :mod:`webhook_app.access` turns the token into the set
of installations the person may see.

The session is Flask's cookie, signed with ``SECRET_KEY``, ``HttpOnly``,
``SameSite=Lax`` and ``Secure`` when ``PUBLIC_URL`` is https. It is signed, not
encrypted: the token in it is the person's own, limited to what both they and the App
may do, and is never rendered into a page or logged. GitHub's expiring user tokens
(8 hours) are not refreshed; when GitHub refuses one the person is signed out and
signs in again with one click.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Flask,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
)
from flask.typing import ResponseReturnValue
from githubkit.exception import GitHubException

from sync_jobs.errors import CsrfTokenError, OAuthStateError, SignInError
from webhook_app.github_person import exchange_sign_in_code
from webhook_app.manifest import LOGIN_CALLBACK_PATH

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

# Session keys, spelled once. Everything a sign-in puts in the session starts with
# "github_" so signing out can drop exactly that and leave the rest alone.
LOGIN_KEY = "github_login"
TOKEN_KEY = "github_token"
INSTALLATIONS_KEY = "github_installations"
OAUTH_STATE_KEY = "oauth_state"
NEXT_KEY = "login_next"
CSRF_KEY = "csrf_token"
CSRF_FIELD = "csrf_token"
"""Name of the hidden form field every state-changing form posts its CSRF token in."""


def init_app(app: Flask) -> None:
    """Cookie flags for the session, and the template helpers every page may use."""
    public_url = app.config.get("PUBLIC_URL") or ""
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    # Without PUBLIC_URL the scheme is unknown (a proxy may end TLS), so Secure is only
    # set when the operator said the public URL is https.
    app.config["SESSION_COOKIE_SECURE"] = public_url.startswith("https://")
    app.jinja_env.globals.update(csrf_token=csrf_token, csrf_field=CSRF_FIELD)
    app.register_error_handler(CsrfTokenError, _forged_form)
    app.jinja_env.globals["sign_in_configured"] = sign_in_configured
    app.before_request(_remember_person)


def _forged_form(error: CsrfTokenError) -> ResponseReturnValue:
    return render_template("pages/error.html", message=error.message), error.status


def _remember_person() -> None:
    # base.html shows g.user_login in its header.
    g.user_login = session.get(LOGIN_KEY)


# --- helpers other blueprints use -------------------------------------------------------


def base_url() -> str:
    """The app's public base URL: ``PUBLIC_URL``, else the URL this request came in on."""
    configured: str | None = current_app.config.get("PUBLIC_URL")
    return configured or request.url_root.rstrip("/")


def sign_in_configured() -> bool:
    """Sign-in needs the App's OAuth client id and secret (written by ``/setup``)."""
    config = current_app.config
    return bool(config.get("GITHUB_CLIENT_ID") and config.get("GITHUB_CLIENT_SECRET"))


def signed_in_login() -> str | None:
    login: str | None = session.get(LOGIN_KEY)
    return login


def sign_out() -> None:
    """Forget the person and everything derived from their token."""
    for key in [k for k in session if k.startswith("github_")]:
        session.pop(key)


def csrf_token() -> str:
    """This session's CSRF token, made on first use; forms post it as ``csrf_token``."""
    token: str | None = session.get(CSRF_KEY)
    if token is None:
        token = session[CSRF_KEY] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Abort with 400 unless the posted form carries this session's CSRF token.

    SameSite=Lax already keeps the cookie off cross-site POSTs in current browsers; the
    token covers older browsers and same-site subdomains.
    """
    expected = session.get(CSRF_KEY)
    posted = request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected, posted):
        raise CsrfTokenError("The form expired or did not come from this site; reload and retry.")


def new_state(key: str) -> str:
    """A random one-time ``state`` for a GitHub redirect, remembered under ``key``."""
    state = secrets.token_urlsafe(32)
    session[key] = state
    return state


def take_state(key: str, returned: str | None) -> None:
    """Consume the remembered state; raise unless GitHub returned exactly it."""
    expected = session.pop(key, None)
    if not expected or not returned or not hmac.compare_digest(expected, returned):
        raise OAuthStateError(key)


def _local_path(target: str | None) -> str | None:
    # Only a path on this site: "//evil.example" and "https://..." would be open redirects.
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return None


def _home() -> str:
    return request.script_root + "/"


# --- the GitHub calls --------------------------------------------------------------------


def _exchange_code(code: str, *, redirect_uri: str) -> tuple[str, str]:
    """The person's login and user access token for a sign-in ``code``."""
    config = current_app.config
    try:
        login, token = exchange_sign_in_code(
            code,
            client_id=config["GITHUB_CLIENT_ID"],
            client_secret=config["GITHUB_CLIENT_SECRET"],
            redirect_uri=redirect_uri,
            web_url=config["GITHUB_WEB_URL"],
            api_url=config["GITHUB_API_URL"],
        )
    except GitHubException as exc:
        raise SignInError(f"{type(exc).__name__}: {exc}") from exc
    if not token:
        raise SignInError("GitHub answered without an access token")
    return login, token


# --- views ---------------------------------------------------------------------------


@bp.get("/login")
def login() -> ResponseReturnValue:
    """Send the person to GitHub to sign in, remembering where they were going."""
    if not sign_in_configured():
        return render_template("auth/unavailable.html"), 404
    session[NEXT_KEY] = _local_path(request.args.get("next")) or _home()
    query = urlencode(
        {
            "client_id": current_app.config["GITHUB_CLIENT_ID"],
            "redirect_uri": base_url() + LOGIN_CALLBACK_PATH,
            "state": new_state(OAUTH_STATE_KEY),
        }
    )
    return redirect(f"{current_app.config['GITHUB_WEB_URL']}/login/oauth/authorize?{query}")


@bp.get("/login/callback")
def callback() -> ResponseReturnValue:
    """GitHub's redirect back: check the state, trade the code, remember the person."""
    if not sign_in_configured():
        return render_template("auth/unavailable.html"), 404
    try:
        take_state(OAUTH_STATE_KEY, request.args.get("state"))
    except OAuthStateError:
        return render_template("auth/failed.html", reason="state"), 400
    if request.args.get("error"):
        # The person pressed "Cancel" on GitHub (error=access_denied), or GitHub refused.
        return render_template(
            "auth/failed.html", reason="denied", detail=request.args.get("error_description")
        ), 403
    code = request.args.get("code")
    if not code:
        return render_template("auth/failed.html", reason="code"), 400
    try:
        person, token = _exchange_code(code, redirect_uri=base_url() + LOGIN_CALLBACK_PATH)
    except SignInError as exc:
        log.warning("sign-in failed: %s", exc)
        return render_template("auth/failed.html", reason="github"), 502
    target = _local_path(session.pop(NEXT_KEY, None)) or _home()
    sign_out()  # nothing of an earlier person survives into this one's session
    session[LOGIN_KEY] = person
    session[TOKEN_KEY] = token
    log.info("signed in: %s", person)
    return redirect(target)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    check_csrf()
    sign_out()
    return redirect(_home())
