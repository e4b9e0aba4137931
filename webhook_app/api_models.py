"""The JSON API's shapes as pydantic models: what a request may send, what an answer holds.

One set of types does both jobs the API has: ``api.py`` parses every request body and
query string through them and builds every answer with them, and ``openapi.py``
generates the document from their JSON Schemas. A field added to an answer without a
place in its model fails the view in the tests, so the document cannot fall behind.

Bodies are strict and closed (``extra="forbid"``, ``strict=True``): an unknown key is a
typo, never ignored, and ``"yes"`` is not a boolean nor ``1`` an integer, so a client
learns of its mistake at once. Query strings are text by nature, so their models
convert (``page=2`` is an integer) and ignore parameters they do not know.
:func:`problems` turns pydantic's errors into the sentence the error answer carries,
naming each field.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models import StopKind, SyncMode, SyncStatus, SyncTrigger
from sync_jobs import defaults
from sync_jobs.progress import Phase

DateTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
"""A UTC time as ISO 8601 text (``datetime.isoformat``), as the rows are shown."""

Url = Annotated[str, Field(json_schema_extra={"format": "uri"})]


ROW_ID_LIMIT = 2**31 - 1
"""The highest row id: ids are the databases' INTEGER keys. An id asked for beyond it
names no row; refused before a query, since SQLite's driver fails on integers past 64
bits instead of finding nothing."""


# --- Requests -------------------------------------------------------------------------------


class Body(BaseModel):
    """A request body: a closed JSON object whose fields have exactly their JSON type."""

    model_config = ConfigDict(extra="forbid", strict=True)


class StartSyncBody(Body):
    """``POST .../syncs``; an empty body (or none) asks for a delta sync."""

    full: bool = Field(
        default=False,
        description="true or false: compare every file instead of the stored trees.",
    )


class RestoreBody(Body):
    """``POST .../restore``."""

    sync_id: int = Field(
        ge=1, le=ROW_ID_LIMIT, description="the id of a past successful sync of the project"
    )


class TrackBranchBody(Body):
    """``POST .../branches``; the name is checked against git's rules by the action
    (400 naming the rule), since JSON Schema cannot say them all."""

    branch: str = Field(
        description="a git branch name (no spaces, none of ~^:?*[\\, no '..', '@{' or "
        "'//', no leading or trailing '/', not ending in '.' or '.lock')"
    )


class UpdateProjectBody(Body):
    """``PATCH /projects/{id}``."""

    auto_sync: bool = Field(description="true or false: sync on every push")


class Query(BaseModel):
    """Query parameters: text converted to their types; unknown ones are ignored."""

    model_config = ConfigDict(extra="ignore")


PAGE_LIMIT = ROW_ID_LIMIT
"""The highest page number asked for: beyond it every page is empty anyway (row ids are
below 2**31), and the database refuses an offset that does not fit 64 bits."""


class PageQuery(Query):
    page: int = Field(
        default=1, ge=1, le=PAGE_LIMIT, description=f"a page number, 1 to {PAGE_LIMIT}"
    )
    per_page: int = Field(
        default=defaults.API_DEFAULT_PER_PAGE,
        ge=1,
        le=defaults.API_MAX_PER_PAGE,
        description=f"a number of items per page, 1 to {defaults.API_MAX_PER_PAGE}",
    )


class HistoryQuery(PageQuery):
    all: bool = Field(
        default=False,
        description="true or false (1 or 0): add failed, superseded and unfinished attempts",
    )


class StateQuery(PageQuery):
    sync: int | None = Field(
        default=None,
        ge=1,
        le=ROW_ID_LIMIT,
        description="the id of a successful sync of the project: the state as of that sync",
    )
    # No stored path holds a NUL (git forbids it), and PostgreSQL text cannot: a prefix
    # with one is the client's mistake (400), never a query that fails.
    path_prefix: str | None = Field(
        default=None,
        pattern=r"^[^\x00]*$",
        description="a path prefix, without NUL characters: only paths that start with it",
    )


class MemoryQuery(StateQuery):
    content: bool = Field(
        default=False, description="true or false (1 or 0): include each entry's text"
    )


# --- Answers --------------------------------------------------------------------------------


class Answer(BaseModel):
    """An answer body; closed, so a view cannot add a field the document lacks."""

    model_config = ConfigDict(extra="forbid")


class Error(Answer):
    """Every error answer: 4xx and 5xx alike."""

    error: str = Field(description="What is wrong, in words, and what to do about it.")
    login: str | None = Field(
        default=None, description="On 401: where a person signs in with GitHub."
    )


class FileCounts(Answer):
    added: int
    modified: int
    removed: int
    unchanged: int


class Sync(Answer):
    """One sync attempt (or restore) of a project."""

    id: int
    project_id: int
    status: SyncStatus
    trigger: SyncTrigger
    sequence: int | None = Field(description="Its place in the lineage; null unless succeeded.")
    previous_sync_id: int | None
    restored_from_sync_id: int | None
    base_commit_sha: str | None
    head_commit_sha: str | None
    head_tree_sha: str | None
    files: FileCounts
    api_calls: int
    bytes_fetched: int
    mode: SyncMode | None = Field(
        description="How it ran: what it compared (delta, full) and how content came "
        "(+blobs, +tarball, +git, +git+blobs), or noop, restore; null until it ran."
    )
    full_sync_reason: str | None
    phase_seconds: dict[str, float] | None
    queued_at: DateTime
    started_at: DateTime | None
    finished_at: DateTime | None
    duration_seconds: float | None
    error: str | None
    attempts: int = Field(description="Runs started so far.")
    waiting_reason: str | None = Field(
        description="Why an unfinished sync waits (rate limit, GitHub outage, a lost worker)."
    )
    retry_at: DateTime | None = Field(description="When a waiting sync runs next.")
    delivery_id: str | None


ProjectStopKind = Annotated[
    StopKind | None, Field(description="Why the project stopped syncing; null while it syncs.")
]
StoppedReason = Annotated[str | None, Field(description="Why it stopped, in words for people.")]


class Project(Answer):
    """A tracked (or once tracked) branch of a repository."""

    id: int
    repository: str
    repository_id: int
    branch: str
    default_branch: str
    auto_sync: bool
    tracked: bool
    untracked_at: DateTime | None
    stop_kind: ProjectStopKind
    stopped_reason: StoppedReason
    current_sync: Sync | None


class MemoryLag(Answer):
    """Memory is behind the branch head (the field is null where it is not)."""

    branch_head_sha: str = Field(description="The last known head.")
    synced_sha: str = Field(description="The commit memory holds.")
    behind_by: int | None = Field(description="Commits memory lacks; null if GitHub can't say.")
    restored: bool = Field(description="Memory holds a restored state on purpose.")


class ProjectList(Answer):
    items: list[Project]


class Untracked(Answer):
    project: Project


class ProjectSettings(Answer):
    project: Project
    memory_lag: MemoryLag | None


class GitHubBranch(Answer):
    name: str
    sha: str
    tracked: bool
    project_id: int | None = Field(description="The project tracking it, if any.")
    default: bool


class GitHubBranches(Answer):
    repository: str
    default_branch: str
    items: list[GitHubBranch]
    truncated: bool = Field(description="GitHub has more branches than were read.")


class Branch(Answer):
    name: str
    tracked: bool
    default: bool
    project_id: int
    auto_sync: bool
    stop_kind: ProjectStopKind
    stopped_reason: StoppedReason
    current_sync: Sync | None


class Branches(Answer):
    repository: str
    default_branch: str
    items: list[Branch]


class Status(Answer):
    project: Project
    current_sync: Sync | None = Field(description="The latest applied sync.")
    active_sync: Sync | None = Field(description="The newest queued or running one.")
    events_url: Url | None
    memory_lag: MemoryLag | None


class Accepted(Answer):
    sync: Sync
    events_url: Url = Field(description="Server-sent events of the sync's progress.")


class Tracked(Answer):
    project: Project
    sync: Sync
    events_url: Url


class Paged(Answer):
    page: int
    per_page: int
    total: int
    pages: int


class SyncPage(Paged):
    items: list[Sync]


class MemoryEntry(Answer):
    id: int
    path: str
    blob_sha: str
    size: int
    created_in_sync_id: int
    superseded_in_sync_id: int | None
    restored_from_entry_id: int | None
    content: str | None = Field(
        default=None, description="With content=1 only: the file's text; null for binary."
    )
    encoding: str | None = Field(
        default=None, description="With content=1 only: the codec that gives back its bytes."
    )


class MemoryPage(Paged):
    items: list[MemoryEntry]


class File(Answer):
    id: int
    path: str
    mode: str = Field(description="The git mode: 100644, 100755, 120000 or 160000.")
    sha: str = Field(description="The blob SHA, or the commit SHA of a submodule.")
    size: int | None
    valid_from_sync_id: int
    valid_to_sync_id: int | None


class FilePage(Paged):
    items: list[File]


class ProgressEvent(Answer):
    """The ``data`` of one server-sent event of a sync (``event: progress`` or ``final``)."""

    sync_id: int
    phase: Phase
    done: int
    total: int
    message: str
    bytes: int
    percent: float | None
    outcome: str | None = Field(default=None, description="On the final event only.")


def dump(answer: Answer) -> dict[str, Any]:
    """The answer as JSON data; fields left unset on purpose (``content``) are left out."""
    return answer.model_dump(mode="json", exclude_unset=True)


# --- Errors in words ---------------------------------------------------------------------------

EXPECTED = {
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "string_type": "a string",
}
"""What a field of the wrong type must be, by pydantic's error type."""


def problems(error: ValidationError, model: type[BaseModel]) -> str:
    """Every problem pydantic found, one sentence each naming the field (and, for an
    unknown one, the fields there are)."""
    return " ".join(_problem(detail, model) for detail in error.errors())


def _problem(detail: Any, model: type[BaseModel]) -> str:
    name = ".".join(str(part) for part in detail["loc"]) or "the body"
    kind = detail["type"]
    if kind == "extra_forbidden":
        known = ", ".join(sorted(model.model_fields)) or "none"
        return f"Unknown field {name!r}; known fields: {known}."
    if kind == "missing":
        return f"{name} is required."
    got = json.dumps(detail.get("input"), default=str)
    if kind in EXPECTED:
        return f"{name} must be {EXPECTED[kind]}, got {got}."
    field = model.model_fields.get(str(detail["loc"][0])) if detail["loc"] else None
    meaning = field.description if field is not None and field.description else "valid"
    message = str(detail["msg"])
    return f"{name} must be {meaning} ({message[:1].lower()}{message[1:]}), got {got}."
