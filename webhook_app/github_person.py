"""GitHub calls made for a person, or before an App exists.

``sync_jobs/connector.py`` makes every call as the App or one of its installations.
The few calls that cannot be made that way live here: converting a manifest code into
a new App (no App yet), exchanging a sign-in code for a user token, and reading what a
signed-in person may see. Each builds a short-lived client with the same settings and
raises githubkit's own exceptions for the caller to turn into a page.
"""

from __future__ import annotations

from typing import Any

from githubkit import GitHub, OAuthWebAuthStrategy

from sync_jobs import defaults

PER_PAGE = 100
"""Page size for ``GET /user/installations`` (GitHub's maximum)."""


def _client(base_url: str, token: str | None = None) -> GitHub[Any]:
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


def exchange_sign_in_code(
    code: str,
    *,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    web_url: str,
    api_url: str,
) -> tuple[str, str]:
    """The person's login and user access token for a sign-in ``code``.

    githubkit posts the code to ``<web host>/login/oauth/access_token``, deriving that
    host from the client's base URL, so the client points at ``web_url``. It carries no
    auth on purpose: a client holding the web-flow strategy would exchange the code in
    its own auth flow first, and the exchange itself would then find the code spent.
    """
    strategy = OAuthWebAuthStrategy(client_id, client_secret, code, redirect_uri)
    web = _client(web_url)
    token = strategy.exchange_token(web).token
    if not token:
        return "", ""
    api = _client(api_url, token)
    login = api.rest.users.get_authenticated().parsed_data.login
    return login, token


def installation_ids_for_person(token: str, *, api_url: str) -> frozenset[int]:
    """Every page of ``GET /user/installations``: what the person may see."""
    github = _client(api_url, token)
    ids: set[int] = set()
    page = 1
    while True:
        found = github.rest.apps.list_installations_for_authenticated_user(
            per_page=PER_PAGE, page=page
        ).parsed_data
        ids.update(installation.id for installation in found.installations)
        if len(found.installations) < PER_PAGE or len(ids) >= found.total_count:
            return frozenset(ids)
        page += 1
