"""Gives RQ jobs a Flask app context without building an app at import time."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from flask import has_app_context

if TYPE_CHECKING:
    from flask import Flask

P = ParamSpec("P")
R = TypeVar("R")

_worker_app: Flask | None = None


def worker_app() -> Flask:
    """The worker process's app, created on first use from the environment."""
    global _worker_app
    if _worker_app is None:
        from webhook_app import create_app

        _worker_app = create_app()
    return _worker_app


def job_context() -> AbstractContextManager[object]:
    """An app context for a job; reuses the caller's when one is active (in-process runs)."""
    if has_app_context():
        return nullcontext()
    return worker_app().app_context()


def in_app_context(job: Callable[P, R]) -> Callable[P, R]:
    """Decorate an RQ job function so it runs inside an app context."""

    @functools.wraps(job)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with job_context():
            return job(*args, **kwargs)

    return wrapper
