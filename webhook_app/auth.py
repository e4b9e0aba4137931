"""Sign-in with GitHub: the OAuth web flow of the App's own client id and secret.

``GET /login`` sends the person to GitHub with a fresh random ``state`` kept in their
session; ``GET /login/callback`` accepts only that state, trades the code for a user
access token (githubkit's web-flow exchange), asks ``GET /user`` who it is, and keeps
the login and the token in a new session (a fresh id: nothing planted in the browser
before sign-in survives it). ``POST /logout`` (with the CSRF token every page form
carries) revokes the token at GitHub (``DELETE /applications/{client_id}/token``) and
deletes the session. :mod:`webhook_app.access` turns the token into what the person may
see and do.

Sessions live on the server (:mod:`webhook_app.sessions`): the cookie holds a random
id, ``HttpOnly``, ``SameSite=Lax`` and ``Secure`` when ``PUBLIC_URL`` is https; the
token never reaches the browser, a page or a log. A session ends with its token: at
the token's expiry, or for expiring tokens (GitHub's default for Apps) at the refresh
token's expiry, at most ``SESSION_MAX_SECONDS`` after sign-in; the access token is
refreshed shortly before it expires. When GitHub refuses a token or a refresh the
person is signed out and signs in again with one click.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from urllib.parse import urlencode, urlsplit

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
from redis.exceptions import RedisError

from sync_jobs import defaults, keys
from sync_jobs.redis_client import redis_connection
from webhook_app import sessions
from webhook_app.errors import CsrfTokenError, OAuthStateError, SignInError
from webhook_app.github_person import (
    UserToken,
    exchange_sign_in_code,
    refresh_user_token,
    revoke_user_token,
)
from webhook_app.manifest import LOGIN_CALLBACK_PATH
from webhook_app.sessions import EXPIRES_KEY

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

# Session keys, spelled once. Everything a sign-in puts in the session starts with
# "github_" so signing out can drop exactly that and leave the rest alone.
LOGIN_KEY = "github_login"
TOKEN_KEY = "github_token"
TOKEN_EXPIRES_KEY = "github_token_expires_at"
REFRESH_KEY = "github_refresh_token"
OAUTH_STATE_KEY = "oauth_state"
NEXT_KEY = "login_next"
CSRF_KEY = "csrf_token"
CSRF_FIELD = "csrf_token"
"""Name of the hidden form field every state-changing form posts its CSRF token in."""


def init_app(app: Flask) -> None:
    """Server-side sessions and their cookie flags, and the template helpers every page
    may use."""
    sessions.init_app(app)
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
    """Forget the person and everything derived from their token, in this session and
    in the cached listing of what they may see."""
    token = session.get(TOKEN_KEY)
    if isinstance(token, str):
        forget_listing(token)
    for key in [k for k in session if k.startswith("github_")]:
        session.pop(key)
    session.pop(EXPIRES_KEY, None)


def listing_key(token: str) -> str:
    """Where what GitHub lists for ``token`` is cached (see :mod:`webhook_app.access`)."""
    return keys.person_access_key(hashlib.sha256(token.encode()).hexdigest())


def forget_listing(token: str) -> None:
    # On a Redis error the entry expires within VISIBLE_REPOSITORIES_TTL_SECONDS anyway.
    with contextlib.suppress(RedisError):
        redis_connection().delete(listing_key(token))


def person_token() -> tuple[str | None, str | None]:
    """The signed-in person's token and login, refreshed first when it is about to
    expire; ``(None, None)`` when nobody is signed in or the token cannot be renewed."""
    token, login = session.get(TOKEN_KEY), session.get(LOGIN_KEY)
    if not isinstance(token, str) or not isinstance(login, str):
        return None, None
    expires_at = session.get(TOKEN_EXPIRES_KEY)
    if expires_at is None or time.time() < expires_at - defaults.TOKEN_REFRESH_MARGIN_SECONDS:
        return token, login
    refresh = session.get(REFRESH_KEY)
    if not isinstance(refresh, str):
        log.info("the GitHub token of %s expired; signing them out", login)
        sign_out()
        return None, None
    config = current_app.config
    try:
        renewed = refresh_user_token(
            refresh,
            client_id=config["GITHUB_CLIENT_ID"],
            client_secret=config["GITHUB_CLIENT_SECRET"],
            web_url=config["GITHUB_WEB_URL"],
        )
    except GitHubException as exc:  # AuthExpiredError included
        log.info("GitHub did not refresh the token of %s (%s); signing them out",
                 login, type(exc).__name__)
        sign_out()
        return None, None
    forget_listing(token)
    _keep_token(renewed)
    return renewed.token, login


def _keep_token(token: UserToken) -> None:
    session[TOKEN_KEY] = token.token
    session[TOKEN_EXPIRES_KEY] = token.expires_at
    if token.refresh_token:
        session[REFRESH_KEY] = token.refresh_token
    else:
        session.pop(REFRESH_KEY, None)


def session_expiry(token: UserToken, *, now: float) -> float:
    """When a sign-in with ``token`` ends: see the module docstring."""
    if token.refresh_token and token.refresh_expires_at:
        return min(token.refresh_expires_at, now + defaults.SESSION_MAX_SECONDS)
    if token.expires_at:
        return token.expires_at
    return now + defaults.NON_EXPIRING_TOKEN_SESSION_SECONDS


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


def local_path(target: str | None) -> str | None:
    """``target`` if it is a path on this site, else None.

    Browsers drop tabs and newlines from URLs and read ``\\`` as ``/``, so
    ``/\t/evil.example`` and ``/\\evil.example`` are ``//evil.example``: a redirect
    to another host. Anything with a control character, a space or a backslash is
    refused outright; what is left must parse as a path without scheme or host.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _home() -> str:
    return request.script_root + "/"


# --- the GitHub calls --------------------------------------------------------------------


def _exchange_code(code: str, *, redirect_uri: str) -> tuple[str, UserToken]:
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
    if not token.token:
        raise SignInError("GitHub answered without an access token")
    return login, token


# --- views ---------------------------------------------------------------------------


@bp.get("/login")
def login() -> ResponseReturnValue:
    """Send the person to GitHub to sign in, remembering where they were going."""
    if not sign_in_configured():
        return render_template("auth/unavailable.html"), 404
    session[NEXT_KEY] = local_path(request.args.get("next")) or _home()
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
    target = local_path(session.pop(NEXT_KEY, None)) or _home()
    # Nothing of an earlier person or an earlier session id survives into this one.
    sign_out()
    session.clear()
    regenerate = getattr(session, "regenerate", None)
    if regenerate is not None:
        regenerate()
    session[LOGIN_KEY] = person
    _keep_token(token)
    session[EXPIRES_KEY] = session_expiry(token, now=time.time())
    log.info("signed in: %s", person)
    return redirect(target)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Revoke the token at GitHub, then delete the session on the server.

    A copy of the cookie then opens nothing, and a copy of the token (from anywhere)
    no longer works on GitHub. A revocation GitHub does not confirm is logged; the
    session is deleted all the same.
    """
    check_csrf()
    token = session.get(TOKEN_KEY)
    if isinstance(token, str) and sign_in_configured():
        _revoke(token)
    sign_out()
    session.clear()
    return redirect(_home())


def _revoke(token: str) -> None:
    config = current_app.config
    try:
        revoke_user_token(
            token,
            client_id=config["GITHUB_CLIENT_ID"],
            client_secret=config["GITHUB_CLIENT_SECRET"],
            api_url=config["GITHUB_API_URL"],
        )
    except GitHubException as exc:
        log.warning("GitHub did not confirm revoking the token of %s: %s",
                    session.get(LOGIN_KEY), type(exc).__name__)
