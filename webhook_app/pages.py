"""HTML pages: the status page, a project's page, and the forms that act on them.

Forms post to routes here, which call the same actions as the JSON API
(``api_actions``) and redirect back (post/redirect/get) with a flash message. Each
form carries a per-session anti-forgery token in a hidden field, compared in constant
time; a post without it changes nothing. Live progress is a few lines of script over
the SSE endpoint; without script the page shows the same state on reload.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from models import MemoryEntry, ProjectSync, db
from models.queries import memory_entries
from sync_jobs.errors import ApiRequestError, CsrfTokenError, InvalidParameterError
from webhook_app import api_actions
from webhook_app.api_queries import (
    actionable_project,
    all_attempts,
    latest_unfinished,
    visible_project,
    visible_projects,
)
from webhook_app.auth import check_csrf, local_path

bp = Blueprint("pages", __name__)

PAGE_HISTORY_ROWS = 50
"""Sync attempts shown on a project page; the API pages through the rest."""

PAGE_MEMORY_ROWS = 25
"""Memory entries listed on a project page; the API lists all of them."""


@bp.errorhandler(ApiRequestError)
def _page_error(error: ApiRequestError) -> ResponseReturnValue:
    # Refusals (not found, not allowed, GitHub unavailable, a forged form) get a page with
    # their status; a form filled in wrongly goes back to the page it came from.
    if error.status in (401, 403, 404, 503) or isinstance(error, CsrfTokenError):
        return render_template("pages/error.html", message=error.message), error.status
    flash(error.message, "error")
    return redirect(_same_site(request.referrer) or url_for("pages.index"))


def _same_site(referrer: str | None) -> str | None:
    """The path of a ``Referer`` on this host; another host's URL is never a target."""
    if not referrer:
        return None
    parts = urlsplit(referrer)
    if parts.netloc and parts.netloc != request.host:
        return None
    return local_path(parts.path + (f"?{parts.query}" if parts.query else ""))


@bp.get("/")
def index() -> ResponseReturnValue:
    """Every visible project with its branch and last sync."""
    projects = visible_projects()
    active = {p.id: latest_unfinished(p.id) for p in projects}
    return render_template("pages/index.html", projects=projects, active=active)


@bp.get("/projects/<int:project_id>")
def project(project_id: int) -> ResponseReturnValue:
    """A project's lineage and attempts, live progress and a first look at its memory."""
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
        memory=memory,
        memory_total=memory_total or 0,
        memory_entry_type=MemoryEntry,
    )


def _back(project_id: int) -> ResponseReturnValue:
    return redirect(url_for("pages.project", project_id=project_id), code=303)


@bp.post("/projects/<int:project_id>/resync")
def resync(project_id: int) -> ResponseReturnValue:
    check_csrf()
    project = actionable_project(project_id)
    sync = api_actions.start_sync(project)
    flash(f"Sync {sync.id} queued for {project.branch}.", "success")
    return _back(project.id)


@bp.post("/projects/<int:project_id>/restore")
def restore(project_id: int) -> ResponseReturnValue:
    check_csrf()
    project = actionable_project(project_id)
    raw = request.form.get("sync_id", "")
    if not raw.isdigit():
        raise InvalidParameterError("Choose a sync to restore.")
    sync: ProjectSync = api_actions.start_restore(project, int(raw))
    flash(f"Restore to sync {raw} queued as sync {sync.id}.", "success")
    return _back(project.id)


@bp.post("/projects/<int:project_id>/branches")
def track_branch(project_id: int) -> ResponseReturnValue:
    check_csrf()
    project = actionable_project(project_id)
    tracked, sync = api_actions.track_branch(project, request.form.get("branch", ""))
    flash(f"Now tracking {tracked.branch}; first sync {sync.id} queued.", "success")
    return _back(tracked.id)
