"""Storing verified deliveries in batches: one INSERT, one commit, one enqueue round trip.

The receiver's request threads hand their rows to the app's :class:`GroupCommit`
(:func:`store`); the batch's leader runs :func:`commit_batch`:

1. one ``INSERT ... ON CONFLICT (delivery_id) DO NOTHING RETURNING delivery_id`` of
   every row (PostgreSQL, and SQLite's same syntax), in autocommit: one statement, one
   commit, one WAL flush for the batch. The ids it returns are the new rows; every
   other one was stored before (a duplicate). A delivery id twice in one batch (GitHub
   redelivering while the first is in flight) is inserted once, the later ones are
   duplicates;
2. one Redis round trip (:func:`~sync_jobs.deliveries.enqueue_deliveries`) queueing
   the new rows that need processing; if Redis is down, one UPDATE marks them
   ``pending`` for the sweeper (best effort: it sweeps ``queued`` rows too).

Each item then carries its outcome or the database error its request answers with
(503 for an outage, exactly as a single INSERT did). A value the database refuses
(``DataError``) would fail the whole statement, so the batch is then stored row by
row and only that row's request hears of it.

The receiver's engine does not ping a pooled connection before use, so after a
database restart the first INSERT on a stale connection fails with a disconnect;
SQLAlchemy then discards the whole pool, and the batch is tried once more on a fresh
connection. Rows that retry finds already stored are counted as new: the first
attempt may have committed before its connection died, and a delivery stored earlier
would only be enqueued again, which processing ignores (it is final or in hand).

The statement is SQL text, built once per batch size (:func:`_statement`): SQLAlchemy
does not cache the compiled form of a dialect's ``insert().on_conflict_do_nothing()``
(its ``Insert`` sets ``inherit_cache = False``), which cost every request a fresh
compilation; a ``text()`` with typed bind parameters is compiled once and cached.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flask import Flask, current_app
from redis.exceptions import RedisError
from rq import Queue
from sqlalchemy import TextClause, bindparam, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, DBAPIError, SQLAlchemyError

from models import DeliveryStatus, WebhookDelivery
from sync_jobs.deliveries import deliveries_queue, enqueue_deliveries
from sync_jobs.redis_client import redis_connection
from webhook_app.database import receiver_engine
from webhook_app.group_commit import GroupCommit

log = logging.getLogger(__name__)

GROUP_COMMIT_EXTENSION = "project_sync_delivery_group_commit"
QUEUE_EXTENSION = "project_sync_deliveries_queue"
"""Where the app keeps its deliveries queue, built once per process (RQ's Queue asks
Redis for its version on first use; doing that per request would cost a round trip)."""

MAX_BATCH = 200
"""Most rows one INSERT takes (a batch is what arrived during one commit: at most the
web process's threads, so this only bounds the statement)."""

WAIT_SECONDS = 8.0
"""How long a request waits for a batch to take its row before answering 503: below
GitHub's 10 s, so GitHub hears an answer and the failed-delivery reconciler can ask
for a redelivery. Only reached when the database hangs a commit that long."""

_CREATE_LOCK = threading.Lock()


class Stored(StrEnum):
    """What storing one delivery came to."""

    QUEUED = "queued"  # new, enqueued
    PENDING = "pending"  # new, Redis down: the sweeper enqueues it
    STORED = "stored"  # new, nothing to enqueue (ignored, rejected, ping)
    DUPLICATE = "duplicate"  # stored before


@dataclass(eq=False, slots=True)
class Pending:
    """One request's row on its way into a batch; the leader fills in the outcome."""

    row: dict[str, Any]
    enqueue: bool
    outcome: Stored | None = None
    error: Exception | None = None  # SQLAlchemyError, or ValueError for a refused value

    @property
    def delivery_id(self) -> str:
        return str(self.row["delivery_id"])


class NotTakenError(SQLAlchemyError):
    """No batch took the row within ``WAIT_SECONDS`` (the database hangs): nothing stored."""


def store(row: dict[str, Any], *, enqueue: bool) -> Stored:
    """Store ``row`` in the next batch; raise the database's error as a single INSERT
    would (``IntegrityError`` is not raised: a duplicate is ``Stored.DUPLICATE``)."""
    item = Pending(row, enqueue)
    if not _group_commit(current_app).submit(item):
        raise NotTakenError(f"no commit took the delivery within {WAIT_SECONDS:.0f} s")
    if item.error is not None:
        raise item.error
    assert item.outcome is not None
    return item.outcome


def _group_commit(app: Flask) -> GroupCommit[Pending]:
    group: GroupCommit[Pending] | None = app.extensions.get(GROUP_COMMIT_EXTENSION)
    if group is None:
        with _CREATE_LOCK:
            group = app.extensions.get(GROUP_COMMIT_EXTENSION)
            if group is None:
                group = GroupCommit(commit_batch, max_batch=MAX_BATCH, wait_seconds=WAIT_SECONDS)
                app.extensions[GROUP_COMMIT_EXTENSION] = group
    return group


def deliveries_queue_of(app: Flask) -> Queue:
    queue: Queue | None = app.extensions.get(QUEUE_EXTENSION)
    if queue is None:
        queue = deliveries_queue(redis_connection())
        app.extensions[QUEUE_EXTENSION] = queue
    return queue


# --- the leader's work --------------------------------------------------------------------


def commit_batch(items: Sequence[Pending]) -> None:
    """Store, then enqueue, ``items``; every item ends with an outcome or an error."""
    first: dict[str, Pending] = {}
    for item in items:
        first.setdefault(item.delivery_id, item)
    unique = list(first.values())
    try:
        _insert_all(unique)
    except Exception as exc:  # never leave a waiter without an answer
        error = exc if isinstance(exc, SQLAlchemyError) else SQLAlchemyError(repr(exc))
        log.warning("batch of %d deliveries not stored: %s", len(unique), exc)
        for item in unique:
            if item.outcome is None and item.error is None:
                item.error = error
    _enqueue_new([item for item in unique if item.outcome is Stored.QUEUED])
    log.debug(
        "group commit: %d deliveries in one INSERT, %d new",
        len(items),
        sum(item.outcome is not Stored.DUPLICATE and item.error is None for item in unique),
    )
    for item in items:
        if item is not first[item.delivery_id]:
            leader = first[item.delivery_id]
            item.error = leader.error
            item.outcome = None if leader.error else Stored.DUPLICATE


def _insert_all(items: list[Pending]) -> None:
    """One INSERT of every row; on a refused value, one INSERT per row."""
    engine = receiver_engine()
    try:
        new = _insert_retrying(engine, items)
    except (DataError, ValueError):
        for item in items:
            try:
                _settle([item], _insert_retrying(engine, [item]))
            except (DataError, ValueError) as exc:
                item.error = exc
        return
    _settle(items, new)


def _settle(items: list[Pending], new: set[str]) -> None:
    for item in items:
        if item.delivery_id not in new:
            item.outcome = Stored.DUPLICATE
        else:
            item.outcome = Stored.QUEUED if item.enqueue else Stored.STORED


def _insert_retrying(engine: Engine, items: list[Pending]) -> set[str]:
    """The new delivery ids; once more on a fresh connection if the first was dead."""
    try:
        return _insert(engine, items)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.info("database connection lost storing %d deliveries, retrying once", len(items))
        _insert(engine, items)
        return {item.delivery_id for item in items}


def _insert(engine: Engine, items: list[Pending]) -> set[str]:
    parameters = {
        f"{column}_{number}": item.row[column]
        for number, item in enumerate(items)
        for column in ROW_COLUMNS
    }
    with engine.connect() as connection:
        result = connection.execute(_statement(len(items)), parameters)
        return set(result.scalars())


ROW_COLUMNS = (
    "delivery_id",
    "event",
    "action",
    "hook_id",
    "installation_github_id",
    "repository_github_id",
    "payload",
    "form_encoded",
    "status",
    "status_reason",
    "attempts",
    "received_at",
)
"""The columns of a receiver's row (``webhook_app.webhooks._row``), in VALUES order."""

_STATEMENTS: dict[int, TextClause] = {}


def _statement(rows: int) -> TextClause:
    """``INSERT ... VALUES (...), ... ON CONFLICT (delivery_id) DO NOTHING RETURNING
    delivery_id`` for ``rows`` rows (PostgreSQL's syntax, which SQLite shares), its bind
    parameters typed by the model's columns so values convert as the ORM would."""
    statement = _STATEMENTS.get(rows)
    if statement is None:
        table = WebhookDelivery.__table__
        values = ", ".join(
            "(" + ", ".join(f":{column}_{n}" for column in ROW_COLUMNS) + ")" for n in range(rows)
        )
        statement = text(
            f"INSERT INTO {WebhookDelivery.__tablename__} ({', '.join(ROW_COLUMNS)}) "
            f"VALUES {values} ON CONFLICT (delivery_id) DO NOTHING RETURNING delivery_id"
        ).bindparams(
            *(
                bindparam(f"{column}_{n}", type_=table.c[column].type)
                for n in range(rows)
                for column in ROW_COLUMNS
            )
        )
        _STATEMENTS[rows] = statement
    return statement


def _enqueue_new(items: list[Pending]) -> None:
    """One round trip for the batch; Redis down leaves them ``pending`` for the sweeper."""
    if not items:
        return
    app = current_app
    try:
        queue = deliveries_queue_of(app)
        enqueue_deliveries(
            queue,
            [item.delivery_id for item in items],
            result_ttl=app.config["JOB_RESULT_TTL_SECONDS"],
        )
    except RedisError as exc:
        log.warning("%d deliveries stored, not queued: %s", len(items), exc)
        for item in items:
            item.outcome = Stored.PENDING
        _mark_pending([item.delivery_id for item in items])


def _mark_pending(delivery_ids: list[str]) -> None:
    """Best effort: say on the rows that they wait for the sweeper (it sweeps either way)."""
    try:
        with receiver_engine().connect() as connection:
            connection.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.delivery_id.in_(delivery_ids))
                .values(status=DeliveryStatus.PENDING)
            )
    except SQLAlchemyError as exc:
        log.info("deliveries left queued for the sweeper: %s", exc)
