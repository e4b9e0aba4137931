"""``GET /metrics``: the whole deployment's metrics in Prometheus' text format.

Counters, the histogram and the rate-limit gauges are the cluster-wide values every
process recorded in Redis (:mod:`sync_jobs.metrics` says why they live there); queue
depths, the oldest waiting job's age and the count of unfinished syncs are read when
scraped. Any web worker serves the same numbers, so a scrape through the load
balancer is enough.

The collector sits on a registry of the app's own, not prometheus-client's global
one: the global registry would add this process's Python and GC metrics, which
describe one gunicorn worker out of many, and would be shared by every app a test
session builds.

A source that fails (Redis, the database) leaves its metrics out and shows as 0 in
``project_sync_metrics_source_up{source}``; the answer is still 200, because a scrape
that fails entirely hides the very metrics that explain an outage.

With ``METRICS_TOKEN`` set the endpoint wants ``Authorization: Bearer <token>``;
without it the endpoint is open, so it should then be reachable only from inside.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime

from flask import Blueprint, Flask, Response, current_app, request
from flask.typing import ResponseReturnValue
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.utils import utcparse
from sqlalchemy import func, select

from models import ProjectSync, SyncStatus, db
from sync_jobs import metrics
from sync_jobs.keys import queue_names
from sync_jobs.redis_client import redis_connection

bp = Blueprint("metrics", __name__)
log = logging.getLogger(__name__)

REGISTRY_EXTENSION = "project_sync_metrics_registry"
"""Where the app keeps its private :class:`CollectorRegistry`."""

OLDEST_JOB_PROBE = 5
"""How many ids at a queue's head are looked up for the oldest ``enqueued_at``: the
first id's hash may be gone (deleted job) and the next one is nearly as old."""

NOT_FINAL = (SyncStatus.QUEUED, SyncStatus.RUNNING)


def init_app(app: Flask) -> None:
    """Register ``/metrics`` and the app's own registry with its collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProjectSyncCollector(app))
    app.extensions[REGISTRY_EXTENSION] = registry
    app.register_blueprint(bp)


def _authorized(token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given_bytes, token_bytes = given.strip().encode(), token.encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(given_bytes, token_bytes)


@bp.get("/metrics")
def serve() -> ResponseReturnValue:
    token: str | None = current_app.config.get("METRICS_TOKEN")
    if token and not _authorized(token):
        return Response(
            "metrics need Authorization: Bearer <METRICS_TOKEN>\n",
            401,
            {"WWW-Authenticate": 'Bearer realm="metrics"'},
            mimetype="text/plain",
        )
    body = generate_latest(current_app.extensions[REGISTRY_EXTENSION])
    return Response(body, 200, {"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


def _name(family: metrics.Family) -> str:
    return f"{metrics.NAMESPACE}_{family.name}"


class ProjectSyncCollector(Collector):
    """Yields every Project Sync metric, reading Redis and the database per scrape."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._down: set[str] = set()

    def describe(self) -> Iterable[Metric]:
        # Names are not known before a scrape reads Redis; nothing to check them against.
        return []

    def collect(self) -> Iterator[Metric]:
        up: dict[str, bool] = {}
        found: list[Metric] = []
        for source, read in (("redis", self._from_redis), ("database", self._from_database)):
            try:
                found.extend(read())
                up[source] = True
            except Exception as exc:  # whatever broke, the other source's metrics still go out
                up[source] = False
                self._note_down(source, exc)
            else:
                self._down.discard(source)
        yield from found
        gauge = GaugeMetricFamily(
            f"{metrics.NAMESPACE}_metrics_source_up",
            "Whether /metrics could read this source at scrape time (1) or not (0).",
            labels=["source"],
        )
        for source, ok in up.items():
            gauge.add_metric([source], 1.0 if ok else 0.0)
        yield gauge

    def _note_down(self, source: str, exc: Exception) -> None:
        """Warn when a source stops answering, not on every scrape while it stays down."""
        if source not in self._down:
            self._down.add(source)
            log.warning("/metrics cannot read %s: %s: %s", source, type(exc).__name__, exc)

    def _from_redis(self) -> list[Metric]:
        redis = redis_connection(self.app)
        found = list(_stored(metrics.read_families(redis)))
        found.extend(_queues(redis))
        return found

    def _from_database(self) -> list[Metric]:
        try:
            rows = db.session.execute(
                select(ProjectSync.status, func.count())
                .where(ProjectSync.status.in_(NOT_FINAL))
                .group_by(ProjectSync.status)
            ).all()
        except Exception:
            db.session.rollback()
            raise
        counts = {SyncStatus(status): count for status, count in rows}
        gauge = GaugeMetricFamily(
            f"{metrics.NAMESPACE}_syncs_not_final",
            "Syncs queued or running now (from the database).",
            labels=["status"],
        )
        for status in NOT_FINAL:
            gauge.add_metric([status.value], float(counts.get(status, 0)))
        return [gauge]


def _stored(
    families: Mapping[metrics.Family, Mapping[tuple[str, ...], float] | metrics.Histogram],
) -> Iterator[Metric]:
    for family, values in families.items():
        if isinstance(values, metrics.Histogram):
            histogram = HistogramMetricFamily(_name(family), family.help)
            histogram.add_metric([], list(values.buckets), values.sum)
            yield histogram
            continue
        kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
        metric = kind(_name(family), family.help, labels=list(family.labels))
        for labels, value in sorted(values.items()):
            metric.add_metric(list(labels), value)
        yield metric


def _queues(redis: Redis) -> list[Metric]:
    """Depth, scheduled count and oldest waiting job's age of every queue: two round trips."""
    queues = [Queue(name, connection=redis) for name in queue_names()]
    with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.llen(queue.key)
            pipe.zcard(ScheduledJobRegistry(queue=queue).key)
            pipe.lrange(queue.key, 0, OLDEST_JOB_PROBE - 1)
        replies = pipe.execute()
    heads: list[Sequence[bytes]] = replies[2::3]
    with redis.pipeline(transaction=False) as pipe:
        for ids in heads:
            for job_id in ids:
                pipe.hget(Job.key_for(job_id.decode()), "enqueued_at")
        stamps = iter(pipe.execute())

    depth = GaugeMetricFamily(
        f"{metrics.NAMESPACE}_queue_depth", "Jobs waiting in an RQ queue.", labels=["queue"]
    )
    scheduled = GaugeMetricFamily(
        f"{metrics.NAMESPACE}_queue_scheduled",
        "Jobs scheduled for later (retries, backoff) in an RQ queue's scheduled registry.",
        labels=["queue"],
    )
    oldest = GaugeMetricFamily(
        f"{metrics.NAMESPACE}_queue_oldest_job_age_seconds",
        "Age of the oldest job waiting in an RQ queue (0 when the queue is empty).",
        labels=["queue"],
    )
    now = datetime.now(UTC)
    for index, queue in enumerate(queues):
        depth.add_metric([queue.name], float(replies[3 * index]))
        scheduled.add_metric([queue.name], float(replies[3 * index + 1]))
        ages = [_age(next(stamps), now) for _ in heads[index]]
        oldest.add_metric([queue.name], max((a for a in ages if a is not None), default=0.0))
    return [depth, scheduled, oldest]


def _age(stamp: bytes | None, now: datetime) -> float | None:
    if not stamp:
        return None
    try:
        return max(0.0, (now - utcparse(stamp.decode())).total_seconds())
    except ValueError:
        return None
