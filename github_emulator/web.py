"""github.com pages the app sends people to, repository pages, and the archive host.

These live on github.com (and codeload.github.com) rather than api.github.com; the
emulator serves them from the same origin. Pages are bare HTML with one form each,
so a headless browser or an HTTP client can click through them.
"""

from __future__ import annotations

import html
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from werkzeug.utils import redirect
from werkzeug.wrappers import Response

from . import defaults
from .access import can_see
from .auth import issue_token, token_text
from .dispatch import Context, Route, Surface, json_response
from .errors import ApiError, NotFoundError
from .state import EmulatorState, GitHubApp, RefreshGrant

TOKEN_PREFIX_USER = "gho_"
"""GitHub's prefix for OAuth user access tokens."""

TOKEN_PREFIX_REFRESH = "ghr_"
"""GitHub's prefix for refresh tokens."""


def _page(title: str, body: str) -> Response:
    return Response(f"<!doctype html><html><head><title>{html.escape(title)}</title>"
                    f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>",
                    content_type="text/html; charset=utf-8")


def _with_query(url: str, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{url}{'&' if '?' in url else '?'}{query}"


def authorize(ctx: Context) -> Any:
    """Sign in the configured person (or ``?login=``) and bounce back with a code."""
    args = ctx.request.args
    state = ctx.emulator.state
    app = next((a for a in state.apps.values() if a.client_id == args.get("client_id")),
               None)
    if app is None:
        raise NotFoundError()
    redirect_uri = args.get("redirect_uri") or (app.callback_urls or [""])[0]
    if not redirect_uri:
        raise ApiError("redirect_uri is required", status=400)
    login = args.get("login") or ctx.emulator.signed_in_user
    code = secrets.token_hex(10)
    with state.lock:
        state.oauth_codes[code] = (login, app.id)
    return redirect(_with_query(redirect_uri, code=code, state=args.get("state")), code=302)


def _take_grant(state: EmulatorState, fields: dict[str, Any]) -> tuple[str, int] | None:
    """(login, App id) of a code, or of a live refresh token; either works once."""
    now = datetime.now(UTC)
    with state.lock:
        if fields.get("grant_type") == "refresh_token":
            refresh = state.refresh_tokens.pop(str(fields.get("refresh_token", "")), None)
            if refresh is None or refresh.expires_at <= now:
                return None
            # The access token issued with it dies with it, as on GitHub.
            state.tokens.pop(refresh.access_token, None)
            return refresh.login, refresh.app_id
        return state.oauth_codes.pop(str(fields.get("code", "")), None)


def _user_token_body(ctx: Context, app: GitHubApp, login: str) -> dict[str, str | int]:
    state = ctx.emulator.state
    ttl = ctx.emulator.knobs.token_ttl
    refresh = token_text(TOKEN_PREFIX_REFRESH) if app.expiring_user_tokens else None
    token = issue_token(state, ttl=ttl, prefix=TOKEN_PREFIX_USER, user_login=login,
                        app_id=app.id, refresh_token=refresh)
    if refresh is not None:
        expires = datetime.now(UTC) + timedelta(seconds=defaults.REFRESH_TOKEN_TTL_SECONDS)
        with state.lock:
            state.refresh_tokens[refresh] = RefreshGrant(login, app.id, expires, token.token)
    body: dict[str, str | int] = {"access_token": token.token, "token_type": "bearer",
                                  "scope": "", "expires_in": ttl}
    if refresh is not None:
        body.update(refresh_token=refresh,
                    refresh_token_expires_in=defaults.REFRESH_TOKEN_TTL_SECONDS)
    return body


def access_token(ctx: Context) -> Any:
    """Exchange a code (or a refresh token); JSON when asked by ``Accept``, form-encoded
    otherwise."""
    request = ctx.request
    fields = request.get_json(silent=True) or request.values.to_dict()
    state = ctx.emulator.state
    grant = _take_grant(state, fields)
    app = state.apps.get(grant[1]) if grant else None
    if grant is None or app is None:
        body: dict[str, str | int] = {"error": "bad_verification_code",
                "error_description": "The code passed is incorrect or expired."}
        if fields.get("grant_type") == "refresh_token":
            body = {"error": "bad_refresh_token",
                    "error_description": "The refresh token passed is incorrect or expired."}
    elif (fields.get("client_id") != app.client_id
          or fields.get("client_secret") != app.client_secret):
        body = {"error": "incorrect_client_credentials",
                "error_description": "The client_id and/or client_secret passed are "
                                     "incorrect."}
    else:
        body = _user_token_body(ctx, app, grant[0])
    if "json" in request.headers.get("Accept", ""):
        return json_response(body)
    return Response(urlencode(body), content_type="application/x-www-form-urlencoded")


def new_app_from_manifest(ctx: Context, org: str | None = None) -> Any:
    """Stand-in for "Create GitHub App from manifest": show the manifest and one
    button; pressing it redirects to the manifest's ``redirect_url`` with a code."""
    form = ctx.request.form
    raw = form.get("manifest") or ctx.request.args.get("manifest") or ""
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ApiError(f"Invalid manifest: {error}", status=400) from error
    if not manifest.get("redirect_url"):
        raise ApiError("The manifest needs a redirect_url", status=400)
    fields = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value, quote=True)}">'
        for name, value in (("manifest", raw), ("state", form.get("state", "")),
                            ("org", org or "")))
    body = (f"<p>Create the GitHub App <strong>{html.escape(str(manifest.get('name')))}"
            f"</strong>?</p><form method=\"post\" action=\"/settings/apps/new/confirm\">"
            f"{fields}<button type=\"submit\" id=\"create-app\">Create GitHub App for "
            f"{html.escape(org or ctx.emulator.signed_in_user)}</button></form>")
    return _page("Create GitHub App", body)


def confirm_manifest(ctx: Context) -> Any:
    form = ctx.request.form
    manifest = json.loads(form.get("manifest") or "{}")
    manifest["_owner"] = form.get("org") or ctx.emulator.signed_in_user
    code = secrets.token_hex(10)
    with ctx.emulator.state.lock:
        ctx.emulator.state.manifest_codes[code] = manifest
    return redirect(_with_query(manifest["redirect_url"], code=code,
                                state=form.get("state") or None), code=302)


def install_page(ctx: Context, slug: str) -> Any:
    """``/apps/{slug}/installations/new``: a form to install on an account."""
    app = next((a for a in ctx.emulator.state.apps.values() if a.slug == slug), None)
    if app is None:
        raise NotFoundError()
    if ctx.request.method == "POST":
        account = ctx.request.form.get("account") or ctx.emulator.signed_in_user
        installation_id = ctx.emulator.install(account, None, app=app,
                                               members=(ctx.emulator.signed_in_user,))
        if app.setup_url:
            return redirect(_with_query(app.setup_url, installation_id=installation_id,
                                        setup_action="install"), code=302)
        return _page("Installed", f"<p id=\"installation\">{installation_id}</p>")
    default = html.escape(ctx.emulator.signed_in_user, quote=True)
    return _page(f"Install {app.name}",
                 f'<form method="post"><input name="account" value="{default}">'
                 f'<button type="submit" id="install">Install</button></form>')


def repository_page(ctx: Context, owner: str, repo: str) -> Any:
    """A repository's ``html_url``: its name, default branch, branches and how to clone
    it. ``.../<repo>.git`` opened in a browser redirects here, as on GitHub; a private
    repository is 404 to whoever may not see it."""
    record = ctx.emulator.state.find_repository(owner, repo.removesuffix(".git"))
    if record is None or not can_see(ctx, record):
        raise NotFoundError()
    page_url = f"{ctx.base}/{record.full_name}"
    if repo.endswith(".git"):
        return redirect(page_url, code=301)
    git = ctx.emulator.git(record)
    branches = "".join(f"<li><code>{html.escape(name)}</code> {sha[:7]}</li>"
                       for name, sha in git.branches()) or "<li>none yet: push one</li>"
    credentials = ("private: clone with a token as the password (<code>x-access-token"
                   "</code> and an installation token, or your username and a personal "
                   "token)" if record.private else "public: anyone may clone it; "
                   "pushing needs a token with write access as the password")
    body = (f"<p>{html.escape(record.description or '')}</p>"
            f"<p>Default branch <code>{html.escape(record.default_branch)}</code>; "
            f"{credentials}.</p>"
            f"<pre id=\"clone\">git clone {html.escape(page_url)}.git</pre>"
            f"<h2>Branches</h2><ul id=\"branches\">{branches}</ul>")
    return _page(record.full_name, body)


def codeload(ctx: Context, owner: str, repo: str, sha: str) -> Any:
    """The gzip tarball a tarball request redirected to; the link is single-purpose."""
    state = ctx.emulator.state
    with state.lock:
        link = state.archive_links.get(ctx.request.args.get("token", ""))
    if link is None or link[1] != sha or link[2] < datetime.now(UTC):
        raise NotFoundError()
    record = state.repositories.get(link[0])
    if record is None:
        raise NotFoundError()
    prefix = f"{record.owner.login}-{record.name}-{sha[:7]}/"
    data = ctx.emulator.git(record).archive(sha, prefix)
    return Response(data, content_type="application/x-gzip", headers={
        "Content-Disposition": f"attachment; filename={prefix.rstrip('/')}.tar.gz"})


ROUTES = [
    Route("GET", "/login/oauth/authorize", authorize, Surface.WEB),
    Route("POST", "/login/oauth/access_token", access_token, Surface.WEB),
    Route("POST", "/settings/apps/new", new_app_from_manifest, Surface.WEB),
    Route("GET", "/settings/apps/new", new_app_from_manifest, Surface.WEB),
    Route("POST", "/organizations/<org>/settings/apps/new", new_app_from_manifest,
          Surface.WEB),
    Route("POST", "/settings/apps/new/confirm", confirm_manifest, Surface.WEB),
    Route("GET", "/apps/<slug>/installations/new", install_page, Surface.WEB),
    Route("POST", "/apps/<slug>/installations/new", install_page, Surface.WEB),
    Route("GET", "/_codeload/<owner>/<repo>/legacy.tar.gz/<sha>", codeload, Surface.WEB),
    Route("GET", "/<owner>/<repo>", repository_page, Surface.WEB),
]
