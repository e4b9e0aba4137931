"""The ``post-receive`` hook installed in every emulated repository.

git runs it after a push has updated the refs, a local push or one over smart HTTP
alike (:mod:`github_emulator.smart_http` sets the pusher); it forwards the ref
updates to the running emulator (``POST /_emulator/post-receive``), which answers
only after the ``push`` webhooks went out, so ``git push`` returning means the
deliveries are done.
The script uses the standard library only and finds the server's URL in the data
folder, so repositories keep working across emulator restarts on other ports.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

from . import defaults

PUSHER_ENV = "GITHUB_EMULATOR_PUSHER"
"""Environment variable naming the account a push is attributed to (default: owner)."""

_SCRIPT = '''#!{python} -I
# Forwards ref updates to the GitHub emulator; see github_emulator/hooks.py.
import json, os, sys, urllib.request
from pathlib import Path

git_dir = Path(os.environ.get("GIT_DIR", ".")).resolve()
url_file = git_dir.parent.parent / {url_file!r}
updates = [line.split() for line in sys.stdin.read().splitlines() if line.strip()]
body = json.dumps({{
    "git_dir": str(git_dir),
    "pusher": os.environ.get({pusher_env!r}),
    "updates": [{{"before": b, "after": a, "ref": r}} for b, a, r in updates],
}}).encode()
try:
    url = url_file.read_text().strip()
    request = urllib.request.Request(
        url + "{prefix}/post-receive", data=body,
        headers={{"Content-Type": "application/json"}})
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()
except Exception as error:  # the push itself has succeeded; only the webhook is lost
    print("emulator: push webhook not sent:", error, file=sys.stderr)
'''


def install_post_receive(git_dir: Path) -> None:
    """Write the hook (executable) into a bare repository."""
    hook = git_dir / "hooks" / "post-receive"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(_SCRIPT.format(python=sys.executable, url_file=defaults.URL_FILE_NAME,
                                   pusher_env=PUSHER_ENV, prefix=defaults.INTERNAL_PREFIX))
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
