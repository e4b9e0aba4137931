"""``python -m github_emulator``: serve a local GitHub until interrupted.

App credentials are loaded from ``--app-credentials`` (JSON) or generated and written
there, so the app under development can be configured once and keep working across
emulator restarts. ``--demo`` adds a generated repository and installs the App on it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import defaults
from .history import generate_repository, push
from .server import EmulatorServer

DEMO_OWNER = "demo"
DEMO_REPOSITORY = "sample"


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m github_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--data-dir", type=Path, default=Path(".github-emulator"))
    parser.add_argument("--app-credentials", type=Path, default=None,
                        help="JSON file with the App's credentials (default: "
                             "<data-dir>/app.json); created when missing")
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--demo", action="store_true",
                        help="create demo/sample with a generated history and install")
    parser.add_argument("--demo-files", type=int, default=500)
    return parser.parse_args()


def main() -> None:
    args = _parse()
    credentials_file: Path = args.app_credentials or args.data_dir / "app.json"
    saved = json.loads(credentials_file.read_text()) if credentials_file.exists() else {}
    server = EmulatorServer(
        args.data_dir, host=args.host, port=args.port, app_id=saved.get("app_id"),
        private_key_pem=saved.get("private_key_pem"),
        webhook_secret=saved.get("webhook_secret"), client_id=saved.get("client_id"),
        client_secret=saved.get("client_secret"),
        webhook_url=args.webhook_url or saved.get("webhook_url"))
    server.start()
    credentials_file.parent.mkdir(parents=True, exist_ok=True)
    credentials_file.write_text(json.dumps({
        "app_id": server.app_id, "private_key_pem": server.private_key_pem,
        "webhook_secret": server.webhook_secret, "client_id": server.app.client_id,
        "client_secret": server.app.client_secret, "webhook_url": server.webhook_url,
        "api_url": server.url}, indent=2))
    credentials_file.chmod(0o600)
    print(f"GitHub emulator at {server.url}")
    print(f"App {server.app_id} credentials in {credentials_file.resolve()}")
    print(f"git over HTTP: git clone {server.url}/<owner>/<repo>.git; push as "
          f"{defaults.DEMO_LOGIN} with the token {defaults.DEMO_PERSONAL_TOKEN}")
    if args.demo:
        repo = server.state.find_repository(DEMO_OWNER, DEMO_REPOSITORY)
        if repo is None:
            repo = server.create_repository(DEMO_OWNER, DEMO_REPOSITORY)
        work_dir = server.data_dir / "_demo-work"
        generate_repository(work_dir, seed=42, files=args.demo_files,
                            directories=max(args.demo_files // 25, 1), commits=5)
        installation_id = server.install(DEMO_OWNER, [repo])
        push(work_dir, server.clone_url(repo), force=True)
        print(f"Demo repository {repo.full_name}, installation {installation_id}, "
              f"work tree {work_dir.resolve()}")
    server.serve_forever()


if __name__ == "__main__":
    main()
