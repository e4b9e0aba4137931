"""The maintenance process: the passes that make a lost webhook or job a delay, not a loss.

``flask --app wsgi:app maintenance run`` (the Procfile's ``maintenance:``) runs, each on
its own interval:

- ``sweep``: deliveries stored but never enqueued (:mod:`sync_jobs.sweeper`);
- ``repair``: unfinished syncs whose job is gone, projects never synced
  (:mod:`sync_jobs.repair`);
- ``reconcile``: each tracked branch head against the last synced one, by conditional
  requests (:func:`sync_jobs.reconcile.reconcile_branches`);
- ``redeliver``: deliveries GitHub could not deliver, asked for again
  (:func:`sync_jobs.reconcile.redeliver_failed_deliveries`).

Why a loop of our own rather than RQ's ``CronScheduler``: the passes exist for the
moments when Redis or the workers are broken. ``CronScheduler.start()`` lets a Redis
``ConnectionError`` escape (the process exits with the outage), and the jobs it
enqueues need a live worker and a queue that survived. This loop keeps its schedule
in the process, runs each pass itself, outlives Redis and database outages (a failing
pass is retried within seconds and said once in the log), and reruns the repair and
redelivery passes as soon as the database answers again after an outage (redelivery
once the deliveries refused during the outage are past GitHub's own attempt). Several
maintenance processes may run: a Redis lock per pass lets one at a time run it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from redis import Redis
from redis.exceptions import LockError, RedisError
from sqlalchemy.exc import SQLAlchemyError

from models.base import discard_session
from sync_jobs import defaults, metrics
from sync_jobs.keys import maintenance_lock_key
from sync_jobs.redis_client import redis_connection
from sync_jobs.retention import run_retention_pass

log = logging.getLogger(__name__)

cli = AppGroup("maintenance", help="Sweeps, repairs and reconcilers (the maintenance process).")

OUTAGE_RETRY_SECONDS = 5.0
"""A pass that failed because Redis or the database was down runs again this soon."""


def _sweep(redis: Redis) -> int:
    from sync_jobs.sweeper import sweep_deliveries

    return sweep_deliveries(redis)


def _repair(redis: Redis) -> int:
    from sync_jobs.repair import repair_syncs

    return repair_syncs(redis).repairs


def _reconcile(redis: Redis) -> int:
    from sync_jobs.reconcile import reconcile_branches

    return reconcile_branches()


def _redeliver(redis: Redis) -> int:
    from sync_jobs.redelivery import redeliver_failed_deliveries

    return redeliver_failed_deliveries()


@dataclass
class MaintenancePass:
    """One pass and its schedule (monotonic seconds)."""

    name: str
    run: Callable[[Redis], int]
    interval: float
    next_due: float = 0.0
    failing: bool = False
    failed_on_database: bool = False


def passes_for(app: Flask) -> list[MaintenancePass]:
    """The passes with the intervals the app's settings ask for."""
    config = app.config
    return [
        MaintenancePass("sweep", _sweep, defaults.SWEEP_INTERVAL_SECONDS),
        MaintenancePass("repair", _repair, float(config["REPAIR_INTERVAL_SECONDS"])),
        MaintenancePass("reconcile", _reconcile, float(config["RECONCILE_INTERVAL_SECONDS"])),
        MaintenancePass("redeliver", _redeliver, float(config["REDELIVER_INTERVAL_SECONDS"])),
        MaintenancePass(
            "retention", run_retention_pass, float(config["RETENTION_INTERVAL_SECONDS"])
        ),
    ]


def run_pass(redis: Redis, maintenance_pass: MaintenancePass) -> int | None:
    """Run one pass under its lock (needs an app context); None if another process holds it.

    Raises what the pass raised; the session is discarded either way.
    """
    ttl = max(int(maintenance_pass.interval * 2), 60)
    lock = redis.lock(maintenance_lock_key(maintenance_pass.name), timeout=ttl, blocking=False)
    if not lock.acquire():
        return None
    try:
        return maintenance_pass.run(redis)
    finally:
        discard_session()
        # Expired and taken by another process: not ours to delete. Unreachable: the
        # lock expires by itself.
        with suppress(LockError, RedisError):
            lock.release()


def _run_due(app: Flask, redis: Redis, maintenance_pass: MaintenancePass) -> bool:
    """Run a due pass and schedule its next run; True if the database just came back."""
    with app.app_context():
        return _run_and_schedule(redis, maintenance_pass)


def _run_and_schedule(redis: Redis, maintenance_pass: MaintenancePass) -> bool:
    now = time.monotonic()
    recovered_database = False
    try:
        repairs = run_pass(redis, maintenance_pass)
    except (RedisError, SQLAlchemyError) as exc:
        if not maintenance_pass.failing:
            log.warning(
                "maintenance pass %s failed (%s); retrying every %.0f s until it works",
                maintenance_pass.name,
                exc,
                OUTAGE_RETRY_SECONDS,
            )
        maintenance_pass.failing = True
        maintenance_pass.failed_on_database = isinstance(exc, SQLAlchemyError)
        maintenance_pass.next_due = now + min(OUTAGE_RETRY_SECONDS, maintenance_pass.interval)
        metrics.record_maintenance_pass(maintenance_pass.name, repairs=0, failed=True)
        return False
    except Exception:
        log.exception("maintenance pass %s failed", maintenance_pass.name)
        maintenance_pass.next_due = now + maintenance_pass.interval
        metrics.record_maintenance_pass(maintenance_pass.name, repairs=0, failed=True)
        return False
    if maintenance_pass.failing:
        log.warning("maintenance pass %s works again", maintenance_pass.name)
        recovered_database = maintenance_pass.failed_on_database
    maintenance_pass.failing = maintenance_pass.failed_on_database = False
    maintenance_pass.next_due = now + maintenance_pass.interval
    if repairs is not None:
        metrics.record_maintenance_pass(maintenance_pass.name, repairs=repairs)
        if repairs:
            log.info("maintenance pass %s: %d repairs", maintenance_pass.name, repairs)
    return recovered_database


def _after_database_outage(passes: list[MaintenancePass]) -> None:
    """Repair now, and redeliver as soon as the deliveries answered 503 during the outage
    are past the redelivery grace period (GitHub may still be attempting them), rather
    than at the next interval."""
    now = time.monotonic()
    for other in passes:
        if other.name == "repair":
            other.next_due = 0.0
        elif other.name == "redeliver":
            other.next_due = min(other.next_due, now + defaults.REDELIVERY_GRACE_SECONDS + 1)


def run_forever(app: Flask, stop: threading.Event) -> None:
    """Run every pass when it is due until ``stop`` is set."""
    with app.app_context():
        redis = redis_connection()
    passes = passes_for(app)
    log.info(
        "maintenance started: %s",
        ", ".join(f"{p.name} every {p.interval:.0f} s" for p in passes),
    )
    while not stop.is_set():
        for maintenance_pass in passes:
            if stop.is_set() or time.monotonic() < maintenance_pass.next_due:
                continue
            if _run_due(app, redis, maintenance_pass):
                _after_database_outage(passes)
        stop.wait(defaults.MAINTENANCE_TICK_SECONDS)
    log.info("maintenance stopped")


@cli.command("run")
def run_command() -> None:
    """Run the maintenance passes until SIGTERM or SIGINT."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run_forever(app, stop)


@cli.command("once")
@click.argument("names", nargs=-1)
@with_appcontext
def once_command(names: tuple[str, ...]) -> None:
    """Run the named passes (default: all) once and say what each did."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    redis = redis_connection()
    for maintenance_pass in passes_for(app):
        if names and maintenance_pass.name not in names:
            continue
        try:
            repairs = run_pass(redis, maintenance_pass)
        except (RedisError, SQLAlchemyError) as exc:
            raise click.ClickException(f"{maintenance_pass.name} failed: {exc}") from exc
        shown = "skipped: another process runs it" if repairs is None else f"{repairs} repairs"
        click.echo(f"{maintenance_pass.name}: {shown}")
