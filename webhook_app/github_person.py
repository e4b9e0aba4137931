"""GitHub calls made for a person, or before an App exists.

``sync_jobs/connector.py`` makes every call as the App or one of its installations.
The few calls that cannot be made that way live here: converting a manifest code into
a new App (no App yet), exchanging a sign-in code for a user token (and refreshing and
revoking it), and reading what a signed-in person may see and do. Each builds a
short-lived client with the same settings and raises githubkit's own exceptions for
the caller to turn into a page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from githubkit import GitHub, OAuthAppAuthStrategy, OAuthTokenAuthStrategy, OAuthWebAuthStrategy
from githubkit.auth.base import BaseAuthStrategy

from sync_jobs import defaults
from webhook_app.config import PERMISSIONS

PER_PAGE = 100
"""Page size for the person's installations and repositories (GitHub's maximum)."""


def _client(base_url: str, token: str | BaseAuthStrategy | None = None) -> GitHub[Any]:
    # No HTTP cache and no automatic waiting: these calls happen inside a request, where
    # a person is waiting, so a failure is shown rather than retried for minutes.
    return GitHub(
        token,
        base_url=base_url,
        http_cache=False,
        auto_retry=False,
        timeout=defaults.PERSON_HTTP_TIMEOUT_SECONDS,
    )


def convert_manifest(code: str, *, api_url: str) -> dict[str, Any]:
    """The new App GitHub made from a manifest: ``POST /app-manifests/{code}/conversions``.

    Unauthenticated by design (the code is the credential), and the code works once.
    """
    github = _client(api_url)  # keep a reference: ``rest`` holds the client weakly
    app = github.rest.apps.create_from_manifest(code).parsed_data
    return {
        "id": str(app.id),
        "slug": app.slug or "",
        "name": app.name,
        "pem": app.pem,
        "webhook_secret": app.webhook_secret or "",
        "client_id": app.client_id or "",
        "client_secret": app.client_secret,
    }


@dataclass(frozen=True)
class UserToken:
    """A user access token and what GitHub said about its life.

    ``expires_at`` and ``refresh_token`` are set only for expiring tokens (GitHub Apps
    with "Expire user authorization tokens", GitHub's default): the access token lives
    8 hours, the refresh token six months and works once.
    """

    token: str
    expires_at: float | None = None
    refresh_token: str | None = None
    refresh_expires_at: float | None = None


def _user_token(strategy: OAuthTokenAuthStrategy) -> UserToken:
    def epoch(value: datetime | None) -> float | None:
        return value.timestamp() if value is not None else None

    return UserToken(
        token=strategy.token or "",
        expires_at=epoch(strategy.expire_time),
        refresh_token=strategy.refresh_token,
        refresh_expires_at=epoch(strategy.refresh_token_expire_time),
    )


def exchange_sign_in_code(
    code: str,
    *,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    web_url: str,
    api_url: str,
) -> tuple[str, UserToken]:
    """The person's login and user access token for a sign-in ``code``.

    githubkit posts the code to ``<web host>/login/oauth/access_token``, deriving that
    host from the client's base URL, so the client points at ``web_url``. It carries no
    auth on purpose: a client holding the web-flow strategy would exchange the code in
    its own auth flow first, and the exchange itself would then find the code spent.
    """
    strategy = OAuthWebAuthStrategy(client_id, client_secret, code, redirect_uri)
    web = _client(web_url)
    token = _user_token(strategy.exchange_token(web))
    if not token.token:
        return "", token
    return login_for_token(token.token, api_url=api_url), token


def refresh_user_token(
    refresh_token: str, *, client_id: str, client_secret: str, web_url: str
) -> UserToken:
    """A new token pair for a refresh token (``grant_type=refresh_token``); the old
    refresh token is spent. githubkit raises ``AuthExpiredError`` when GitHub refuses."""
    strategy = OAuthTokenAuthStrategy(client_id, client_secret, refresh_token=refresh_token)
    web = _client(web_url)
    return _user_token(strategy.refresh(web))


def revoke_user_token(token: str, *, client_id: str, client_secret: str, api_url: str) -> None:
    """``DELETE /applications/{client_id}/token``: GitHub forgets the token (and its
    refresh token), so a copy of it (a log, a stolen cookie's session) stops working."""
    github = _client(api_url, OAuthAppAuthStrategy(client_id, client_secret))
    github.rest.apps.delete_token(client_id, access_token=token)


def login_for_token(token: str, *, api_url: str) -> str:
    """``GET /user``: whose token this is."""
    api = _client(api_url, token)
    return api.rest.users.get_authenticated().parsed_data.login


def _highest(permissions: Any) -> str | None:
    if permissions is None:
        return None
    held = [name for name in PERMISSIONS if getattr(permissions, name, False) is True]
    return held[-1] if held else None


def repositories_for_person(token: str, *, api_url: str) -> list[tuple[int, int, str]]:
    """``(installation id, repository id, highest permission)`` for every repository of
    this App that GitHub lists for the person.

    ``GET /user/installations`` names the installations they can reach;
    ``GET /user/installations/{id}/repositories`` then lists, per installation, only the
    repositories they have access to, with their own ``permissions``. Every page of
    both is read. A repository listed without permissions counts as ``pull``: GitHub
    listed it, so the person can read it.
    """
    github = _client(api_url, token)
    found: list[tuple[int, int, str]] = []
    for installation_id in _installation_ids(github):
        page = 1
        while True:
            answer = github.rest.apps.list_installation_repos_for_authenticated_user(
                installation_id, per_page=PER_PAGE, page=page
            ).parsed_data
            for repository in answer.repositories:
                level = _highest(repository.permissions) or PERMISSIONS[0]
                found.append((installation_id, repository.id, level))
            if len(answer.repositories) < PER_PAGE or page * PER_PAGE >= answer.total_count:
                break
            page += 1
    return found


def _installation_ids(github: GitHub[Any]) -> list[int]:
    ids: list[int] = []
    page = 1
    while True:
        found = github.rest.apps.list_installations_for_authenticated_user(
            per_page=PER_PAGE, page=page
        ).parsed_data
        ids.extend(installation.id for installation in found.installations)
        if len(found.installations) < PER_PAGE or len(ids) >= found.total_count:
            return ids
        page += 1
