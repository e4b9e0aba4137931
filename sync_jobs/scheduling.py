"""Requesting syncs: one sync per project at a time, bursts coalesced.

Contract shared by the receiver (which requests syncs) and the sync job (which runs
them). See DESIGN.md, "Queueing".

- :func:`request_sync` is the only way to ask for a sync. It creates a queued
  ProjectSync row and enqueues one RQ job ``sync_jobs.sync_job.run_sync(sync_id)``
  unless a sync of that project is already queued, in which case it returns that queued
  sync (the queued job reads the newest head when it starts).
- The job, when it starts, claims the project's running lock, then marks the project as
  no longer queued, then reads the branch head. A request arriving while it runs
  therefore queues exactly one follow-up. N requests in a burst cost at most two syncs.
"""
