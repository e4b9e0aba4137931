"""Who may see what: the installations a signed-in person can access on GitHub.

Contract for every page and API view: call :func:`visible_installation_ids` and show only
projects whose repository belongs to one of those installations.

- ``None`` means "no restriction" and is returned only when sign-in is not configured
  (no ``GITHUB_CLIENT_ID``/``GITHUB_CLIENT_SECRET``): a development or demo setup with
  nobody to tell apart.
- An empty set when nobody is signed in: pages then invite sign-in (``/login?next=``).
- Otherwise the ids GitHub lists at ``GET /user/installations`` for the person's token:
  the installations of this App on their own account or on accounts they are a member
  of. GitHub decides; this app keeps no membership of its own.

The list is kept in the session for ``VISIBLE_INSTALLATIONS_TTL_SECONDS`` (a removed
member keeps seeing an installation at most that long) and once per request.
When GitHub refuses the token (revoked, expired) the person is signed out. When GitHub
cannot be reached and nothing fresh is cached, the answer is the empty set: failing
closed shows too little for a moment rather than too much.

For the JSON API, :func:`require_person` answers 401 to anonymous requests when sign-in
is configured; register it on the blueprint::

    bp.before_request(access.require_person)

or call it at the top of a view (``if (denied := require_person()): return denied``).
"""

from __future__ import annotations

import logging
import time

from flask import Response, current_app, jsonify, request, session
from githubkit.exception import GitHubException, RequestFailed

from sync_jobs import defaults
from webhook_app.auth import (
    INSTALLATIONS_KEY,
    TOKEN_KEY,
    sign_in_configured,
    sign_out,
    signed_in_login,
)
from webhook_app.github_person import installation_ids_for_person

log = logging.getLogger(__name__)

PER_PAGE = 100
"""Installations asked for per page (GitHub's maximum)."""

SESSION_CACHE_MAX_IDS = 200
"""More ids than this are not cached in the session: the cookie must stay under 4 KB.
Such a person's list is fetched once per request instead."""

_REQUEST_CACHE = "project_sync.visible_installation_ids"
"""Key of the per-request answer in the WSGI environ. Not ``g``: an app context can
outlive one request (a CLI command, a test holding a context), and a stale list there
would show one person another's installations."""


def visible_installation_ids() -> frozenset[int] | None:
    """GitHub installation ids the current person can access, or None for all."""
    if not sign_in_configured():
        return None
    cached: frozenset[int] | None = request.environ.get(_REQUEST_CACHE)
    if cached is not None:
        return cached
    ids = _person_installation_ids()
    request.environ[_REQUEST_CACHE] = ids
    return ids


def require_person() -> Response | None:
    """401 for an anonymous request when sign-in is configured; None lets it through.

    Meant as a ``before_request`` hook of the API blueprint. Answers JSON with a
    ``login`` link, because an API client cannot follow a sign-in page.
    """
    if visible_installation_ids() is None or signed_in_login() is not None:
        return None
    response = jsonify(error="sign in with GitHub first", login="/login")
    response.status_code = 401
    return response


def _person_installation_ids() -> frozenset[int]:
    token: str | None = session.get(TOKEN_KEY)
    if not token:
        return frozenset()
    entry = session.get(INSTALLATIONS_KEY)
    now = time.time()
    if entry and now - entry["at"] < defaults.VISIBLE_INSTALLATIONS_TTL_SECONDS:
        return frozenset(entry["ids"])
    try:
        ids = _fetch_installation_ids(token)
    except RequestFailed as exc:
        if exc.response.status_code == 401:
            log.info("GitHub refused the token of %s; signing them out", signed_in_login())
            sign_out()
            return frozenset()
        log.warning("GET /user/installations failed: %s", exc)
        return frozenset()
    except GitHubException as exc:
        log.warning("GET /user/installations failed: %s", exc)
        return frozenset()
    if len(ids) <= SESSION_CACHE_MAX_IDS:
        session[INSTALLATIONS_KEY] = {"ids": sorted(ids), "at": now}
    else:
        session.pop(INSTALLATIONS_KEY, None)
    return ids


def _fetch_installation_ids(token: str) -> frozenset[int]:
    return installation_ids_for_person(token, api_url=current_app.config["GITHUB_API_URL"])
