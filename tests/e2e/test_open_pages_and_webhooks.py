"""Open pages do not starve the receiver: each page's event stream holds a gunicorn
thread for as long as it is open, and webhooks must still be answered at once."""

from __future__ import annotations

import http.client
import json
import signal
import time
from contextlib import ExitStack

import pytest

from tests.webhooks.conftest import signed_headers

from .conftest import Stack

OPEN_PAGES = 12
"""More streams than the old default of 2 processes x 4 threads could hold."""


def open_stream(stack: Stack, path: str) -> http.client.HTTPConnection:
    host, port = stack.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", path, headers={"Accept": "text/event-stream"})
    answer = connection.getresponse()
    assert answer.status == 200
    assert answer.getheader("Content-Type", "").startswith("text/event-stream")
    return connection


@pytest.mark.slow
def test_a_webhook_is_answered_while_a_dozen_pages_follow_their_streams(stack: Stack) -> None:
    with ExitStack() as streams:
        for _ in range(OPEN_PAGES):
            streams.callback(open_stream(stack, "/events").close)
        body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 77}).encode()
        headers = signed_headers("ping", body, "application/json",
                                 secret=stack.env["WEBHOOK_SECRET"])
        host, port = stack.url.removeprefix("http://").split(":")
        started = time.monotonic()
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("POST", "/webhooks/github", body=body, headers=headers)
        answer = connection.getresponse()
        waited = time.monotonic() - started
        assert answer.status == 200, answer.read()
        assert waited < 2, f"the ping waited {waited:.1f} s behind {OPEN_PAGES} open streams"


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_ends_open_streams_at_once(stack: Stack, stop: signal.Signals) -> None:
    """SIGTERM (a deploy) or SIGINT (Ctrl-C; the master quits its workers with SIGQUIT)
    ends the open streams, telling the browsers to reconnect, instead of waiting out
    each one's blocking read or gunicorn's graceful timeout."""
    host, port = stack.url.removeprefix("http://").split(":")
    answers = []
    for _ in range(4):
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", "/events", headers={"Accept": "text/event-stream"})
        answers.append(connection.getresponse())
        assert answers[-1].status == 200
    time.sleep(1)  # every stream is in its blocking read
    web = stack.processes["web"]
    started = time.monotonic()
    web.send_signal(stop)
    web.wait(timeout=30)
    stopped = time.monotonic() - started
    assert stopped < 5, f"gunicorn took {stopped:.1f} s to stop with streams open"
    for answer in answers:
        try:
            body = answer.read().decode()  # the stream ended: the whole body is there
        except http.client.IncompleteRead as exc:
            raise AssertionError(f"cut: {exc.partial!r}; log: {stack.log('web')[-3000:]}") from exc
        assert "this server is restarting; reconnect to continue" in body, body
