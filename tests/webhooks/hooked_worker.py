"""An RQ worker class for ``rq worker --worker-class``: runs sync jobs with a test executor.

Importing this module plugs :func:`tests.webhooks.executors.record_run` into
``sync_jobs.sync_job.executor`` in the worker process, so the real lock protocol and
coalescing run under a real worker without a GitHub behind the sync. It runs jobs in
the worker process itself (RQ's SimpleWorker), so several workers overlap
realistically, each job inside the app context of an app built from the environment,
as ``python -m worker`` builds its own.
"""

from typing import Any

from rq import SimpleWorker

from sync_jobs import sync_job
from sync_jobs.worker import AppWorker
from tests.webhooks.executors import record_run
from webhook_app import create_app

sync_job.executor = record_run


class HookedWorker(AppWorker, SimpleWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("app", create_app())
        super().__init__(*args, **kwargs)
