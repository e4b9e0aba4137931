"""REST endpoints about Apps, installations, tokens, webhook deliveries and the
signed-in user: ``/app/...``, ``/installation/...``, ``/app-manifests/...``, ``/user``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Response

from . import defaults, shapes
from .access import (
    installation_repositories,
    require_app,
    require_installation,
    require_oauth_client,
    require_user,
)
from .auth import issue_token
from .deliveries import DeliveryRecord
from .dispatch import Context, Route, json_response
from .errors import ApiError, ForbiddenError, NotFoundError, UnprocessableError
from .state import Installation

TOKEN_PREFIX_INSTALLATION = "ghs_"
"""GitHub's prefix for installation access tokens."""


def _app_installation(ctx: Context, installation_id: int) -> Installation:
    app = require_app(ctx)
    installation = ctx.emulator.state.installations.get(installation_id)
    if installation is None or installation.app_id != app.id:
        raise NotFoundError()
    return installation


def get_app(ctx: Context) -> Any:
    app = require_app(ctx)
    body = shapes.app(ctx.base, app)
    body["installations_count"] = sum(
        1 for i in ctx.emulator.state.installations.values() if i.app_id == app.id)
    return body


def list_installations(ctx: Context) -> Any:
    app = require_app(ctx)
    mine = sorted((i for i in ctx.emulator.state.installations.values()
                   if i.app_id == app.id), key=lambda i: i.id)
    page, headers = ctx.paginate(mine)
    return json_response([shapes.installation(ctx.base, i, app) for i in page],
                         headers=headers)


def get_installation(ctx: Context, installation_id: int) -> Any:
    installation = _app_installation(ctx, installation_id)
    return shapes.installation(ctx.base, installation, ctx.emulator.state.apps[
        installation.app_id])


def get_repo_installation(ctx: Context, owner: str, repo: str) -> Any:
    app = require_app(ctx)
    state = ctx.emulator.state
    record = state.find_repository(owner, repo)
    found = [i for i in state.installations_for(record) if i.app_id == app.id] \
        if record else []
    if not found:
        raise NotFoundError()
    return shapes.installation(ctx.base, found[0], app)


def create_access_token(ctx: Context, installation_id: int) -> Any:
    installation = _app_installation(ctx, installation_id)
    if installation.suspended_at is not None:
        raise ForbiddenError("This installation has been suspended")
    body = ctx.request.get_json(silent=True) or {}
    state = ctx.emulator.state
    visible = state.installation_repositories(installation)
    narrowed: set[int] | None = None
    if body.get("repositories") or body.get("repository_ids"):
        names = {n.lower() for n in body.get("repositories") or []}
        ids = set(body.get("repository_ids") or [])
        narrowed = {r.id for r in visible if r.name.lower() in names or r.id in ids}
        if len(narrowed) < len(names) + len(ids):
            raise UnprocessableError("There is at least one repository that does not "
                                     "exist or is not accessible to the parent installation.")
    permissions = dict(body.get("permissions") or installation.permissions)
    token = issue_token(state, ttl=ctx.emulator.knobs.token_ttl,
                        prefix=TOKEN_PREFIX_INSTALLATION, installation_id=installation.id,
                        repository_ids=narrowed)
    token.permissions = permissions
    result: dict[str, Any] = {
        "token": token.token, "expires_at": shapes.iso(token.expires_at),
        "permissions": permissions,
        "repository_selection": "selected" if narrowed is not None
        else installation.repository_selection,
    }
    if narrowed is not None:
        result["repositories"] = [shapes.repository(ctx.base, r) for r in visible
                                  if r.id in narrowed]
    return json_response(result, 201)


def list_installation_repositories(ctx: Context) -> Any:
    installation = require_installation(ctx)
    repos = installation_repositories(ctx, ctx.caller)
    page, headers = ctx.paginate(repos)
    return json_response({"total_count": len(repos),
                          "repository_selection": installation.repository_selection,
                          "repositories": [shapes.repository(ctx.base, r) for r in page]},
                         headers=headers)


DELIVERY_OUTCOMES = {"success": True, "failure": False}
"""The ``status`` filter of the deliveries list: 2xx answers or everything else."""


def _delivery_cursor(ctx: Context) -> int | None:
    """The ``cursor`` query parameter (``v1_<id>``, as the ``Link`` header gives it)
    as a delivery id. Anything else answers 400, one of the refusals GitHub documents
    for this endpoint, so a client that builds cursors of its own fails loudly here
    instead of silently starting over from the newest delivery."""
    cursor = ctx.request.args.get("cursor")
    if cursor is None:
        return None
    number = cursor.removeprefix(defaults.DELIVERY_CURSOR_PREFIX)
    if not cursor.startswith(defaults.DELIVERY_CURSOR_PREFIX) or not number.isdigit():
        raise ApiError("Bad Request", status=400)
    return int(number)


def list_deliveries(ctx: Context) -> Any:
    """``GET /app/hook/deliveries``: cursor pages, newest first, three days back."""
    app = require_app(ctx)
    per_page = max(1, min(ctx.query_int("per_page", defaults.PER_PAGE_DEFAULT),
                          defaults.PER_PAGE_MAX))
    outcome = ctx.request.args.get("status")
    if outcome is not None and outcome not in DELIVERY_OUTCOMES:
        raise UnprocessableError(f"Invalid status: {outcome!r}; use success or failure")
    records, following = ctx.emulator.delivery_log.page(
        app_id=app.id, per_page=per_page, cursor=_delivery_cursor(ctx),
        succeeded=DELIVERY_OUTCOMES.get(outcome or ""))
    headers = {}
    if following is not None:
        query = {**ctx.request.args.to_dict(), "per_page": per_page,
                 "cursor": f"{defaults.DELIVERY_CURSOR_PREFIX}{following}"}
        headers["Link"] = f'<{ctx.base}{ctx.request.path}?{urlencode(query)}>; rel="next"'
    return json_response([r.summary_json() for r in records], headers=headers)


def _app_delivery(ctx: Context, delivery_id: int) -> DeliveryRecord:
    app = require_app(ctx)
    record = ctx.emulator.delivery_log.find(delivery_id)
    if record is None or record.app_id != app.id:
        raise NotFoundError()
    return record


def get_delivery(ctx: Context, delivery_id: int) -> Any:
    return _app_delivery(ctx, delivery_id).full_json()


def redeliver(ctx: Context, delivery_id: int) -> Any:
    """``POST .../attempts``: sent again now, answered 202 with ``{}`` like GitHub.

    GitHub redelivers only the last three days; past that the emulator answers 422,
    the validation refusal GitHub documents for this endpoint (the wording is ours).
    """
    record = _app_delivery(ctx, delivery_id)
    if not ctx.emulator.delivery_log.recent(record):
        raise UnprocessableError("Validation Failed: deliveries older than 3 days "
                                 "cannot be redelivered")
    ctx.emulator.redeliver(delivery_id)
    return json_response({}, 202)


def convert_manifest(ctx: Context, code: str) -> Any:
    """Trade a one-time manifest code for the new App and all its secrets."""
    state = ctx.emulator.state
    with state.lock:
        manifest = state.manifest_codes.pop(code, None)
    if manifest is None:
        raise NotFoundError()
    hook = manifest.get("hook_attributes") or {}
    owner = manifest.get("_owner") or ctx.emulator.signed_in_user
    app = state.create_app(name=manifest.get("name") or "GitHub App", owner=owner,
                           webhook_url=hook.get("url"))
    app.description = manifest.get("description")
    app.external_url = manifest.get("url") or ""
    app.redirect_url = manifest.get("redirect_url")
    app.setup_url = manifest.get("setup_url")
    app.callback_urls = list(manifest.get("callback_urls") or [])
    if manifest.get("default_permissions"):
        app.permissions = dict(manifest["default_permissions"])
    if manifest.get("default_events"):
        app.events = list(manifest["default_events"])
    body = {**shapes.app(ctx.base, app), "client_secret": app.client_secret,
            "webhook_secret": app.webhook_secret, "pem": app.private_key_pem}
    return json_response(body, 201)


def get_user(ctx: Context) -> Any:
    login = require_user(ctx)
    state = ctx.emulator.state
    account = state.account(login)
    owned = sum(1 for r in state.repositories.values() if r.owner.id == account.id)
    return shapes.private_user(ctx.base, account, repositories=owned)


def list_user_installations(ctx: Context) -> Any:
    login = require_user(ctx)
    state = ctx.emulator.state
    found = state.installations_for_user(login)
    page, headers = ctx.paginate(found)
    return json_response({"total_count": len(found), "installations": [
        shapes.installation(ctx.base, i, state.apps[i.app_id]) for i in page]},
        headers=headers)


def list_user_installation_repositories(ctx: Context, installation_id: int) -> Any:
    login = require_user(ctx)
    state = ctx.emulator.state
    installation = next((i for i in state.installations_for_user(login)
                         if i.id == installation_id), None)
    if installation is None:
        raise NotFoundError()
    # Only repositories the person has access to, each with their own permissions:
    # GitHub's answer differs per person within one installation.
    repos = state.user_installation_repositories(login, installation)
    page, headers = ctx.paginate(repos)
    return json_response({"total_count": len(repos),
                          "repository_selection": installation.repository_selection,
                          "repositories": [shapes.repository(ctx.base, r, role=role)
                                           for r, role in page]},
                         headers=headers)


def delete_user_token(ctx: Context, client_id: str) -> Any:
    """``DELETE /applications/{client_id}/token``: revoke one user token of the App.

    Basic authentication with the App's client id and secret, as on GitHub; the token's
    refresh token goes with it. 204 when revoked, 404 for a token the App never issued.
    """
    app = require_oauth_client(ctx)
    if app.client_id != client_id:
        raise NotFoundError()
    body = ctx.request.get_json(silent=True) or {}
    state = ctx.emulator.state
    with state.lock:
        token = state.tokens.get(str(body.get("access_token", "")))
        if token is None or token.user_login is None or token.app_id != app.id:
            raise NotFoundError()
        del state.tokens[token.token]
        if token.refresh_token is not None:
            state.refresh_tokens.pop(token.refresh_token, None)
        state.revoked_tokens.append(token.token)
    return Response(status=204)


ROUTES = [
    Route("GET", "/app", get_app),
    Route("GET", "/app/installations", list_installations),
    Route("GET", "/app/installations/<int:installation_id>", get_installation),
    Route("POST", "/app/installations/<int:installation_id>/access_tokens",
          create_access_token),
    Route("GET", "/repos/<owner>/<repo>/installation", get_repo_installation),
    Route("GET", "/installation/repositories", list_installation_repositories),
    Route("GET", "/app/hook/deliveries", list_deliveries),
    Route("GET", "/app/hook/deliveries/<int:delivery_id>", get_delivery),
    Route("POST", "/app/hook/deliveries/<int:delivery_id>/attempts", redeliver),
    Route("POST", "/app-manifests/<code>/conversions", convert_manifest),
    Route("GET", "/user", get_user),
    Route("GET", "/user/installations", list_user_installations),
    Route("GET", "/user/installations/<int:installation_id>/repositories",
          list_user_installation_repositories),
    Route("DELETE", "/applications/<client_id>/token", delete_user_token),
]
