"""The fault harness: the app as deployed, with every service it needs under our control.

:class:`FaultStack` runs what the Procfile runs, as separate processes: the release
command (``flask db upgrade``), gunicorn, K RQ workers (``python -m worker``)
and the maintenance process (``flask maintenance run``), against a private
redis-server (so it can be killed and restarted empty), a PostgreSQL database (a
fresh one on the shared server, or on a private server that a test may stop) and the
GitHub emulator in this process, whose webhooks go to gunicorn. Each process writes
its own log file; :meth:`FaultStack.report` gives their tails with the state of every
project, which is what a failing fault test prints.

Faults are real: SIGKILL of a work horse or of a whole worker, Redis killed and
started again empty, PostgreSQL stopped, gunicorn stopped, and the emulator's knobs
(latency, injected 500s, timeouts and resets, rate limits). Nothing in the app is
patched; the only settings changed are documented ones, set in the processes'
environment.

The harness does not depend on pytest, so ``bench/faults.py`` drives the same stack.
A missing binary raises :class:`ServiceMissingError`; the pytest fixtures turn it into
a skip (a failure with ``CI=true``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis
from flask import Flask
from rq import Worker as RQWorker
from rq.exceptions import NoSuchJobError
from rq.job import Job
from sqlalchemy import select
from sqlalchemy.engine import make_url

from github_emulator.deliveries import DeliveryRecord
from github_emulator.history import HistoryGenerator, push
from github_emulator.server import EmulatorServer
from github_emulator.state import RepositoryRecord
from models import Project, ProjectSync, Repository, SyncStatus, db
from sync_jobs.keys import sync_events_key
from sync_jobs.progress import ProgressEvent
from tests.conftest import POSTGRES_ADMIN_URL, base_settings
from webhook_app import create_app

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

STARTUP_SECONDS = 90
"""Longest the processes may take to answer after start; all of them import the app at
once on a shared two-core machine."""

STOP_SECONDS = 15
"""How long a process may take to stop after SIGTERM before it is killed."""

PYCACHE = Path(tempfile.gettempdir()) / f"project-sync-faults-pycache-{os.getuid()}"
"""Bytecode cache of the stack's processes (see ``FaultStack.__init__``)."""

PHASES = ("resolve", "diff", "fetch", "apply")
"""The sync pipeline's phases, in order, as its progress events name them."""

RUN_SYNC = "sync_jobs.sync_job.run_sync"
"""The RQ job function of a sync, by name (how a worker's current job is recognised)."""

T = TypeVar("T")


class ServiceMissingError(RuntimeError):
    """A binary or service the harness needs is not there."""


class WaitTimeoutError(AssertionError):
    """Something the harness waited for did not happen in time."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], T | None], what: str, timeout: float, *, interval: float = 0.2
) -> T:
    """Poll until ``check`` returns something truthy; raise naming ``what``.

    Exceptions from ``check`` count as "not yet" (a service may be down on purpose)
    and the last one is part of the message; an ``AssertionError`` is a verdict and
    ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except AssertionError:
            raise  # the check found something wrong for good
        except Exception as exc:  # a service down on purpose answers with errors
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise WaitTimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise ServiceMissingError(f"{binary} is not on PATH")
    return path


# --- processes ---------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from every one of its threads."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(p) for p in (task / "children").read_text().split()]
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, children before grandchildren."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        below = [child for parent in frontier for child in children(parent)]
        found += below
        frontier = below
    return found


def process_group(pid: int) -> int | None:
    """The process group of ``pid`` (from ``/proc/<pid>/stat``), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[2])


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_pids(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@dataclass
class Service:
    """One process of the stack, started with its own log file (appended across
    restarts, each start marked), in its own session so signals reach only it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    killed_on_purpose: bool = False
    """Set when a test killed it for good (a whole-worker kill): not expected alive."""

    def start(self) -> Service:
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        log.write(f"\n----- start {self.starts} at {time.strftime('%H:%M:%S')} -----\n".encode())
        log.flush()
        try:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def kill(self) -> list[int]:
        """SIGKILL the process and everything below it (parent first, so it cannot
        react to its children dying); return the pids killed."""
        if not self.alive():
            return []
        tree = [self.pid, *descendants(self.pid)]
        kill_pids(tree)
        assert self.popen is not None
        self.popen.wait(timeout=10)
        return tree

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """SIGTERM, then SIGKILL for whatever of its tree is left (a work horse runs in
        its own process group and would otherwise outlive its worker)."""
        if self.popen is None:
            return
        tree = descendants(self.pid) if self.alive() else []
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        kill_pids([pid for pid in tree if pid_alive(pid)])

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


# --- Redis -------------------------------------------------------------------------------


class RedisServer:
    """A private redis-server without persistence: started again, it is empty."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.binary = _require("redis-server")
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)

    def start(self, timeout: float = 20) -> None:
        self.starts += 1
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - closed below
        try:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.directory),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        client = self.client()
        wait_until(client.ping, f"redis-server on port {self.port}", timeout, interval=0.05)

    def kill(self) -> None:
        """SIGKILL: every key is gone, as after a crash of a Redis without persistence."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart_empty(self, down_seconds: float = 0.0) -> None:
        self.kill()
        time.sleep(down_seconds)
        self.start()

    def stop(self) -> None:
        self.kill()


# --- PostgreSQL --------------------------------------------------------------------------


def _postgres_user() -> str | None:
    """Who runs the private server: ourselves, or ``postgres`` when we are root
    (initdb refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ServiceMissingError("running as root and there is no postgres user") from exc
    return "postgres"


class PostgresServer:
    """A private PostgreSQL cluster in a temporary folder, on a free port, trust auth.

    The folder is made with :func:`tempfile.mkdtemp` rather than under pytest's
    tmp_path, whose parents only root can enter, because as root the server runs as
    the ``postgres`` user.
    """

    def __init__(self, port: int | None = None) -> None:
        self.initdb = _require("initdb")
        self.pg_ctl = _require("pg_ctl")
        self.user = _postgres_user()
        if self.user is not None:
            self.runner = [_require("runuser"), "-u", self.user, "--"]
        else:
            self.runner = []
        self.port = port or free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="faults-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        if self.user is not None:
            shutil.chown(self.directory, user=self.user)
        self.running = False

    def _run(self, *argv: str, timeout: float = 120) -> None:
        result = subprocess.run(
            [*self.runner, *argv], capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stdout}\n{result.stderr}")

    def init(self) -> PostgresServer:
        # --no-sync only spares initdb's own fsyncs of the template files; the server
        # itself runs with PostgreSQL's defaults.
        self._run(
            self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--no-sync",
        )
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self._run(
            self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", options, "start",
        )
        self.running = True

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """``fast`` disconnects every client and shuts down cleanly; ``immediate`` is
        a crash (recovery runs at the next start).

        The postmaster is signalled directly, as ``pg_ctl stop`` does, so the stop
        begins within a millisecond of the call (a fault aimed at a short phase must
        not miss it); then this waits, like ``pg_ctl -w``, until the server is down.
        """
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, self.SHUTDOWN_SIGNALS[mode])
        wait_until(lambda: not pid_alive(pid), f"PostgreSQL ({mode}) to stop", timeout,
                   interval=0.02)
        self.running = False

    SHUTDOWN_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT,
                        "immediate": signal.SIGQUIT}

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def destroy(self) -> None:
        if self.running:
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


def _admin(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(admin_url: str, prefix: str = "project_sync_faults") -> str:
    """A new empty database on the server of ``admin_url``; return its URL."""
    import psycopg

    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        with psycopg.connect(_admin(admin_url), autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise ServiceMissingError(f"PostgreSQL is not reachable at {admin_url}: {exc}") from exc
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(database_url: str) -> None:
    """Drop a database this harness created (only ever one of ours)."""
    import psycopg

    url = make_url(database_url)
    assert url.database and url.database.startswith("project_sync_faults_"), url.database
    admin = url.set(database="postgres")
    with psycopg.connect(_admin(admin.render_as_string(False)), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


def shared_admin_url() -> str:
    """The suite's shared PostgreSQL (``TEST_POSTGRES_URL``), for stacks that never stop it."""
    return POSTGRES_ADMIN_URL


# --- repositories ------------------------------------------------------------------------


@dataclass
class Repo:
    """One emulated repository with its generated history, pushed with real git."""

    github: EmulatorServer
    record: RepositoryRecord
    history: HistoryGenerator
    pushed: list[str] = field(default_factory=list)
    """Every head pushed, in order (force pushes included)."""

    @property
    def full_name(self) -> str:
        return f"{self.record.owner.login}/{self.record.name}"

    @property
    def branch(self) -> str:
        return self.record.default_branch

    @property
    def git_dir(self) -> Path:
        return self.github.git(self.record).path

    @property
    def clone_url(self) -> str:
        return self.github.clone_url(self.record)

    def branch_head(self) -> str:
        """The branch head on "GitHub": ``git rev-parse`` in the bare repository."""
        return subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "rev-parse", f"refs/heads/{self.branch}"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()

    def commit(self) -> str:
        """One generated commit of one to three random changes (not pushed)."""
        return self.history.commit_random_change().sha

    def commit_bulk(self, files: int) -> str:
        """One commit that edits ``files`` existing text files (all of them if fewer) and
        adds as many new ones: a change large enough for every phase to take a while.

        Written through the generator's own commit writer, so its model of the tree
        stays right for later random commits.
        """
        regular = sorted(p for p, (mode, _) in self.history.files.items() if mode == "100644")
        number = len(self.history.commits)
        changes: dict[str, tuple[str, bytes] | None] = {}
        for path in regular[:files]:
            mode, content = self.history.files[path]
            changes[path] = (mode, content + f"bulk edit {number}\n".encode())
        for index in range(files):
            changes[f"bulk{number}/d{index % 40}/n{index}.txt"] = (
                "100644", f"bulk {number} file {index}\n".encode() * 3,
            )
        return self.history._commit(f"Bulk change of {2 * files} files", changes,
                                    parent=self.history.head)

    def push(self, *, force: bool = False) -> list[DeliveryRecord]:
        """``git push`` the generator's head; return the push deliveries it caused."""
        before = len(self.github.deliveries)
        push(self.history.work_dir, self.clone_url, branch=self.branch, force=force)
        assert self.history.head is not None
        self.pushed.append(self.history.head)
        return [
            d for d in self.github.deliveries[before:]
            if d.event == "push" and d.repository_id == self.record.id
        ]

    def force_push_to(self, sha: str) -> list[DeliveryRecord]:
        """Move the branch back to an older commit with ``git push --force``.

        The generator keeps its own head; the next :meth:`push` moves the branch
        forward again (a fast-forward from the older commit)."""
        before = len(self.github.deliveries)
        subprocess.run(
            ["git", "push", "--quiet", "--force", self.clone_url,
             f"{sha}:refs/heads/{self.branch}"],
            cwd=self.history.work_dir, capture_output=True, check=True,
        )
        self.pushed.append(sha)
        return [
            d for d in self.github.deliveries[before:]
            if d.event == "push" and d.repository_id == self.record.id
        ]


# --- the stack ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncRow:
    """What the harness reads of one ProjectSync."""

    id: int
    project_id: int
    status: SyncStatus
    trigger: str
    head: str | None
    attempts: int
    rq_job_id: str | None
    waiting_reason: str | None
    error: str | None


def _row(sync: ProjectSync) -> SyncRow:
    return SyncRow(
        sync.id, sync.project_id, SyncStatus(sync.status), str(sync.trigger),
        sync.head_commit_sha, sync.attempts, sync.rq_job_id, sync.waiting_reason, sync.error,
    )


class FaultStack:
    """The running app and the handles to break it; see the module docstring."""

    def __init__(
        self,
        workdir: Path,
        github: EmulatorServer,
        redis_server: RedisServer,
        database_url: str,
        *,
        postgres: PostgresServer | None = None,
        settings: dict[str, str] | None = None,
        web_workers: int = 1,
    ) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.github = github
        self.redis_server = redis_server
        self.redis = redis_server.client()
        self.database_url = database_url
        self.postgres = postgres
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.repos: list[Repo] = []
        self.workers: list[Service] = []
        self.web: Service | None = None
        self.maintenance: Service | None = None
        self.timeline: list[tuple[float, str]] = []
        self.started = time.monotonic()
        self._worker_names = 0
        self._seed = 100
        self._lock = threading.Lock()
        self.env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("GITHUB_", "APP_", "PRIVATE_", "WEBHOOK_"))
        }
        self.env.update(
            PORT=str(self.port),
            DATABASE_URL=database_url,
            REDIS_URL=redis_server.url,
            SECRET_KEY="faults",
            APP_ID=str(github.app_id),
            PRIVATE_KEY=github.private_key_pem,
            WEBHOOK_SECRET=github.webhook_secret,
            GITHUB_API_URL=github.url,
            WEB_CONCURRENCY=str(web_workers),
            PYTHONUNBUFFERED="1",
        )
        # Every process of a stack imports the whole app. Where the environment turns
        # bytecode caching off (PYTHONDONTWRITEBYTECODE), each one would compile it from
        # source again, a second and a half of CPU apiece; a cache outside the tree
        # gives them what a deployed process has, without writing into the checkout.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE))
        self.env.update(settings or {})
        github.webhook_url = f"{self.url}/webhooks/github"
        app_settings = base_settings(database_url, redis_server.url, str(workdir))
        app_settings.update(
            GITHUB_API_URL=github.url, APP_ID=github.app_id, PRIVATE_KEY=github.private_key_pem
        )
        self.app: Flask = create_app(app_settings)

    # -- bookkeeping ----------------------------------------------------------------

    def mark(self, text: str) -> float:
        """Note an event on the stack's timeline (printed with every report)."""
        now = time.monotonic()
        self.timeline.append((now, text))
        return now

    def service(self, name: str, *argv: str) -> Service:
        return Service(name, [PYTHON, *argv], self.env, self.logs / f"{name}.log")

    # -- processes ------------------------------------------------------------------

    def start(self, *, workers: int = 1, maintenance: bool = True) -> FaultStack:
        """Release, then gunicorn, the workers and the maintenance process; returns when
        gunicorn answers ``/readyz`` and every process is still running."""
        self.release()
        self.web = self.service("web", "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app")
        self.web.start()
        for _ in range(workers):
            self.start_worker()
        if maintenance:
            self.maintenance = self.service(
                "maintenance", "-m", "flask", "--app", "wsgi:app", "maintenance", "run"
            )
            self.maintenance.start()
        self.wait_ready()
        self.mark(f"stack up: {workers} workers, maintenance={'on' if maintenance else 'off'}")
        self.assert_alive(web=True)
        return self

    def release(self) -> None:
        result = subprocess.run(
            [PYTHON, "-m", "flask", "--app", "wsgi:app", "db", "upgrade"],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=180,
        )
        (self.logs / "release.log").write_text(result.stdout + result.stderr)
        assert result.returncode == 0, f"flask db upgrade failed:\n{result.stderr[-3000:]}"

    def wait_ready(self, timeout: float = STARTUP_SECONDS) -> None:
        def ready() -> bool:
            if self.web is not None and not self.web.alive():
                raise AssertionError(f"gunicorn exited:\n{self.web.tail()}")
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as answer:
                return bool(answer.status == 200)

        wait_until(ready, "gunicorn to answer /readyz", timeout, interval=0.2)

    def start_worker(self) -> Service:
        self._worker_names += 1
        name = f"fault-worker-{self._worker_names}"
        worker = self.service(name, "-m", "worker", "--name", name)
        worker.start()
        self.workers.append(worker)
        return worker

    def stop_web(self) -> float:
        """SIGKILL gunicorn (master and workers): the web process is down."""
        assert self.web is not None
        self.web.kill()
        return self.mark("web process killed")

    def start_web(self) -> float:
        assert self.web is not None
        self.web.start()
        self.wait_ready()
        return self.mark("web process up again")

    def live_workers(self) -> list[Service]:
        return [w for w in self.workers if w.alive()]

    def assert_alive(self, *, web: bool = True) -> None:
        """The workers and the maintenance process (and gunicorn) are still running:
        they must outlive every fault."""
        dead = [s for s in [*self.workers, self.maintenance] if s is not None and not s.alive()]
        dead = [s for s in dead if not s.killed_on_purpose]
        if web and self.web is not None and not self.web.alive():
            dead.append(self.web)
        if dead:
            details = "\n\n".join(
                f"{s.name} exited with {s.returncode}:\n{s.tail(25)}" for s in dead
            )
            raise AssertionError(f"processes died: {[s.name for s in dead]}\n{details}")

    def stop(self) -> None:
        services = [s for s in [self.maintenance, *self.workers, self.web] if s is not None]

        def stop(service: Service) -> None:
            began = time.monotonic()
            running = service.alive()
            service.stop()
            if running:
                self.mark(f"{service.name} stopped in {time.monotonic() - began:.1f} s")

        threads = [threading.Thread(target=stop, args=(s,)) for s in services]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with contextlib.suppress(Exception), self.app.app_context():
            db.session.remove()
            db.engine.dispose()
        with contextlib.suppress(Exception):
            self.redis.close()

    # -- worker faults --------------------------------------------------------------

    def worker_running(self, sync_id: int) -> Service | None:
        """The live worker whose current job is a run of ``sync_id``."""
        by_name = {w.name: w for w in self.live_workers()}
        for rq_worker in RQWorker.all(connection=self.redis):
            if rq_worker.name not in by_name:
                continue
            job_id = rq_worker.get_current_job_id()
            if job_id is None:
                continue
            try:
                job = Job.fetch(job_id, connection=self.redis)
            except NoSuchJobError:
                continue
            if job.func_name == RUN_SYNC and job.args and int(job.args[0]) == sync_id:
                return by_name[rq_worker.name]
        return None

    def horse_of(self, worker: Service) -> int | None:
        """The worker's work horse: the child that made itself a process group leader
        (RQ's fork does ``os.setpgrp()``); the scheduler child stays in the worker's."""
        for child in children(worker.pid):
            if process_group(child) == child:
                return child
        return None

    def kill_horse(self, worker: Service) -> int:
        horse = wait_until(lambda: self.horse_of(worker), f"the work horse of {worker.name}", 5,
                           interval=0.01)
        os.kill(horse, signal.SIGKILL)
        self.mark(f"SIGKILL work horse {horse} of {worker.name}")
        return horse

    def kill_worker(self, worker: Service) -> list[int]:
        """SIGKILL the whole worker: the parent, its work horse and its scheduler, as
        when the machine or container running it goes away."""
        killed = worker.kill()
        worker.killed_on_purpose = True
        self.mark(f"SIGKILL worker {worker.name} and its children {killed[1:]}")
        return killed

    # -- repositories ---------------------------------------------------------------

    def create_repositories(
        self,
        count: int,
        *,
        owner: str = "octo",
        prefix: str | list[str] = "repo",
        files: int = 40,
        directories: int = 8,
        commits: int = 2,
    ) -> list[Repo]:
        """``count`` repositories in the emulator, each with a generated history pushed
        (before any installation, so no webhook goes out). Names are ``prefix`` and a
        number unique in the stack; a list of prefixes names them one by one."""
        prefixes = prefix if isinstance(prefix, list) else [prefix] * count
        named = []
        with self._lock:
            for name_prefix in prefixes[:count]:
                self._seed += 1
                named.append((f"{name_prefix}{self._seed - 100}", self._seed))

        def create(name: str, seed: int) -> Repo:
            record = self.github.create_repository(owner, name)
            history = HistoryGenerator(
                self.workdir / "work" / owner / name, seed, sync_worktree=False
            )
            history.initial_commit(files=files, directories=directories)
            for _ in range(commits):
                history.commit_random_change()
            repo = Repo(self.github, record, history)
            repo.push()
            return repo

        made: list[Repo] = []
        for start in range(0, len(named), 4):  # git is most of it: a few at a time
            batch = named[start:start + 4]
            made += run_in_threads([functools.partial(create, n, s) for n, s in batch])
        with self._lock:
            self.repos.extend(made)
        return made

    def install(self, repos: list[Repo], *, owner: str = "octo") -> int:
        """Install the App on ``repos`` (one installation on ``owner``) and wait until
        the app has a project for each."""
        installation = self.github.install(owner, [r.record for r in repos])
        self.mark(f"installed on {owner}: {[r.full_name for r in repos]}")
        wait_until(lambda: all(self.project_id(r) for r in repos),
                   f"projects for {[r.full_name for r in repos]}", 60)
        return installation

    # -- reading the app's state ----------------------------------------------------

    def query(self, function: Callable[[], T]) -> T:
        """Run ``function`` against the stack's database in a fresh session."""
        with self.app.app_context():
            try:
                return function()
            finally:
                db.session.remove()

    def project_id(self, repo: Repo) -> int | None:
        return self.query(lambda: db.session.scalar(
            select(Project.id).join(Repository).where(
                Repository.github_id == repo.record.id, Project.branch == repo.branch
            )
        ))

    def project_of(self, repo: Repo) -> int:
        pid = self.project_id(repo)
        assert pid is not None, f"no project for {repo.full_name}"
        return pid

    def syncs(self, project_id: int, *, after: int = 0) -> list[SyncRow]:
        return self.query(lambda: [
            _row(s) for s in db.session.scalars(
                select(ProjectSync)
                .where(ProjectSync.project_id == project_id, ProjectSync.id > after)
                .order_by(ProjectSync.id)
            )
        ])

    def sync(self, sync_id: int) -> SyncRow:
        return self.query(lambda: _row(db.session.get_one(ProjectSync, sync_id)))

    def failed_syncs(self) -> list[SyncRow]:
        return self.query(lambda: [
            _row(s) for s in db.session.scalars(
                select(ProjectSync).where(ProjectSync.status == SyncStatus.FAILED)
            )
        ])

    def last_sync_id(self, project_id: int) -> int:
        rows = self.syncs(project_id)
        return rows[-1].id if rows else 0

    def current_head(self, project_id: int) -> str | None:
        def read() -> str | None:
            project = db.session.get(Project, project_id)
            if project is None or project.current_sync is None:
                return None
            return project.current_sync.head_commit_sha

        return self.query(read)

    def last_event(self, sync_id: int) -> ProgressEvent | None:
        entries: list[Any] = self.redis.xrevrange(  # type: ignore[assignment]
            sync_events_key(sync_id), count=1
        )
        if not entries:
            return None
        return ProgressEvent.from_fields(entries[0][1])

    def events(self, sync_id: int) -> list[ProgressEvent]:
        entries: list[Any] = self.redis.xrange(sync_events_key(sync_id))  # type: ignore[assignment]
        return [ProgressEvent.from_fields(raw) for _id, raw in entries]

    def wait_for_sync(self, project_id: int, *, after: int, timeout: float = 60) -> int:
        """The id of the first sync of the project newer than ``after``."""
        rows = wait_until(lambda: self.syncs(project_id, after=after),
                          f"a new sync of project {project_id}", timeout, interval=0.05)
        return rows[0].id

    def wait_for_phase(self, sync_id: int, phase: str, *, timeout: float = 60) -> ProgressEvent:
        """Return as soon as the sync's latest progress event is in ``phase``."""

        def in_phase() -> ProgressEvent | None:
            event = self.last_event(sync_id)
            if event is not None and str(event.phase) == phase:
                return event
            if event is not None and event.final:
                raise WaitTimeoutError(f"sync {sync_id} ended before {phase}: {event}")
            return None

        return wait_until(in_phase, f"sync {sync_id} to enter {phase}", timeout, interval=0.01)

    # -- reports --------------------------------------------------------------------

    def describe_projects(self) -> str:
        """Each repository: branch head, project head, unfinished syncs and their jobs."""
        lines = []
        for repo in self.repos:
            try:
                head = repo.branch_head()
                pid = self.project_id(repo)
                current = self.current_head(pid) if pid else None
                open_rows = [r for r in self.syncs(pid) if not r.status.is_final] if pid else []
            except Exception as exc:  # the database may be the fault
                lines.append(f"{repo.full_name}: cannot read state: {exc!r}")
                continue
            mark = "ok" if current == head else "BEHIND"
            lines.append(
                f"{repo.full_name} project={pid} {mark} github={head[:10]} "
                f"synced={(current or '-')[:10]}"
            )
            for row in open_rows:
                lines.append(
                    f"    sync {row.id} {row.status} trigger={row.trigger} attempts={row.attempts}"
                    f" job={row.rq_job_id} ({self.job_state(row.rq_job_id)})"
                    f" waiting={row.waiting_reason!r} error={row.error!r}"
                )
        return "\n".join(lines)

    def job_state(self, job_id: str | None) -> str:
        if job_id is None:
            return "no job"
        try:
            job = Job.fetch(job_id, connection=self.redis)
        except NoSuchJobError:
            return "not in Redis"
        except redis.RedisError as exc:
            return f"Redis unreachable: {exc}"
        status = job.get_status(refresh=False)
        worker = getattr(job, "worker_name", None)
        return f"{status}{f' on {worker}' if worker else ''}"

    def report(self, lines: int = 30) -> str:
        """Timeline, project states and the tail of every log: what a failure prints."""
        t0 = self.started
        parts = ["== timeline =="]
        parts += [f"{t - t0:8.1f} s  {text}" for t, text in self.timeline]
        parts += ["", "== projects ==", self.describe_projects()]
        services = [s for s in [self.web, *self.workers, self.maintenance] if s is not None]
        for service in services:
            state = "running" if service.alive() else f"exited {service.returncode}"
            parts += ["", f"== {service.name} ({state}), last {lines} lines ==",
                      service.tail(lines)]
        return "\n".join(parts)


@contextlib.contextmanager
def running_stack(
    workdir: Path,
    *,
    private_key_pem: str | None = None,
    postgres: PostgresServer | None = None,
    workers: int = 1,
    maintenance: bool = True,
    settings: dict[str, str] | None = None,
    on_exit: Callable[[FaultStack, BaseException | None], None] | None = None,
) -> Iterator[FaultStack]:
    """Build and start a :class:`FaultStack`; tear everything down afterwards.

    With ``postgres`` the database lives on that (private) server; otherwise on the
    shared one. Either way it is a fresh database, dropped at the end. ``on_exit`` is
    called after the processes stopped and before the database is dropped (with the
    error raised inside the block, if any): the moment to write a report.
    """
    redis_server = RedisServer(workdir / "redis")
    admin = postgres.url() if postgres is not None else shared_admin_url()
    database_url = create_database(admin)
    github = EmulatorServer(workdir / "github", private_key_pem=private_key_pem)
    stack: FaultStack | None = None
    error: BaseException | None = None
    try:
        redis_server.start()
        github.start()
        stack = FaultStack(workdir, github, redis_server, database_url, postgres=postgres,
                           settings=settings)
        stack.start(workers=workers, maintenance=maintenance)
        yield stack
    except BaseException as exc:
        error = exc
        raise
    finally:
        if stack is not None:
            if postgres is not None and not postgres.running:
                postgres.start()
            stack.stop()
            if not redis_server.process or redis_server.process.poll() is not None:
                with contextlib.suppress(Exception):
                    redis_server.start()
            if on_exit is not None:
                on_exit(stack, error)
        github.stop()
        redis_server.stop()
        if postgres is not None and not postgres.running:
            postgres.start()
        with contextlib.suppress(Exception):
            drop_database(database_url)


def run_in_threads(functions: list[Callable[[], Any]]) -> list[Any]:
    """Run callables at once (pushes to different repositories); re-raise the first error."""
    results: list[Any] = [None] * len(functions)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = functions[index]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(functions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
