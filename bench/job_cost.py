"""Fixed cost of a sync job in a worker: ``python -m bench.job_cost`` (``--help``).

RQ forks a work horse per sync job. What the horse has to load before its job can do
anything is paid by every sync, however small. This benchmark runs real worker
processes (``sync_jobs.worker.SyncWorker`` in burst mode) against a PostgreSQL database
and a redis-server of its own and the GitHub emulator in this process, in three modes:

- ``cold``: the worker as it was, forking horses with nothing loaded ahead: every
  horse imports the pipeline and githubkit's REST modules itself;
- ``warm``: the worker as it is, :func:`sync_jobs.worker.prepare_horses` before the
  first fork (job modules, app, engine, :func:`sync_jobs.connector.warm_up`);
- ``in-process``: warm and no fork at all (RQ's ``SimpleWorker`` model), the floor a
  forking worker is compared with.

Each mode runs ``--jobs`` probe jobs (:func:`probe`), then ``--jobs`` no-op syncs (the
real ``run_sync`` of a project whose head has not moved). The probe measures, in the
horse, from the moment the worker took the job (stamped just before the fork) to the
job function's first line, the imports a sync job makes first (the pipeline), opening
the connector, and the first and second ``branch_head`` call, each with the time spent
in ``import`` statements during it. The worker times every job from taking it to the
end of its horse. Medians are printed as a table and written with ``--json``.
"""

from __future__ import annotations

import argparse
import builtins
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

TAKEN_AT_ENV = "JOB_COST_TAKEN_AT"
"""``time.perf_counter()`` when the worker took the job (the horse inherits it)."""
HORSE_AT_ENV = "JOB_COST_HORSE_AT"
"""``time.perf_counter()`` at the horse's first instruction after the fork."""
OUT_ENV = "JOB_COST_OUT"
"""The file that probes and workers append their JSON lines to."""
MODES = ("cold", "warm", "in-process")
PROBE = "bench.job_cost.probe"
"""The probe job by name (``python -m bench.job_cost`` runs this module as ``__main__``)."""


class ImportClock:
    """Time spent inside ``import`` statements (outermost ones only) while it is open,
    and the modules they loaded."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.loaded: list[str] = []
        self._depth = 0

    def __enter__(self) -> ImportClock:
        self._before = set(sys.modules)
        self._import = builtins.__import__

        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            started = time.perf_counter()
            try:
                return self._import(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds += time.perf_counter() - started

        builtins.__import__ = timed
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        builtins.__import__ = self._import
        self.loaded = sorted(set(sys.modules) - self._before)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def rest_modules_loaded() -> list[str]:
    """githubkit's REST namespaces already imported (``githubkit_schemas.<v>.rest.repos``)."""
    return sorted(
        name.rsplit(".", 1)[1]
        for name in sys.modules
        if name.startswith("githubkit_schemas.")
        and name.split(".")[2:3] == ["rest"]
        and name.count(".") == 3
    )


def record(line: dict[str, Any]) -> None:
    with open(os.environ[OUT_ENV], "a") as out:
        out.write(json.dumps(line) + "\n")


def probe(project_id: int) -> None:
    """A job that does what a sync does first, timing each step (see the docstring)."""
    first_line = time.perf_counter()
    horse_cpu = time.process_time()  # a forked child's CPU clock starts at zero
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    taken = float(os.environ.get(TAKEN_AT_ENV, "nan"))
    horse = float(os.environ.get(HORSE_AT_ENV, taken))  # in-process: no horse
    rest_at_first_line = rest_modules_loaded()
    with ImportClock() as job_imports:
        from flask import current_app

        from models import Project, db
        from sync_jobs.connector import GitHubConnector
        from sync_jobs.pipeline import execute_sync  # noqa: F401  (what run_sync imports)
        from sync_jobs.redis_client import redis_connection
        from sync_jobs.sync_job import run_sync  # noqa: F401  (the job module itself)
    project = db.session.get_one(Project, project_id)
    repository = project.repository
    assert repository.installation is not None
    config = current_app.config
    opened = time.perf_counter()
    with GitHubConnector(
        base_url=config["GITHUB_API_URL"],
        app_id=config.get("APP_ID"),
        private_key=config.get("PRIVATE_KEY"),
        redis=redis_connection(),
        installation_id=repository.installation.github_id,
        full_name=repository.full_name,
    ) as gh:
        opened = time.perf_counter() - opened
        with ImportClock() as first_imports:
            started, cpu = time.perf_counter(), time.process_time()
            gh.branch_head(project.branch)
            first_call = time.perf_counter() - started
            first_call_cpu = time.process_time() - cpu
        with ImportClock() as second_imports:
            started = time.perf_counter()
            gh.branch_head(project.branch)
            second_call = time.perf_counter() - started
    record(
        {
            "kind": "probe",
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "to_first_line_ms": ms(first_line - taken),
            "to_horse_ms": ms(horse - taken),
            "horse_cpu_to_first_line_ms": ms(horse_cpu) if horse != taken else None,
            "horse_page_faults_to_first_line": faults if horse != taken else None,
            "rest_modules_at_first_line": rest_at_first_line,
            "job_imports_ms": ms(job_imports.seconds),
            "job_imports_modules": len(job_imports.loaded),
            "connector_open_ms": ms(opened),
            "first_call_ms": ms(first_call),
            "first_call_import_ms": ms(first_imports.seconds),
            "first_call_cpu_ms": ms(first_call_cpu),
            "first_call_modules": first_imports.loaded,
            "second_call_ms": ms(second_call),
            "second_call_import_ms": ms(second_imports.seconds),
        }
    )


# --- the worker process -----------------------------------------------------------------


def _worker_classes() -> dict[str, Any]:
    from rq import Queue, Worker
    from rq.job import Job
    from rq.worker import WorkerStatus

    from sync_jobs.worker import SyncWorker

    class TimedWorker(SyncWorker):
        """The worker as it is: the horse is forked from a warmed parent."""

        def execute_job(self, job: Job, queue: Queue) -> None:
            os.environ[TAKEN_AT_ENV] = repr(time.perf_counter())
            started = time.perf_counter()
            self.run(job, queue)
            record({"kind": "job", "func": job.func_name, "ms": ms(time.perf_counter() - started)})

        def run(self, job: Job, queue: Queue) -> None:
            super().execute_job(job, queue)

        def main_work_horse(self, job: Job, queue: Queue) -> None:
            os.environ[HORSE_AT_ENV] = repr(time.perf_counter())
            super().main_work_horse(job, queue)

    class ColdWorker(TimedWorker):
        """The worker as it was: horses forked with nothing loaded ahead."""

        def fork_work_horse(self, job: Job, queue: Queue) -> None:
            Worker.fork_work_horse(self, job, queue)

    class InProcessWorker(TimedWorker):
        """No horse: the job runs in the worker, as RQ's SimpleWorker runs it."""

        def run(self, job: Job, queue: Queue) -> None:
            self.prepare_execution(job)
            self.perform_job(job, queue)
            self.set_state(WorkerStatus.IDLE)

    return {"cold": ColdWorker, "warm": TimedWorker, "in-process": InProcessWorker}


def worker_main(mode: str) -> None:
    """``python -m bench.job_cost --worker MODE``: drain the queues once and exit."""
    from rq import Queue

    from sync_jobs.keys import queue_names
    from sync_jobs.logs import configure_logging
    from sync_jobs.redis_client import redis_connection
    from sync_jobs.worker import prepare_horses
    from webhook_app import create_app

    app = create_app()
    configure_logging("WARNING", "json")
    # This module runs as __main__; the horse's probe jobs name it bench.job_cost, which
    # a real worker has loaded (its job modules are), so the horse does not import it.
    importlib.import_module(PROBE.rsplit(".", 1)[0])
    started = time.perf_counter()
    if mode != "cold":
        prepare_horses(app)
    record({"kind": "prepare", "ms": ms(time.perf_counter() - started)})
    connection = redis_connection(app)
    with app.app_context():
        queues = [Queue(name, connection=connection) for name in queue_names()]
    worker = _worker_classes()[mode](queues, connection=connection, app=app)
    worker.work(burst=True, logging_level="WARNING")


# --- the benchmark ------------------------------------------------------------------------


class Setup:
    """The emulator with ``jobs`` small repositories, each tracked and synced once."""

    def __init__(self, tmp: Path, settings: dict[str, Any], jobs: int) -> None:
        from github_emulator.history import HistoryGenerator, push
        from github_emulator.server import EmulatorServer
        from models import Installation, Project, ProjectSync, Repository, SyncTrigger, db
        from sync_jobs.pipeline import execute_sync
        from webhook_app import create_app

        self.server = EmulatorServer(tmp / "github").start()
        self.settings = {
            **settings,
            "GITHUB_API_URL": self.server.url,
            "APP_ID": self.server.app_id,
            "PRIVATE_KEY": self.server.private_key_pem,
        }
        self.app = create_app(self.settings)
        self.project_ids: list[int] = []
        with self.app.app_context():
            records: list[Any] = [
                self.server.create_repository("octo", f"r{n}") for n in range(jobs)
            ]
            installation = Installation(
                github_id=self.server.install("octo", records), account_login="octo"
            )
            for number, record_ in enumerate(records):
                history = HistoryGenerator(tmp / f"work{number}", seed=number)
                history.initial_commit(files=20, directories=3)
                push(history.work_dir, self.server.clone_url(record_))
                repository = Repository(
                    github_id=record_.id, installation=installation, full_name=f"octo/r{number}"
                )
                project = Project(repository=repository, branch="main")
                db.session.add_all([installation, repository, project])
                db.session.commit()
                self.project_ids.append(project.id)
            for project_id in self.project_ids:
                sync = ProjectSync(project_id=project_id, trigger=SyncTrigger.INSTALL)
                db.session.add(sync)
                db.session.commit()
                execute_sync(sync.id)

    def environment(self, base: dict[str, str], out: Path) -> dict[str, str]:
        return {
            **base,
            "GITHUB_API_URL": self.server.url,
            "APP_ID": str(self.server.app_id),
            "PRIVATE_KEY": self.server.private_key_pem,
            "LOG_LEVEL": "WARNING",
            OUT_ENV: str(out),
        }

    def enqueue(self) -> None:
        """The probes, then one no-op sync per project (its head has not moved)."""
        from rq import Queue

        from models import SyncTrigger
        from sync_jobs.redis_client import redis_connection
        from sync_jobs.scheduling import request_sync, syncs_queue

        with self.app.app_context():
            queue: Queue = syncs_queue(redis_connection())
            for project_id in self.project_ids:
                queue.enqueue(PROBE, project_id, job_timeout=60)
            for project_id in self.project_ids:
                request_sync(project_id, trigger=SyncTrigger.RECONCILE)

    def close(self) -> None:
        self.server.stop()


def run_mode(setup: Setup, mode: str, base_env: dict[str, str], tmp: Path) -> dict[str, Any]:
    out = tmp / f"{mode}.jsonl"
    setup.enqueue()
    subprocess.run(
        [sys.executable, "-m", "bench.job_cost", "--worker", mode],
        env=setup.environment(base_env, out),
        check=True,
        timeout=600,
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    probes = [line for line in lines if line["kind"] == "probe"]
    syncs = [line["ms"] for line in lines if line["kind"] == "job" and "run_sync" in line["func"]]
    prepare = next(line["ms"] for line in lines if line["kind"] == "prepare")

    def median(key: str) -> float | None:
        values = [p[key] for p in probes if p[key] is not None]
        return round(statistics.median(values), 2) if values else None

    return {
        "prepare_before_forks_ms": prepare,
        "to_first_line_ms": median("to_first_line_ms"),
        "to_horse_ms": median("to_horse_ms"),
        "horse_cpu_to_first_line_ms": median("horse_cpu_to_first_line_ms"),
        "horse_page_faults_to_first_line": median("horse_page_faults_to_first_line"),
        "job_imports_ms": median("job_imports_ms"),
        "connector_open_ms": median("connector_open_ms"),
        "first_call_ms": median("first_call_ms"),
        "first_call_import_ms": median("first_call_import_ms"),
        "first_call_cpu_ms": median("first_call_cpu_ms"),
        "second_call_ms": median("second_call_ms"),
        "noop_sync_job_ms": round(statistics.median(syncs), 2),
        "rest_modules_at_first_line": probes[0]["rest_modules_at_first_line"],
        "first_call_modules": max(len(p["first_call_modules"]) for p in probes),
        "probes": len(probes),
        "syncs": len(syncs),
    }


ROWS = [
    ("prepare_before_forks_ms", "worker start: loading ahead of the forks (once)"),
    ("to_first_line_ms", "job taken -> first line of the job function"),
    ("to_horse_ms", "  of which until the horse runs (bookkeeping, fork)"),
    ("horse_cpu_to_first_line_ms", "horse CPU from the fork to the first line"),
    ("horse_page_faults_to_first_line", "horse page faults from the fork to the first line"),
    ("job_imports_ms", "imports the job makes first (pipeline, connector)"),
    ("connector_open_ms", "opening the connector (clients, token from Redis)"),
    ("first_call_ms", "first GitHub call (branch_head)"),
    ("first_call_import_ms", "  of which in import statements"),
    ("first_call_cpu_ms", "  its CPU time"),
    ("second_call_ms", "second GitHub call (same request)"),
    ("noop_sync_job_ms", "a no-op sync job, taken -> horse done"),
]


def print_table(results: dict[str, dict[str, Any]]) -> None:
    modes = list(results)
    print(f"{'median, ms':<55}" + "".join(f"{mode:>12}" for mode in modes))
    for key, title in ROWS:
        print(f"{title:<55}" + "".join(f"{results[m][key]!s:>12}" for m in modes))
    for mode in modes:
        print(
            f"{mode}: REST modules loaded at the first line: "
            f"{', '.join(results[mode]['rest_modules_at_first_line']) or 'none'}; "
            f"modules the first call imported: {results[mode]['first_call_modules']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5, help="probes and no-op syncs per mode")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker)
        return

    from bench.webhooks import Services, wait_for_quiet_machine

    with Services() as services, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        setup = Setup(tmp, services.settings(), args.jobs)
        try:
            busy = wait_for_quiet_machine()
            results = {mode: run_mode(setup, mode, services.environment(), tmp) for mode in MODES}
        finally:
            setup.close()
    print_table(results)
    print(f"machine busy before the runs: {busy:.0%}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"jobs": args.jobs, "modes": results}, indent=2))


if __name__ == "__main__":
    main()
