"""The emulator served over HTTP on a loopback port, in a background thread."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from . import api_apps, api_repos, control, smart_http, web
from .dispatch import EmulatorApp, Route
from .emulator import Emulator
from .errors import DroppedConnectionError

ALL_ROUTES: list[Route] = [*control.ROUTES, *api_apps.ROUTES, *api_repos.ROUTES,
                           *smart_http.ROUTES, *web.ROUTES]


_LINGER_RESET = struct.pack("ii", 1, 0)
"""``SO_LINGER`` on with a zero timeout: closing the socket sends RST, not FIN."""


class _EmulatorHandler(WSGIRequestHandler):
    """werkzeug's handler without the per-request log line (the request counter keeps
    the tally) and with real connection resets for the ``reset``/``timeout`` faults."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def connection_dropped(self, error: BaseException,
                           environ: dict[str, Any] | None = None) -> None:
        """Reset the connection when a fault asked for it.

        werkzeug swallows the error and, having written nothing, goes back to reading
        a next request from the same socket, so without this the client waits out its
        whole read timeout. Closing here with linger 0 makes the kernel send RST at
        once; the makefile'd streams still hold the socket, so the descriptor really
        closes when ``finish()`` closes them, before socketserver's ``shutdown`` could
        send a FIN first.
        """
        if not isinstance(error, DroppedConnectionError):
            return
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client already left; nothing to reset
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.connection.close()


class EmulatorServer(Emulator):
    """An :class:`Emulator` listening on ``host:port`` (0 picks a free port).

    ``start()`` returns once the socket is bound, so ``url`` is usable at once;
    ``stop()`` closes the socket and the webhook client. Also a context manager.
    """

    def __init__(self, data_dir: Path | str, *, host: str = "127.0.0.1", port: int = 0,
                 **app_settings: Any) -> None:
        super().__init__(data_dir, **app_settings)
        self.host = host
        self.port = port
        self.wsgi_app = EmulatorApp(self, ALL_ROUTES)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> EmulatorServer:
        self._server = make_server(self.host, self.port, self.wsgi_app, threaded=True,
                                   request_handler=_EmulatorHandler)
        self.port = self._server.server_port
        shown_host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        self.url = f"http://{shown_host}:{self.port}"
        self.write_url_file()
        # A short poll interval makes stop() return in milliseconds, not half a second.
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="github-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.delivery_log.close()

    def serve_forever(self) -> None:
        """Block serving requests (the ``python -m github_emulator`` path)."""
        if self._server is None:
            self.start()
        assert self._thread is not None
        try:
            self._thread.join()
        except KeyboardInterrupt:
            self.stop()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
