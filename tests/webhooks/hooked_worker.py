"""An RQ worker class for ``rq worker --worker-class``: runs sync jobs with a test executor.

Importing this module plugs :func:`tests.webhooks.executors.record_run` into
``sync_jobs.sync_job.executor`` in the worker process, so the real lock protocol and
coalescing run under a real worker without a GitHub behind the sync. SimpleWorker
runs jobs in the worker process itself, so several workers overlap realistically.
"""

from rq import SimpleWorker

from sync_jobs import sync_job
from tests.webhooks.executors import record_run

sync_job.executor = record_run


class HookedWorker(SimpleWorker):
    pass
