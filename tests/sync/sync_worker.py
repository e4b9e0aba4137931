"""A plain worker process for kill tests: ``python -m tests.sync.sync_worker SETTINGS SYNC_ID``.

It builds the app from the JSON settings file and runs ``execute_sync`` once, as an RQ
worker's work horse would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    from sync_jobs.pipeline import execute_sync
    from webhook_app import create_app

    settings = json.loads(Path(sys.argv[1]).read_text())
    settings["WEBHOOK_SECRETS"] = tuple(settings["WEBHOOK_SECRETS"])
    app = create_app(settings)
    with app.app_context():
        execute_sync(int(sys.argv[2]))


if __name__ == "__main__":
    main()
