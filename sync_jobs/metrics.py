"""Operational metrics shared by every process (API stub; filled in by the metrics work).

Call sites record events through these functions; none of them may raise (a metric
must never fail a delivery or a sync).
"""

from __future__ import annotations


def record_delivery_received(event: str, outcome: str) -> None:
    """The receiver answered a delivery: ``outcome`` is accepted, duplicate, rejected, ..."""


def record_delivery_processed(event: str, status: str) -> None:
    """A delivery job ended with ``status`` (processed, ignored, failed)."""


def record_sync_finished(*, status: str, trigger: str, seconds: float | None, api_calls: int) -> None:
    """A sync reached a final status."""


def record_sync_waiting(*, reason: str) -> None:
    """A sync attempt ended without a final status and was rescheduled (``reason`` is
    rate_limit, github_unavailable, crashed, postponed, ...)."""


def record_api_calls(*, installation_id: int, calls: int) -> None:
    """GitHub API requests made for an installation."""


def record_rate_limit(*, installation_id: int, remaining: int, limit: int, reset_epoch: int) -> None:
    """The last ``X-RateLimit-*`` headers seen for an installation."""


def record_maintenance_pass(name: str, *, repairs: int, failed: bool = False) -> None:
    """A maintenance pass ran (sweep, repair, reconcile_branches, redeliver)."""
