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

JOB_RESULT_TTL_SECONDS = 10 * 60
"""Default of the setting: the longest RQ keeps a finished or failed job of ours.
Delivery jobs are written with it; the retention pass trims other jobs (syncs,
restores) down to it. The rows are the lasting record; at 100 pushes/s RQ's usual
24 h would keep millions of job hashes (several GB of Redis)."""

DELIVERY_BATCH_SIZE = 100
"""Delivery jobs a worker takes from the queue at once and processes in its own
process, with one transaction for their outcomes (sync_jobs.worker)."""

DELIVERY_BATCH_SECONDS = 10.0
"""A worker stops taking deliveries of a batch after this long and queues the rest
again, so a batch of slow deliveries never looks like a dead worker to the sweeper
(it waits DELIVERY_JOB_TIMEOUT_SECONDS * 2 for a started job)."""

DATABASE_RETRY_AFTER_SECONDS = 30
"""``Retry-After`` of the 503 the receiver answers while the database is unreachable."""

SWEEP_GRACE_SECONDS = 10
"""A delivery younger than this may still be in its receiver's enqueue; the sweeper
leaves it alone so it is not enqueued twice for no reason."""

SWEEP_INTERVAL_SECONDS = 15
"""How often the maintenance process looks for stored deliveries that never reached the
queue (Redis was down when they arrived, or lost them)."""

SWEEP_BATCH_SIZE = 500
"""Deliveries read per query while sweeping; a sweep pages through all waiting ones."""

SWEEP_MAX_ENQUEUED = 5000
"""Deliveries enqueued per sweep at most; the next sweep takes the rest."""

REPAIR_CONFIRM_SECONDS = 6
"""The repair pass acts on a sync only if its job looks dead twice, this far apart (one
lock heartbeat and a second): a running job whose lock vanished with a Redis restart
re-takes it within one heartbeat, and a job being rescheduled exists again within
milliseconds."""

REPAIR_INTERVAL_SECONDS = 30
"""Default of the setting: how often the maintenance process checks that every
unfinished sync has a live job and every tracked project has had a sync."""

REDELIVER_INTERVAL_SECONDS = 2 * 60
"""Default of the setting: how often the maintenance process asks GitHub for deliveries
that failed (the app was down or answered 5xx). GitHub never retries them itself; one
request a round costs little when nothing failed."""

MAINTENANCE_TICK_SECONDS = 1.0
"""How often the maintenance loop checks which pass is due."""

WORKER_MAINTENANCE_SECONDS = 30
"""How often a worker restarts its scheduler if it died and cleans RQ's registries
(RQ's default is 10 minutes, so a retry due during a Redis outage ran that late)."""

REDIS_RECONNECT_BACKOFF_SECONDS = (1, 2, 4, 8, 15)
"""Waits between attempts to reach Redis again after it went away; the last repeats."""

SYNC_RESERVATION_TTL_MS = 30_000
"""Life of a ``request_sync`` reservation of the pending marker; if its holder dies
between reserving and publishing the sync id, the reservation frees itself."""

SYNC_RESERVATION_WAIT_SECONDS = 5.0
"""How long a concurrent ``request_sync`` waits for a reservation to turn into a sync id
before raising (the delivery job is retried)."""

SYNC_PENDING_TTL_SECONDS = 24 * 60 * 60
"""Safety net on the pending marker; staleness is detected long before (see scheduling)."""

SYNC_STARTED_GRACE_SECONDS = 10
"""A sync job seen as started this long without holding its project's running lock has
lost its worker: a live job claims the lock (or postpones) within milliseconds."""

SYNC_LOCK_TTL_SECONDS = 15
"""Life of the running lock; a heartbeat renews it, so a dead worker frees it this fast
(and the repair pass can tell its sync is dead). Three heartbeats fit in it, so a
worker starved of CPU for a few seconds keeps its lock."""

SYNC_LOCK_RENEW_SECONDS = 5
"""Heartbeat interval renewing the running lock while a sync runs; it also re-takes a
lock that vanished (Redis restarted empty) and notices a lock someone else took."""

SYNC_RETRY_BACKOFF_SECONDS = (5, 10, 20, 30)
"""Waits before a sync that met a transient failure (GitHub 5xx or unreachable, the
database or Redis down) runs again; the last value repeats until the sync succeeds or
``SYNC_RETRY_DEADLINE_SECONDS`` passes. The cap is short so that a sync lands within
half a minute of GitHub answering again."""

SYNC_RETRY_DEADLINE_SECONDS = 6 * 60 * 60
"""Default of the setting: how long after it was requested a sync keeps retrying
transient failures before it ends failed. Rate-limit waits never end a sync."""

SYNC_MAX_UNEXPECTED_FAILURES = 4
"""Runs of a sync that ended in an error nobody expected (a bug, a job timeout, a worker
that kept dying) before it ends failed with that error; such errors rarely clear."""

RATE_LIMIT_MARGIN_SECONDS = 2
"""A sync waiting for a rate-limit reset runs this long after it, so clocks that differ
slightly do not make it meet the limit again."""

SYNC_POSTPONE_SECONDS = (1, 2, 4, 8, 15)
"""Delays before a sync job retries the running lock held by another sync; the last
value repeats until the running sync ends."""

FETCH_CONCURRENCY = 8
"""GitHub API calls in flight at once for one sync: enough to hide ~100 ms of latency,
few enough to stay clear of GitHub's secondary (concurrency) rate limit."""

HTTP_TIMEOUT_SECONDS = 30.0
"""Longest one GitHub API call may take before it counts as a transient failure."""

TARBALL_TIMEOUT_SECONDS = 300.0
"""Read timeout of the tarball download, which streams a whole repository."""

TRANSIENT_RETRIES = 5
"""Attempts per API call on 5xx, timeouts and connection resets before the job fails
(and RQ retries it later)."""

RETRY_BACKOFF_SECONDS = 0.25
"""First backoff after a transient failure; doubles on each further attempt."""

RATE_LIMIT_MAX_WAIT_SECONDS = 90.0
"""A sync sleeps through a rate-limit reset up to this long; beyond it the job is
rescheduled instead (it never fails because of a rate limit)."""

TOKEN_REFRESH_MARGIN_SECONDS = 5 * 60
"""Installation tokens are renewed this long before GitHub's expiry, so a long sync
never starts a call with a token about to die."""

RECURSIVE_TREE_MAX_FILES = 10_000
"""A tree the walk must fetch is read with one ``recursive=1`` call (the directory and
everything below it) when at most this many files are known below it: about 2 MB of
JSON, far below GitHub's truncation (100,000 entries / 7 MB) and cheaper than one call
per changed level. Above it the walk reads one level and plans each child again; the
root of a small repository falls under it too, so its whole tree is one call."""

TREE_LOOKUP_BATCH = 500
"""Tree SHAs looked up in the database per query while walking."""

LOOKUP_ALL_ABOVE = 10_000
"""Past this many keys (a first sync, a big merge) a lookup reads all of the project's
or repository's rows in one query and filters in Python: one sequential read beats
dozens of IN queries of DB_BATCH_ROWS keys, each parsed and planned apart."""

DB_BATCH_ROWS = 2000
"""Rows per executemany/IN batch: large enough for throughput, small enough for
SQLite's variable limit and bounded memory."""

BLOB_FLUSH_BYTES = 8 * 1024 * 1024
"""Fetched blob content is written to the database whenever this much is buffered, so
a first sync never holds the repository in memory."""

BLOB_WRITE_QUEUE = 2
"""Blob batches waiting for the writer thread; the download pauses when it is full,
so at most this many BLOB_FLUSH_BYTES batches (plus the one being built) are held."""

PROGRESS_MIN_INTERVAL_SECONDS = 0.25
"""Progress events within one phase are sent at most this often (SSE readers gain
nothing from more)."""

SYNC_EVENTS_MAXLEN = 2000
"""Approximate cap on the length of one sync's event stream."""

SYNC_EVENTS_TTL_SECONDS = 7 * 24 * 60 * 60
"""How long a sync's events stay readable after the last one was written."""

CHANGE_EVENTS_MAXLEN = 20_000
"""Approximate cap on the stream of every project's changes (progress included, at most
a few events a second per running sync): a page reconnecting within minutes resumes."""

PROJECT_CHANGE_EVENTS_MAXLEN = 2000
"""Approximate cap on one project's stream of changes."""

PROJECT_CHANGE_EVENTS_TTL_SECONDS = 24 * 60 * 60
"""A project's change stream expires this long after its last event (a quiet project
keeps no key); the stream of every project is bounded by its length alone."""

APPLY_RACE_RETRIES = 3
"""A sync that loses the compare-and-set on the current-sync pointer recomputes its
delta against the new state this many times before giving up (and being retried)."""

# Measured with bench/sync.py (see bench/README or the closing note of the sync engine):
# one blob call ~ latency + 3 ms; a tarball ~ 0.25 s fixed plus ~ 40 µs per file
# (download, hashing, buffering). The tarball wins once the needed blobs exceed
# roughly (fixed + files * per_file) * concurrency / blob_call.
TARBALL_FIXED_SECONDS = 0.3
"""Fixed cost of a tarball download: two round trips (redirect) plus setup."""

TARBALL_SECONDS_PER_FILE = 0.00004
"""Marginal cost of one file in a streamed tarball (transfer, gunzip, hashing)."""

BLOB_CALL_SECONDS = 0.1
"""Cost of one git/blobs call, dominated by GitHub's ~100 ms latency."""

# --- Server-sent events (the web app's event streams) ----------------------------------

SSE_HEARTBEAT_SECONDS = 15.0
"""An idle event stream sends a comment this often, so proxies keep it open and a
closed client is noticed (the write fails) within this time."""

SSE_MAX_STREAM_SECONDS = 10 * 60
"""A stream is closed after this long; the browser reconnects with ``Last-Event-ID`` and
loses nothing, and a forgotten tab never holds a gunicorn thread for ever."""

SSE_FINAL_GRACE_MS = 500
"""When the row is final but its stream has no final event yet, wait this long for the
worker's final event before sending one made from the row."""

SSE_RETRY_MS = 3000
"""``retry:`` sent to browsers: how long EventSource waits before reconnecting."""

API_DEFAULT_PER_PAGE = 50
"""Items per page of a paginated API list when ``per_page`` is not given."""

API_MAX_PER_PAGE = 500
"""Largest ``per_page`` a paginated API list accepts."""

# --- Sign-in and setup (person-facing GitHub calls) --------------------------------------

PERSON_HTTP_TIMEOUT_SECONDS = 10.0
"""Longest a GitHub call made while a person waits on a page may take (sign-in, setup,
the installation list); a page that hangs longer is worse than an error page."""

VISIBLE_REPOSITORIES_TTL_SECONDS = 5 * 60
"""How long the repositories (and permissions) GitHub lists for a person are kept in
Redis before ``/user/installations/{id}/repositories`` is asked again; bounds how long a
revoked access lingers."""

SESSION_ANONYMOUS_TTL_SECONDS = 12 * 60 * 60
"""Life of a session nobody signed in to (its CSRF token, flash messages, a sign-in under
way) after its last change."""

SESSION_MAX_SECONDS = 7 * 24 * 60 * 60
"""Longest a sign-in lasts while GitHub keeps refreshing its token; then the person signs
in again (one click)."""

NON_EXPIRING_TOKEN_SESSION_SECONDS = 8 * 60 * 60
"""Life of a sign-in whose GitHub token does not expire (an App with token expiry turned
off): GitHub's own lifetime for expiring tokens."""

SETUP_CODE_TTL_SECONDS = 24 * 60 * 60
"""A setup code printed in the web log is good this long; a visit to /setup after that
prints a new one."""

# --- Reconcilers (sync_jobs/reconcile.py) ------------------------------------------------

RECONCILE_INTERVAL_SECONDS = 10 * 60
"""Default of the setting: how often the maintenance process runs the drift reconciler,
which polls every tracked branch (a lost push waits at most this long)."""

RATE_LIMIT_REPORT_SECONDS = 1.0
"""A connector reports the ``X-RateLimit-*`` headers it sees to the metrics at most this
often (and once more when it closes); every report is a Redis round trip."""

REDELIVERY_WINDOW_SECONDS = 3 * 24 * 60 * 60
"""GitHub redelivers only deliveries of the last three days; older ones are not asked for
(and the delivery log is never read further back)."""

REDELIVERY_GRACE_SECONDS = 30
"""A failed delivery whose latest attempt is younger than this is left alone: GitHub (or a
person pressing Redeliver) may still be delivering it."""

REDELIVERY_CHECKPOINT_OVERLAP_SECONDS = 60
"""Each scan of the delivery log reads this far past the checkpoint, so an attempt listed
a little late (or stamped by a clock slightly behind) is still examined."""

REDELIVERY_PER_PAGE = 100
"""Deliveries per ``GET /app/hook/deliveries`` page (GitHub's maximum)."""

REDELIVERY_RATE_LIMIT_RESERVE = 100
"""Requests of the App's own (JWT) budget the redelivery pass leaves unspent: the same
budget mints installation tokens, and a sync that cannot get a token cannot run."""

REDELIVERY_IN_FLIGHT_SECONDS = 5 * 60
"""A redelivery request recorded without GitHub's answer for this long lost its process
between claiming the delivery and asking GitHub; the delivery is asked for again (a
duplicate is harmless, the receiver drops it by GUID)."""

# --- Retention (sync_jobs/retention.py) -----------------------------------------------

RETENTION_INTERVAL_SECONDS = 15 * 60
"""Default of the setting: how often the maintenance process applies the retention
settings below."""

DELIVERY_PAYLOAD_RETENTION_DAYS = 7
"""Default of the setting: days a finished delivery keeps its payload (enough to read
or reprocess a week of deliveries); the row itself stays longer."""

DELIVERY_RETENTION_DAYS = 30
"""Default of the setting: days a finished delivery row is kept. Never less than
GitHub's redelivery window (3 days), inside which a redelivered GUID must still be
recognised as a duplicate."""

SYNC_EVENTS_RETENTION_SECONDS = 60 * 60
"""Default of the setting: the longest a sync's progress stream lives after the
retention pass sees it. Streams serve live progress; a page of a finished sync reads
its outcome from the row, so an hour covers a person watching and reconnecting."""

RETENTION_BATCH_ROWS = 1000
"""Rows cleared or deleted per statement, so no pass holds a long lock on the table
the receiver inserts into."""

RETENTION_MAX_ROWS = 100_000
"""Rows one pass touches at most; the next pass carries on (a backlog after enabling
retention on an old database drains over a few passes instead of one long one)."""

RETENTION_SCAN_COUNT = 1000
"""Keys asked for per SCAN while looking for sync event streams."""

# --- Controls: resync, restore, untrack, auto-sync (api_actions, api_queries) ------------

SYNC_REQUEST_DEDUP_SECONDS = 10
"""A person's sync or restore request equal to one made this recently (same project,
kind and parameters) gets that request's sync instead of a second one: a double click,
a retried POST or two tabs cost one sync. Requests with an ``Idempotency-Key`` match by
key instead, for as long as the sync exists."""

SYNC_REQUEST_LOCK_SECONDS = 10
"""TTL of the per-project lock held while a request is checked and its sync created
(milliseconds in practice; the TTL only frees the lock of a process that died)."""

SYNC_REQUEST_LOCK_WAIT_SECONDS = 5.0
"""How long a request waits for another request of the same project before it is
answered 503 (try again)."""

GITHUB_BRANCHES_PER_PAGE = 100
"""Branches asked for per page of ``GET /repos/{owner}/{repo}/branches`` (GitHub's most)."""

GITHUB_BRANCHES_MAX_PAGES = 10
"""Pages of branches read at most for the branch list (1,000 branches): a repository
with more is listed in part, and the answer says so."""

COMPARE_CACHE_TTL_SECONDS = 60
"""How long GitHub's compare answer for two commits is kept in Redis: commits never
change, but a force-pushed branch can make an answer moot, and the hint is cheap to ask
again."""

WEB_GITHUB_TIMEOUT_SECONDS = 10.0
"""Longest an App-side GitHub call made while a person waits (branch list, compare)
may take."""
