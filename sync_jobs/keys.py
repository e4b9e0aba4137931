"""The only module that spells Redis key names, RQ queue names and RQ job ids.

Everything Project Sync writes to Redis starts with :data:`KEY_PREFIX`, so one Redis
can serve several deployments (or test runs) and the keys are easy to find.
"""

from __future__ import annotations

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
