"""gunicorn settings for the web process (the Procfile's ``web``).

gthread workers: each thread holds one request, so long-lived server-sent-event
streams occupy a thread, not a whole process, while webhook requests stay short.
"""

import os
import signal

from gunicorn.glogging import Logger

from sync_jobs.logs import LOG_FORMATS, prepare_handler
from webhook_app import environment
from webhook_app.config import listen_host

# 127.0.0.1 unless PUBLIC_URL names another host (then 0.0.0.0) or WEB_HOST says where:
# the app refuses to start listening beyond this machine without PUBLIC_URL, and
# without sign-in unless PUBLIC_DASHBOARD=read (webhook_app/config.py).
_settings = environment()
bind = (
    f"{listen_host(web_host=_settings.get('WEB_HOST'), public_url=_settings.get('PUBLIC_URL'))}"
    f":{os.environ.get('PORT', '5000')}"
)
worker_class = "gthread"
# One process per core. Every open status or project page holds a thread for its
# event stream (in a blocking Redis read, so it costs no CPU), and with four threads a
# process (which measured best for bare webhook throughput, bench/README.md) eight
# open tabs would leave webhooks no thread at all. Sixteen keep the pages people open
# from starving the receiver; a host with many viewers raises WEB_THREADS further.
workers = int(os.environ.get("WEB_CONCURRENCY", str(os.cpu_count() or 1)))
threads = int(os.environ.get("WEB_THREADS", "16"))
# GitHub gives a delivery 10 seconds; nothing in a request should come near that,
# but an SSE stream is long by design and keeps itself alive with heartbeats.
timeout = 60
graceful_timeout = 20
keepalive = 5
accesslog = "-" if os.environ.get("WEB_ACCESS_LOG") else None


# gunicorn's own lines ("Booting worker", tracebacks, the access log when on) come out
# like the app's: JSON, or text with LOG_FORMAT=text, secrets redacted (an access line
# holds the query string, an OAuth callback's code= for one). The app's own records
# need nothing here: create_app configures the root logger in each worker. The class
# keeps gunicorn's handlers (stderr, --error-logfile, syslog) and changes only how
# they format, and unlike logconfig_dict it leaves the access log off when it is off.
_LOG_FORMAT = os.environ.get("LOG_FORMAT", "json").strip().lower()


class JsonLogger(Logger):
    def setup(self, cfg):  # type: ignore[no-untyped-def]
        super().setup(cfg)
        fmt = _LOG_FORMAT if _LOG_FORMAT in LOG_FORMATS else "json"
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                prepare_handler(handler, fmt)


logger_class = JsonLogger


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """In setup mode, print the one-time setup code /setup asks for (every worker prints
    the same code; it lives in Redis)."""
    from flask import Flask

    from webhook_app.setup import announce_setup_code

    if isinstance(worker.wsgi, Flask):  # not gunicorn's stand-in for an app that failed
        announce_setup_code(worker.wsgi)
        _end_streams_on_sigterm(worker)


def worker_int(worker):  # type: ignore[no-untyped-def]
    """A quick stop (SIGINT, as Ctrl-C sends; SIGQUIT, as the master sends its workers
    on SIGINT) ends this worker's open event streams before gunicorn exits it. Python's
    exit joins the request threads, and a stream's thread sleeps in a blocking read
    until the client goes: without this the worker outlived the master's
    ``graceful_timeout`` and was killed (webhook_app.sse.end_streams)."""
    from flask import Flask

    from webhook_app.sse import end_streams

    if isinstance(getattr(worker, "wsgi", None), Flask):  # not yet loaded while booting
        end_streams(worker.wsgi)


def _end_streams_on_sigterm(worker):  # type: ignore[no-untyped-def]
    """A graceful stop (SIGTERM) ends this worker's open event streams at once, then
    goes on as gunicorn's own handler does; otherwise it would wait for each stream's
    blocking read (webhook_app.sse.end_streams). gunicorn has no hook for SIGTERM in
    a worker, as it has for SIGINT and SIGQUIT (:func:`worker_int`)."""
    from webhook_app.sse import end_streams

    app, previous = worker.wsgi, signal.getsignal(signal.SIGTERM)

    def stop(signum, frame):  # type: ignore[no-untyped-def]
        end_streams(app)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, stop)
