"""Structured logs (API stub; filled in by the logging work).

:func:`log_context` adds ids (delivery_id, installation_id, repository, project_id,
sync_id) to every log record emitted inside it, in this thread and its copies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    yield


def configure_logging(level: str = "INFO") -> None:
    """One JSON object a line on stderr, secrets redacted."""
