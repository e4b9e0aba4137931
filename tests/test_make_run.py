"""``make run`` (``python -m scripts.run``) for real: a second run while one is running.

The first run starts everything (its own redis-server, the demo GitHub, gunicorn, the
worker and the maintenance process) on ports and folders of the test's own. Second runs
must refuse before they start anything, in one line, with a non-zero exit, and leave the
first untouched; Ctrl-C then stops the first and every process it started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from redis import Redis

from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 150  # a busy two-core machine; a quiet one needs about 15
RUNNING = "Project Sync is running at"
SETTINGS_OF_THE_HOST = (
    "APP_ID",
    "PRIVATE_KEY",
    "PRIVATE_KEY_PATH",
    "WEBHOOK_SECRET",
    "GITHUB_",
    "DATABASE_URL",
    "REDIS_",
    "PORT",
    "EMULATOR_PORT",
    "RUN_DIR",
    "PUBLIC_URL",
    "WEB_HOST",
    "PUBLIC_DASHBOARD",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return int(response.status)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def left_in_group(pgid: int, grace: float = 10) -> str:
    """``ps`` lines of the group's processes still there after ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return ""
        if time.monotonic() > deadline:
            listing = subprocess.run(
                ["ps", "-o", "pid,ppid,stat,args", "-g", str(pgid)], capture_output=True, text=True
            )
            return listing.stdout
        time.sleep(0.2)


class Run:
    """One ``python -m scripts.run`` in a session of its own, its output in a file."""

    def __init__(self, tmp_path: Path, run_dir: str, **settings: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_OF_THE_HOST)}
        env.update(
            RUN_DIR=str(tmp_path / run_dir),
            SECRET_KEY="test-secret-key",
            WEB_CONCURRENCY="1",
            PYTHONPATH=str(ROOT),
            **settings,
        )
        self.env = env
        self.cwd = tmp_path  # no .env of the checkout
        self.run_dir = tmp_path / run_dir
        self.log = tmp_path / f"{run_dir}.log"

    def start(self) -> subprocess.Popen[bytes]:
        with open(self.log, "wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "scripts.run"],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def refused(self) -> tuple[int, list[str]]:
        """Run to its end (it must refuse quickly); its exit code and output lines."""
        done = subprocess.run(
            [sys.executable, "-m", "scripts.run"],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=60,
        )
        return done.returncode, done.stdout.decode().splitlines()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def redis_pid(self) -> int | None:
        try:
            return int((self.run_dir / "redis" / "redis.pid").read_text())
        except (OSError, ValueError):
            return None


@pytest.fixture
def first(tmp_path: Path) -> Iterator[tuple[Run, subprocess.Popen[bytes]]]:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed; make run starts one of its own")
    run = Run(tmp_path, "first", PORT=str(free_port()), EMULATOR_PORT=str(free_port()))
    process = run.start()
    redis_pid = None
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while RUNNING not in run.output():
            assert process.poll() is None, run.output()
            assert time.monotonic() < deadline, f"not up in {STARTUP_SECONDS} s:\n{run.output()}"
            time.sleep(0.5)
        redis_pid = run.redis_pid()
        yield run, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if redis_pid is not None and alive(redis_pid):
            os.kill(redis_pid, signal.SIGKILL)


def test_a_second_run_refuses_in_one_line_and_the_first_carries_on(
    first: tuple[Run, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    run, process = first
    web, emulator = run.env["PORT"], run.env["EMULATOR_PORT"]
    started = run.output()
    assert f"@127.0.0.1:{emulator}/demo/sample.git && cd sample" in started, started

    # Another checkout (its own folder) on the same ports.
    code, lines = Run(tmp_path, "second", PORT=web, EMULATOR_PORT=emulator).refused()
    assert code != 0
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"Project Sync is already running at http://127.0.0.1:{web}/ (port {web} is taken): "
        "stop it (Ctrl-C where it runs), or set PORT="
    ), lines

    # Another web port, the same demo GitHub port.
    other_web = str(free_port())
    code, lines = Run(tmp_path, "second", PORT=other_web, EMULATOR_PORT=emulator).refused()
    assert code != 0
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"Port {emulator} of the demo GitHub (EMULATOR_PORT) is taken by the demo GitHub of "
        "another Project Sync: stop it, or set EMULATOR_PORT="
    ), lines

    # The same folder, whatever the ports.
    code, lines = Run(tmp_path, "first", PORT=other_web, EMULATOR_PORT=str(free_port())).refused()
    assert code != 0
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"Project Sync is already running from {run.run_dir} at http://127.0.0.1:{web}/ "
        f"(pid {process.pid}): stop it"
    ), lines

    # Nothing of the refused runs reached the first one.
    assert process.poll() is None
    assert run.output().count(RUNNING) == 1
    assert "Connection in use" not in run.output()
    assert answers(f"http://127.0.0.1:{web}/readyz") == 200
    assert answers(f"http://127.0.0.1:{web}/") == 200
    assert answers(f"http://127.0.0.1:{emulator}/_emulator/app") == 200
    assert not (tmp_path / "second" / "redis").exists()
    # Its Redis is its own, and the run file says where it is.
    described = json.loads((run.run_dir / "run.json").read_text())
    assert described["pid"] == process.pid
    own_redis = Redis.from_url(described["redis_url"])
    server = cast(dict[str, Any], own_redis.info("server"))
    assert server["process_id"] == run.redis_pid()

    # Ctrl-C in its terminal: every process of the run stops, its Redis last.
    redis_pid = run.redis_pid()
    assert redis_pid is not None and alive(redis_pid)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=60) == 0, run.output()
    left = left_in_group(process.pid)
    assert left == "", f"processes the run left behind:\n{left}\n{run.output()[-6000:]}"
    assert not alive(redis_pid)


def test_a_port_held_by_another_program_is_named_as_such(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        code, lines = Run(tmp_path, "run", PORT=str(port), EMULATOR_PORT=str(free_port())).refused()
    assert code != 0
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"Port {port} is taken by another program, not Project Sync: stop it, or set PORT="
    ), lines
    assert not (tmp_path / "run" / "redis").exists()


def test_a_redis_url_that_does_not_answer_is_named(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    code, lines = Run(
        tmp_path, "run", PORT=str(free_port()), EMULATOR_PORT=str(free_port()), REDIS_URL=url
    ).refused()
    assert code != 0
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"Redis does not answer at REDIS_URL={url} "), lines


def test_a_child_that_outlives_its_stop_is_killed_with_everything_under_it() -> None:
    """What :meth:`Supervisor.stop` does once a child's time is up: a gunicorn master it
    killed alone would leave the worker it forked running, with nobody to stop it."""
    from scripts.run import descendants, kill_tree

    # A parent that ignores SIGTERM, and its own child (a grandchild of the test's).
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "sleeper = [sys.executable, '-c', 'import time; time.sleep(600)']\n"
            "grandchild = subprocess.Popen(sleeper)\n"
            "print(grandchild.pid, flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    assert descendants(child.pid) == [grandchild]
    child.send_signal(signal.SIGTERM)
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(timeout=1)

    kill_tree(child)

    assert child.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Killed, and reaped by init once its parent is gone (or a zombie until then).
    assert not alive(grandchild) or zombie(grandchild)


def zombie(pid: int) -> bool:
    listing = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
    return listing.stdout.strip().startswith("Z")
