"""HTML pages: the status page, a project's page, the forms that act on them, and the
live streams the pages follow.

Forms post to routes here, which call the same actions as the JSON API
(``api_actions``) and redirect back (post/redirect/get) with a flash message. Each
form carries a per-session anti-forgery token in a hidden field, compared in constant
time; a post without it changes nothing. Restoring and untracking ask first: their
form without ``confirmed=1`` answers a page that says what will happen, with the form
that does it, so the step works without script.

Each page follows one server-sent-event stream of changes (``/events``, or
``/projects/<id>/events``; see :mod:`sync_jobs.changes`), from the change stream id it
was rendered at, so a push, a sync's progress and its end show without a reload
(``static/live.js``); without script the page shows the same state on reload.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException

from models import MemoryEntry, Project, ProjectSync, db
from models.queries import memory_entries
from sync_jobs import changes
from sync_jobs.progress import ProgressEvent, last_event
from sync_jobs.redis_client import redis_connection
from webhook_app import api_actions, api_queries, humanize
from webhook_app.api_models import ROW_ID_LIMIT
from webhook_app.api_queries import (
    actionable_project,
    all_attempts,
    latest_unfinished,
    visible_project,
    visible_projects,
)
from webhook_app.auth import check_csrf, local_path
from webhook_app.errors import ApiRequestError, CsrfTokenError, InvalidParameterError
from webhook_app.sse import page_stream_response

bp = Blueprint("pages", __name__)

PAGE_HISTORY_ROWS = 50
"""Sync attempts shown on a project page; the API pages through the rest."""

PAGE_MEMORY_ROWS = 25
"""Memory entries listed on a project page; the API lists all of them."""

JSON_PREFIXES = ("/api/", "/webhooks/")
"""Paths whose clients read JSON: their errors stay JSON, every other path gets a page."""

FAVICON = "favicon.svg"

_ROW_ID = re.compile(r"[0-9]{1,10}")
"""A row id as a form sends it: ASCII digits, at most ten."""


@bp.errorhandler(ApiRequestError)
def _page_error(error: ApiRequestError) -> ResponseReturnValue:
    # Refusals (not found, not allowed, GitHub unavailable, a forged form) and a bad
    # read (a stream's Last-Event-ID) get a page with their status; a form filled in
    # wrongly goes back to the page it came from.
    refused = error.status in (401, 403, 404, 503) or isinstance(error, CsrfTokenError)
    if refused or request.method == "GET":
        return _error_page(error.status, error.message)
    flash(error.message, "error")
    return redirect(_same_site(request.referrer) or url_for("pages.index"))


@bp.app_errorhandler(HTTPException)
@bp.app_errorhandler(404)
@bp.app_errorhandler(405)
def _http_error(error: HTTPException) -> ResponseReturnValue:
    """Every HTTP error of the app: JSON for API clients, the styled page otherwise.

    Registered for 404 and 405 by code as well: Flask prefers a handler by code, and
    this blueprint registers after the API's, so its handler of those two is this one.
    """
    status = error.code or 500
    if request.path.startswith(JSON_PREFIXES):
        return jsonify(error=error.description or error.name), status
    return _error_page(status, error.description or error.name, title=error.name)


@bp.app_errorhandler(500)
def _server_error(error: Exception) -> ResponseReturnValue:
    message = "Something went wrong on our side; it was logged. Try again in a moment."
    if request.path.startswith(JSON_PREFIXES):
        return jsonify(error=message), 500
    return _error_page(500, message, title="Internal error")


def _error_page(status: int, message: str, *, title: str | None = None) -> ResponseReturnValue:
    return render_template("pages/error.html", status=status, message=message, title=title), status


def _same_site(referrer: str | None) -> str | None:
    """The path of a ``Referer`` on this host; another host's URL is never a target."""
    if not referrer:
        return None
    parts = urlsplit(referrer)
    if parts.netloc and parts.netloc != request.host:
        return None
    return local_path(parts.path + (f"?{parts.query}" if parts.query else ""))


@bp.app_template_filter("bytes")
def _bytes_filter(size: int | None) -> str:
    return humanize.human_bytes(size)


@bp.app_template_filter("ago")
def _ago_filter(moment: datetime) -> str:
    return humanize.time_ago(moment)


@bp.app_template_filter("utc")
def _utc_filter(moment: datetime) -> str:
    return humanize.utc_text(moment)


@bp.app_template_filter("iso")
def _iso_filter(moment: datetime) -> str:
    return humanize.iso_utc(moment)


@bp.app_template_filter("duration")
def _duration_filter(seconds: float | None) -> str:
    return humanize.human_duration(seconds)


def _live(syncs: list[ProjectSync | None]) -> dict[int, ProgressEvent]:
    """The newest progress event of each running sync, so its bar starts where it is."""
    redis = redis_connection()
    found = {}
    for sync in syncs:
        if sync is not None and (event := last_event(redis, sync_id=sync.id)) is not None:
            found[sync.id] = event
    return found


@bp.get("/favicon.ico")
def favicon() -> ResponseReturnValue:
    """Browsers ask for ``/favicon.ico`` whatever the page links: the same SVG."""
    folder = Path(current_app.static_folder or "")
    return send_from_directory(folder, FAVICON, mimetype="image/svg+xml", max_age=300)


@bp.get("/")
def index() -> ResponseReturnValue:
    """Every visible project with its branch and last sync."""
    after = changes.last_change_id(redis_connection())  # before the reads it follows on from
    projects = visible_projects()
    active = {p.id: latest_unfinished(p.id) for p in projects}
    return render_template(
        "pages/index.html",
        projects=projects,
        active=active,
        live=_live(list(active.values())),
        events_url=url_for("pages.events", after=after),
        now=datetime.now(UTC),
    )


@bp.get("/events")
def events() -> Response:
    """The status page's stream: changes of every project the person may read."""
    known = [project.id for project in visible_projects()]
    return page_stream_response(project_id=None, known=known)


@bp.get("/projects/<int:project_id>/events")
def project_events(project_id: int) -> Response:
    """A project page's stream: the changes of that project."""
    project = visible_project(project_id)
    return page_stream_response(project_id=project.id, known=[project.id])


@bp.get("/projects/<int:project_id>")
def project(project_id: int) -> ResponseReturnValue:
    """A project's lineage and attempts, live progress and a first look at its memory."""
    after = changes.last_change_id(redis_connection(), project_id=project_id)
    project = visible_project(project_id)
    attempts = list(db.session.scalars(all_attempts(project.id).limit(PAGE_HISTORY_ROWS)))
    active = latest_unfinished(project.id)
    memory_query = memory_entries(project.id)
    memory = list(db.session.scalars(memory_query.limit(PAGE_MEMORY_ROWS)))
    memory_total = db.session.scalar(
        select(func.count()).select_from(memory_query.order_by(None).subquery())
    )
    return render_template(
        "pages/project.html",
        project=project,
        attempts=attempts,
        active=active,
        live=_live([active]),
        memory=memory,
        memory_total=memory_total or 0,
        memory_entry_type=MemoryEntry,
        lag=_memory_lag(project),
        branches=None if _live_refresh() else _branch_choices(project),
        events_url=url_for("pages.project_events", project_id=project.id, after=after),
    )


LIVE_REFRESH_HEADER = "X-Live-Refresh"
"""Sent by ``live.js`` when it re-reads a page for its live regions: the branch picker
is not one of them, so that read skips asking GitHub for the branch list."""


def _live_refresh() -> bool:
    return request.headers.get(LIVE_REFRESH_HEADER) == "1"


def _memory_lag(project: Project) -> dict[str, Any] | None:
    try:
        return api_queries.memory_lag(project)
    except ApiRequestError:
        return None  # a hint only: the page shows without it


def _branch_choices(project: Project) -> list[dict[str, Any]] | None:
    """GitHub's branches not tracked yet, for the track form (None: GitHub did not say,
    or the person may not track; the form takes a typed name either way)."""
    from webhook_app.access import may_act

    if not may_act(project):
        return None
    try:
        branches = api_queries.github_branches(project)
    except ApiRequestError:
        return None
    return [branch for branch in branches if not branch.get("tracked")]


def _back(project_id: int) -> ResponseReturnValue:
    return redirect(url_for("pages.project", project_id=project_id), code=303)


@bp.post("/projects/<int:project_id>/resync")
def resync(project_id: int) -> ResponseReturnValue:
    check_csrf()
    project = actionable_project(project_id)
    full = request.form.get("full") == "1"
    sync = api_actions.start_sync(project, full=full)
    what = "Full sync" if full else "Sync"
    flash(f"{what} {sync.id} queued for {project.branch}.", "success")
    return _back(project.id)


def _confirmed() -> bool:
    return request.form.get("confirmed") == "1"


@bp.post("/projects/<int:project_id>/restore")
def restore(project_id: int) -> ResponseReturnValue:
    check_csrf()
    project = actionable_project(project_id)
    sync_id = _form_sync_id()
    if not _confirmed():
        source = api_queries.sync_of_project(project, sync_id, in_lineage=True)
        return render_template("pages/confirm_restore.html", project=project, source=source)
    sync: ProjectSync = api_actions.start_restore(project, sync_id)
    flash(f"Restore to sync {sync_id} queued as sync {sync.id}.", "success")
    return _back(project.id)


def _form_sync_id() -> int:
    """The form's ``sync_id``: ASCII digits naming a possible row (``str.isdigit`` would
    pass ``²``, which ``int`` refuses)."""
    raw = request.form.get("sync_id", "")
    if not _ROW_ID.fullmatch(raw) or not 1 <= int(raw) <= ROW_ID_LIMIT:
        raise InvalidParameterError("Choose a sync to restore.")
    return int(raw)


@bp.post("/projects/<int:project_id>/untrack")
def untrack(project_id: int) -> ResponseReturnValue:
    check_csrf()
    project = actionable_project(project_id)
    if not _confirmed():
        return render_template("pages/confirm_untrack.html", project=project)
    api_actions.untrack_branch(project)
    flash(f"No longer tracking {project.branch}; its history stays readable.", "success")
    return redirect(url_for("pages.index"), code=303)


@bp.post("/projects/<int:project_id>/auto-sync")
def auto_sync(project_id: int) -> ResponseReturnValue:
    check_csrf()
    project = actionable_project(project_id)
    choice = request.form.get("enabled", "")
    if choice not in ("on", "off"):
        raise InvalidParameterError("Choose whether auto-sync is on or off.")
    api_actions.set_auto_sync(project, choice == "on")
    flash(f"Auto-sync on push is {choice} for {project.branch}.", "success")
    return _back(project.id)


@bp.post("/projects/<int:project_id>/branches")
def track_branch(project_id: int) -> ResponseReturnValue:
    check_csrf()
    project = actionable_project(project_id)
    tracked, sync = api_actions.track_branch(project, request.form.get("branch", ""))
    flash(f"Now tracking {tracked.branch}; first sync {sync.id} queued.", "success")
    return _back(tracked.id)
