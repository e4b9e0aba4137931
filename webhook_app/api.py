"""The JSON API under ``/api/v1``: projects, their branches, syncs, lineage and memory.

Views are thin: they find the project through ``api_queries`` (which applies the
person's visibility), call an action from ``api_actions`` or a read from
``models.queries``, and answer with a model of ``api_models``. Bodies and query strings
are parsed through those models too (422 naming the field for a body, 400 for a query
parameter). Every error is ``{"error": "..."}`` with the status of the
``ApiRequestError`` raised; the OpenAPI document (``openapi.py``) is generated from the
same models, and a test keeps its route table in step with the routes here.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import defer, selectinload
from werkzeug.exceptions import HTTPException

from models import Blob, MemoryEntry, Project, ProjectSync, RepositoryFile, db
from models.queries import files_at, lineage, memory_entries
from webhook_app import api_actions
from webhook_app import api_models as m
from webhook_app.access import current_access
from webhook_app.api_queries import (
    Page,
    UnprocessableRequestError,
    actionable_project,
    all_attempts,
    github_branch_list,
    latest_unfinished,
    memory_content,
    memory_lag,
    paginate,
    project_summary,
    restrict_to_visible,
    sync_of_project,
    sync_summary,
    visible_project,
    visible_projects,
)
from webhook_app.errors import ApiRequestError, InvalidParameterError, UnsupportedMediaTypeError
from webhook_app.openapi import document

B = TypeVar("B", bound=BaseModel)

API_PREFIX = "/api"
"""Every JSON endpoint lives below this path (the current version is v1)."""

bp = Blueprint("api", __name__, url_prefix=f"{API_PREFIX}/v1")
# Who may call each route is access.py's ROUTE_RULES; every project is found through
# api_queries, which applies the person's visibility (and permission, for actions).


@bp.errorhandler(ApiRequestError)
def _api_error(error: ApiRequestError) -> ResponseReturnValue:
    response = jsonify(error=error.message)
    if error.status == 503:
        response.headers["Retry-After"] = "5"
    return response, error.status


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> ResponseReturnValue:
    return jsonify(error=error.description or error.name), error.code or 500


@bp.app_errorhandler(404)
@bp.app_errorhandler(405)
def _unrouted(error: HTTPException) -> ResponseReturnValue:
    # A URL that matches no route never reaches this blueprint's own handlers; API
    # clients under /api/ still get JSON, everything else Flask's page.
    if request.path.startswith(API_PREFIX + "/"):
        return _http_error(error)
    return error


def events_url(sync_id: int) -> str:
    return url_for("sse.project_sync_events", sync_id=sync_id, _external=True)


def _answer(answer: m.Answer, status: int = 200, headers: Any = None) -> ResponseReturnValue:
    return jsonify(m.dump(answer)), status, headers or {}


def _body(model: type[B]) -> B:
    """The body, a JSON object, as ``model``: 415 unless sent as JSON, 400 if it is no
    JSON object, 422 naming every field that is unknown, missing or of another type (a
    typo is never silently ignored). No body at all is an empty object."""
    if not request.is_json:
        raise UnsupportedMediaTypeError("Send Content-Type: application/json.")
    raw = request.get_data()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
        raise InvalidParameterError("The body is not valid JSON; send a JSON object.") from None
    if not isinstance(data, dict):
        raise InvalidParameterError(
            f"The body must be a JSON object {{...}}, got {_json_kind(data)}."
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UnprocessableRequestError(m.problems(exc, model)) from None


def _json_kind(data: object) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number"}
    return "null" if data is None else kinds.get(type(data), "a number")


def _query(model: type[B]) -> B:
    """The query string as ``model``; 400 naming each malformed parameter."""
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise InvalidParameterError(m.problems(exc, model)) from None


def _page_args(query: m.PageQuery) -> dict[str, int]:
    return {"page": query.page, "per_page": query.per_page}


def _paged(
    model: type[m.Paged], items: list[Any], page: Page, endpoint: str, **values: Any
) -> Response:
    """A list answer with RFC 8288 ``Link`` headers and the total in ``X-Total-Count``."""
    answer = model.model_validate(
        {
            "items": items,
            "page": page.number,
            "per_page": page.per_page,
            "total": page.total,
            "pages": page.last,
        }
    )
    response = jsonify(m.dump(answer))
    args = {k: v for k, v in request.args.items() if k not in ("page", "per_page")}

    def link(number: int) -> str:
        return url_for(
            endpoint, **values, **args, page=number, per_page=page.per_page, _external=True
        )

    links = [f'<{link(1)}>; rel="first"', f'<{link(page.last)}>; rel="last"']
    if page.number > 1:
        links.append(f'<{link(min(page.number - 1, page.last))}>; rel="prev"')
    if page.number < page.last:
        links.append(f'<{link(page.number + 1)}>; rel="next"')
    response.headers["Link"] = ", ".join(links)
    response.headers["X-Total-Count"] = str(page.total)
    return response


def _request_key() -> str | None:
    """The ``Idempotency-Key`` header (draft-ietf-httpapi-idempotency-key-header), if sent."""
    key = request.headers.get("Idempotency-Key")
    return key.strip().strip('"') if key is not None else None


def _accepted(sync: ProjectSync) -> ResponseReturnValue:
    answer = m.Accepted.model_validate(
        {"sync": sync_summary(sync), "events_url": events_url(sync.id)}
    )
    return _answer(answer, 202, {"Location": events_url(sync.id)})


def _at_sync(project: Project, query: m.StateQuery) -> ProjectSync | None:
    if query.sync is None:
        return None
    return sync_of_project(project, query.sync, in_lineage=True)


# --- Projects ---------------------------------------------------------------------------


@bp.get("/projects")
def list_projects() -> ResponseReturnValue:
    """Every project the person may see, with its current sync."""
    items = [project_summary(p) for p in visible_projects()]
    return _answer(m.ProjectList.model_validate({"items": items}))


@bp.delete("/projects/<int:project_id>")
def untrack_project(project_id: int) -> ResponseReturnValue:
    """Stop tracking the branch (history kept; tracking it again brings it back)."""
    project = actionable_project(project_id)
    api_actions.untrack_branch(project)
    return _answer(m.Untracked.model_validate({"project": project_summary(project)}))


@bp.patch("/projects/<int:project_id>")
def update_project(project_id: int) -> ResponseReturnValue:
    """Change a project's settings: ``{"auto_sync": false}`` stops syncing on push."""
    project = actionable_project(project_id)
    body = _body(m.UpdateProjectBody)
    api_actions.set_auto_sync(project, body.auto_sync)
    answer = {"project": project_summary(project), "memory_lag": memory_lag(project)}
    return _answer(m.ProjectSettings.model_validate(answer))


@bp.get("/projects/<int:project_id>/github-branches")
def github_branches(project_id: int) -> ResponseReturnValue:
    """GitHub's branches of the project's repository, the tracked ones marked."""
    project = visible_project(project_id)
    items, truncated = github_branch_list(project)
    repository = project.repository
    answer = {
        "repository": repository.full_name,
        "default_branch": repository.default_branch,
        "items": items,
        "truncated": truncated,
    }
    return _answer(m.GitHubBranches.model_validate(answer))


@bp.get("/projects/<int:project_id>/branches")
def list_branches(project_id: int) -> ResponseReturnValue:
    """Tracked branches of the project's repository (the ones this app syncs)."""
    project = visible_project(project_id)
    query = restrict_to_visible(
        select(Project)
        .where(Project.repository_id == project.repository_id, Project.tracked.is_(True))
        .options(selectinload(Project.current_sync))
        .order_by(Project.branch),
        current_access(),
    )
    repository = project.repository
    branches = [
        {
            "name": p.branch,
            "tracked": True,
            "default": p.branch == repository.default_branch,
            "project_id": p.id,
            "auto_sync": p.auto_sync,
            "stop_kind": p.stop_kind,
            "stopped_reason": p.stopped_reason,
            "current_sync": sync_summary(p.current_sync),
        }
        for p in db.session.scalars(query)
    ]
    answer = {
        "repository": repository.full_name,
        "default_branch": repository.default_branch,
        "items": branches,
    }
    return _answer(m.Branches.model_validate(answer))


@bp.post("/projects/<int:project_id>/branches")
def track_branch(project_id: int) -> ResponseReturnValue:
    """Start tracking another branch of the same repository; its first sync is queued."""
    project = actionable_project(project_id)
    body = _body(m.TrackBranchBody)
    tracked, sync = api_actions.track_branch(project, body.branch)
    location = url_for("api.project_status", project_id=tracked.id, _external=True)
    answer = {
        "project": project_summary(tracked),
        "sync": sync_summary(sync),
        "events_url": events_url(sync.id),
    }
    return _answer(m.Tracked.model_validate(answer), 201, {"Location": location})


@bp.get("/projects/<int:project_id>/status")
def project_status(project_id: int) -> ResponseReturnValue:
    """The current (latest applied) sync, and the newest queued or running one if any."""
    project = visible_project(project_id)
    active = latest_unfinished(project.id)
    answer = {
        "project": project_summary(project),
        "current_sync": sync_summary(project.current_sync),
        "active_sync": sync_summary(active),
        "events_url": events_url(active.id) if active else None,
        "memory_lag": memory_lag(project),
    }
    return _answer(m.Status.model_validate(answer))


@bp.post("/projects/<int:project_id>/syncs")
def start_sync(project_id: int) -> ResponseReturnValue:
    """A manual resync, ``{"full": true}`` for a full one; idempotent (an equal request
    within seconds, or one with the same ``Idempotency-Key``, gets the same sync)."""
    project = actionable_project(project_id)
    body = _body(m.StartSyncBody)
    return _accepted(api_actions.start_sync(project, full=body.full, request_key=_request_key()))


@bp.get("/projects/<int:project_id>/history")
def history(project_id: int) -> ResponseReturnValue:
    """The lineage newest first; ``all=1`` adds failed, superseded and unfinished attempts."""
    project = visible_project(project_id)
    args = _query(m.HistoryQuery)
    query = all_attempts(project.id) if args.all else lineage(project.id)
    rows, page = paginate(query, _page_args(args))
    items = [sync_summary(s) for s in rows]
    return _paged(m.SyncPage, items, page, "api.history", project_id=project.id)


@bp.post("/projects/<int:project_id>/restore")
def restore(project_id: int) -> ResponseReturnValue:
    """Queue a restore of the state at a past successful sync: 202 with the new sync;
    idempotent like a resync."""
    project = actionable_project(project_id)
    body = _body(m.RestoreBody)
    return _accepted(api_actions.start_restore(project, body.sync_id, request_key=_request_key()))


# --- Memory and files ---------------------------------------------------------------------


@bp.get("/projects/<int:project_id>/memory")
def memory(project_id: int) -> ResponseReturnValue:
    """Active memory entries, or those active at ``sync``; ``content=1`` adds the text."""
    project = visible_project(project_id)
    args = _query(m.MemoryQuery)
    with_content = args.content
    loader = selectinload(MemoryEntry.blob)
    query = memory_entries(project.id, sync=_at_sync(project, args)).options(
        loader if with_content else loader.options(defer(Blob.content), defer(Blob.content_bytes))
    )
    if args.path_prefix:
        query = query.where(MemoryEntry.path.startswith(args.path_prefix, autoescape=True))
    rows, page = paginate(query, _page_args(args))
    items = []
    for entry in rows:
        item: dict[str, Any] = {
            "id": entry.id,
            "path": entry.path,
            "blob_sha": entry.blob.sha,
            "size": entry.blob.size,
            "created_in_sync_id": entry.created_in_sync_id,
            "superseded_in_sync_id": entry.superseded_in_sync_id,
            "restored_from_entry_id": entry.restored_from_entry_id,
        }
        if with_content:
            item.update(memory_content(entry.blob))
        items.append(item)
    return _paged(m.MemoryPage, items, page, "api.memory", project_id=project.id)


@bp.get("/projects/<int:project_id>/files")
def files(project_id: int) -> ResponseReturnValue:
    """Tree entries now, or at ``sync``: path, git mode, blob (or submodule commit) SHA."""
    project = visible_project(project_id)
    args = _query(m.StateQuery)
    query = files_at(project.id, sync=_at_sync(project, args))
    if args.path_prefix:
        query = query.where(RepositoryFile.path.startswith(args.path_prefix, autoescape=True))
    rows, page = paginate(query, _page_args(args))
    items = [
        {
            "id": f.id,
            "path": f.path,
            "mode": f.mode,
            "sha": f.sha,
            "size": f.size,
            "valid_from_sync_id": f.valid_from_sync_id,
            "valid_to_sync_id": f.valid_to_sync_id,
        }
        for f in rows
    ]
    return _paged(m.FilePage, items, page, "api.files", project_id=project.id)


@bp.get("/openapi.json")
def openapi_document() -> ResponseReturnValue:
    """The OpenAPI 3.1 description of this API (generated from ``api_models``)."""
    base = url_for("api.list_projects", _external=True).removesuffix("/projects")
    cookie = current_app.config.get("SESSION_COOKIE_NAME", "session")
    return jsonify(document(server_url=base, session_cookie=cookie))
