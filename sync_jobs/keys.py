"""The only module that spells Redis key names, RQ queue names and RQ job ids.

Everything Project Sync writes to Redis starts with :data:`KEY_PREFIX`, so one Redis
can serve several deployments (or test runs) and the keys are easy to find.
"""

from __future__ import annotations

import uuid

KEY_PREFIX = "project-sync"
"""Namespace of every key this project writes itself (RQ's own keys start with ``rq:``)."""

DELIVERIES_QUEUE = "project-sync-deliveries"
"""RQ queue for processing stored webhook deliveries: quick jobs, kept apart so a long
sync never delays the next delivery."""

SYNCS_QUEUE = "project-sync-syncs"
"""RQ queue for sync jobs."""

MAINTENANCE_QUEUE = "project-sync-maintenance"
"""RQ queue for sweepers and reconcilers."""

ALL_QUEUES = (DELIVERIES_QUEUE, SYNCS_QUEUE, MAINTENANCE_QUEUE)
"""Queue names a worker listens on, most urgent first."""


# --- Webhook deliveries and sync coalescing ---------------------------------------------


def delivery_job_id(delivery_id: str) -> str:
    """RQ job id of the job processing one delivery (``X-GitHub-Delivery``).

    Deterministic so the sweeper can ask RQ whether a delivery's job is still alive;
    the receiver checks ``delivery_id`` against :data:`JOB_ID_SAFE` first.
    """
    return f"{KEY_PREFIX}-delivery-{delivery_id}"


def sync_job_id(sync_id: int, *, nonce: str | None = None) -> str:
    """RQ job id of one run attempt of one ProjectSync (``ProjectSync.rq_job_id``).

    Every attempt gets a fresh id (a random nonce unless one is given): RQ silently
    overwrites a job enqueued under an existing id (and ``unique=True`` refuses while a
    finished job's hash is kept), so reusing ids would tie coalescing to RQ's TTLs. The
    id is also the token of the project's running lock, so two jobs of one sync can
    never both run.
    """
    return f"{KEY_PREFIX}-sync-{sync_id}-{nonce or uuid.uuid4().hex[:12]}"


def sync_pending_key(project_id: int) -> str:
    """String key: id of the project's queued (not yet started) sync, or a reservation."""
    return f"{KEY_PREFIX}:sync:pending:{project_id}"


def sync_lock_key(project_id: int) -> str:
    """String key with a TTL: id of the project's running sync (one at a time)."""
    return f"{KEY_PREFIX}:sync:lock:{project_id}"


def sweeper_lock_key() -> str:
    """String key with a TTL: held by the one process sweeping pending deliveries."""
    return f"{KEY_PREFIX}:sweeper:lock"


def maintenance_lock_key(pass_name: str) -> str:
    """String key with a TTL: held by the one maintenance process running that pass."""
    return f"{KEY_PREFIX}:maintenance:lock:{pass_name}"


JOB_ID_SAFE = r"[A-Za-z0-9_-]{1,64}"
"""What a delivery id must look like to become part of an RQ job id (RQ accepts only
letters, digits, ``_`` and ``-``; GitHub's GUIDs are UUIDs)."""


def sync_events_key(sync_id: int) -> str:
    """Redis Stream of one sync's progress events (phase, done, total, message)."""
    return f"{KEY_PREFIX}:sync-events:{sync_id}"


def installation_token_key(installation_github_id: int, scope: str = "") -> str:
    """An installation access token (encrypted), shared by every worker until shortly
    before it expires; ``scope`` names the one repository it was narrowed to, if any."""
    suffix = f":{scope}" if scope else ""
    return f"{KEY_PREFIX}:installation-token:{installation_github_id}{suffix}"


# --- People and setup (webhook_app) ------------------------------------------------------


def session_key(session_digest: str) -> str:
    """A signed-in or anonymous browser session, encrypted, under the SHA-256 of its id."""
    return f"{KEY_PREFIX}:session:{session_digest}"


def person_access_key(token_digest: str) -> str:
    """What GitHub lists for one user token (login, repositories, permissions), under the
    SHA-256 of the token, for a few minutes."""
    return f"{KEY_PREFIX}:person-access:{token_digest}"


def setup_code_key() -> str:
    """The one-time code /setup asks for in setup mode, printed in the web log."""
    return f"{KEY_PREFIX}:setup-code"


# --- Metrics ----------------------------------------------------------------------------


def metric_key(family: str) -> str:
    """Hash of one metric family's values (field: its label values; see sync_jobs.metrics)."""
    return f"{KEY_PREFIX}:metrics:{family}"
