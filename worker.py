"""Entry point of the worker process: ``python -m worker`` (the Procfile's ``worker``).

The worker's app is built here, once, as ``wsgi.py`` builds gunicorn's, and handed to
:func:`sync_jobs.worker.main`: the jobs package runs inside an app but never builds
one, so it needs nothing from the web package.
"""

import sys

from sync_jobs.worker import main
from webhook_app import create_app

if __name__ == "__main__":
    main(create_app(), sys.argv[1:])
