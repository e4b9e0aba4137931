"""``make run``: start everything a person needs to see Project Sync work on this machine.

0. Checks, before anything starts: this checkout is not running already (a lock in the
   run folder), and the web port and the demo GitHub's port are free. A failed check is
   one line saying who holds what and what to do, and the exit code is 1.
1. Redis: ``REDIS_URL`` if set (it must answer). Otherwise a ``redis-server`` of this run's
   own on a free port, its folder in the run folder, nothing persisted: two checkouts
   never share a Redis, so neither runs the other's jobs.
2. GitHub: with no ``APP_ID`` configured, start the bundled emulator with a generated
   demo repository and App credentials, and point the app at it.
3. ``flask db upgrade`` on the configured database (SQLite in the run folder by default).
4. The Procfile's ``web``, ``worker`` and ``maintenance`` processes, output prefixed,
   stopped together on Ctrl-C or when any of them exits.

The run folder is ``instance/`` of the checkout, or ``RUN_DIR``. Ports: ``PORT`` (5000)
for the web process, ``EMULATOR_PORT`` (8765) for the demo GitHub.
"""

from __future__ import annotations

import contextlib
import fcntl
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
from collections.abc import Callable
from pathlib import Path
from typing import IO

import redis
from dotenv import dotenv_values

from scripts import ports

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEB_PORT = 5000
DEFAULT_EMULATOR_PORT = 8765
STARTUP_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 15
"""How long children get to stop after SIGTERM before SIGKILL (a worker finishes its job)."""
DEMO_OWNER, DEMO_NAME = "demo", "sample"
RUN_FILE = "run.json"
"""File in the run folder, locked while a ``make run`` of it is running: its pid, its web
URL and, once started, its Redis (``redis_url``), for the next run's message and for
commands that want the running demo's Redis. Stale after a run ends; the lock says."""


class Supervisor:
    """Children started here, stopped together."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.last_to_stop: set[str] = set()
        """Children in their own process group: stopped after all the others."""

    def start(
        self, name: str, argv: list[str], *, own_group: bool = False
    ) -> subprocess.Popen[bytes]:
        """Start a child; ``own_group`` keeps a terminal's Ctrl-C from reaching it, so it
        stops only when :meth:`stop` says (after the children started later)."""
        child = subprocess.Popen(
            argv,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0 if own_group else None,
        )
        self.children.append((name, child))
        if own_group:
            self.last_to_stop.add(name)
        threading.Thread(target=self._relay, args=(name, child), daemon=True).start()
        return child

    @staticmethod
    def _relay(name: str, child: subprocess.Popen[bytes]) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            sys.stdout.write(f"{name:>11} | {line.decode(errors='replace')}")
            sys.stdout.flush()

    def exited(self) -> tuple[str, int] | None:
        """The first child that has exited, with its code."""
        for name, child in self.children:
            code = child.poll()
            if code is not None:
                return name, code
        return None

    def wait(self) -> int:
        while (ended := self.exited()) is None:
            time.sleep(0.5)
        name, code = ended
        print(f"{name} exited with {code}; stopping the others")
        return code or 1

    def stop(self) -> None:
        """SIGTERM to every child, those in their own group last; SIGKILL after a while."""
        first = [child for name, child in self.children if name not in self.last_to_stop]
        last = [child for name, child in self.children if name in self.last_to_stop]
        for wave in (first, last):
            for child in reversed(wave):
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
            for child in reversed(wave):
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    kill_tree(child)


def kill_tree(child: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child that did not stop in time, and every process under it.

    Killing the child alone would orphan what it started: gunicorn's master waits up to
    its ``graceful_timeout`` for its workers before killing them itself, so a master
    killed sooner leaves a worker running (a worker held in its exit by a request that
    does not end, as open event streams did before gunicorn.conf.py's ``worker_int``).
    The tree is read before the child dies, while its processes still name it as their
    parent."""
    for pid in [*descendants(child.pid), child.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    child.wait()


def descendants(pid: int) -> list[int]:
    """Every process under ``pid``, from ``ps`` (POSIX); none if ``ps`` is missing."""
    try:
        listing = subprocess.run(
            ["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    children: dict[int, list[int]] = {}
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) == 2 and all(field.isdecimal() for field in fields):
            children.setdefault(int(fields[1]), []).append(int(fields[0]))
    found, pending = [], list(children.get(pid, []))
    while pending:
        found.append(current := pending.pop())
        pending.extend(children.get(current, []))
    return found


def wait_until(check: Callable[[], object], what: str, supervisor: Supervisor) -> None:
    """Wait for ``check`` to hold; stop at once if a child exits meanwhile."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if ended := supervisor.exited():
            raise SystemExit(f"{ended[0]} exited with {ended[1]} before {what} answered")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{what} did not come up within {STARTUP_TIMEOUT_SECONDS} s")


# --- checks before anything starts ----------------------------------------------------------


def claim_run_dir(run_dir: Path, web_url: str) -> IO[str]:
    """Lock the run folder for this run (released when the process ends, however)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / RUN_FILE, "a+")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        try:
            holder = json.loads(handle.read())
        except ValueError:
            holder = {}
        pid, url = holder.get("pid", "?"), holder.get("url", "?")
        raise SystemExit(
            f"Project Sync is already running from {run_dir} at {url} (pid {pid}): stop it "
            f"(Ctrl-C where it runs, or kill -INT {pid}), or set RUN_DIR to another folder "
            "and PORT to another port to run a second one."
        ) from None
    describe_run(handle, pid=os.getpid(), url=web_url)
    return handle


def describe_run(handle: IO[str], **facts: object) -> None:
    """Add ``facts`` to the run file (read back whole, written whole)."""
    handle.seek(0)
    try:
        known = json.loads(handle.read() or "{}")
    except ValueError:
        known = {}
    handle.truncate(0)
    handle.write(json.dumps({**known, **facts} if "pid" not in facts else facts))
    handle.flush()


def check_web_port(host: str, port: int) -> None:
    if not ports.is_taken(host, port):
        return
    other = ports.next_free(host, port)
    if ports.answers_as_project_sync(port):
        raise SystemExit(
            f"Project Sync is already running at http://127.0.0.1:{port}/ (port {port} is "
            f"taken): stop it (Ctrl-C where it runs), or set PORT={other} to run another one."
        )
    raise SystemExit(
        f"Port {port} is taken by another program, not Project Sync: stop it, or set "
        f"PORT={other} to run Project Sync on another port."
    )


def check_emulator_port(port: int) -> None:
    if not ports.is_taken(ports.LOOPBACK, port):
        return
    other = ports.next_free(ports.LOOPBACK, port)
    holder = (
        "the demo GitHub of another Project Sync"
        if ports.answers_as_emulator(port)
        else "another program"
    )
    raise SystemExit(
        f"Port {port} of the demo GitHub (EMULATOR_PORT) is taken by {holder}: stop it, "
        f"or set EMULATOR_PORT={other} to run this one's demo GitHub there."
    )


def check_redis_url(url: str) -> None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except (redis.RedisError, ValueError) as exc:
        raise SystemExit(
            f"Redis does not answer at REDIS_URL={url} ({exc}): start it, or unset REDIS_URL "
            "and make run starts a Redis of its own."
        ) from None


def find_redis_server() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(
            "make run starts a Redis of its own, and there is no redis-server on this "
            "machine: install it (e.g. `apt-get install redis-server`), or set REDIS_URL "
            "to a running Redis."
        )
    return binary


# --- starting things -------------------------------------------------------------------------


def _server_pid(client: redis.Redis) -> int:
    info: dict[str, object] = client.info("server")  # type: ignore[assignment]
    return int(str(info["process_id"]))


def stop_stale_redis(pidfile: Path) -> None:
    """Stop the redis-server a run that was killed (SIGKILL) left behind.

    Called with the run folder's lock held, so no live run owns it. Only a process
    that is a redis-server is signalled (Linux's /proc tells; elsewhere it is left)."""
    try:
        pid = int(pidfile.read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"redis-server" in command:
        print(f"Stopping the redis-server (pid {pid}) an earlier run of {pidfile.parent} left")
        os.kill(pid, signal.SIGTERM)


def start_redis(binary: str, run_dir: Path, supervisor: Supervisor) -> str:
    """A redis-server of this run's own, on a free port; returns its URL.

    In its own process group: on Ctrl-C the worker and the others stop first, while
    the Redis they talk to still answers; :meth:`Supervisor.stop` stops it last."""
    data_dir = run_dir / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    pidfile = data_dir / "redis.pid"
    stop_stale_redis(pidfile)
    port = ports.free_port()
    child = supervisor.start(
        "redis",
        [
            binary,
            "--pidfile",
            str(pidfile),
            "--port",
            str(port),
            "--bind",
            ports.LOOPBACK,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
            "--loglevel",
            "warning",
        ],
        own_group=True,
    )
    url = f"redis://{ports.LOOPBACK}:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    # Answering is not enough: it must be the server just started, not one that took
    # the port in between.
    wait_until(lambda: _server_pid(client) == child.pid, "redis-server", supervisor)
    print(f"Started a Redis of this checkout's own at {url} (in {data_dir}, nothing persisted)")
    return url


def start_emulator(env: dict[str, str], run_dir: Path, supervisor: Supervisor) -> str:
    """Start the bundled GitHub and point the app at it; returns the emulator's URL."""
    data_dir = run_dir / "emulator"
    credentials = data_dir / "app.json"
    emulator_url = f"http://{ports.LOOPBACK}:{env['EMULATOR_PORT']}"
    supervisor.start(
        "github",
        [
            sys.executable,
            "-m",
            "github_emulator",
            "--port",
            env["EMULATOR_PORT"],
            "--data-dir",
            str(data_dir),
            "--app-credentials",
            str(credentials),
            "--webhook-url",
            f"http://{ports.LOOPBACK}:{env['PORT']}/webhooks/github",
        ],
    )
    wait_until(
        lambda: ports.answers_as_emulator(int(env["EMULATOR_PORT"])),
        "the GitHub emulator",
        supervisor,
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


def install_demo(emulator_url: str, run_dir: Path) -> None:
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
        work_dir = run_dir / "emulator-demo-work"
        generate_repository(work_dir, seed=42, files=500, directories=20, commits=5)
        push(work_dir, str(created["clone_url"]), force=True)
    _post_json(
        emulator_url + "/_emulator/installations",
        {"account": DEMO_OWNER, "repositories": [f"{DEMO_OWNER}/{DEMO_NAME}"]},
    )
    print(f"Demo: installed the App on {DEMO_OWNER}/{DEMO_NAME}; its first sync is queued")


def demo_push_instructions(emulator_url: str, web_url: str) -> str:
    """How to clone the demo repository over the emulator's smart HTTP, commit and push."""
    from github_emulator.defaults import DEMO_LOGIN, DEMO_PERSONAL_TOKEN

    host = emulator_url.removeprefix("http://")
    clone_url = f"http://{DEMO_LOGIN}:{DEMO_PERSONAL_TOKEN}@{host}/{DEMO_OWNER}/{DEMO_NAME}.git"
    return "\n".join(
        [
            f"Push to the demo repository ({emulator_url}/{DEMO_OWNER}/{DEMO_NAME}.git, user "
            f"{DEMO_LOGIN}, token {DEMO_PERSONAL_TOKEN}) and watch the sync it starts at "
            f"{web_url}/:",
            f"  git clone {clone_url} && cd {DEMO_NAME}",
            '  echo "hello" > hello.txt && git add hello.txt',
            '  git -c user.name=demo -c user.email=demo@example.com commit -m "Say hello"',
            "  git push",
        ]
    )


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


# --- the run -----------------------------------------------------------------------------


def run_environment() -> dict[str, str]:
    """The working directory's ``.env`` (as the app reads it) under the real environment."""
    dotenv_file = Path.cwd() / ".env"
    dotenv = dotenv_values(dotenv_file) if dotenv_file.is_file() else {}
    env = {
        **{k: v for k, v in dotenv.items() if v is not None},
        **os.environ,
        "PYTHONUNBUFFERED": "1",
    }
    env["PORT"] = str(ports.parse("PORT", env.get("PORT"), DEFAULT_WEB_PORT))
    env["EMULATOR_PORT"] = str(
        ports.parse("EMULATOR_PORT", env.get("EMULATOR_PORT"), DEFAULT_EMULATOR_PORT)
    )
    # A terminal is read by a person: plain lines unless LOG_FORMAT says otherwise.
    env.setdefault("LOG_FORMAT", "text")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    # Children run in this working directory (its .env is theirs too) and import from here.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def preflight(env: dict[str, str], run_dir: Path) -> tuple[IO[str], str | None]:
    """Every check that can refuse the run, before anything starts; the held lock and the
    redis-server to start (None: ``REDIS_URL`` is used)."""
    from webhook_app.config import listen_host

    port = int(env["PORT"])
    lock = claim_run_dir(run_dir, f"http://{ports.LOOPBACK}:{port}/")
    check_web_port(
        listen_host(web_host=env.get("WEB_HOST"), public_url=env.get("PUBLIC_URL")), port
    )
    if runs_demo(env):
        check_emulator_port(int(env["EMULATOR_PORT"]))
    if env.get("REDIS_URL"):
        check_redis_url(env["REDIS_URL"])
        return lock, None
    return lock, find_redis_server()


def runs_demo(env: dict[str, str]) -> bool:
    """The demo GitHub runs unless an App is configured, or a smee.io channel
    (``WEBHOOK_PROXY_URL``) says real GitHub is coming: then the setup page registers one."""
    return not env.get("APP_ID") and not env.get("WEBHOOK_PROXY_URL")


def start_everything(
    env: dict[str, str],
    run_dir: Path,
    redis_server: str | None,
    supervisor: Supervisor,
    run_file: IO[str],
) -> None:
    if redis_server is None:
        prefix = env.get("REDIS_KEY_PREFIX") or "project-sync"
        print(f"Using the Redis at REDIS_URL={env['REDIS_URL']} (key prefix {prefix})")
    else:
        env["REDIS_URL"] = start_redis(redis_server, run_dir, supervisor)
    describe_run(run_file, redis_url=env["REDIS_URL"])
    if not env.get("DATABASE_URL") and run_dir != ROOT / "instance":
        env["DATABASE_URL"] = f"sqlite:///{run_dir / 'project_sync.sqlite3'}"
    emulator_url = start_emulator(env, run_dir, supervisor) if runs_demo(env) else None
    announce_access(env)
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi:app", "db", "upgrade"], env=env, check=True
    )
    supervisor.start(
        "web", [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"]
    )
    supervisor.start("worker", [sys.executable, "-m", "worker"])
    supervisor.start(
        "maintenance", [sys.executable, "-m", "flask", "--app", "wsgi:app", "maintenance", "run"]
    )
    web = f"http://{ports.LOOPBACK}:{env['PORT']}"
    wait_until(
        lambda: ports.answers_as_project_sync(int(env["PORT"])), "the web process", supervisor
    )
    if env.get("WEBHOOK_PROXY_URL"):
        supervisor.start(
            "proxy", [sys.executable, "-m", "flask", "--app", "wsgi:app", "webhook-proxy"]
        )
    if emulator_url:
        install_demo(emulator_url, run_dir)
    print(f"Project Sync is running at {web}/ (Ctrl-C stops everything)")
    if emulator_url:
        print(demo_push_instructions(emulator_url, web))


def main() -> int:
    env = run_environment()
    run_dir = Path(env.get("RUN_DIR") or ROOT / "instance").resolve()
    lock, redis_server = preflight(env, run_dir)
    supervisor = Supervisor(env)
    # Started from a shell in the background, SIGINT arrives ignored; take it back so
    # Ctrl-C (or kill -INT) always stops every child.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        start_everything(env, run_dir, redis_server, supervisor, lock)
        return supervisor.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        supervisor.stop()
        lock.close()


if __name__ == "__main__":
    sys.exit(main())
