"""``flask webhook-proxy``: GitHub's real deliveries on a laptop, through a smee.io channel.

GitHub cannot reach 127.0.0.1, so in development the App's webhook URL is a smee.io
channel (``WEBHOOK_PROXY_URL``, as in Probot). smee.io answers GitHub, then sends the
delivery to every client listening on the channel's server-sent-event stream; this
command is such a client and POSTs each delivery to the local receiver
(``/webhooks/github``), which verifies and stores it exactly as if GitHub had sent it.

The protocol is smee.io's (``probot/smee.io`` ``lib/server.js``, ``probot/smee-client``
``index.ts``): ``GET <channel>`` with ``Accept: text/event-stream``; a ``ready`` event
on connect, a ``ping`` every 30 s, and one unnamed event per delivery whose data is a
JSON object of the request's headers (lower-case names) plus ``body`` (the parsed JSON
payload), ``query`` and smee's ``timestamp``. Deliveries made while no client listens
are not kept: smee.io has no replay, and event ids restart on every connection.

The signature. ``X-Hub-Signature-256`` is GitHub's HMAC of the bytes it sent, but smee.io
parses the body and hands on the parsed value, so the bytes have to be written again.
smee-client POSTs ``JSON.stringify(body)``; this proxy writes what GitHub writes
(:func:`github_json`: compact JSON, UTF-8 as is, escapes in upper-case hex, which is
how ``@octokit/webhooks`` re-creates GitHub's bytes), so a delivery verifies whenever
the parse lost nothing. It loses something, and the receiver answers 401 (nothing is
stored), when the payload has an object key that looks like an integer (JavaScript
moves those first), a number beyond 2**53 or one written with an exponent, or when
the App sends form-encoded webhooks (smee.io takes JSON only). The receiver is never
relaxed for the proxy: a delivery that does not verify is refused like any other.

A stream that ends or fails is opened again, after 1 s and then twice as long each
time up to 30 s; a connection that opens resets the wait.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import click
import httpx
from flask import current_app
from flask.cli import with_appcontext
from httpx_sse import ServerSentEvent, SSEError, connect_sse

from sync_jobs.logs import log_context
from webhook_app.errors import ProxyEventError
from webhook_app.manifest import WEBHOOK_PATH

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 1.0
"""Wait before opening a stream again after it ended; doubled after each failed try."""

MAX_RETRY_SECONDS = 30.0
"""Longest wait between tries, so a laptop back on the network is listening soon."""

STREAM_TIMEOUT = httpx.Timeout(10.0, read=90.0)
"""smee.io pings every 30 s: a stream silent for three pings is dead and opened again."""

FORWARD_TIMEOUT_SECONDS = 10.0
"""GitHub's own limit for an answer; the receiver answers in milliseconds."""

SMEE_FIELDS = frozenset({"body", "query", "timestamp"})
"""Keys of a smee event that are not request headers."""

NOT_FORWARDED = frozenset(
    {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "te",
     "trailer", "upgrade", "expect", "accept-encoding", "proxy-connection"}
)
"""Headers of the request smee.io received that belong to that hop, not to the delivery
(``host`` would name smee.io; the length is the re-written body's)."""

_ESCAPE = re.compile(r"\\(?:u([0-9a-f]{4})|.)")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class ProxiedDelivery:
    """One delivery from the channel, as it is POSTed to the receiver."""

    headers: dict[str, str]
    body: bytes
    query: dict[str, str]

    @property
    def delivery_id(self) -> str | None:
        return self.headers.get("x-github-delivery")

    @property
    def event(self) -> str:
        return self.headers.get("x-github-event", "unknown")


def github_json(document: Any) -> bytes:
    """``document`` encoded as GitHub encodes a webhook payload, so its HMAC can match.

    Compact separators, keys in the order received, non-ASCII characters as UTF-8, and
    the escapes JSON needs (``\\n``, ``\\u001B``) with upper-case hex digits.
    """
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    text = _ESCAPE.sub(lambda m: "\\u" + m[1].upper() if m[1] else m[0], text)
    # A lone surrogate cannot be UTF-8; JSON.stringify escapes it, and so does this.
    text = _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04X}", text)
    return text.encode()


def parse_event(data: str) -> ProxiedDelivery:
    """The delivery in a smee event's data; :class:`ProxyEventError` says why there is none."""
    try:
        message = json.loads(data)
    except ValueError as exc:
        raise ProxyEventError(f"the event's data is not JSON: {exc}") from exc
    if not isinstance(message, dict) or "body" not in message:
        raise ProxyEventError("the event has no body: it is not a webhook delivery")
    headers = {
        name.lower(): value
        for name, value in message.items()
        if name not in SMEE_FIELDS and name.lower() not in NOT_FORWARDED and isinstance(value, str)
    }
    headers.setdefault("content-type", "application/json")
    sent_query = message.get("query")
    query = {k: v for k, v in sent_query.items() if isinstance(v, str)} if isinstance(
        sent_query, dict
    ) else {}
    try:
        body = github_json(message["body"])
    except ValueError as exc:
        raise ProxyEventError(f"the body cannot be written as JSON: {exc}") from exc
    return ProxiedDelivery(headers=headers, body=body, query=query)


def shown(url: str) -> str:
    """``url`` without its path: a smee channel's path is its only secret (whoever has it
    reads every delivery), so logs name the host only."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..." if parts.path.strip("/") else url


class WebhookProxy:
    """Listens on ``source`` and forwards each delivery to ``target`` until ``stop`` is set.

    ``stop`` is looked at between events and during waits; a stream blocked on a quiet
    channel notices it at the next ping or when the connection closes.
    """

    def __init__(self, *, source: str, target: str, stop: threading.Event | None = None) -> None:
        self.source = source
        self.target = target
        self.stop = stop or threading.Event()
        self.forwarded = 0

    def run(self) -> None:
        """Listen, and listen again whenever the stream ends, with backoff."""
        delay = FIRST_RETRY_SECONDS
        # The stream may go through HTTPS_PROXY like any client; the local target never.
        with httpx.Client(timeout=STREAM_TIMEOUT) as stream_client, httpx.Client(
            timeout=FORWARD_TIMEOUT_SECONDS, trust_env=False
        ) as forward_client:
            while not self.stop.is_set():
                try:
                    opened = self._listen(stream_client, forward_client)
                    problem = "the stream ended"
                except (httpx.HTTPError, SSEError) as exc:
                    opened, problem = False, f"{type(exc).__name__}: {exc}"
                if self.stop.is_set():
                    break
                delay = FIRST_RETRY_SECONDS if opened else min(delay * 2, MAX_RETRY_SECONDS)
                log.warning(
                    "webhook proxy: %s (%s); listening again in %.0f s",
                    problem, shown(self.source), delay,
                )
                self.stop.wait(delay)

    def _listen(self, stream_client: httpx.Client, forward_client: httpx.Client) -> bool:
        """One connection: forward deliveries until it ends. True if the stream opened."""
        with connect_sse(stream_client, "GET", self.source) as events:
            response = events.response
            if response.status_code != 200:
                response.read()
                log.warning(
                    "webhook proxy: %s answered %s: %s",
                    shown(self.source), response.status_code, response.text[:200],
                )
                return False
            for event in events.iter_sse():
                if self.stop.is_set():
                    return True
                self._handle(event, forward_client)
        return True

    def _handle(self, event: ServerSentEvent, forward_client: httpx.Client) -> None:
        if event.event == "ready":
            log.info(
                "webhook proxy: listening on %s, forwarding to %s", shown(self.source), self.target
            )
            return
        if event.event != "message":
            return  # ping, or a kind smee.io may add later
        try:
            delivery = parse_event(event.data)
        except ProxyEventError as exc:
            log.warning("webhook proxy: event %s skipped: %s", event.id, exc)
            return
        with log_context(delivery_id=delivery.delivery_id):
            self._forward(delivery, forward_client)

    def _forward(self, delivery: ProxiedDelivery, client: httpx.Client) -> None:
        """POST one delivery; one log line says what the receiver made of it."""
        try:
            response = client.post(
                self.target, content=delivery.body, headers=delivery.headers,
                params=delivery.query,
            )
        except httpx.HTTPError as exc:
            log.error(
                "webhook proxy: %s delivery not forwarded, %s did not answer (%s); "
                "redeliver it from the App's Advanced settings on GitHub once it runs",
                delivery.event, self.target, exc,
            )
            return
        self.forwarded += 1
        outcome = _outcome(response)
        if response.status_code == 401:
            outcome += (
                "; the body smee.io handed on no longer matches GitHub's signature "
                "(see webhook_app/webhook_proxy.py for when that happens)"
            )
        level = logging.INFO if response.status_code < 400 else logging.WARNING
        log.log(
            level, "webhook proxy: %s delivery forwarded to %s: %s %s",
            delivery.event, self.target, response.status_code, outcome,
        )


def _outcome(response: httpx.Response) -> str:
    """The receiver's own word on a delivery: its ``status`` or ``error`` field."""
    try:
        answer = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(answer, Mapping):
        return str(answer.get("status") or answer.get("error") or "")
    return ""


def _check_channel(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise click.BadParameter(
                f"must be a channel URL like https://smee.io/abc, got {value!r}"
            )
    return value


@click.command("webhook-proxy")
@click.option("--source", callback=_check_channel, help="The channel; default WEBHOOK_PROXY_URL.")
@click.option("--target", help="Where deliveries go; default the web process on 127.0.0.1:PORT.")
@click.option("--port", envvar="PORT", type=int, default=5000, show_default=True,
              help="The web process's port (PORT), when --target is not given.")
@with_appcontext
def command(source: str | None, target: str | None, port: int) -> None:
    """Forward the GitHub deliveries of a smee.io channel to this app's webhook endpoint."""
    source = source or current_app.config.get("WEBHOOK_PROXY_URL")
    if not source:
        raise click.UsageError(
            "WEBHOOK_PROXY_URL is not set: open https://smee.io/new, set WEBHOOK_PROXY_URL "
            "to the channel's URL (in .env or the environment) and register the App at /setup"
        )
    target = target or f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    with suppress(KeyboardInterrupt):  # Ctrl-C is how it stops
        WebhookProxy(source=source, target=target).run()
