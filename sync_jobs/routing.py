"""Which processing function handles which delivery: a table, looked up with :func:`fetch`.

The delivery job routes with it (:mod:`sync_jobs.deliveries`), and the receiver asks
:func:`handles` whether an event is worth queueing at all; the table lives with the
handlers it names, so the receiver imports it from here.

Keys are (event, action). An action of ``None`` in the table matches any action of
that event: ``push`` and ``delete`` have no action, and a future action GitHub adds to
them should not stop a push from syncing. Events in no key are stored as ignored by
the receiver and never queued; an unlisted action of a listed event is processed and
recorded as ignored with its reason, so it is visible on the delivery row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sync_jobs import installations
from sync_jobs.installations import Outcome


class Handler(Protocol):
    def __call__(self, payload: Mapping[str, Any], *, delivery_id: str) -> Outcome: ...


PING_EVENT = "ping"
"""Answered by the receiver itself with GitHub's zen; nothing to process."""

ROUTES: Mapping[tuple[str, str | None], Handler] = {
    ("installation", "created"): installations.installation_created,
    ("installation", "deleted"): installations.installation_deleted,
    ("installation", "suspend"): installations.installation_suspended,
    ("installation", "unsuspend"): installations.installation_unsuspended,
    ("installation", "new_permissions_accepted"): installations.installation_refreshed,
    ("installation_repositories", "added"): installations.repositories_added,
    ("installation_repositories", "removed"): installations.repositories_removed,
    ("repository", "renamed"): installations.repository_updated,
    ("repository", "transferred"): installations.repository_updated,
    ("repository", "edited"): installations.repository_updated,
    ("repository", "privatized"): installations.repository_updated,
    ("repository", "publicized"): installations.repository_updated,
    ("repository", "deleted"): installations.repository_deleted,
    ("delete", None): installations.ref_deleted,
    ("push", None): installations.push,
}

HANDLED_EVENTS = frozenset(event for event, _action in ROUTES)
"""Events worth a processing job; anything else is acknowledged and stored as ignored."""


def handles(event: str) -> bool:
    """Whether deliveries of ``event`` are queued for processing at all."""
    return event in HANDLED_EVENTS


def fetch(event: str, action: str | None) -> Handler | None:
    """The handler for a delivery, without calling it; ``None`` if nothing handles it."""
    return ROUTES.get((event, action)) or ROUTES.get((event, None))


def describe(event: str, action: str | None) -> str:
    """Why a delivery with no handler is ignored, for its row."""
    if not handles(event):
        return f"event {event} is not handled"
    return f"action {action!r} of event {event} is not handled"

