"""The OpenAPI 3.1 document of the JSON API, written by hand next to the views.

A test checks that every route of the ``api`` and ``sse`` blueprints appears here and
nothing else does, so the document cannot drift from the code unnoticed.
"""

from __future__ import annotations

from typing import Any

from sync_jobs import defaults


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


PROJECT_ID = {"name": "project_id", "in": "path", "required": True, "schema": {"type": "integer"}}
PAGING = [
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
    {
        "name": "per_page",
        "in": "query",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": defaults.API_MAX_PER_PAGE,
            "default": defaults.API_DEFAULT_PER_PAGE,
        },
    },
]
AT_SYNC = {
    "name": "sync",
    "in": "query",
    "description": "A successful sync of the project: the state as of that sync.",
    "schema": {"type": "integer", "minimum": 1},
}
PATH_PREFIX = {"name": "path_prefix", "in": "query", "schema": {"type": "string"}}
PAGED_HEADERS = {
    "Link": {"description": "RFC 8288 first, last, prev, next", "schema": {"type": "string"}},
    "X-Total-Count": {"schema": {"type": "integer"}},
}
NOT_FOUND = _json(_ref("Error"), "Unknown project, or not visible to this person.")
BAD_REQUEST = _json(_ref("Error"), "A malformed parameter or body.")
NOT_JSON = _json(_ref("Error"), "The body is not sent as application/json.")
CONFLICT = _json(_ref("Error"), "The sync is not part of the project's lineage.")
QUEUE_DOWN = _json(_ref("Error"), "Redis is unreachable; retry (see Retry-After).")
UNPROCESSABLE = _json(
    _ref("Error"),
    "A body field is unknown, missing or of the wrong type (the error names it), or the "
    "Idempotency-Key was used before for a different request.",
)
NOT_TRACKED = _json(_ref("Error"), "The branch is not tracked any more (track it again first).")
GITHUB_REFUSED = _json(
    _ref("Error"),
    "GitHub refuses the App access to the repository, or no active installation covers it.",
)
GITHUB_DOWN = _json(_ref("Error"), "GitHub did not answer, or its rate limit stops the call.")
NO_APP = _json(_ref("Error"), "No GitHub App is configured yet (setup mode).")
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


def _paged(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "page", "per_page", "total", "pages"],
        "properties": {
            "items": {"type": "array", "items": _ref(item)},
            "page": {"type": "integer"},
            "per_page": {"type": "integer"},
            "total": {"type": "integer"},
            "pages": {"type": "integer"},
        },
    }


ACCEPTED = {
    "description": "Queued; follow events_url for progress.",
    "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}},
    "content": {"application/json": {"schema": _ref("Accepted")}},
}

PATHS: dict[str, Any] = {
    "/projects": {
        "get": {
            "operationId": "listProjects",
            "summary": "Projects (tracked branches) visible to the person",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"items": {"type": "array", "items": _ref("Project")}},
                    },
                    "Projects by repository and branch.",
                )
            },
        }
    },
    "/projects/{project_id}": {
        "parameters": [PROJECT_ID],
        "delete": {
            "operationId": "untrackProject",
            "summary": "Stop tracking the branch: no more syncs, gone from the lists",
            "description": (
                "A soft delete: history and memory stay readable by id, syncs still "
                "queued are superseded, a running one finishes. Tracking the branch "
                "again (POST .../branches) brings the project back. Repeating it is a no-op."
            ),
            "responses": {
                "200": _json(
                    {"type": "object", "properties": {"project": _ref("Project")}},
                    "The project, now untracked.",
                ),
                "404": NOT_FOUND,
            },
        },
        "patch": {
            "operationId": "updateProject",
            "summary": "Turn auto-sync (a sync on every push) on or off",
            "description": (
                "Off: pushes only record the branch head, so memory_lag shows memory "
                "behind; a manual resync still works. On again: synced to the head if "
                "the branch moved."
            ),
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["auto_sync"],
                            "properties": {"auto_sync": {"type": "boolean"}},
                            "additionalProperties": False,
                        }
                    }
                },
            },
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "project": _ref("Project"),
                            "memory_lag": {"oneOf": [_ref("MemoryLag"), {"type": "null"}]},
                        },
                    },
                    "The project with its new setting.",
                ),
                "400": BAD_REQUEST,
                "404": NOT_FOUND,
                "415": NOT_JSON,
                "422": UNPROCESSABLE,
            },
        },
    },
    "/projects/{project_id}/github-branches": {
        "parameters": [PROJECT_ID],
        "get": {
            "operationId": "githubBranches",
            "summary": "GitHub's branches of the project's repository, tracked ones marked",
            "description": (
                f"Read from GitHub with the App's token, up to "
                f"{defaults.GITHUB_BRANCHES_MAX_PAGES * defaults.GITHUB_BRANCHES_PER_PAGE} "
                "branches (truncated says whether there are more)."
            ),
            "responses": {
                "200": _json(_ref("GitHubBranches"), "GitHub's branches."),
                "404": NOT_FOUND,
                "409": GITHUB_REFUSED,
                "502": GITHUB_DOWN,
                "503": NO_APP,
            },
        },
    },
    "/projects/{project_id}/branches": {
        "parameters": [PROJECT_ID],
        "get": {
            "operationId": "listBranches",
            "summary": "Tracked branches of the project's repository",
            "responses": {"200": _json(_ref("Branches"), "Tracked branches."), "404": NOT_FOUND},
        },
        "post": {
            "operationId": "trackBranch",
            "summary": "Track another branch of the same repository and queue its first sync",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["branch"],
                            "properties": {"branch": {"type": "string"}},
                        }
                    }
                },
            },
            "responses": {
                "201": _json(_ref("Tracked"), "The new project and its first sync."),
                "400": BAD_REQUEST,
                "404": NOT_FOUND,
                "409": _json(_ref("Error"), "The branch is already tracked."),
                "415": NOT_JSON,
                "503": QUEUE_DOWN,
            },
        },
    },
    "/projects/{project_id}/status": {
        "parameters": [PROJECT_ID],
        "get": {
            "operationId": "projectStatus",
            "summary": "Current sync and the newest queued or running one",
            "responses": {"200": _json(_ref("Status"), "Status."), "404": NOT_FOUND},
        },
    },
    "/projects/{project_id}/syncs": {
        "parameters": [PROJECT_ID],
        "post": {
            "operationId": "startSync",
            "summary": "Manual resync (coalesced with a sync already queued); idempotent",
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "full": {
                                    "type": "boolean",
                                    "default": False,
                                    "description": "Compare every file, not the stored trees.",
                                }
                            },
                            "additionalProperties": False,
                        }
                    }
                },
            },
            "responses": {
                "202": ACCEPTED,
                "400": BAD_REQUEST,
                "404": NOT_FOUND,
                "409": NOT_TRACKED,
                "415": NOT_JSON,
                "422": UNPROCESSABLE,
                "503": QUEUE_DOWN,
            },
        },
    },
    "/projects/{project_id}/history": {
        "parameters": [PROJECT_ID],
        "get": {
            "operationId": "history",
            "summary": "The lineage, newest first; all=1 adds every other attempt",
            "parameters": [
                *PAGING,
                {"name": "all", "in": "query", "schema": {"type": "string", "enum": ["0", "1"]}},
            ],
            "responses": {
                "200": {**_json(_paged("Sync"), "One page of syncs."), "headers": PAGED_HEADERS},
                "400": BAD_REQUEST,
                "404": NOT_FOUND,
            },
        },
    },
    "/projects/{project_id}/restore": {
        "parameters": [PROJECT_ID],
        "post": {
            "operationId": "restore",
            "summary": "Queue a restore of memory to the state of a past successful sync",
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["sync_id"],
                            "properties": {"sync_id": {"type": "integer", "minimum": 1}},
                            "additionalProperties": False,
                        }
                    }
                },
            },
            "responses": {
                "202": ACCEPTED,
                "400": BAD_REQUEST,
                "404": _json(_ref("Error"), "Unknown project, or a sync of another project."),
                "409": _json(
                    _ref("Error"),
                    "The sync is not part of the project's lineage, or the branch is not "
                    "tracked any more.",
                ),
                "415": NOT_JSON,
                "422": UNPROCESSABLE,
                "503": QUEUE_DOWN,
            },
        },
    },
    "/projects/{project_id}/memory": {
        "parameters": [PROJECT_ID],
        "get": {
            "operationId": "memory",
            "summary": "Active memory entries, or those active at a past sync",
            "parameters": [
                AT_SYNC,
                PATH_PREFIX,
                *PAGING,
                {
                    "name": "content",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["0", "1"]},
                },
            ],
            "responses": {
                "200": {
                    **_json(_paged("MemoryEntry"), "One page of entries."),
                    "headers": PAGED_HEADERS,
                },
                "400": BAD_REQUEST,
                "404": NOT_FOUND,
                "409": CONFLICT,
            },
        },
    },
    "/projects/{project_id}/files": {
        "parameters": [PROJECT_ID],
        "get": {
            "operationId": "files",
            "summary": "Tree entries now, or at a past sync",
            "parameters": [AT_SYNC, PATH_PREFIX, *PAGING],
            "responses": {
                "200": {**_json(_paged("File"), "One page of files."), "headers": PAGED_HEADERS},
                "400": BAD_REQUEST,
                "404": NOT_FOUND,
                "409": CONFLICT,
            },
        },
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document.")},
        }
    },
    "/events/project-sync/{sync_id}": {
        "parameters": [
            {"name": "sync_id", "in": "path", "required": True, "schema": {"type": "integer"}},
            {
                "name": "Last-Event-ID",
                "in": "header",
                "description": "Resume after this stream id.",
                "schema": {"type": "string"},
            },
        ],
        "get": {
            "operationId": "syncEvents",
            "summary": "Server-sent events of one sync (event: progress | final)",
            "description": (
                "Replays from Last-Event-ID or the start, then follows live; a comment "
                f"heartbeat every {defaults.SSE_HEARTBEAT_SECONDS:.0f} s; closes after the "
                "final event. data is a ProgressEvent as JSON."
            ),
            "responses": {
                "200": {
                    "description": "The event stream.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "400": _json(_ref("Error"), "Last-Event-ID is not a stream id."),
                "404": _json(_ref("Error"), "Unknown sync, or not visible to this person."),
            },
        },
    },
}

_NULLABLE_INT = {"type": ["integer", "null"]}
_NULLABLE_STR = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "Sync": {
        "type": "object",
        "required": ["id", "status", "trigger"],
        "properties": {
            "id": {"type": "integer"},
            "project_id": {"type": "integer"},
            "status": {"enum": ["queued", "running", "succeeded", "failed", "superseded"]},
            "trigger": {"enum": ["push", "manual", "install", "reconcile", "restore"]},
            "sequence": _NULLABLE_INT,
            "previous_sync_id": _NULLABLE_INT,
            "restored_from_sync_id": _NULLABLE_INT,
            "base_commit_sha": _NULLABLE_STR,
            "head_commit_sha": _NULLABLE_STR,
            "head_tree_sha": _NULLABLE_STR,
            "files": {
                "type": "object",
                "properties": {
                    k: {"type": "integer"} for k in ("added", "modified", "removed", "unchanged")
                },
            },
            "api_calls": {"type": "integer"},
            "bytes_fetched": {"type": "integer"},
            "mode": _NULLABLE_STR,
            "full_sync_reason": _NULLABLE_STR,
            "phase_seconds": {
                "type": ["object", "null"],
                "additionalProperties": {"type": "number"},
            },
            "queued_at": {"type": "string", "format": "date-time"},
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "duration_seconds": {"type": ["number", "null"]},
            "error": _NULLABLE_STR,
            "attempts": {"type": "integer", "description": "Runs started so far."},
            "waiting_reason": {
                **_NULLABLE_STR,
                "description": "Why an unfinished sync waits (rate limit, GitHub outage, "
                "a lost worker), in words.",
            },
            "retry_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "When a waiting sync runs next.",
            },
            "delivery_id": _NULLABLE_STR,
        },
    },
    "Project": {
        "type": "object",
        "required": ["id", "repository", "branch"],
        "properties": {
            "id": {"type": "integer"},
            "repository": {"type": "string"},
            "repository_id": {"type": "integer"},
            "branch": {"type": "string"},
            "default_branch": {"type": "string"},
            "auto_sync": {"type": "boolean"},
            "tracked": {"type": "boolean"},
            "untracked_at": {"type": ["string", "null"], "format": "date-time"},
            "stopped_reason": _NULLABLE_STR,
            "current_sync": {"oneOf": [_ref("Sync"), {"type": "null"}]},
        },
    },
    "MemoryLag": {
        "type": "object",
        "description": "Memory is behind the branch head (null where it is not).",
        "required": ["branch_head_sha", "synced_sha", "behind_by", "restored"],
        "properties": {
            "branch_head_sha": {"type": "string", "description": "The last known head."},
            "synced_sha": {"type": "string", "description": "The commit memory holds."},
            "behind_by": {
                **_NULLABLE_INT,
                "description": "Commits memory lacks (GitHub's compare); null if unknown.",
            },
            "restored": {
                "type": "boolean",
                "description": "Memory holds a restored state; the next resync moves it "
                "to the head.",
            },
        },
    },
    "GitHubBranches": {
        "type": "object",
        "required": ["repository", "items", "truncated"],
        "properties": {
            "repository": {"type": "string"},
            "default_branch": {"type": "string"},
            "truncated": {"type": "boolean"},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "sha", "tracked", "project_id"],
                    "properties": {
                        "name": {"type": "string"},
                        "sha": {"type": "string"},
                        "tracked": {"type": "boolean"},
                        "project_id": _NULLABLE_INT,
                        "default": {"type": "boolean"},
                    },
                },
            },
        },
    },
    "Branches": {
        "type": "object",
        "properties": {
            "repository": {"type": "string"},
            "default_branch": {"type": "string"},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "tracked": {"type": "boolean"},
                        "default": {"type": "boolean"},
                        "project_id": {"type": "integer"},
                        "auto_sync": {"type": "boolean"},
                        "stopped_reason": _NULLABLE_STR,
                        "current_sync": {"oneOf": [_ref("Sync"), {"type": "null"}]},
                    },
                },
            },
        },
    },
    "Status": {
        "type": "object",
        "properties": {
            "project": _ref("Project"),
            "current_sync": {"oneOf": [_ref("Sync"), {"type": "null"}]},
            "active_sync": {"oneOf": [_ref("Sync"), {"type": "null"}]},
            "events_url": {"type": ["string", "null"], "format": "uri"},
            "memory_lag": {"oneOf": [_ref("MemoryLag"), {"type": "null"}]},
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["sync", "events_url"],
        "properties": {"sync": _ref("Sync"), "events_url": {"type": "string", "format": "uri"}},
    },
    "Tracked": {
        "type": "object",
        "properties": {
            "project": _ref("Project"),
            "sync": _ref("Sync"),
            "events_url": {"type": "string", "format": "uri"},
        },
    },
    "MemoryEntry": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "path": {"type": "string"},
            "blob_sha": {"type": "string"},
            "size": {"type": "integer"},
            "created_in_sync_id": {"type": "integer"},
            "superseded_in_sync_id": _NULLABLE_INT,
            "restored_from_entry_id": _NULLABLE_INT,
            "content": _NULLABLE_STR,
        },
    },
    "File": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "path": {"type": "string"},
            "mode": {"enum": ["100644", "100755", "120000", "160000", "040000"]},
            "sha": {"type": "string"},
            "size": _NULLABLE_INT,
            "valid_from_sync_id": {"type": "integer"},
            "valid_to_sync_id": _NULLABLE_INT,
        },
    },
    "ProgressEvent": {
        "type": "object",
        "properties": {
            "sync_id": {"type": "integer"},
            "phase": {"enum": ["resolve", "diff", "fetch", "apply", "retry", "done"]},
            "done": {"type": "integer"},
            "total": {"type": "integer"},
            "message": {"type": "string"},
            "outcome": {"enum": ["succeeded", "failed", "superseded"]},
        },
    },
}


def document(*, server_url: str) -> dict[str, Any]:
    """The whole document, with the server this app answers on."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Project Sync API",
            "version": "1",
            "description": (
                "Tracked branches, their sync lineage and memory. Errors are "
                '{"error": "..."}. POST bodies must be application/json.'
            ),
        },
        "servers": [{"url": server_url}],
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }
