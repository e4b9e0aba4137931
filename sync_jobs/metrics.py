"""Operational metrics shared by every process, kept in Redis and served by ``/metrics``.

Call sites record events through the ``record_*`` functions; none of them raises (a
metric must never fail a delivery or a sync). The web app's ``/metrics`` reads the
values back with :func:`read_families` and serves them in Prometheus' text format.

Why Redis and not prometheus-client's multiprocess mode: the processes that count
are gunicorn's workers, RQ workers whose jobs run in short-lived forked work horses,
and the maintenance process, and the workers may run on other machines than the web
process. The multiprocess mode sums per-process files in one directory on one
machine: work horses would each leave a file behind (thousands a day, cleaned by no
one), and counts from another machine would never reach the web process that serves
``/metrics``. Every process already shares one Redis, so each recording is one
pipelined round trip of ``HINCRBY`` (``HINCRBYFLOAT`` for a histogram's sum) into a
hash per metric family, under :func:`sync_jobs.keys.metric_key`, and a scrape of any
web worker sees the whole deployment.

What follows from that: values are cluster-wide totals, not per process; a Redis that
restarts without persistence resets them to zero, which Prometheus' ``rate()`` treats
as any counter reset; a recording made while Redis is down is lost (so ``pending``
deliveries, counted just after an enqueue failed, are mostly lost in exactly the
outage they describe: ``project_sync_metrics_source_up`` and the stored rows tell that
story). After a failure this process stops recording for :data:`PAUSE_SECONDS`, so an
outage costs one connection timeout per pause, not one per call.

The functions need an app context (they use the app's Redis connection); without one
they do nothing, so pure code and unit tests can call them freely.

Label values come from closed sets or bounded ones (event names GitHub signed,
installation ids), never from unverified input, because every distinct value is a
hash field kept forever.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flask import current_app, has_app_context
from redis.client import Pipeline

from sync_jobs.keys import metric_key
from sync_jobs.redis_client import redis_connection

log = logging.getLogger(__name__)

NAMESPACE = "project_sync"
"""Prefix of every metric name ``/metrics`` serves."""

PAUSE_SECONDS = 10.0
"""After a failed recording, how long this process records nothing (see module doc)."""

SYNC_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
"""Upper bounds in seconds of the sync duration histogram: a no-op sync takes a tenth
of a second, a first sync of a large repository many minutes."""

MAX_LABEL_LENGTH = 100
"""Longer label values are cut: a label is an identifier, not a message."""

STATE_EXTENSION = "project_sync_metrics"
"""Where an app keeps this module's per-process recording state."""


class DeliveryOutcome(StrEnum):
    """How the receiver answered a delivery (``outcome`` of deliveries received)."""

    ACCEPTED = "accepted"  # stored and queued, stored as ignored, or a ping answered
    DUPLICATE = "duplicate"  # a delivery id stored before
    PENDING = "pending"  # stored, not queued: Redis was down, the sweeper queues it
    REJECTED = "rejected"  # bad signature, missing header, malformed or too large
    UNAVAILABLE = "unavailable"  # 503: database down, or setup mode


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: its name without :data:`NAMESPACE`, kind, labels and help."""

    name: str
    kind: str  # "counter", "gauge" or "histogram" (a histogram has no labels)
    labels: tuple[str, ...]
    help: str

    @property
    def key(self) -> str:
        return metric_key(self.name)


DELIVERIES_RECEIVED = Family(
    "deliveries_received_total",
    "counter",
    ("event", "outcome"),
    "Webhook deliveries the receiver answered, by event and outcome.",
)
DELIVERIES_PROCESSED = Family(
    "deliveries_processed_total",
    "counter",
    ("event", "status"),
    "Delivery processing jobs that ended, by event and final status.",
)
SYNCS_FINISHED = Family(
    "syncs_finished_total",
    "counter",
    ("status", "trigger"),
    "Syncs that reached a final status, by status and trigger.",
)
SYNC_API_CALLS = Family(
    "sync_api_calls_total",
    "counter",
    ("trigger",),
    "GitHub API calls spent by syncs that reached a final status, by trigger.",
)
SYNC_DURATION = Family(
    "sync_duration_seconds",
    "histogram",
    (),
    "Time from start to final status of syncs that ran.",
)
SYNC_WAITS = Family(
    "sync_waits_total",
    "counter",
    ("reason",),
    "Sync attempts that ended without a final status and were rescheduled, by reason.",
)
API_CALLS = Family(
    "github_api_calls_total",
    "counter",
    ("installation_id",),
    "GitHub API requests made for an installation.",
)
RATE_LIMIT_REMAINING = Family(
    "rate_limit_remaining",
    "gauge",
    ("installation_id",),
    "Requests left in the installation's rate-limit window, as GitHub last reported.",
)
RATE_LIMIT_LIMIT = Family(
    "rate_limit_limit",
    "gauge",
    ("installation_id",),
    "Size of the installation's rate-limit window, as GitHub last reported.",
)
RATE_LIMIT_RESET = Family(
    "rate_limit_reset_timestamp",
    "gauge",
    ("installation_id",),
    "When the installation's rate-limit window resets (Unix time).",
)
GIT_FALLBACKS = Family(
    "sync_git_fallbacks_total",
    "counter",
    ("error",),
    "Syncs whose fetch over git failed and that went on over the REST API, by error.",
)
MAINTENANCE_RUNS = Family(
    "maintenance_runs_total",
    "counter",
    ("pass",),
    "Maintenance passes run, failed ones included.",
)
MAINTENANCE_REPAIRS = Family(
    "maintenance_repairs_total",
    "counter",
    ("pass",),
    "Things maintenance passes repaired (jobs requeued, syncs requested, redeliveries).",
)
MAINTENANCE_FAILURES = Family(
    "maintenance_failures_total",
    "counter",
    ("pass",),
    "Maintenance passes that failed.",
)

FAMILIES = (
    DELIVERIES_RECEIVED,
    DELIVERIES_PROCESSED,
    SYNCS_FINISHED,
    SYNC_API_CALLS,
    SYNC_DURATION,
    SYNC_WAITS,
    GIT_FALLBACKS,
    API_CALLS,
    RATE_LIMIT_REMAINING,
    RATE_LIMIT_LIMIT,
    RATE_LIMIT_RESET,
    MAINTENANCE_RUNS,
    MAINTENANCE_REPAIRS,
    MAINTENANCE_FAILURES,
)
"""Every family kept in Redis, in the order ``/metrics`` serves them."""

# A histogram's hash holds one field per bucket with the observations that fell in it
# (not cumulative: one HINCRBY per observation) and the sum; the count is the total.
_SUM_FIELD = "sum"
_INF = "+Inf"


# --- Recording ---------------------------------------------------------------------------


@dataclass
class _State:
    paused_until: float = 0.0
    logged: bool = False


def _field(values: tuple[Any, ...]) -> str:
    """The hash field of one series: its label values as a compact JSON array."""
    return json.dumps([str(v)[:MAX_LABEL_LENGTH] for v in values], separators=(",", ":"))


def _send(build: Callable[[Pipeline], object]) -> None:
    """Run the commands ``build`` adds in one round trip; never raise."""
    if not has_app_context():
        return
    state: _State = current_app.extensions.setdefault(STATE_EXTENSION, _State())
    if time.monotonic() < state.paused_until:
        return
    try:
        with redis_connection().pipeline(transaction=False) as pipe:
            build(pipe)
            pipe.execute()
    except Exception as exc:  # a metric must never fail its caller, whatever went wrong
        state.paused_until = time.monotonic() + PAUSE_SECONDS
        if not state.logged:
            state.logged = True
            log.debug("metrics not recorded, pausing %.0f s: %r", PAUSE_SECONDS, exc)
        return
    state.logged = False


def _observe(pipe: Pipeline, family: Family, value: float) -> None:
    bound = next((b for b in SYNC_DURATION_BUCKETS if value <= b), None)
    pipe.hincrby(family.key, _INF if bound is None else repr(bound), 1)
    pipe.hincrbyfloat(family.key, _SUM_FIELD, value)


def record_delivery_received(event: str, outcome: str) -> None:
    """The receiver answered a delivery: ``outcome`` is a :class:`DeliveryOutcome`.

    ``event`` must be bounded: the verified event name, or a fixed stand-in for an
    unverified one (the receiver's job).
    """
    _send(lambda pipe: pipe.hincrby(DELIVERIES_RECEIVED.key, _field((event, outcome)), 1))


def record_delivery_processed(event: str, status: str) -> None:
    """A delivery job ended with ``status`` (processed, ignored, failed)."""
    _send(lambda pipe: pipe.hincrby(DELIVERIES_PROCESSED.key, _field((event, status)), 1))


def record_sync_finished(
    *, status: str, trigger: str, seconds: float | None, api_calls: int
) -> None:
    """A sync reached a final status; ``seconds`` is None for one that never ran
    (superseded while queued), which then stays out of the duration histogram."""

    def build(pipe: Pipeline) -> None:
        pipe.hincrby(SYNCS_FINISHED.key, _field((status, trigger)), 1)
        if api_calls:
            pipe.hincrby(SYNC_API_CALLS.key, _field((trigger,)), int(api_calls))
        if seconds is not None:
            _observe(pipe, SYNC_DURATION, max(0.0, float(seconds)))

    _send(build)


def record_sync_waiting(*, reason: str) -> None:
    """A sync attempt ended without a final status and was rescheduled (``reason`` is
    rate_limit, github_unavailable, crashed, postponed, ...)."""
    _send(lambda pipe: pipe.hincrby(SYNC_WAITS.key, _field((reason,)), 1))


def record_git_fallback(*, error: str) -> None:
    """A sync's git path failed (``error`` names the kind) and REST took over."""
    _send(lambda pipe: pipe.hincrby(GIT_FALLBACKS.key, _field((error,)), 1))


def record_api_calls(*, installation_id: int, calls: int) -> None:
    """GitHub API requests made for an installation (GitHub's installation id)."""
    if calls:
        _send(lambda pipe: pipe.hincrby(API_CALLS.key, _field((installation_id,)), int(calls)))


def record_rate_limit(
    *, installation_id: int, remaining: int, limit: int, reset_epoch: int
) -> None:
    """The last ``X-RateLimit-*`` headers seen for an installation.

    Last write wins: two workers answering at once may leave the older reading, which
    the next response corrects.
    """
    field = _field((installation_id,))

    def build(pipe: Pipeline) -> None:
        pipe.hset(RATE_LIMIT_REMAINING.key, field, str(int(remaining)))
        pipe.hset(RATE_LIMIT_LIMIT.key, field, str(int(limit)))
        pipe.hset(RATE_LIMIT_RESET.key, field, str(int(reset_epoch)))

    _send(build)


def record_maintenance_pass(name: str, *, repairs: int, failed: bool = False) -> None:
    """A maintenance pass ran (sweep, repair, reconcile_branches, redeliver)."""
    field = _field((name,))

    def build(pipe: Pipeline) -> None:
        pipe.hincrby(MAINTENANCE_RUNS.key, field, 1)
        if repairs:
            pipe.hincrby(MAINTENANCE_REPAIRS.key, field, int(repairs))
        if failed:
            pipe.hincrby(MAINTENANCE_FAILURES.key, field, 1)

    _send(build)


# --- Reading -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Histogram:
    """A histogram as Prometheus wants it: cumulative counts per upper bound."""

    buckets: tuple[tuple[str, float], ...]  # ("0.1", n), ..., ("+Inf", count)
    sum: float


def read_families(redis: Any) -> dict[Family, Mapping[tuple[str, ...], float] | Histogram]:
    """Every family's stored series, in one round trip; raises ``RedisError``.

    A counter or gauge maps label values to its value; a histogram is a
    :class:`Histogram`. Fields that do not decode (written by another version with
    other labels) are skipped rather than failing the scrape.
    """
    with redis.pipeline(transaction=False) as pipe:
        for family in FAMILIES:
            pipe.hgetall(family.key)
        replies = pipe.execute()
    result: dict[Family, Mapping[tuple[str, ...], float] | Histogram] = {}
    for family, reply in zip(FAMILIES, replies, strict=True):
        raw = {_text(k): float(v) for k, v in reply.items()}
        result[family] = _histogram(raw) if family.kind == "histogram" else _series(family, raw)
    return result


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _series(family: Family, raw: Mapping[str, float]) -> dict[tuple[str, ...], float]:
    series: dict[tuple[str, ...], float] = {}
    for field, value in raw.items():
        try:
            labels = tuple(str(v) for v in json.loads(field))
        except (ValueError, TypeError):
            continue
        if len(labels) == len(family.labels):
            series[labels] = value
    return series


def _histogram(raw: Mapping[str, float]) -> Histogram:
    cumulative, buckets = 0.0, []
    for bound in SYNC_DURATION_BUCKETS:
        cumulative += raw.get(repr(bound), 0.0)
        buckets.append((repr(bound), cumulative))
    # +Inf is the total count; derived from the buckets so the two always agree.
    buckets.append((_INF, cumulative + raw.get(_INF, 0.0)))
    return Histogram(buckets=tuple(buckets), sum=raw.get(_SUM_FIELD, 0.0))
