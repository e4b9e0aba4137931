"""The OpenAPI 3.1 document of the JSON API, generated from a route table and the models.

Each :class:`Operation` says what a route takes and answers in terms of the pydantic
models in ``api_models`` (the same ones ``api.py`` parses and answers with); the schemas
come from pydantic (``models_json_schema``), who may call a route from ``access``'s
``ROUTE_RULES``, and the error answers from what the API really sends: the statuses of
the ``ApiRequestError`` family, with ``{"error": ...}`` as their one shape. A test
checks that every route of the ``api`` and ``sse`` blueprints appears here and nothing
else does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from sync_jobs import defaults
from webhook_app import api_models as m
from webhook_app.access import ROUTE_RULES, RouteRule

REF_TEMPLATE = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Operation:
    """One route: ``path`` is below ``/api/v1`` with ``{name}`` for an integer path
    parameter; ``answers`` maps each success status to its model and meaning;
    ``errors`` maps the statuses the route's own checks answer with to their meaning
    (the ones of sign-in, access and body parsing are added from the rest)."""

    endpoint: str
    method: str
    path: str
    operation_id: str
    summary: str
    answers: Mapping[int, tuple[type[BaseModel] | None, str]]
    errors: Mapping[int, str] = field(default_factory=dict)
    description: str = ""
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    idempotent: bool = False
    paged: bool = False


NOT_FOUND = "Unknown project, or not visible to this person."
STATE_CONFLICT = "The sync is not part of the project's lineage (only successful syncs are)."
QUEUE_DOWN = "Redis could not take the job; repeat the request (see Retry-After)."
NOT_TRACKED = "The branch is not tracked any more (track it again first)."

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "api.list_projects",
        "get",
        "/projects",
        "listProjects",
        "Projects (tracked branches) visible to the person",
        answers={200: (m.ProjectList, "Projects by repository and branch.")},
    ),
    Operation(
        "api.untrack_project",
        "delete",
        "/projects/{project_id}",
        "untrackProject",
        "Stop tracking the branch: no more syncs, gone from the lists",
        description="A soft delete: history and memory stay readable by id, syncs still "
        "queued are superseded, a running one finishes. Tracking the branch again (POST "
        ".../branches) brings the project back. Repeating it is a no-op.",
        answers={200: (m.Untracked, "The project, now untracked.")},
        errors={404: NOT_FOUND},
    ),
    Operation(
        "api.update_project",
        "patch",
        "/projects/{project_id}",
        "updateProject",
        "Turn auto-sync (a sync on every push) on or off",
        description="Off: pushes only record the branch head, so memory_lag shows memory "
        "behind; a manual resync still works. On again: synced to the head if the "
        "branch moved.",
        body=m.UpdateProjectBody,
        answers={200: (m.ProjectSettings, "The project with its new setting.")},
        errors={404: NOT_FOUND},
    ),
    Operation(
        "api.github_branches",
        "get",
        "/projects/{project_id}/github-branches",
        "githubBranches",
        "GitHub's branches of the project's repository, tracked ones marked",
        description="Read from GitHub with the App's token, up to "
        f"{defaults.GITHUB_BRANCHES_MAX_PAGES * defaults.GITHUB_BRANCHES_PER_PAGE} branches "
        "(truncated says whether there are more).",
        answers={200: (m.GitHubBranches, "GitHub's branches.")},
        errors={
            404: NOT_FOUND,
            409: "GitHub refuses the App access to the repository, or no active "
            "installation covers it.",
            502: "GitHub did not answer, or its rate limit stops the call.",
            503: "No GitHub App is configured yet (setup mode).",
        },
    ),
    Operation(
        "api.list_branches",
        "get",
        "/projects/{project_id}/branches",
        "listBranches",
        "Tracked branches of the project's repository",
        answers={200: (m.Branches, "Tracked branches.")},
        errors={404: NOT_FOUND},
    ),
    Operation(
        "api.track_branch",
        "post",
        "/projects/{project_id}/branches",
        "trackBranch",
        "Track another branch of the same repository and queue its first sync",
        body=m.TrackBranchBody,
        answers={201: (m.Tracked, "The new project and its first sync (Location: its status).")},
        errors={
            400: "The branch name is not one git accepts (the answer names the rule).",
            404: NOT_FOUND,
            409: "The branch is already tracked.",
            503: QUEUE_DOWN,
        },
    ),
    Operation(
        "api.project_status",
        "get",
        "/projects/{project_id}/status",
        "projectStatus",
        "Current sync and the newest queued or running one",
        answers={200: (m.Status, "Status.")},
        errors={404: NOT_FOUND},
    ),
    Operation(
        "api.start_sync",
        "post",
        "/projects/{project_id}/syncs",
        "startSync",
        "Manual resync (coalesced with a sync already queued); idempotent",
        body=m.StartSyncBody,
        body_required=False,
        idempotent=True,
        answers={202: (m.Accepted, "Queued; follow events_url (also Location) for progress.")},
        errors={404: NOT_FOUND, 409: NOT_TRACKED, 503: QUEUE_DOWN},
    ),
    Operation(
        "api.history",
        "get",
        "/projects/{project_id}/history",
        "history",
        "The lineage, newest first; all=1 adds every other attempt",
        query=m.HistoryQuery,
        paged=True,
        answers={200: (m.SyncPage, "One page of syncs.")},
        errors={404: NOT_FOUND},
    ),
    Operation(
        "api.restore",
        "post",
        "/projects/{project_id}/restore",
        "restore",
        "Queue a restore of memory to the state of a past successful sync",
        body=m.RestoreBody,
        idempotent=True,
        answers={202: (m.Accepted, "Queued; follow events_url (also Location) for progress.")},
        errors={
            404: "Unknown project, or a sync of another project.",
            409: "The sync is not part of the project's lineage, or the branch is not "
            "tracked any more.",
            503: QUEUE_DOWN,
        },
    ),
    Operation(
        "api.memory",
        "get",
        "/projects/{project_id}/memory",
        "memory",
        "Active memory entries, or those active at a past sync",
        query=m.MemoryQuery,
        paged=True,
        answers={200: (m.MemoryPage, "One page of entries.")},
        errors={404: "Unknown project, or a sync of another project.", 409: STATE_CONFLICT},
    ),
    Operation(
        "api.files",
        "get",
        "/projects/{project_id}/files",
        "files",
        "Tree entries now, or at a past sync",
        query=m.StateQuery,
        paged=True,
        answers={200: (m.FilePage, "One page of files.")},
        errors={404: "Unknown project, or a sync of another project.", 409: STATE_CONFLICT},
    ),
    Operation(
        "api.openapi_document",
        "get",
        "/openapi.json",
        "openapi",
        "This document",
        answers={200: (None, "The OpenAPI 3.1 document.")},
    ),
    Operation(
        "sse.project_sync_events",
        "get",
        "/events/project-sync/{sync_id}",
        "syncEvents",
        "Server-sent events of one sync (event: progress | final)",
        description="Replays from Last-Event-ID or the start, then follows live; a comment "
        f"heartbeat every {defaults.SSE_HEARTBEAT_SECONDS:.0f} s; closes after the final "
        "event. Each event's data is a ProgressEvent "
        "(#/components/schemas/ProgressEvent) as JSON.",
        answers={200: (None, "The event stream.")},
        errors={
            400: "Last-Event-ID is not a stream id.",
            404: "Unknown sync, or not visible to this person.",
        },
    ),
)
"""Every route of the ``api`` and ``sse`` blueprints."""

EVENT_STREAM = "sse.project_sync_events"

# --- What every route of a kind can answer ---------------------------------------------------

AUTH_ERRORS = {
    401: "Nobody is signed in (or GitHub no longer accepts the token): send "
    "Authorization: Bearer <GitHub token>, or sign in at login.",
    403: "Without sign-in the dashboard answers on 127.0.0.1 only, or (for a change) "
    "GitHub does not give the person the permission the action needs.",
    503: "GitHub did not say which repositories the person may see just now; repeat the request.",
}
BODY_ERRORS = {
    400: "The body is not valid JSON, or not a JSON object.",
    415: "The body is not sent as Content-Type: application/json.",
    422: "A body field is unknown, missing or of the wrong type (the answer names it), "
    "or the Idempotency-Key was used before for a different request.",
}
QUERY_ERRORS = {400: "A query parameter is malformed (the answer names it)."}
IDEMPOTENCY_ERRORS = {400: "The Idempotency-Key is not 1 to 255 visible ASCII characters."}

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "description": (
        "Any unique string of 1 to 255 visible ASCII characters: the same key again gets "
        "the sync the first request got (for a different request: 422). Without it, an "
        f"equal request within {defaults.SYNC_REQUEST_DEDUP_SECONDS} s (the "
        "SYNC_REQUEST_DEDUP_SECONDS setting) gets the same sync."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
}
LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "description": "Resume after this stream id.",
    "schema": {"type": "string"},
}
PAGED_HEADERS = {
    "Link": {"description": "RFC 8288 first, last, prev, next", "schema": {"type": "string"}},
    "X-Total-Count": {"description": "Items on every page.", "schema": {"type": "integer"}},
}
LOCATION = {"Location": {"schema": {"type": "string", "format": "uri"}}}
ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "Seconds (when sent).", "schema": {"type": "string"}}},
}

BEARER = "githubToken"
SESSION = "session"


@cache
def _schemas() -> tuple[Mapping[tuple[Any, JsonSchemaMode], Any], dict[str, Any]]:
    """Every model's schema (by model and mode) and the shared component schemas."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m.Error, "serialization")]
    wanted.append((m.ProgressEvent, "serialization"))
    for op in OPERATIONS:
        wanted += [(model, "serialization") for model, _ in op.answers.values() if model]
        if op.body is not None:
            wanted.append((op.body, "validation"))
    unique = list(dict.fromkeys(wanted))
    by_model, top = models_json_schema(unique, ref_template=REF_TEMPLATE)
    return by_model, top.get("$defs", {})


def _json(schema: Any, description: str, headers: Any = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _query_parameters(query: type[BaseModel]) -> list[dict[str, Any]]:
    schema = query.model_json_schema(mode="validation", ref_template=REF_TEMPLATE)
    parameters = []
    for name, prop in schema["properties"].items():
        description = prop.pop("description", "")
        prop.pop("title", None)
        # An optional parameter is left out, never sent as null: keep its one real type.
        kinds = [kind for kind in prop.pop("anyOf", []) if kind != {"type": "null"}]
        if kinds:
            (kind,) = kinds
            prop = {**kind, **{k: v for k, v in prop.items() if k != "default" or v is not None}}
        parameters.append({"name": name, "in": "query", "description": description, "schema": prop})
    return parameters


def _error_answers(op: Operation, error_ref: Any) -> dict[str, Any]:
    """The route's error statuses, each with every reason it can have."""
    reasons: dict[int, list[str]] = {}
    sources: list[Mapping[int, str]] = []
    if ROUTE_RULES[op.endpoint] is not RouteRule.PUBLIC:
        sources.append(AUTH_ERRORS)
    if op.body is not None:
        sources.append(BODY_ERRORS)
    if op.query is not None:
        sources.append(QUERY_ERRORS)
    if op.idempotent:
        sources.append(IDEMPOTENCY_ERRORS)
    for source in (*sources, op.errors):
        for status, reason in source.items():
            reasons.setdefault(status, []).append(reason)
    return {
        str(status): _json(error_ref, " Or: ".join(reasons[status]), ERROR_HEADERS.get(status))
        for status in sorted(reasons)
    }


def _operation(op: Operation, by_model: Mapping[Any, Any]) -> dict[str, Any]:
    error_ref = by_model[(m.Error, "serialization")]
    answers: dict[str, Any] = {}
    for status, (model, description) in op.answers.items():
        headers = {**(PAGED_HEADERS if op.paged else {}), **(LOCATION if status > 200 else {})}
        if op.endpoint == EVENT_STREAM:
            content = {"text/event-stream": {"schema": {"type": "string"}}}
            answers[str(status)] = {"description": description, "content": content}
        elif model is None:
            answers[str(status)] = _json({"type": "object"}, description)
        else:
            answers[str(status)] = _json(by_model[(model, "serialization")], description, headers)
    answers.update(_error_answers(op, error_ref))
    spec: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "responses": answers,
        "security": _security(ROUTE_RULES[op.endpoint]),
    }
    if op.description:
        spec["description"] = op.description
    parameters = _query_parameters(op.query) if op.query else []
    if op.idempotent:
        parameters.append(IDEMPOTENCY_KEY)
    if op.endpoint == EVENT_STREAM:
        parameters.append(LAST_EVENT_ID)
    if parameters:
        spec["parameters"] = parameters
    if op.body is not None:
        schema = by_model[(op.body, "validation")]
        spec["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": schema}},
        }
    return spec


def _security(rule: RouteRule) -> list[dict[str, list[str]]]:
    """Either credential signs a request in; a read may also come without one where the
    dashboard is public (``PUBLIC_DASHBOARD=read``, or no sign-in on 127.0.0.1)."""
    if rule is RouteRule.PUBLIC:
        return []
    signed_in: list[dict[str, list[str]]] = [{BEARER: []}, {SESSION: []}]
    return [*signed_in, {}] if rule is RouteRule.READ else signed_in


def _path_parameters(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}
        for name in names
    ]


def paths() -> dict[str, Any]:
    """The ``paths`` object and the component schemas it refers to."""
    by_model, _ = _schemas()
    found: dict[str, Any] = {}
    for op in OPERATIONS:
        item = found.setdefault(op.path, {})
        if _path_parameters(op.path):
            item["parameters"] = _path_parameters(op.path)
        item[op.method] = _operation(op, by_model)
    return found


def document(*, server_url: str, session_cookie: str = "session") -> dict[str, Any]:
    """The whole document, with the server this app answers on and the name of its
    session cookie."""
    _, schemas = _schemas()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Project Sync API",
            "version": "1",
            "description": (
                "Tracked branches, their sync lineage and memory. Every error is "
                '{"error": "..."} (the Error schema). POST and PATCH bodies must be '
                "application/json objects with exactly the documented fields and types. "
                "Sign in with a GitHub user token (Authorization: Bearer) or the session "
                "cookie of a sign-in at /login."
            ),
        },
        "servers": [{"url": server_url}],
        "paths": paths(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A GitHub user token (Authorization: Bearer <GitHub "
                    "token>); the person sees the repositories GitHub lists for it.",
                },
                SESSION: {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": session_cookie,
                    "description": "The session of a sign-in with GitHub in the browser.",
                },
            },
        },
    }
