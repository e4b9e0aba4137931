"""Receivers that do nothing, for :mod:`bench.receiver`'s floor: what gunicorn as
deployed serves per second when the request does no work at all.

``flask_app`` is a Flask app with one route that reads the body and answers 202 (the
least a Flask receiver does); ``wsgi_app`` is the same without Flask, a bare WSGI
callable. Neither verifies, parses or stores anything, so their rates bound from above
every receiver built on that stack on this machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, request

flask_app = Flask(__name__)


@flask_app.post("/webhooks/github")
def receive() -> tuple[dict[str, str], int]:
    request.get_data()
    return {"status": "accepted"}, 202


def wsgi_app(
    environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    stream = environ["wsgi.input"]
    stream.read(int(environ.get("CONTENT_LENGTH") or 0))
    body = b'{"status":"accepted"}'
    start_response(
        "202 Accepted", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
