"""``make run``: start everything a person needs to see Project Sync work on this machine.

1. Redis: use ``REDIS_URL`` if it answers; otherwise start ``redis-server`` on its own
   port (nothing persisted), or stop with a message saying what to install or set.
2. GitHub: with no ``APP_ID`` configured, start the bundled emulator with a generated
   demo repository and App credentials, and point the app at it.
3. ``flask db upgrade`` on the configured database (SQLite under ``instance/`` by default).
4. The Procfile's ``web`` and ``worker`` processes, output prefixed, stopped together on
   Ctrl-C or when any of them exits.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import redis
from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"
DEV_REDIS_PORT = 6390
"""Port for a Redis started by this script, away from a system Redis on 6379."""
EMULATOR_PORT = int(os.environ.get("EMULATOR_PORT", "8765"))
WEB_PORT = int(os.environ.get("PORT", "5000"))
STARTUP_TIMEOUT_SECONDS = 30
DEMO_OWNER, DEMO_NAME = "demo", "sample"


class Supervisor:
    """Children started here, stopped together."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.children.append((name, child))
        threading.Thread(target=self._relay, args=(name, child), daemon=True).start()
        return child

    @staticmethod
    def _relay(name: str, child: subprocess.Popen[bytes]) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            sys.stdout.write(f"{name:>8} | {line.decode(errors='replace')}")
            sys.stdout.flush()

    def wait(self) -> int:
        while True:
            for name, child in self.children:
                code = child.poll()
                if code is not None:
                    print(f"{name} exited with {code}; stopping the others")
                    return code or 1
            time.sleep(0.5)

    def stop(self) -> None:
        for _, child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, child in self.children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()


def wait_until(check: object, what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{what} did not come up within {STARTUP_TIMEOUT_SECONDS} s")


def ensure_redis(env: dict[str, str], supervisor: Supervisor) -> None:
    url = env.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        print(f"Redis answers at {url}")
        return
    except redis.RedisError:
        pass
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(
            f"Redis does not answer at {url} and there is no redis-server to start.\n"
            "Install Redis (e.g. `apt-get install redis-server`) or set REDIS_URL to a running one."
        )
    INSTANCE.mkdir(exist_ok=True)
    supervisor.start(
        "redis",
        [
            binary,
            "--port",
            str(DEV_REDIS_PORT),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(INSTANCE),
        ],
        env,
    )
    env["REDIS_URL"] = f"redis://127.0.0.1:{DEV_REDIS_PORT}/0"
    wait_until(lambda: redis.Redis.from_url(env["REDIS_URL"]).ping(), "redis-server")
    print(f"Started redis-server at {env['REDIS_URL']} (nothing is persisted)")


def start_emulator(env: dict[str, str], supervisor: Supervisor) -> str:
    """Start the bundled GitHub and point the app at it; returns the emulator's URL."""
    data_dir = INSTANCE / "emulator"
    credentials = data_dir / "app.json"
    emulator_url = f"http://127.0.0.1:{EMULATOR_PORT}"
    supervisor.start(
        "github",
        [
            sys.executable,
            "-m",
            "github_emulator",
            "--port",
            str(EMULATOR_PORT),
            "--data-dir",
            str(data_dir),
            "--app-credentials",
            str(credentials),
            "--webhook-url",
            f"http://127.0.0.1:{WEB_PORT}/webhooks/github",
        ],
        env,
    )
    wait_until(
        lambda: urllib.request.urlopen(emulator_url + "/_emulator/app").status == 200,
        "the GitHub emulator",
    )
    app = json.loads(credentials.read_text())
    env.update(
        APP_ID=str(app["app_id"]),
        PRIVATE_KEY=app["private_key_pem"],
        WEBHOOK_SECRET=app["webhook_secret"],
        GITHUB_API_URL=emulator_url,
    )
    # Sign-in stays off in the demo (no GITHUB_CLIENT_ID): one person on one machine. The
    # web process then listens on 127.0.0.1 only (see announce_access).
    print(f"No APP_ID configured: using the GitHub emulator at {emulator_url}")
    return emulator_url


def _post_json(url: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def install_demo(emulator_url: str) -> None:
    """Push a generated repository to the emulator and install the App on it.

    The emulator then sends ``installation created``; the app creates the project and
    queues its first sync, exactly as with GitHub. Runs after the web process answers,
    so no webhook is sent into the void.
    """
    from github_emulator.history import generate_repository, push

    status, created = _post_json(
        emulator_url + "/_emulator/repositories", {"owner": DEMO_OWNER, "name": DEMO_NAME}
    )
    if status == 201:
        work_dir = INSTANCE / "emulator-demo-work"
        generate_repository(work_dir, seed=42, files=500, directories=20, commits=5)
        push(work_dir, str(created["clone_url"]), force=True)
    _post_json(
        emulator_url + "/_emulator/installations",
        {"account": DEMO_OWNER, "repositories": [f"{DEMO_OWNER}/{DEMO_NAME}"]},
    )
    print(f"Demo: installed the App on {DEMO_OWNER}/{DEMO_NAME}; its first sync is queued")


def announce_access(env: dict[str, str]) -> None:
    """Say where the web process listens and who may use it, before it starts."""
    from webhook_app.config import is_loopback, listen_host

    host = listen_host(web_host=env.get("WEB_HOST"), public_url=env.get("PUBLIC_URL"))
    signing_in = bool(env.get("GITHUB_CLIENT_ID") and env.get("GITHUB_CLIENT_SECRET"))
    if is_loopback(host) and not signing_in:
        print(
            f"Sign-in is off: the web process listens on {host} only, so only this machine "
            "reaches it, and everyone here may read and act on every project. Set "
            "GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET (and PUBLIC_URL to serve others)."
        )
    else:
        print(f"The web process listens on {host}; pages and the API need sign-in with GitHub.")


def main() -> int:
    # Only the working directory's .env, as the app itself reads it.
    dotenv_file = Path.cwd() / ".env"
    dotenv = dotenv_values(dotenv_file) if dotenv_file.is_file() else {}
    env = {
        **{k: v for k, v in dotenv.items() if v is not None},
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PORT": str(WEB_PORT),
    }
    # A terminal is read by a person: plain lines unless LOG_FORMAT says otherwise.
    env.setdefault("LOG_FORMAT", "text")
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    supervisor = Supervisor()
    # Started from a shell in the background, SIGINT arrives ignored; take it back so
    # Ctrl-C (or kill -INT) always stops every child.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        ensure_redis(env, supervisor)
        emulator_url = None if env.get("APP_ID") else start_emulator(env, supervisor)
        announce_access(env)
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi:app", "db", "upgrade"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        supervisor.start(
            "web", [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], env
        )
        supervisor.start("worker", [sys.executable, "-m", "sync_jobs.worker"], env)
        supervisor.start(
            "maintenance",
            [sys.executable, "-m", "flask", "--app", "wsgi:app", "maintenance", "run"],
            env,
        )
        web = f"http://127.0.0.1:{WEB_PORT}"
        wait_until(
            lambda: urllib.request.urlopen(web + "/healthz").status == 200, "the web process"
        )
        if emulator_url:
            install_demo(emulator_url)
        print(f"Project Sync is running at {web}/ (Ctrl-C stops everything)")
        return supervisor.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        supervisor.stop()


if __name__ == "__main__":
    sys.exit(main())
