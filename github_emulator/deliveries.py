"""Signs, sends and logs webhook deliveries, and redelivers them on request.

The log answers ``GET /app/hook/deliveries`` and backs redelivery, so it keeps
exactly what was sent (headers and payload) and what the receiver answered. Sending
is synchronous: the caller gets the finished :class:`DeliveryRecord`, which is what
lets a test assert on the receiver's answer right after a ``git push`` returns.

Like GitHub's, the log only looks back three days: older records are neither listed
nor redelivered (tests make a record old with :meth:`DeliveryLog.age`).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from githubkit.webhooks import sign

from . import defaults
from .knobs import WebhookContentType
from .shapes import iso
from .state import GitHubApp


@dataclass
class DeliveryRecord:
    """One attempt to deliver one event; a redelivery is a new record, same guid."""

    id: int
    guid: str
    app_id: int
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    payload: dict[str, Any]
    request_headers: dict[str, str]
    url: str | None
    redelivery: bool = False
    delivered_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    duration: float = 0.0
    status: str = "pending"
    status_code: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    def summary_json(self) -> dict[str, Any]:
        """``hook-delivery-item``: an entry of the deliveries list."""
        return {
            "id": self.id, "guid": self.guid, "delivered_at": iso(self.delivered_at),
            "redelivery": self.redelivery, "duration": round(self.duration, 3),
            "status": self.status, "status_code": self.status_code, "event": self.event,
            "action": self.action, "installation_id": self.installation_id,
            "repository_id": self.repository_id, "throttled_at": None,
        }

    def full_json(self) -> dict[str, Any]:
        """``hook-delivery``: one delivery with its request and response."""
        return {
            **self.summary_json(), "url": self.url,
            "request": {"headers": dict(self.request_headers), "payload": self.payload},
            "response": {"headers": dict(self.response_headers),
                         "payload": self.response_body},
        }


def encode_body(payload: dict[str, Any], content_type: WebhookContentType) -> tuple[
        bytes, str]:
    """Body bytes and Content-Type for the hook's configured encoding."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    if content_type is WebhookContentType.FORM:
        return (urlencode({"payload": text}).encode(),
                "application/x-www-form-urlencoded")
    return text.encode(), "application/json"


class DeliveryLog:
    """Every delivery the emulator attempted, newest last, with sending built in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[DeliveryRecord] = []
        self._next_id = 90_000_000
        self._client = httpx.Client()

    def close(self) -> None:
        self._client.close()

    @property
    def records(self) -> list[DeliveryRecord]:
        with self._lock:
            return list(self._records)

    def find(self, delivery_id: int) -> DeliveryRecord | None:
        with self._lock:
            return next((r for r in self._records if r.id == delivery_id), None)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def send(self, app: GitHubApp, event: str, payload: dict[str, Any], *,
             content_type: WebhookContentType, timeout: float, guid: str | None = None,
             redelivery: bool = False) -> DeliveryRecord:
        """Deliver ``payload`` to the App's webhook URL now and log the outcome.

        A receiver that refuses the connection or gives no answer within ``timeout``
        seconds is logged with status code 0; an App without a URL is logged but not
        sent. A refused connection fails in milliseconds, so a ``git push`` whose
        receiver is down still returns at once.
        """
        body, mime = encode_body(payload, content_type)
        guid = guid or str(uuid.uuid4())
        headers = {
            "Accept": "*/*", "Content-Type": mime,
            "User-Agent": defaults.HOOKSHOT_USER_AGENT,
            "X-GitHub-Delivery": guid, "X-GitHub-Event": event,
            "X-GitHub-Hook-ID": str(app.hook_id),
            "X-GitHub-Hook-Installation-Target-ID": str(app.id),
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-Hub-Signature": sign(app.webhook_secret, body, "sha1"),
            "X-Hub-Signature-256": sign(app.webhook_secret, body, "sha256"),
        }
        installation = payload.get("installation") or {}
        repository = payload.get("repository") or {}
        with self._lock:
            self._next_id += 1
            record = DeliveryRecord(
                id=self._next_id, guid=guid, app_id=app.id, event=event,
                action=payload.get("action"), installation_id=installation.get("id"),
                repository_id=repository.get("id"), payload=payload,
                request_headers=headers, url=app.webhook_url, redelivery=redelivery)
            self._records.append(record)
        if not app.webhook_url:
            record.status = defaults.DELIVERY_STATUS_NO_URL
            return record
        started = time.perf_counter()
        try:
            response = self._client.post(app.webhook_url, content=body, headers=headers,
                                         timeout=timeout)
        except httpx.TimeoutException:
            record.status = defaults.DELIVERY_STATUS_TIMED_OUT
        except httpx.HTTPError:
            record.status = defaults.DELIVERY_STATUS_UNREACHABLE
        else:
            record.status_code = response.status_code
            record.status = (defaults.DELIVERY_STATUS_OK if record.ok else
                             defaults.DELIVERY_STATUS_INVALID.format(
                                 status_code=response.status_code))
            record.response_headers = dict(response.headers)
            record.response_body = response.text
        record.duration = time.perf_counter() - started
        return record

    def recent(self, record: DeliveryRecord) -> bool:
        """Whether GitHub would still list and redeliver ``record`` (three days)."""
        cutoff = datetime.now(UTC) - timedelta(seconds=defaults.DELIVERY_RETENTION_SECONDS)
        return record.delivered_at >= cutoff

    def age(self, delivery_id: int, *, seconds: float) -> DeliveryRecord:
        """Move a record ``seconds`` into the past, so tests can meet the three-day
        limit without waiting; raises ``KeyError`` for an unknown id."""
        with self._lock:
            record = next((r for r in self._records if r.id == delivery_id), None)
            if record is None:
                raise KeyError(delivery_id)
            record.delivered_at -= timedelta(seconds=seconds)
        return record

    def page(self, *, app_id: int, per_page: int, cursor: int | None,
             succeeded: bool | None = None) -> tuple[list[DeliveryRecord], int | None]:
        """One App's recent deliveries, newest first, ``per_page`` at a time, and the
        cursor of the next page: the id of its first record (GitHub's cursor names
        the delivery a page starts from). ``succeeded`` keeps only 2xx answers (True)
        or only failures (False)."""
        with self._lock:
            mine = [r for r in self._records if r.app_id == app_id]
        ordered = sorted((r for r in mine if self.recent(r)
                          and (succeeded is None or r.ok == succeeded)
                          and (cursor is None or r.id <= cursor)),
                         key=lambda r: r.id, reverse=True)
        following = ordered[per_page].id if len(ordered) > per_page else None
        return ordered[:per_page], following
