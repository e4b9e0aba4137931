"""Ports for ``make run``: whether one is free, a free one to suggest, and who answers on
one that is taken (this app, its demo GitHub, or something else)."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.request

LOOPBACK = "127.0.0.1"
PROBE_TIMEOUT_SECONDS = 2
OPENAPI_TITLE = "Project Sync API"
"""``info.title`` of ``/api/v1/openapi.json``, public on every Project Sync: how a web
process is told from anything else that answers HTTP."""


def parse(name: str, value: str | None, default: int) -> int:
    """A port setting, or a one-line refusal naming it."""
    if not value:
        return default
    if not value.strip().isdigit() or not 0 < int(value) < 65536:
        raise SystemExit(f"{name} must be a port number from 1 to 65535, got {value!r}")
    return int(value)


def is_taken(host: str, port: int) -> bool:
    """Whether a server could not listen on ``host:port`` now.

    Binds as gunicorn does (``SO_REUSEADDR``), so a port left in TIME_WAIT by a run that
    just stopped counts as free, and a listener on any address of the port as taken.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def next_free(host: str, port: int) -> int:
    """The first free port above ``port`` (to suggest in a message)."""
    for candidate in range(port + 1, min(port + 200, 65535)):
        if not is_taken(host, candidate):
            return candidate
    return free_port()


def free_port() -> int:
    """A port the system says is free on the loopback address."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _get_json(url: str) -> object:
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_SECONDS) as answer:
            return json.loads(answer.read())
    except (OSError, ValueError, http.client.HTTPException):
        return None  # nothing answers, or not HTTP, or not JSON


def answers_as_project_sync(port: int) -> bool:
    """Whether a Project Sync web process answers on the loopback address at ``port``."""
    document = _get_json(f"http://{LOOPBACK}:{port}/api/v1/openapi.json")
    info = document.get("info") if isinstance(document, dict) else None
    return isinstance(info, dict) and info.get("title") == OPENAPI_TITLE


def answers_as_emulator(port: int) -> bool:
    """Whether the bundled GitHub emulator answers on the loopback address at ``port``."""
    document = _get_json(f"http://{LOOPBACK}:{port}/_emulator/app")
    return isinstance(document, dict) and "app_id" in document
