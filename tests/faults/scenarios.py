"""The fault scenarios, shared by the tests (``tests/faults/test_*.py``) and the
benchmark (``bench/faults.py``).

Each scenario prepares repositories on a started :class:`FaultStack`, breaks something,
and returns once the fault is over with the moment it ended (``time.monotonic()``):
the oracle measures from there. The stack options a scenario needs (workers, a private
PostgreSQL, settings) are in :data:`SCENARIOS`, so both callers build the same stack.

Timings are real. Only documented settings and emulator knobs are turned: GitHub's
latency (0.1 s as usual, 0.5 s while a fault is aimed at a phase so the phase lasts
long enough to be hit), the reconcilers' interval for the tests that need them, and
the emulator's faults and rate limits.
"""

from __future__ import annotations

import contextlib
import queue
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from models import SyncStatus
from sync_jobs import defaults as job_defaults

from .harness import PHASES, FaultStack, Repo, WaitTimeoutError, run_in_threads, wait_until
from .oracle import wait_converged

BASELINE_LATENCY = 0.1
"""Seconds GitHub usually takes to answer an API call."""

PHASE_LATENCY = 0.5
"""Latency while a fault is aimed at a phase: every phase makes at least one call, so
it lasts at least this long (apply makes none; its change is made large instead)."""

APPLY_BULK_FILES = 800
"""Files edited (and as many added) by the commit whose apply a fault is aimed at:
about 0.15 s of writing on an idle machine, long enough to be hit reliably, small
enough for the oracle's per-file ``git cat-file`` checks."""

TARGET_SECONDS = 60
"""The recovery target: every project at its head this long after a fault ended."""

RECONCILE_SECONDS = 20
"""The reconcilers' interval in the tests that rely on them (the default is 10 min)."""

RECONCILER_SETTINGS = {
    "RECONCILE_INTERVAL_SECONDS": str(RECONCILE_SECONDS),
    # The failed-delivery reconciler's own interval, where the app has one.
    "REDELIVER_INTERVAL_SECONDS": str(RECONCILE_SECONDS),
}

REDELIVER_SECONDS = 20
"""The failed-delivery reconciler's interval where a test needs refused deliveries back
(the default is 2 min)."""

PG_OUTAGE_SECONDS = 10
SECONDARY_RETRY_AFTER = 30
RATE_LIMIT_WINDOW = 45
"""Seconds until a spent primary rate limit resets: long enough that a sync ignoring
the limit would be seen failing meanwhile and the other installation syncs well before
it (GitHub resets within the hour; the scenario only needs the wait to be visible)."""


@dataclass
class Outcome:
    """What a scenario reports: when its fault ended, plus facts for its test."""

    fault_end: float
    notes: dict[str, Any] = field(default_factory=dict)


def prepare(
    stack: FaultStack,
    count: int,
    *,
    owner: str = "octo",
    prefix: str | list[str] = "repo",
    files: int = 40,
    directories: int = 8,
    commits: int = 2,
) -> list[Repo]:
    """Repositories with history, the App installed on them, first syncs done."""
    stack.github.knobs.latency = BASELINE_LATENCY
    repos = stack.create_repositories(
        count, owner=owner, prefix=prefix, files=files, directories=directories,
        commits=commits,
    )
    stack.install(repos, owner=owner)
    wait_converged(stack, 180, repos=repos)
    return repos


def _change_for(phase: str, repo: Repo) -> str:
    """A commit whose sync spends time in ``phase``: a few new blobs (so the fetch
    goes through blob calls, which announce themselves), or a large change for apply."""
    return repo.commit_bulk(APPLY_BULK_FILES if phase == "apply" else 3)


def _passed(event_phase: str, phase: str) -> bool:
    order = {name: index for index, name in enumerate(PHASES)}
    return event_phase == "done" or order.get(event_phase, -1) > order[phase]


def assert_nothing_after(stack: FaultStack, sync_id: int, seen: int, phase: str) -> None:
    """The fault landed inside ``phase``: no event of a later phase and no success was
    published after the ``seen`` events the sync had when it was hit."""
    later = [e for e in stack.events(sync_id)[seen:] if e.phase != "retry"]
    assert not any(_passed(str(e.phase), phase) and e.outcome != "failed" for e in later), (
        f"sync {sync_id} went on past {phase} after the fault: {later}"
    )


@dataclass
class _Target:
    phase: str
    repo: Repo
    project_id: int
    after: int
    sync_id: int | None = None
    hit_at: float | None = None


def kill_in_every_phase(stack: FaultStack, *, whole_worker: bool) -> Outcome:
    """Four repositories pushed at once; each one's sync is SIGKILLed in its own phase
    (the work horse only, or the whole worker, then a new worker is started)."""
    mode = "worker" if whole_worker else "horse"
    repos = prepare(stack, len(PHASES), prefix=[f"{mode}-{phase}-" for phase in PHASES],
                    files=100, directories=20)
    targets = []
    for phase, repo in zip(PHASES, repos, strict=True):
        pid = stack.project_of(repo)
        targets.append(_Target(phase, repo, pid, stack.last_sync_id(pid)))
        _change_for(phase, repo)
    stack.github.knobs.latency = PHASE_LATENCY
    run_in_threads([repo.push for repo in repos])
    stack.mark("pushed to every phase repository")
    pending = list(targets)
    deadline = time.monotonic() + 120
    while pending:
        if time.monotonic() > deadline:
            raise WaitTimeoutError(
                f"syncs never reached {[t.phase for t in pending]}\n{stack.report()}"
            )
        for target in list(pending):
            if _try_kill(stack, target, whole_worker=whole_worker):
                pending.remove(target)
        time.sleep(0.003)
    fault_end = stack.mark(f"every phase hit ({mode})")
    stack.github.knobs.latency = BASELINE_LATENCY
    return Outcome(fault_end, {"killed": {(mode, t.phase): t.sync_id for t in targets}})


def kill_horses_then_workers(stack: FaultStack) -> Outcome:
    """Both kinds of kill, one round after the other: first each work horse in its
    phase, then (while those syncs still wait to be repaired) each whole worker."""
    horses = kill_in_every_phase(stack, whole_worker=False)
    workers = kill_in_every_phase(stack, whole_worker=True)
    return Outcome(workers.fault_end,
                   {"killed": {**horses.notes["killed"], **workers.notes["killed"]}})


def _try_kill(stack: FaultStack, target: _Target, *, whole_worker: bool) -> bool:
    if target.sync_id is None:
        rows = stack.syncs(target.project_id, after=target.after)
        if not rows:
            return False
        target.sync_id = rows[0].id
    event = stack.last_event(target.sync_id)
    if event is None:
        return False
    if str(event.phase) != target.phase:
        if event.final and event.outcome == "succeeded" and target.repo.branch_head() != (
            stack.current_head(target.project_id)
        ):
            # Another request's sync (a reconcile no-op); ours is the next one.
            target.after, target.sync_id = target.sync_id, None
            return False
        if _passed(str(event.phase), target.phase):
            raise AssertionError(
                f"sync {target.sync_id} of {target.repo.full_name} passed {target.phase} "
                f"before it could be hit (now {event.phase} {event.message!r})"
            )
        return False
    worker = stack.worker_running(target.sync_id)
    if worker is None:
        return False
    seen = len(stack.events(target.sync_id))
    if whole_worker:
        stack.kill_worker(worker)
    else:
        stack.kill_horse(worker)
    target.hit_at = stack.mark(f"{target.phase}: sync {target.sync_id} hit")
    time.sleep(0.3)
    assert_nothing_after(stack, target.sync_id, seen, target.phase)
    if whole_worker:
        stack.start_worker()
        stack.mark("a new worker started")
    return True


def redis_restart_mid_burst(stack: FaultStack) -> Outcome:
    """50 pushes over 5 repositories; Redis is killed after the 20th and started again,
    empty, after the 35th."""
    repos = prepare(stack, 5, prefix="burst")
    plan = [repo for repo in repos for _ in range(10)]
    random.Random(50).shuffle(plan)
    for number, repo in enumerate(plan):
        if number == 20:
            stack.redis_server.kill()
            stack.mark("Redis killed")
        if number == 35:
            stack.redis_server.start()
            stack.mark("Redis started again, empty")
        repo.commit()
        repo.push()
    return Outcome(stack.mark("burst over"))


def redis_restart_with_sync_running_and_follow_up(stack: FaultStack) -> Outcome:
    """A sync runs and a follow-up is queued when Redis restarts empty; no push after."""
    repo, _idle = prepare(stack, 2, prefix="cut")
    pid = stack.project_of(repo)
    last = stack.last_sync_id(pid)
    stack.github.knobs.latency = 1.0
    repo.commit_bulk(3)
    repo.push()
    first = stack.wait_for_sync(pid, after=last)
    stack.wait_for_phase(first, "resolve")
    repo.commit()
    repo.push()
    follow = wait_until(
        lambda: [r for r in stack.syncs(pid, after=first) if r.status is SyncStatus.QUEUED],
        "a follow-up sync to be queued", 30, interval=0.05,
    )[0]
    running = stack.syncs(pid, after=first - 1)[0]
    assert running.status is SyncStatus.RUNNING, running
    stack.mark(f"sync {first} running, follow-up {follow.id} queued")
    stack.redis_server.restart_empty()
    fault_end = stack.mark("Redis restarted empty")
    stack.github.knobs.latency = BASELINE_LATENCY
    return Outcome(fault_end, {"running": first, "follow_up": follow.id})


def redis_restarts(stack: FaultStack) -> Outcome:
    """Both Redis scenarios, one restart after the other: mid-burst, then with a sync
    running and a follow-up queued (while the burst's projects may still recover)."""
    redis_restart_mid_burst(stack)
    return redis_restart_with_sync_running_and_follow_up(stack)


def postgres_stopped_in_every_phase(stack: FaultStack) -> Outcome:
    """PostgreSQL stopped for 10 s while a sync is in each phase, one after another."""
    assert stack.postgres is not None, "needs a private PostgreSQL"
    repos = prepare(stack, len(PHASES), prefix="pg", files=100, directories=20)
    fault_end = time.monotonic()
    for phase, repo in zip(PHASES, repos, strict=True):
        pid = stack.project_of(repo)
        last = stack.last_sync_id(pid)
        _change_for(phase, repo)
        stack.github.knobs.latency = PHASE_LATENCY
        repo.push()
        sync_id = stack.wait_for_sync(pid, after=last, timeout=120)
        stack.wait_for_phase(sync_id, phase, timeout=120)
        seen = len(stack.events(sync_id))
        stack.postgres.stop("fast")
        stack.mark(f"PostgreSQL stopped, sync {sync_id} in {phase}")
        stack.github.knobs.latency = BASELINE_LATENCY
        time.sleep(PG_OUTAGE_SECONDS)
        assert_nothing_after(stack, sync_id, seen, phase)
        stack.postgres.start()
        fault_end = stack.mark("PostgreSQL started again")
    return Outcome(fault_end)


def postgres_stopped_during_burst(stack: FaultStack) -> Outcome:
    """Pushes two a second over 3 repositories: 3 s of them with PostgreSQL up, 10 s
    with it stopped (the receiver answers 503 and GitHub logs the deliveries as
    failed), then one more push to each repository once it is back."""
    assert stack.postgres is not None, "needs a private PostgreSQL"
    repos = prepare(stack, 3, prefix="pgburst")
    rng = random.Random(30)
    refused = 0

    def push_one(repo: Repo) -> None:
        nonlocal refused
        repo.commit()
        refused += sum(1 for d in repo.push() if not d.ok)

    def burst(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            began = time.monotonic()
            push_one(rng.choice(repos))
            time.sleep(max(0.0, began + 0.5 - time.monotonic()))

    burst(3)
    stack.postgres.stop("fast")
    stack.mark("PostgreSQL stopped")
    burst(PG_OUTAGE_SECONDS)
    stack.postgres.start()
    stack.mark("PostgreSQL started again")
    for repo in repos:
        push_one(repo)
    return Outcome(stack.mark("burst over"), {"refused": refused})


def postgres_outages(stack: FaultStack) -> Outcome:
    """Both PostgreSQL scenarios on one server, one after the other: stopped in each
    phase, then during a burst."""
    postgres_stopped_in_every_phase(stack)
    return postgres_stopped_during_burst(stack)


def web_down_during_pushes(stack: FaultStack) -> Outcome:
    """gunicorn is down while 10 pushes happen; GitHub logs each delivery as failed."""
    repos = prepare(stack, 2, prefix="web")
    stack.stop_web()
    failed = []
    for number in range(10):
        repo = repos[number % len(repos)]
        repo.commit()
        failed += [d.guid for d in repo.push() if not d.ok]
    fault_end = stack.start_web()
    return Outcome(fault_end, {"failed": failed})


def webhooks_dropped_for_one_repository(stack: FaultStack) -> Outcome:
    """Every webhook of one repository is dropped (GitHub never sends it); only the
    branch-drift reconciler can notice its pushes."""
    dropped, other = prepare(stack, 2, prefix="drop")
    knobs = stack.github.knobs
    assert hasattr(knobs, "drop_webhooks_for"), (
        "the emulator has no knobs.drop_webhooks_for (a set of full names) yet"
    )
    knobs.drop_webhooks_for = {dropped.full_name}
    stack.mark(f"webhooks of {dropped.full_name} dropped from now on")
    for _ in range(3):
        dropped.commit()
        dropped.push()
    other.commit()
    other.push()
    return Outcome(stack.mark("pushes done"), {"dropped": dropped, "other": other})


def webhooks_lost(stack: FaultStack) -> Outcome:
    """Both lost-webhook scenarios: one repository's webhooks dropped, then the web
    process down during ten pushes to others."""
    dropped = webhooks_dropped_for_one_repository(stack)
    down = web_down_during_pushes(stack)
    return Outcome(down.fault_end, {**dropped.notes, **down.notes})


def _wait_consumed(stack: FaultStack, repo: Repo, after: int, remaining: Callable[[], int],
                   what: str, timeout: float) -> float:
    """Wait until a fault is used up, or until nothing is left trying (the push's sync
    exists and is final: it gave up, or never met the fault, which the test then
    reports); return the moment it stopped."""
    pid = stack.project_of(repo)

    def done() -> bool:
        if remaining() <= 0:
            return True
        rows = stack.syncs(pid, after=after)
        return bool(rows) and all(r.status.is_final for r in rows)

    wait_until(done, what, timeout, interval=0.05)
    return time.monotonic()


def _push_after_fault(stack: FaultStack, repo: Repo) -> int:
    """Commit and push; return the project's last sync id from before the push."""
    after = stack.last_sync_id(stack.project_of(repo))
    repo.commit()
    repo.push()
    return after


PHASED = {"SYNC_TRANSPORT": "rest"}
"""The scenarios that strike each phase in turn (resolve, diff, fetch, apply) sync over
REST, where the phases come in that order. Over git the pack, which the bar shows as
fetching, arrives inside resolve, before the diff; the other scenarios run the default
transport, git first with REST behind it."""


def repository_calls(repo: Repo) -> str:
    """Every call about ``repo``: its REST API (``/repos/o/r/...``) and git's smart HTTP
    (``/o/r.git/...``), since a sync speaks both and a failing GitHub fails both."""
    return rf"^/(repos/)?{re.escape(repo.full_name)}(\.git)?/"


def github_server_errors(stack: FaultStack) -> Outcome:
    """GitHub answers 500 to the repository's next forty API calls."""
    repo, _other = prepare(stack, 2, owner="errors", prefix="err")
    fault = stack.github.knobs.add_fault(repository_calls(repo), "500", count=40)
    stack.mark("GitHub answers 500 forty times")
    after = _push_after_fault(stack, repo)
    _wait_consumed(stack, repo, after, lambda: fault.remaining, "the forty 500s to be used", 420)
    return Outcome(stack.mark("last 500 answered"), {"remaining": fault.remaining})


def github_timeouts(stack: FaultStack) -> Outcome:
    """GitHub holds the repository's next API call past the client's timeout."""
    repo, _other = prepare(stack, 2, owner="hangs", prefix="slow")
    # Longer than the connector's timeout: the client gives up first, as it must with a
    # GitHub that stops answering.
    stack.github.knobs.fault_hang_seconds = job_defaults.HTTP_TIMEOUT_SECONDS + 10
    fault = stack.github.knobs.add_fault(repository_calls(repo), "timeout", count=1)
    stack.mark("GitHub holds the next call")
    after = _push_after_fault(stack, repo)
    used = _wait_consumed(stack, repo, after, lambda: fault.remaining, "the hung call", 120)
    end = used + job_defaults.HTTP_TIMEOUT_SECONDS
    time.sleep(max(0.0, end - time.monotonic()))
    return Outcome(stack.mark("the hung call timed out"), {"remaining": fault.remaining})


def github_connection_resets(stack: FaultStack) -> Outcome:
    """GitHub resets the connection of the repository's next three API calls."""
    repo, _other = prepare(stack, 2, owner="resets", prefix="reset")
    fault = stack.github.knobs.add_fault(repository_calls(repo), "reset", count=3)
    stack.mark("GitHub resets the next three calls")
    after = _push_after_fault(stack, repo)
    _wait_consumed(stack, repo, after, lambda: fault.remaining, "the three resets", 180)
    return Outcome(stack.mark("last reset"), {"remaining": fault.remaining})


def primary_rate_limit(stack: FaultStack) -> Outcome:
    """One installation's primary rate limit is spent with the reset 45 s away;
    another installation keeps its budget."""
    (limited,) = prepare(stack, 1, owner="limited", prefix="limited")
    (free,) = prepare(stack, 1, owner="unlimited", prefix="free")
    limiter = stack.github.rate_limiter
    installation = stack.github.state.installations_for(limited.record)[0].id
    key = f"installation:{installation}"
    limiter.configure(window=RATE_LIMIT_WINDOW)  # fresh budgets, a 45-second window
    budget = int(limiter.headers(key, authenticated=True)["X-RateLimit-Limit"])
    for _ in range(budget):
        limiter.spend(key, authenticated=True)
    reset_epoch = int(limiter.headers(key, authenticated=True)["X-RateLimit-Reset"])
    reset_at = time.monotonic() + (reset_epoch - time.time())
    left = reset_at - time.monotonic()
    stack.mark(f"{limited.full_name}: rate limit spent, reset in {left:.0f} s")
    pid_limited, pid_free = stack.project_of(limited), stack.project_of(free)
    limited.commit()
    limited.push()
    free.commit()
    free.push()
    reasons: set[str] = set()
    free_synced_at: float | None = None
    failed: list[int] = []
    limited_synced = False
    while time.monotonic() < reset_at:
        with contextlib.suppress(Exception):  # a read may race the stack's own work
            for row in stack.syncs(pid_limited):
                if row.waiting_reason:
                    reasons.add(row.waiting_reason)
                if row.status is SyncStatus.FAILED:
                    failed.append(row.id)
            if stack.current_head(pid_limited) == limited.branch_head():
                limited_synced = True
            if free_synced_at is None and stack.current_head(pid_free) == free.branch_head():
                free_synced_at = stack.mark(f"{free.full_name} synced despite the other's limit")
        time.sleep(0.5)
    return Outcome(
        stack.mark("rate limit reset"),
        {"waiting_reasons": reasons, "free_synced_before_reset": free_synced_at is not None,
         "failed": failed, "limited": limited, "limited_synced_before_reset": limited_synced},
    )


def secondary_rate_limit(stack: FaultStack) -> Outcome:
    """The next two API calls meet a secondary rate limit with ``Retry-After``."""
    repo, _other = prepare(stack, 2, owner="abuse", prefix="abuse")
    limiter = stack.github.rate_limiter
    limiter.arm_secondary(count=2, retry_after=SECONDARY_RETRY_AFTER)
    stack.mark(f"secondary limit armed for 2 calls, Retry-After {SECONDARY_RETRY_AFTER}")
    after = _push_after_fault(stack, repo)

    def left() -> int:
        # The emulator keeps the armed limit private; reading it is the only way to
        # know when the last call met it.
        armed = limiter._secondary
        return 0 if armed is None else armed.remaining

    used = _wait_consumed(stack, repo, after, left, "the secondary limit to be met", 180)
    end = used + SECONDARY_RETRY_AFTER
    time.sleep(max(0.0, end - time.monotonic()))
    return Outcome(stack.mark("Retry-After elapsed"))


GITHUB_FAULTS = {
    "github-500": github_server_errors,
    "github-timeout": github_timeouts,
    "github-reset": github_connection_resets,
    "rate-limit": primary_rate_limit,
}


def github_misbehaving_every_way(stack: FaultStack) -> Outcome:
    """The GitHub faults at once, each on repositories of its own installation: forty
    500s, a hung call, resets and a spent primary limit together; the secondary limit
    is armed once the hung call and the resets are over, so that a sync (not a call
    already failing for another reason) meets it."""
    outcomes: dict[str, Outcome] = {}
    errors: list[tuple[str, BaseException]] = []

    def run(name: str, scenario: Callable[[FaultStack], Outcome]) -> Callable[[], None]:
        def body() -> None:
            try:
                outcomes[name] = scenario(stack)
            except BaseException as exc:
                errors.append((name, exc))

        return body

    threads = {name: threading.Thread(target=run(name, scenario), name=name)
               for name, scenario in GITHUB_FAULTS.items()}
    for thread in threads.values():
        thread.start()
    for name in ("github-timeout", "github-reset"):
        threads[name].join()
    secondary = threading.Thread(target=run("secondary-limit", secondary_rate_limit))
    secondary.start()
    for thread in [*threads.values(), secondary]:
        thread.join()
    if errors:
        name, error = errors[0]
        raise AssertionError(f"{name}: {error}") from error
    fault_end = max(outcome.fault_end for outcome in outcomes.values())
    return Outcome(fault_end, {name: outcome.notes for name, outcome in outcomes.items()})


def mixed_load(stack: FaultStack) -> Outcome:
    """20 repositories, 300 pushes in shuffled order from 4 threads, 10% of them
    delivered twice (GitHub redelivers under the same GUID) and 10% force pushes back
    to an older commit."""
    repos = prepare(stack, 20, prefix="load", files=20, directories=4, commits=1)
    rng = random.Random(300)
    plan = [(repo, rng.random(), rng.random(), rng.random()) for repo in repos
            for _ in range(15)]
    rng.shuffle(plan)
    locks = {repo.full_name: threading.Lock() for repo in repos}
    work: queue.Queue[tuple[Repo, float, float, float]] = queue.Queue()
    for item in plan:
        work.put(item)
    answers: dict[str, list[int]] = {"first": [], "duplicate": []}
    forced = 0

    def act(repo: Repo, force: float, duplicate: float, pick: float) -> None:
        nonlocal forced
        with locks[repo.full_name]:
            if force < 0.1 and len(repo.pushed) > 2:
                older = repo.pushed[int(pick * (len(repo.pushed) - 1))]
                sent = repo.force_push_to(older)
                forced += 1
            else:
                repo.commit()
                sent = repo.push()
            answers["first"] += [d.status_code for d in sent]
            if duplicate < 0.1:
                for record in sent:
                    answers["duplicate"].append(stack.github.redeliver(record.id).status_code)

    def drain() -> None:
        while True:
            try:
                item = work.get_nowait()
            except queue.Empty:
                return
            act(*item)

    run_in_threads([drain] * 4)
    return Outcome(stack.mark("300 pushes done"), {"answers": answers, "forced": forced})


@dataclass(frozen=True)
class Scenario:
    """A scenario and the stack it runs on; ``target`` is the recovery target in s."""

    name: str
    title: str
    run: Callable[[FaultStack], Outcome]
    workers: int = 2
    private_postgres: bool = False
    settings: dict[str, str] = field(default_factory=dict)
    target: float = TARGET_SECONDS
    bench: bool = True
    """Measured by ``bench/faults.py``; a combination of other scenarios is not."""


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("kill-horse", "SIGKILL the work horse in each phase",
             lambda s: kill_in_every_phase(s, whole_worker=False), workers=4,
             settings=PHASED),
    Scenario("kill-worker", "SIGKILL the whole worker in each phase",
             lambda s: kill_in_every_phase(s, whole_worker=True), workers=4,
             settings=PHASED),
    Scenario("kill-all", "SIGKILL horses, then whole workers, in each phase",
             kill_horses_then_workers, workers=4, settings=PHASED, bench=False),
    Scenario("redis-burst", "Redis restarted empty mid-burst (50 pushes)",
             redis_restart_mid_burst),
    Scenario("redis-running", "Redis emptied: a sync running, a follow-up queued",
             redis_restart_with_sync_running_and_follow_up),
    Scenario("redis-all", "Redis restarted empty mid-burst, then under a running sync",
             redis_restarts, bench=False),
    Scenario("pg-phases", "PostgreSQL stopped 10 s in each phase",
             postgres_stopped_in_every_phase, private_postgres=True, settings=PHASED),
    Scenario("pg-burst", "PostgreSQL stopped 10 s during a burst",
             postgres_stopped_during_burst, private_postgres=True,
             settings={"REDELIVER_INTERVAL_SECONDS": str(REDELIVER_SECONDS)}),
    Scenario("pg-all", "PostgreSQL stopped in each phase, then during a burst",
             postgres_outages, private_postgres=True,
             settings={**PHASED, "REDELIVER_INTERVAL_SECONDS": str(REDELIVER_SECONDS)},
             bench=False),
    Scenario("web-down", "web process down during 10 pushes",
             web_down_during_pushes, settings=RECONCILER_SETTINGS,
             target=RECONCILE_SECONDS + TARGET_SECONDS),
    Scenario("webhooks-dropped", "every webhook of one repository dropped",
             webhooks_dropped_for_one_repository, settings=RECONCILER_SETTINGS,
             target=RECONCILE_SECONDS + TARGET_SECONDS),
    Scenario("webhooks-lost", "one repository's webhooks dropped, then web down",
             webhooks_lost, settings=RECONCILER_SETTINGS,
             target=RECONCILE_SECONDS + TARGET_SECONDS, bench=False),
    Scenario("github-500", "GitHub answers 500 forty times", github_server_errors),
    Scenario("github-timeout", "GitHub call times out", github_timeouts),
    Scenario("github-reset", "GitHub resets connections", github_connection_resets),
    Scenario("rate-limit", "primary rate limit spent, reset in 45 s", primary_rate_limit),
    Scenario("secondary-limit", "secondary rate limit with Retry-After",
             secondary_rate_limit),
    Scenario("github-all", "every GitHub fault above at once, one installation each",
             github_misbehaving_every_way, bench=False),
    Scenario("mixed-load", "300 pushes, 20 repos, 4 workers, dups, force pushes",
             mixed_load, workers=4),
]}
