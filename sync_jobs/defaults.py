"""Constants of the job side, each defined once with what it is for."""

from __future__ import annotations

JOB_TIMEOUT_SECONDS = 30 * 60
"""Longest a sync job may run before RQ kills it; a first sync of a huge repository fits."""

DELIVERY_JOB_TIMEOUT_SECONDS = 60
"""Processing one webhook delivery only reads the payload and writes a few rows."""

RESULT_TTL_SECONDS = 24 * 60 * 60
"""How long RQ keeps a finished job; the ProjectSync row is the durable record."""

FAILURE_TTL_SECONDS = 7 * 24 * 60 * 60
"""How long RQ keeps a failed job for inspection."""

# --- Webhook deliveries and sync coalescing ---------------------------------------------

DELIVERY_MAX_ATTEMPTS = 3
"""Runs of one delivery's processing before it is marked failed (RQ retries the job)."""

DELIVERY_RETRY_INTERVALS_SECONDS = (10, 60)
"""Waits between those runs; a transient database or GitHub error usually clears."""

DATABASE_RETRY_AFTER_SECONDS = 30
"""``Retry-After`` of the 503 the receiver answers while the database is unreachable."""

SWEEP_GRACE_SECONDS = 10
"""A delivery younger than this may still be in its receiver's enqueue; the sweeper
leaves it alone so it is not enqueued twice for no reason."""

SWEEP_INTERVAL_SECONDS = 30
"""How often the sweeper looks for stored deliveries that never reached the queue."""

SWEEP_BATCH_SIZE = 500
"""Deliveries enqueued per sweep; the next sweep takes the rest."""

SYNC_RESERVATION_TTL_MS = 30_000
"""Life of a ``request_sync`` reservation of the pending marker; if its holder dies
between reserving and publishing the sync id, the reservation frees itself."""

SYNC_RESERVATION_WAIT_SECONDS = 5.0
"""How long a concurrent ``request_sync`` waits for a reservation to turn into a sync id
before raising (the delivery job is retried)."""

SYNC_PENDING_TTL_SECONDS = 24 * 60 * 60
"""Safety net on the pending marker; staleness is detected long before (see scheduling)."""

SYNC_STARTED_GRACE_SECONDS = 60
"""A sync job seen as started longer than this while its sync is still queued has lost
its worker: a live job claims the lock and clears the marker within milliseconds."""

SYNC_LOCK_TTL_SECONDS = 60
"""Life of the running lock; a heartbeat renews it, so a dead worker frees it this fast."""

SYNC_LOCK_RENEW_SECONDS = 15
"""Heartbeat interval renewing the running lock while a sync runs."""

SYNC_POSTPONE_SECONDS = (1, 2, 4, 8, 15)
"""Delays before a sync job retries the running lock held by another sync; the last
value repeats until the running sync ends."""
