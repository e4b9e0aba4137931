"""``git http-backend`` run as a CGI program, its answer streamed back over WSGI.

git's own server side speaks the smart HTTP protocol (v0 and v2, ``ls-refs``,
``fetch`` with want/have negotiation, partial-clone filters, gzip request bodies,
receive-pack with its hooks), so the emulator hands it each request instead of
writing a second implementation that could disagree with real git clients. The
request body is fed in on a thread while the answer is read, so neither side waits
for the other and no pack is ever held whole in memory.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import get_input_stream

from . import defaults

_HEADER_END = b"\r\n\r\n"
_STDERR_KEPT_BYTES = 4096


def _environment(request: Request, git_dir: Path, path_tail: str,
                 extra: dict[str, str]) -> dict[str, str]:
    """The CGI variables http-backend reads, with the server-side configuration.

    The parent's ``GIT_*`` variables are dropped so a ``GIT_DIR`` of whoever started
    the emulator cannot redirect the backend. ``Git-Protocol`` (v2) travels as
    ``HTTP_GIT_PROTOCOL``, which http-backend turns into ``GIT_PROTOCOL`` itself.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    headers = request.headers
    env.update(
        GIT_PROJECT_ROOT=str(git_dir.parent), GIT_HTTP_EXPORT_ALL="1",
        PATH_INFO=f"/{git_dir.name}/{path_tail}", REQUEST_METHOD=request.method,
        QUERY_STRING=request.query_string.decode("latin-1"),
        CONTENT_TYPE=headers.get("Content-Type", ""),
        REMOTE_ADDR=request.remote_addr or "", GATEWAY_INTERFACE="CGI/1.1",
        SERVER_PROTOCOL=request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"))
    if "Content-Length" in headers and "chunked" not in headers.get(
            "Transfer-Encoding", "").lower():
        env["CONTENT_LENGTH"] = headers["Content-Length"]  # else: read to the end
    for name in ("Content-Encoding", "Git-Protocol"):
        if name in headers:
            env["HTTP_" + name.upper().replace("-", "_")] = headers[name]
    if "Git-Protocol" in headers:
        env["GIT_PROTOCOL"] = headers["Git-Protocol"]
    env["GIT_CONFIG_COUNT"] = str(len(defaults.GIT_SERVER_CONFIG))
    for index, (key, value) in enumerate(defaults.GIT_SERVER_CONFIG):
        env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = key, value
    env.update(extra)
    return env


def _feed(source: IO[bytes], sink: IO[bytes]) -> None:
    """Copy the request body into git; a backend that stopped reading ends the copy."""
    # OSError: git exited (a bad request) or the client went away; git's answer, or
    # its absence, says which.
    with contextlib.suppress(OSError), sink:
        while chunk := source.read(defaults.GIT_STREAM_CHUNK_BYTES):
            sink.write(chunk)


def _keep_tail(source: IO[bytes], kept: bytearray) -> None:
    """Drain git's stderr so it never blocks, keeping the end for error answers."""
    while chunk := source.read(_STDERR_KEPT_BYTES):
        kept.extend(chunk)
        del kept[:-_STDERR_KEPT_BYTES]


def _read_head(stdout: IO[bytes]) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """Status, headers and the first body bytes of the CGI answer; None if git wrote
    no complete header block."""
    buffered = b""
    while _HEADER_END not in buffered:
        chunk = os.read(stdout.fileno(), defaults.GIT_STREAM_CHUNK_BYTES)
        if not chunk:
            return None
        buffered += chunk
    head, _, rest = buffered.partition(_HEADER_END)
    status, headers = 200, []
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers.append((name.strip(), value.strip()))
    return status, headers, rest


class _GitAnswer:
    """The rest of git's answer as it comes (read straight from the pipe, unbuffered,
    so progress and small packs are not held back).

    ``close()`` always ends the process, whether or not the server started iterating:
    closing git's stdout early (the client left) makes git stop at its next write;
    otherwise git is waited for, since a push's post-receive hook sends the webhooks
    before git exits, and ``git push`` returning must mean they were delivered.
    """

    def __init__(self, process: subprocess.Popen[bytes], first: bytes,
                 feeder: threading.Thread) -> None:
        self._process = process
        self._first = first
        self._feeder = feeder
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        assert self._process.stdout is not None
        if self._first:
            yield self._first
        descriptor = self._process.stdout.fileno()
        while chunk := os.read(descriptor, defaults.GIT_STREAM_CHUNK_BYTES):
            yield chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        assert self._process.stdout is not None
        self._process.stdout.close()
        try:
            self._process.wait(timeout=defaults.GIT_BACKEND_EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._feeder.join(timeout=defaults.GIT_BACKEND_EXIT_SECONDS)


def serve(request: Request, *, git_dir: Path, path_tail: str,
          extra_env: dict[str, str]) -> Response:
    """Answer one smart HTTP request (``info/refs`` or a service RPC) for the bare
    repository at ``git_dir`` with whatever git http-backend answers."""
    process = subprocess.Popen(
        ["git", "http-backend"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=_environment(request, git_dir, path_tail, extra_env))
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    feeder = threading.Thread(target=_feed, args=(get_input_stream(request.environ),
                                                  process.stdin), daemon=True)
    feeder.start()
    errors = bytearray()
    drain = threading.Thread(target=_keep_tail, args=(process.stderr, errors), daemon=True)
    drain.start()
    head = _read_head(process.stdout)
    if head is None:
        _GitAnswer(process, b"", feeder).close()
        drain.join(timeout=defaults.GIT_BACKEND_EXIT_SECONDS)
        message = errors.decode(errors="replace").strip() or "no answer"
        return Response(f"git http-backend failed: {message}\n", status=500,
                        content_type="text/plain; charset=utf-8")
    status, headers, first = head
    return Response(_GitAnswer(process, first, feeder), status=status, headers=headers)
