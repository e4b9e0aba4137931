"""``flask webhook-proxy`` against a local channel that speaks smee.io's protocol.

The channel is a real HTTP server in a thread doing what smee.io's ``lib/server.js``
does: ``POST /<channel>`` parses the JSON body and emits ``{...headers, body, query,
timestamp}`` (``JSON.stringify``: compact, UTF-8 as is) to every listener of
``GET /<channel>`` (``Accept: text/event-stream``), which first gets a ``ready`` event.
The receiver is the test app served over real HTTP; a delivery counts as forwarded
when its row is in the database with the bytes GitHub signed.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import make_server

from models import DeliveryStatus, WebhookDelivery, db
from tests.webhooks.conftest import payload, signed_headers
from webhook_app.config import settings_from_environment
from webhook_app.errors import ConfigError, ProxyEventError
from webhook_app.manifest import build_manifest
from webhook_app.webhook_proxy import FIRST_RETRY_SECONDS, WebhookProxy, github_json, parse_event

CHANNEL = "/Xq3abcTestChannel"

# A commit message as GitHub writes it into a payload: UTF-8 as is, markup as is, the
# escapes JSON needs with upper-case hex (what @octokit/webhooks re-creates).
GITHUB_MESSAGE = '"Caf\u00e9 \u2665 <b>&amp;</b> \\u001B[0m\\n\\"done\\""'
GITHUB_BYTES = ('{"ref":"refs/heads/main","head_commit":{"message":' + GITHUB_MESSAGE
                + '},"n":[1,2.5,null,true,false]}').encode()


def github_push() -> bytes:
    """The recorded push as GitHub writes it (compact), with :data:`GITHUB_MESSAGE` as its
    head commit's message, spliced in as text so nothing here re-encodes it."""
    document = payload("push")
    document["head_commit"]["message"] = "@@message@@"
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return text.replace('"@@message@@"', GITHUB_MESSAGE).encode()


# --- The channel -------------------------------------------------------------------------


class SmeeChannel(ThreadingHTTPServer):
    """One smee.io channel: POSTs become events for every open stream."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ChannelHandler)
        self.streams: list[Any] = []
        self.connections = 0
        self.lock = threading.Lock()
        self.counter = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{CHANNEL}"

    def emit(self, data: str, event: str | None = None) -> None:
        with self.lock:
            for stream in list(self.streams):
                self.counter += 1
                kind = f"event: {event}\n" if event else ""
                try:
                    stream.write(f"id: {self.counter}\n{kind}data: {data}\n\n".encode())
                    stream.flush()
                except OSError:
                    self.streams.remove(stream)

    def drop_streams(self) -> None:
        """Close every open stream, as a restart of smee.io or a lost network does."""
        with self.lock:
            streams, self.streams = self.streams, []
        for stream in streams:
            stream.close()


class _ChannelHandler(BaseHTTPRequestHandler):
    server: SmeeChannel
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path != CHANNEL or self.headers.get("Accept") != "text/event-stream":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        done = threading.Event()
        stream = _Stream(self.wfile, done)
        with self.server.lock:
            self.server.connections += 1
            self.server.streams.append(stream)
        self.server.emit("{}", "ready")
        done.wait()  # the handler thread holds the connection until the stream is closed
        self.close_connection = True

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        message: dict[str, Any] = {name.lower(): value for name, value in self.headers.items()}
        message.update(body=json.loads(raw), query={}, timestamp=int(time.time() * 1000))
        self.server.emit(json.dumps(message, ensure_ascii=False, separators=(",", ":")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Stream:
    """A listener's connection; closing it ends the handler's wait and the response."""

    def __init__(self, wfile: Any, done: threading.Event) -> None:
        self.wfile, self.done = wfile, done

    def write(self, data: bytes) -> None:
        self.wfile.write(data)

    def flush(self) -> None:
        self.wfile.flush()

    def close(self) -> None:
        self.done.set()


@pytest.fixture
def channel() -> Iterator[SmeeChannel]:
    server = SmeeChannel()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.drop_streams()
    server.shutdown()
    server.server_close()


@pytest.fixture
def receiver(app: Flask) -> Iterator[str]:
    """The app's webhook endpoint over real HTTP."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/webhooks/github"
    server.shutdown()


@pytest.fixture
def proxy(channel: SmeeChannel, receiver: str) -> Iterator[WebhookProxy]:
    running = WebhookProxy(source=channel.url, target=receiver)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    wait_for(lambda: len(channel.streams) == 1, "the proxy to listen")
    yield running
    running.stop.set()
    channel.drop_streams()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the proxy did not stop"


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def github_sends(channel: SmeeChannel, event: str, raw: bytes, **kwargs: Any) -> str:
    """POST a delivery to the channel as GitHub does; its delivery id."""
    delivery_id = str(uuid.uuid4())
    headers = signed_headers(event, raw, "application/json", delivery_id=delivery_id, **kwargs)
    answer = httpx.post(channel.url, content=raw, headers=headers)
    assert answer.status_code == 200
    return delivery_id


def stored(app: Flask, delivery_id: str) -> WebhookDelivery | None:
    with app.app_context():
        row = db.session.scalar(
            select(WebhookDelivery).where(WebhookDelivery.delivery_id == delivery_id)
        )
        db.session.expunge_all()
        return row


# --- The body as GitHub wrote it --------------------------------------------------------


def test_github_json_writes_the_bytes_github_signed() -> None:
    assert github_json(json.loads(GITHUB_BYTES)) == GITHUB_BYTES


def test_a_recorded_push_survives_the_round_trip_through_smee() -> None:
    raw = github_json(payload("push"))
    smee_event = {
        "x-github-event": "push",
        "host": "smee.io",
        "content-length": "9",
        "body": json.loads(raw),
        "query": {},
        "timestamp": 1,
    }
    relayed = json.dumps(smee_event, ensure_ascii=False, separators=(",", ":"))
    delivery = parse_event(relayed)
    assert delivery.body == raw
    assert delivery.headers == {"x-github-event": "push", "content-type": "application/json"}


@pytest.mark.parametrize(
    ("data", "reason"),
    [("not json", "not JSON"), ("{}", "no body"), ("[1]", "no body")],
)
def test_an_event_without_a_delivery_is_named(data: str, reason: str) -> None:
    with pytest.raises(ProxyEventError, match=reason):
        parse_event(data)


# --- Through a channel to the receiver --------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_signed_push_reaches_the_database(
    app: Flask, channel: SmeeChannel, proxy: WebhookProxy
) -> None:
    raw = github_push()
    delivery_id = github_sends(channel, "push", raw)
    channel.emit("{}", "ping")

    wait_for(lambda: stored(app, delivery_id) is not None, "the delivery to be stored")
    row = stored(app, delivery_id)
    assert row is not None
    assert row.event == "push"
    assert row.status == DeliveryStatus.QUEUED
    assert row.payload == raw.decode()
    wait_for(lambda: proxy.forwarded == 1, "the proxy to count it")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_wrongly_signed_delivery_is_refused_and_the_proxy_goes_on(
    app: Flask, channel: SmeeChannel, proxy: WebhookProxy
) -> None:
    forged = github_sends(channel, "push", github_json(payload("push")), secret="not-the-secret")
    genuine = github_sends(channel, "push", github_json(payload("push")))

    wait_for(lambda: stored(app, genuine) is not None, "the genuine delivery to be stored")
    wait_for(lambda: proxy.forwarded == 2, "both to be forwarded")
    assert stored(app, forged) is None


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_proxy_listens_again_after_the_stream_closes(
    app: Flask, channel: SmeeChannel, proxy: WebhookProxy
) -> None:
    first = github_sends(channel, "push", github_json(payload("push")))
    wait_for(lambda: stored(app, first) is not None, "the first delivery")

    dropped_at = time.monotonic()
    channel.drop_streams()
    wait_for(lambda: channel.connections == 2 and len(channel.streams) == 1, "a new stream")
    assert time.monotonic() - dropped_at >= FIRST_RETRY_SECONDS * 0.9

    second = github_sends(channel, "push", github_json(payload("push")))
    wait_for(lambda: stored(app, second) is not None, "the delivery after reconnecting")


# --- Settings and the command ------------------------------------------------------------


def test_the_command_says_what_to_set_without_a_channel(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["webhook-proxy"])
    assert result.exit_code == 2
    assert "WEBHOOK_PROXY_URL is not set" in result.output
    assert "https://smee.io/new" in result.output


def test_the_command_refuses_a_channel_that_is_not_a_url(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["webhook-proxy", "--source", "smee.io/abc"])
    assert result.exit_code == 2
    assert "must be a channel URL" in result.output


def test_webhook_proxy_url_must_be_a_url() -> None:
    with pytest.raises(ConfigError, match="WEBHOOK_PROXY_URL"):
        settings_from_environment({"WEBHOOK_PROXY_URL": "smee.io/abc"})
    settings = settings_from_environment({"WEBHOOK_PROXY_URL": "https://smee.io/abc"})
    assert settings["WEBHOOK_PROXY_URL"] == "https://smee.io/abc"


def test_the_manifest_sends_deliveries_to_the_channel() -> None:
    manifest = build_manifest("http://127.0.0.1:5000", webhook_url="https://smee.io/abc")
    assert manifest["hook_attributes"]["url"] == "https://smee.io/abc"
    assert manifest["redirect_url"] == "http://127.0.0.1:5000/setup/complete"
    assert build_manifest("http://127.0.0.1:5000")["hook_attributes"]["url"] == (
        "http://127.0.0.1:5000/webhooks/github"
    )
