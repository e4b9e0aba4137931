"""The only module that spells Redis key names, RQ queue names and RQ job ids.

Everything Project Sync writes to Redis is named under one prefix, the app's
``REDIS_KEY_PREFIX`` setting (``project-sync`` unless set): its own keys start with
``<prefix>:``, its queues and job ids with ``<prefix>-`` (RQ keeps them under its own
``rq:`` keys, named after them). Two deployments with different prefixes can so share one
Redis database: neither takes the other's jobs, reads its locks, sessions or metrics.

The prefix is the current app's when there is an app context, else the one of the last
app built in this process (:func:`use_prefix`, called by ``redis_client.init_app``): a
process serves one app, and code that runs outside a context (gunicorn's hooks, a
streaming response, a thread of a sync) still names its keys like the app it serves.
"""

from __future__ import annotations

import re
import uuid

from flask import current_app, has_app_context

DEFAULT_KEY_PREFIX = "project-sync"
"""The prefix when ``REDIS_KEY_PREFIX`` is not set: the names every deployment had before
the setting existed, so an existing one keeps its queues and keys."""

KEY_PREFIX_SETTING = "REDIS_KEY_PREFIX"
"""The app setting (and environment variable) holding the prefix."""

KEY_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
"""What a prefix may be: it becomes part of RQ queue names and job ids, which RQ accepts
only of letters, digits, ``_`` and ``-``."""

_process_prefix = DEFAULT_KEY_PREFIX


def use_prefix(prefix: str) -> None:
    """Name keys under ``prefix`` wherever no app context says otherwise (see the module)."""
    global _process_prefix
    _process_prefix = prefix


def key_prefix() -> str:
    """The prefix of every key, queue and job id of the app being served."""
    if has_app_context():
        return str(current_app.config.get(KEY_PREFIX_SETTING) or _process_prefix)
    return _process_prefix


KEY_PREFIX = DEFAULT_KEY_PREFIX
"""The default prefix under its old name, for tests and tools that run with the default;
the app's code calls :func:`key_prefix`."""

DELIVERIES_QUEUE = f"{DEFAULT_KEY_PREFIX}-deliveries"
SYNCS_QUEUE = f"{DEFAULT_KEY_PREFIX}-syncs"
MAINTENANCE_QUEUE = f"{DEFAULT_KEY_PREFIX}-maintenance"
ALL_QUEUES = (DELIVERIES_QUEUE, SYNCS_QUEUE, MAINTENANCE_QUEUE)
"""The queue names under the default prefix, for tests and tools that run with the
default; the app's code calls the functions below."""


def deliveries_queue_name() -> str:
    """RQ queue for processing stored webhook deliveries: quick jobs, kept apart so a long
    sync never delays the next delivery."""
    return f"{key_prefix()}-deliveries"


def syncs_queue_name() -> str:
    """RQ queue for sync jobs."""
    return f"{key_prefix()}-syncs"


def maintenance_queue_name() -> str:
    """RQ queue for sweepers and reconcilers."""
    return f"{key_prefix()}-maintenance"


def queue_names() -> tuple[str, ...]:
    """Queue names a worker listens on, most urgent first."""
    return (deliveries_queue_name(), syncs_queue_name(), maintenance_queue_name())


def job_id_prefixes() -> tuple[str, ...]:
    """How the ids of the app's RQ jobs start (deliveries, syncs), for scans of RQ's keys.

    Each ends at the kind's own dash, so a deployment named ``x`` never claims the jobs of
    one named ``x-y`` (whose job ids start ``x-y-``)."""
    return (f"{key_prefix()}-delivery-", f"{key_prefix()}-sync-")


# --- Webhook deliveries and sync coalescing ---------------------------------------------


def delivery_job_id(delivery_id: str) -> str:
    """RQ job id of the job processing one delivery (``X-GitHub-Delivery``).

    Deterministic so the sweeper can ask RQ whether a delivery's job is still alive;
    the receiver checks ``delivery_id`` against :data:`JOB_ID_SAFE` first.
    """
    return f"{key_prefix()}-delivery-{delivery_id}"


def sync_job_id(sync_id: int, *, nonce: str | None = None) -> str:
    """RQ job id of one run attempt of one ProjectSync (``ProjectSync.rq_job_id``).

    Every attempt gets a fresh id (a random nonce unless one is given): RQ silently
    overwrites a job enqueued under an existing id (and ``unique=True`` refuses while a
    finished job's hash is kept), so reusing ids would tie coalescing to RQ's TTLs. The
    id is also the token of the project's running lock, so two jobs of one sync can
    never both run.
    """
    return f"{key_prefix()}-sync-{sync_id}-{nonce or uuid.uuid4().hex[:12]}"


def sync_pending_key(project_id: int) -> str:
    """String key: id of the project's queued (not yet started) sync, or a reservation."""
    return f"{key_prefix()}:sync:pending:{project_id}"


def sync_lock_key(project_id: int) -> str:
    """String key with a TTL: id of the project's running sync (one at a time)."""
    return f"{key_prefix()}:sync:lock:{project_id}"


def sweeper_lock_key() -> str:
    """String key with a TTL: held by the one process sweeping pending deliveries."""
    return f"{key_prefix()}:sweeper:lock"


def maintenance_lock_key(pass_name: str) -> str:
    """String key with a TTL: held by the one maintenance process running that pass."""
    return f"{key_prefix()}:maintenance:lock:{pass_name}"


JOB_ID_SAFE = r"[A-Za-z0-9_-]{1,64}"
"""What a delivery id must look like to become part of an RQ job id (RQ accepts only
letters, digits, ``_`` and ``-``; GitHub's GUIDs are UUIDs)."""


def sync_events_key(sync_id: int) -> str:
    """Redis Stream of one sync's progress events (phase, done, total, message)."""
    return f"{key_prefix()}:sync-events:{sync_id}"


def change_events_key(project_id: int | None = None) -> str:
    """Redis Stream of changes pages show (a sync queued, its progress and end, a branch
    tracked or untracked): of every project, or of one project."""
    base = f"{key_prefix()}:changes"
    return base if project_id is None else f"{base}:{project_id}"


def installation_token_key(installation_github_id: int, scope: str = "") -> str:
    """An installation access token (encrypted), shared by every worker until shortly
    before it expires; ``scope`` names the one repository it was narrowed to, if any."""
    suffix = f":{scope}" if scope else ""
    return f"{key_prefix()}:installation-token:{installation_github_id}{suffix}"


# --- People and setup (the web app) ------------------------------------------------------


def session_key(session_digest: str) -> str:
    """A signed-in or anonymous browser session, encrypted, under the SHA-256 of its id."""
    return f"{key_prefix()}:session:{session_digest}"


def person_access_key(token_digest: str) -> str:
    """What GitHub lists for one user token (login, repositories, permissions), under the
    SHA-256 of the token, for a few minutes."""
    return f"{key_prefix()}:person-access:{token_digest}"


def setup_code_key() -> str:
    """The one-time code /setup asks for in setup mode, printed in the web log."""
    return f"{key_prefix()}:setup-code"


# --- Metrics ----------------------------------------------------------------------------


def metric_key(family: str) -> str:
    """Hash of one metric family's values (field: its label values; see sync_jobs.metrics)."""
    return f"{key_prefix()}:metrics:{family}"


def sync_request_lock_key(project_id: int) -> str:
    """String key with a TTL: held while a person's sync or restore request of the
    project is checked against recent equal requests and created (one at a time)."""
    return f"{key_prefix()}:sync:request-lock:{project_id}"


def compare_cache_key(repository_id: int, base: str, head: str) -> str:
    """String key with a TTL: GitHub's compare answer (status and commit count) of two
    commits of a repository, for the "memory is behind" hint."""
    return f"{key_prefix()}:compare:{repository_id}:{base}...{head}"
