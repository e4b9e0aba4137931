"""A tiny webhook receiver for tests: records every delivery and answers a set status.

Tests that only need to see what the emulator sent use this instead of the real
app, so emulator tests do not depend on the app being importable or correct.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """Listens on a free loopback port; ``url`` is where to point a webhook."""

    def __init__(self, *, status: int = 202, delay: float = 0.0) -> None:
        self.status = status
        self.delay = delay
        """Seconds to wait before answering, to play a receiver slower than GitHub allows."""
        self.received: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(ReceivedRequest(
                        self.path, {k: v for k, v in self.headers.items()}, body))
                if receiver.delay > 0:
                    time.sleep(receiver.delay)
                reply = b'{"ok": true}'
                # A sender that gave up on a slow answer has closed its side already.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(receiver.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}/webhooks/github"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def events(self, name: str) -> list[ReceivedRequest]:
        """Received deliveries of one event type, oldest first."""
        with self._lock:
            return [r for r in self.received if r.headers.get("X-GitHub-Event") == name]

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
