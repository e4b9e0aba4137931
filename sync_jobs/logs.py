"""Structured logs: one JSON object a line on stderr, with context ids and no secrets.

Every process (gunicorn's workers, the RQ worker and its work horses, the maintenance
and sweeper loops, ``flask`` commands) builds its app through ``create_app``, which
calls :func:`configure_logging` with the ``LOG_LEVEL`` and ``LOG_FORMAT`` settings.
gunicorn's own lines go through the same formatter and filters (``gunicorn.conf.py``).

A line carries ``timestamp`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``,
an ``exc_info`` traceback when there is one, and the ids of :data:`CONTEXT_FIELDS`
that :func:`log_context` set around the code that logged it. The ids are the ones
people look things up by: ``installation_id`` is GitHub's installation id (what a
delivery carries and GitHub's settings pages show), ``repository`` is ``owner/name``,
``project_id`` and ``sync_id`` are our rows, ``job_id`` the RQ job, ``delivery_id``
GitHub's ``X-GitHub-Delivery``.

The context lives in a :class:`contextvars.ContextVar`, so it follows the code: each
thread has its own, a thread started through ``contextvars.copy_context().run`` sees
its starter's, and an RQ work horse is a fork whose job sets its own. A plain
``threading.Thread`` starts with an empty context, as with any context variable.

Redaction happens in :class:`RedactingFilter` on the handler, before any formatter
sees the record: the message is rendered with its args and scrubbed, so a secret in
an argument (httpx logs the URL it requested, codeload's ``?token=`` included) is
gone from the record itself. The formatters scrub tracebacks and extra fields again,
because an exception message can hold a URL too. Redaction is pattern-based: it
knows the shapes in :data:`SECRET_PATTERNS` and nothing else, so code should still
not log secrets on purpose.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

CONTEXT_FIELDS = (
    "delivery_id",
    "installation_id",
    "repository",
    "project_id",
    "sync_id",
    "job_id",
)
"""The ids :func:`log_context` accepts, in the order text lines show them."""

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
"""Accepted ``LOG_LEVEL`` values."""

LOG_FORMATS = ("json", "text")
"""Accepted ``LOG_FORMAT`` values: ``json`` for log pipelines, ``text`` for people."""

QUIET_LOGGERS = ("httpx", "httpcore", "alembic.runtime.plugins")
"""Libraries that log routine lines at INFO or DEBUG: httpx and httpcore every request,
Alembic each plugin it loads in every process. Kept at WARNING; at level DEBUG httpx's
request lines show (redacted), the others stay off."""

REDACTED = "[REDACTED]"
"""What a secret is replaced with."""

_context: ContextVar[Mapping[str, Any]] = ContextVar(
    "project_sync_log_context", default=MappingProxyType({})
)


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Add ``ids`` to every record logged inside the block; nested blocks merge.

    ``None`` values are left out (an id not known yet), an inner block's value wins
    over an outer one's and the outer value returns when the inner block ends. An
    unknown name raises ``TypeError`` like a wrong keyword argument: a typo would
    otherwise vanish from every log line silently.
    """
    unknown = sorted(set(ids) - set(CONTEXT_FIELDS))
    if unknown:
        raise TypeError(f"log_context() got unknown ids {unknown}; known: {CONTEXT_FIELDS}")
    merged = {**_context.get(), **{k: v for k, v in ids.items() if v is not None}}
    token = _context.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> Mapping[str, Any]:
    """The ids in effect here (read-only)."""
    return _context.get()


# --- Redaction --------------------------------------------------------------------------


def _keep_scheme(match: re.Match[str]) -> str:
    if match.group("value") == REDACTED:
        return match.group(0)
    scheme = match.group("scheme")
    return f"{match.group('key')}{scheme + ' ' if scheme else ''}{REDACTED}"


_VALUE = r"[^\s&#'\",;(){}\[\]]+"
"""A secret value inside free text: up to whitespace, a query separator, a quote or a
bracket (so a value already replaced by ``[REDACTED]`` is never matched again)."""

SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # PEM private keys, the whole block (or to the end when the block was cut off).
    (
        re.compile(
            r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----.*?"
            r"(?:-----END ([A-Z0-9]+ )*PRIVATE KEY-----|\Z)",
            re.S,
        ),
        f"{REDACTED} PRIVATE KEY",
    ),
    # JWTs (the App's own, OIDC tokens): base64url JSON header and payload start "eyJ".
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?"), REDACTED),
    # Authorization header values, as "Authorization: Bearer x" or in a dict repr; the
    # scheme stays. Before the token shapes, so "token ghs_..." goes as a whole.
    (
        re.compile(
            r"(?i)(?P<key>\b(?:proxy-)?authorization\b['\"]?\s*[:=]\s*['\"]?)"
            r"(?:(?P<scheme>bearer|token|basic|digest)\s+)?"
            r"(?P<value>\[REDACTED\]|[^\s'\",;{}]+)"
        ),
        _keep_scheme,
    ),
    # GitHub tokens: installation (ghs_), user-to-server (ghu_), OAuth (gho_), personal
    # (ghp_, github_pat_), refresh (ghr_). The prefix stays: it says which kind leaked.
    (re.compile(r"\b(gh[pousr]_)[A-Za-z0-9]{8,}"), rf"\1{REDACTED}"),
    (re.compile(r"\b(github_pat_)[A-Za-z0-9_]{8,}"), rf"\1{REDACTED}"),
    # Credentials in URLs: https://x-access-token:TOKEN@github.com/..., any user:password@.
    (re.compile(r"(?i)(x-access-token:)[^@\s]+@"), rf"\1{REDACTED}@"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@"), rf"\1{REDACTED}@"),
    # Query, form or key=value secrets: codeload's ?token=, OAuth's code= and
    # client_secret=, access_token= answers.
    (
        re.compile(r"(?i)(?<![\w-])((?:access_|refresh_|id_)?token|client_secret)=" + _VALUE),
        rf"\1={REDACTED}",
    ),
    (re.compile(r"(?i)([?&]code=)" + _VALUE), rf"\1{REDACTED}"),
    # The same names as quoted keys of a JSON document or a dict repr.
    (
        re.compile(
            r"(?i)(['\"](?:(?:access_|refresh_|id_)?token|client_secret|password)['\"]\s*:\s*['\"])"
            r"[^'\"]+"
        ),
        rf"\1{REDACTED}",
    ),
)
"""Each shape of secret and what replaces it, applied in order (PEM blocks first:
their base64 could look like other shapes)."""


def redact(text: str) -> str:
    """``text`` with every secret of :data:`SECRET_PATTERNS` replaced."""
    for pattern, replacement in SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Renders a record's message with its args, scrubbed; the args are dropped.

    Rendering here rather than in the formatter means every handler this filter sits
    on, whatever its formatter, gets the scrubbed text. A filter that raises would
    propagate into the code that logged, so a record whose message cannot be rendered
    is passed on untouched and fails in the formatter, where logging reports it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        record.msg = redact(message)
        record.args = None
        return True


class ContextFilter(logging.Filter):
    """Puts the ids of :func:`log_context` on each record as attributes.

    An id the caller passed in ``extra=`` is kept. Runs in the thread that logs (a
    handler's filters run inside ``Logger.handle``), so it sees that thread's context.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


# --- Formatters and the handler ---------------------------------------------------------


def _utc_timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(_BaseJsonFormatter):
    """``{"timestamp", "level", "logger", "message", ...ids, ...extra, "exc_info"}``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        super().__init__("{levelname}{name}{message}", *args, style="{", **kwargs)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["timestamp"] = _utc_timestamp(record)
        super().add_fields(log_data, record, message_dict)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        # The message was scrubbed by RedactingFilter; tracebacks and extra fields
        # were not, and exception messages quote URLs too.
        return {k: redact(v) if isinstance(v, str) else v for k, v in log_data.items()}


class TextFormatter(logging.Formatter):
    """``2025-01-31T12:00:00.000Z INFO logger [sync_id=7 ...] message``, for people."""

    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(
            f"{key}={getattr(record, key)}" for key in CONTEXT_FIELDS if hasattr(record, key)
        )
        head = f"{_utc_timestamp(record)} {record.levelname} {record.name}"
        line = f"{head} [{ids}] {record.getMessage()}" if ids else f"{head} {record.getMessage()}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return redact(line)


class StderrHandler(logging.StreamHandler[TextIO]):
    """A stream handler on whatever ``sys.stderr`` is when a record is written.

    Looking the stream up each time (like logging's last-resort handler) keeps it
    working when stderr is replaced after configuration: test capture, a daemon
    redirecting its streams.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def build_formatter(fmt: str = "json") -> logging.Formatter:
    """The formatter for ``LOG_FORMAT`` ``fmt``."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, got {fmt!r}")
    return JsonFormatter() if fmt == "json" else TextFormatter()


def prepare_handler(handler: logging.Handler, fmt: str = "json") -> logging.Handler:
    """Give ``handler`` the formatter of ``fmt`` and the context and redaction filters.

    The context filter goes first so ids are on the record before anything formats it.
    """
    handler.setFormatter(build_formatter(fmt))
    for kind in (ContextFilter, RedactingFilter):
        if not any(isinstance(f, kind) for f in handler.filters):
            handler.addFilter(kind())
    return handler


def _is_console_handler(handler: logging.Handler) -> bool:
    """Ours, or the plain console handler ``logging.basicConfig`` installs."""
    if isinstance(handler, StderrHandler):
        return True
    return type(handler) is logging.StreamHandler and handler.stream in (
        sys.stderr,
        sys.stdout,
        sys.__stderr__,
        sys.__stdout__,
    )


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """One record a line on stderr in ``fmt`` (json or text), secrets redacted.

    Replaces the root logger's console handlers (an earlier call's, or the one
    ``logging.basicConfig`` adds) so calling it again, or after ``basicConfig``, never
    doubles lines; other handlers (files, test capture) are kept. Safe to call from
    the web, worker and maintenance processes alike; ``create_app`` calls it.
    """
    level = level.upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {LOG_LEVELS}, got {level!r}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if _is_console_handler(handler):
            root.removeHandler(handler)
    root.addHandler(prepare_handler(StderrHandler(), fmt))
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        verbose = level == "DEBUG" and name == "httpx"
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
