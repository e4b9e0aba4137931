"""Who may see and do what: one rule for pages, the JSON API and the event streams.

GitHub decides, repository by repository. A signed-in person (a session, or a user
token sent as ``Authorization: Bearer`` to the API) sees a repository's projects,
syncs, files, memory and events only if ``GET /user/installations/{id}/repositories``
lists that repository for them under the installation the row belongs to; they may
act on it (resync, restore, track, untrack) only if the ``permissions`` GitHub shows
there reach ``ACTION_PERMISSION`` (push by default). The listing is kept in Redis for
``VISIBLE_REPOSITORIES_TTL_SECONDS`` under the SHA-256 of the token (a removed member
keeps seeing a repository at most that long). Anything hidden answers 404, the same as
a missing id.

Who reads without signing in:

- nobody, once sign-in is configured (``GITHUB_CLIENT_ID``/``GITHUB_CLIENT_SECRET``);
- everyone, read only, with ``PUBLIC_DASHBOARD=read``;
- everyone, reading and acting, when sign-in is not configured and the web process
  listens on 127.0.0.1 only (``LOCAL_ONLY``: the demo, development). Requests must then
  name a loopback host, so a web page elsewhere cannot reach the dashboard through
  DNS rebinding. Configuration refuses an App reachable from elsewhere without sign-in.

Every route has a :class:`RouteRule` in :data:`ROUTE_RULES`; :func:`enforce_route_rule`
runs before each request and refuses an endpoint missing from the table (404, logged),
so a new route is closed until someone decides who may use it, and a test walks the
URL map against the table.

When GitHub refuses the token (revoked, expired) the session is signed out; when
GitHub cannot be reached and nothing is cached the request fails with 503 rather than
showing more (or less) than the person may see.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, jsonify, redirect, render_template, request, url_for
from githubkit.exception import GitHubException, RequestFailed
from redis.exceptions import RedisError

from sync_jobs import defaults
from sync_jobs.redis_client import redis_connection
from webhook_app.auth import listing_key, person_token, sign_in_configured, sign_out
from webhook_app.config import PERMISSIONS, is_loopback
from webhook_app.errors import AccessUnavailableError, PermissionDeniedError, SignInRequiredError
from webhook_app.github_person import login_for_token, repositories_for_person

log = logging.getLogger(__name__)


class RouteRule(StrEnum):
    """What a route needs from the person asking."""

    PUBLIC = "public"  # nothing: it guards itself or shows no repository data
    READ = "read"  # shows repository data: sign-in (or a public dashboard), then visibility
    ACT = "act"  # changes something: a person with ACTION_PERMISSION on the repository


ROUTE_RULES: Mapping[str, RouteRule] = {
    "static": RouteRule.PUBLIC,  # the stylesheet and script, the same for everyone
    "health.healthz": RouteRule.PUBLIC,  # load balancers; says nothing about data
    "health.readyz": RouteRule.PUBLIC,
    "metrics.serve": RouteRule.PUBLIC,  # its own METRICS_TOKEN; counts, no content
    "webhooks.receive": RouteRule.PUBLIC,  # GitHub's signature is the credential
    "auth.login": RouteRule.PUBLIC,
    "auth.callback": RouteRule.PUBLIC,  # the OAuth state is the credential
    "auth.logout": RouteRule.PUBLIC,  # the session's CSRF token
    "setup.start": RouteRule.PUBLIC,  # shows the App id or asks for the setup code
    "setup.unlock": RouteRule.PUBLIC,  # the setup code from the log is the credential
    "setup.complete": RouteRule.PUBLIC,  # the setup code, then the manifest state
    "api.openapi_document": RouteRule.PUBLIC,  # describes the API, holds no data
    "api.list_projects": RouteRule.READ,
    "api.list_branches": RouteRule.READ,
    "api.github_branches": RouteRule.READ,  # asks GitHub with the App's token
    "api.project_status": RouteRule.READ,
    "api.history": RouteRule.READ,
    "api.memory": RouteRule.READ,
    "api.files": RouteRule.READ,
    "api.track_branch": RouteRule.ACT,
    "api.start_sync": RouteRule.ACT,
    "api.restore": RouteRule.ACT,
    "api.untrack_project": RouteRule.ACT,
    "api.update_project": RouteRule.ACT,
    "sse.project_sync_events": RouteRule.READ,
    "pages.index": RouteRule.READ,
    "pages.project": RouteRule.READ,
    "pages.resync": RouteRule.ACT,
    "pages.restore": RouteRule.ACT,
    "pages.track_branch": RouteRule.ACT,
    "pages.untrack": RouteRule.ACT,
    "pages.auto_sync": RouteRule.ACT,
    "pages.events": RouteRule.READ,  # only changes of projects the person may read
    "pages.project_events": RouteRule.READ,
    "pages.favicon": RouteRule.PUBLIC,  # the site's icon, the same for everyone
}
"""Every endpoint of the app and what it needs; an endpoint not listed is refused."""

BEARER_PREFIXES = ("/api/",)
"""Paths where ``Authorization: Bearer <GitHub user token>`` signs a request in: the API
and its event streams (``/metrics`` has a bearer token of its own)."""

_REQUEST_CACHE = "project_sync.access"
"""Key of the per-request answer in the WSGI environ. Not ``g``: an app context can
outlive one request (a CLI command, a test holding a context), and a stale answer there
would show one person another's repositories."""


@dataclass(frozen=True)
class Access:
    """What the person behind one request may read and do.

    ``repositories`` maps a GitHub installation id to the repositories (GitHub ids)
    GitHub lists for the person there, each with their highest permission.
    """

    login: str | None = None
    read_all: bool = False
    act_all: bool = False
    repositories: Mapping[int, Mapping[int, str]] = field(default_factory=dict)
    local_only: bool = False

    def permission(self, *, installation_id: int | None, repository_id: int) -> str | None:
        if installation_id is None:
            return None
        return self.repositories.get(installation_id, {}).get(repository_id)

    def can_read(self, *, installation_id: int | None, repository_id: int) -> bool:
        return self.read_all or (
            self.permission(installation_id=installation_id, repository_id=repository_id)
            is not None
        )

    def can_act(self, *, installation_id: int | None, repository_id: int) -> bool:
        if self.act_all:
            return True
        held = self.permission(installation_id=installation_id, repository_id=repository_id)
        needed = current_app.config["ACTION_PERMISSION"]
        return held is not None and PERMISSIONS.index(held) >= PERMISSIONS.index(needed)


def current_access() -> Access:
    """The current request's :class:`Access`, worked out once per request."""
    cached: Access | None = request.environ.get(_REQUEST_CACHE)
    if cached is None:
        cached = request.environ[_REQUEST_CACHE] = _work_out_access()
    return cached


def _work_out_access() -> Access:
    config = current_app.config
    public_read = config["PUBLIC_DASHBOARD"] == "read"
    if not sign_in_configured():
        local = bool(config["LOCAL_ONLY"])
        return Access(read_all=local or public_read, act_all=local and not public_read,
                      local_only=local)
    bearer = _bearer_token()
    if bearer is not None:
        bearer_login, repositories = _listing(bearer, login=None)
        return Access(login=bearer_login, read_all=public_read, repositories=repositories)
    token, login = person_token()
    if token is None or login is None:
        return Access(read_all=public_read)
    try:
        _, repositories = _listing(token, login=login)
    except SignInRequiredError:
        sign_out()
        return Access(read_all=public_read)
    return Access(login=login, read_all=public_read, repositories=repositories)


def _bearer_token() -> str | None:
    if not request.path.startswith(BEARER_PREFIXES):
        return None
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() not in ("bearer", "token") or not credential.strip():
        return None
    return credential.strip()


def _listing(token: str, *, login: str | None) -> tuple[str, dict[int, dict[int, str]]]:
    """The person's login and repositories, from Redis or from GitHub."""
    key = listing_key(token)
    redis = redis_connection()
    try:
        cached: bytes | None = redis.get(key)  # type: ignore[assignment]
    except RedisError:
        cached = None
    if cached is not None:
        entry = json.loads(cached)
        return entry["login"], _grouped(entry["repositories"])
    api_url = current_app.config["GITHUB_API_URL"]
    try:
        login = login or login_for_token(token, api_url=api_url)
        found = repositories_for_person(token, api_url=api_url)
    except RequestFailed as exc:
        if exc.response.status_code in (401, 403):
            raise SignInRequiredError("GitHub does not accept this token; sign in again.") from exc
        log.warning("GitHub did not list the person's repositories: %s", type(exc).__name__)
        raise AccessUnavailableError() from exc
    except GitHubException as exc:
        log.warning("GitHub did not list the person's repositories: %s", type(exc).__name__)
        raise AccessUnavailableError() from exc
    with contextlib.suppress(RedisError):  # then GitHub is asked again next request
        redis.set(
            key,
            json.dumps({"login": login, "repositories": found}),
            ex=defaults.VISIBLE_REPOSITORIES_TTL_SECONDS,
        )
    return login, _grouped(found)


def _grouped(rows: list[list[int | str]] | list[tuple[int, int, str]]) -> dict[int, dict[int, str]]:
    grouped: dict[int, dict[int, str]] = {}
    for installation_id, repository_id, level in rows:
        grouped.setdefault(int(installation_id), {})[int(repository_id)] = str(level)
    return grouped


# --- the rule of each route --------------------------------------------------------------


def _wants_json() -> bool:
    return request.path.startswith(BEARER_PREFIXES)


def enforce_route_rule() -> Response | None:
    """``before_request``: refuse endpoints without a rule, and anonymous requests to
    routes that need a person. Per-repository visibility and permission are checked
    where the project is looked up (``api_queries``)."""
    endpoint = request.endpoint
    if endpoint is None:
        return None  # no route matched: Flask answers 404 or 405
    rule = ROUTE_RULES.get(endpoint)
    if rule is None:
        log.error("no access rule for endpoint %s (webhook_app/access.py ROUTE_RULES)", endpoint)
        return _refused(404, "Not found.")
    if rule is RouteRule.PUBLIC:
        return None
    try:
        access = current_access()
    except SignInRequiredError as exc:
        return _sign_in(exc.message)
    except AccessUnavailableError as exc:
        return _refused(exc.status, exc.message)
    if access.local_only and not _loopback_request():
        return _refused(403, "Without sign-in this dashboard answers on 127.0.0.1 only.")
    if not access.read_all and access.login is None:
        return _sign_in("Sign in with GitHub first.")
    if rule is RouteRule.ACT and not access.act_all and access.login is None:
        return _sign_in("Sign in with GitHub to change anything here.")
    return None


def _loopback_request() -> bool:
    host = urlsplit(f"//{request.host}").hostname or ""
    return is_loopback(host) and is_loopback(request.remote_addr or "")


def _sign_in(message: str) -> Response:
    if _wants_json():
        response = jsonify(error=message, login=url_for("auth.login"))
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="GitHub user token"'
        return response
    if request.method == "GET" and sign_in_configured():
        target = request.full_path if request.query_string else request.path
        return redirect(url_for("auth.login", next=target))  # type: ignore[return-value]
    return _refused(401, message)


def _refused(status: int, message: str) -> Response:
    if _wants_json():
        response = jsonify(error=message)
    else:
        response = current_app.make_response(render_template("pages/error.html", message=message))
    response.status_code = status
    return response


def require_action(*, installation_id: int | None, repository_id: int, name: str) -> None:
    """Raise unless the current person may act on the repository: 401 for nobody
    signed in, 403 with the permission needed for a person without it."""
    access = current_access()
    if access.can_act(installation_id=installation_id, repository_id=repository_id):
        return
    if access.login is None:
        raise SignInRequiredError("Sign in with GitHub to change anything here.")
    needed = current_app.config["ACTION_PERMISSION"]
    held = access.permission(installation_id=installation_id, repository_id=repository_id)
    raise PermissionDeniedError(
        f"You need {needed} permission on {name} on GitHub to do this; "
        f"GitHub gives you {held or 'read'}."
    )


def may_act(project: Any) -> bool:
    """Template helper: whether to show the current person a project's action buttons."""
    repository = project.repository
    installation = repository.installation
    return current_access().can_act(
        installation_id=installation.github_id if installation is not None else None,
        repository_id=repository.github_id,
    )


def dashboard_notice() -> str | None:
    """The line every page shows when the dashboard is open without sign-in (from the
    settings alone, so even an error page can show it)."""
    config = current_app.config
    public_read = config["PUBLIC_DASHBOARD"] == "read"
    if not sign_in_configured() and config["LOCAL_ONLY"] and not public_read:
        return ("Sign-in is off: this app listens on 127.0.0.1 only, so only this machine "
                "can reach it, and everyone here may read and act on every project.")
    if public_read:
        return "Public read-only dashboard: sign in with GitHub to resync, restore or track."
    return None


def init_app(app: Flask) -> None:
    app.before_request(enforce_route_rule)
    app.jinja_env.globals.update(may_act=may_act, dashboard_notice=dashboard_notice)
    app.jinja_env.tests["may_act"] = may_act
