"""The fault suite's oracle: after a fault, the app converges to GitHub and nothing is lost.

:func:`assert_converged` polls until every project is at its branch head with no sync
left unfinished, then checks the whole state against git with the sync suite's own
oracle (``tests/sync/conftest.py``): stored files equal ``git ls-tree -r`` of the head,
texts equal ``git cat-file -p``, the active memory is exactly the text files, each
lineage is one chain. It also checks that no delivery GUID was stored twice and that
no ProjectSync is left non-final without a live RQ job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rq import Worker as RQWorker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import func, select

from models import DeliveryStatus, Project, ProjectSync, SyncStatus, WebhookDelivery, db
from tests.sync.conftest import Tracked, assert_matches_git, assert_single_chain

from .harness import FaultStack, Repo

POLL_SECONDS = 0.5

HANDLED_EVENTS = ("push", "installation", "installation_repositories")
"""Events whose deliveries the app acts on; a lost one of these can lose a sync."""


class ConvergenceError(AssertionError):
    """The stack did not reach GitHub's state in time, or reached a wrong one."""


def _unfinished(project_ids: list[int] | None = None) -> list[ProjectSync]:
    query = select(ProjectSync).where(
        ProjectSync.status.in_((SyncStatus.QUEUED, SyncStatus.RUNNING))
    )
    if project_ids is not None:
        query = query.where(ProjectSync.project_id.in_(project_ids))
    return list(db.session.scalars(query.order_by(ProjectSync.id)))


def gaps(
    stack: FaultStack, repos: list[Repo] | None = None, *, settled: bool = True
) -> list[str]:
    """What still differs from GitHub (for ``repos``, by default every repository of
    the stack): empty once it has converged. ``settled=False`` looks at the heads only,
    not at syncs still unfinished."""
    found = []
    project_ids = []
    for repo in stack.repos if repos is None else repos:
        head = repo.branch_head()
        pid = stack.project_id(repo)
        if pid is None:
            found.append(f"{repo.full_name}: no project")
            continue
        project_ids.append(pid)
        current = stack.current_head(pid)
        if current != head:
            synced = (current or "nothing")[:10]
            found.append(f"{repo.full_name}: at {synced}, GitHub at {head[:10]}")
    only = None if repos is None else project_ids
    for sync in stack.query(lambda: _unfinished(only)) if settled else []:
        found.append(f"sync {sync.id} of project {sync.project_id} is still {sync.status}")
    return found


def job_is_live(stack: FaultStack, job_id: str | None) -> bool:
    """An RQ job that will still run: waiting in a queue or the scheduler, or started
    by a worker that is registered and whose process is alive."""
    if job_id is None:
        return False
    try:
        job = Job.fetch(job_id, connection=stack.redis)
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    if status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
        return True
    if status != JobStatus.STARTED:
        return False
    registered = {w.name for w in RQWorker.all(connection=stack.redis)}
    alive = {w.name for w in stack.live_workers()}
    return job.worker_name in registered and job.worker_name in alive


def wait_converged(
    stack: FaultStack,
    timeout: float,
    *,
    since: float | None = None,
    repos: list[Repo] | None = None,
    settled: bool = True,
) -> float:
    """Poll until :func:`gaps` is empty; return the seconds since ``since`` (a
    ``time.monotonic()`` value, by default now). Raise :class:`ConvergenceError` with
    the stack's report if it does not happen within ``timeout`` seconds from now."""
    start = time.monotonic() if since is None else since
    deadline = time.monotonic() + timeout
    while True:
        try:
            missing = gaps(stack, repos, settled=settled)
        except Exception as exc:  # a service may still be down
            missing = [f"state not readable: {exc!r}"]
        if not missing:
            break
        if time.monotonic() >= deadline:
            raise ConvergenceError(
                f"not converged {timeout:.0f} s after the check began:\n"
                + "\n".join(missing) + "\n\n" + stack.report()
            )
        time.sleep(POLL_SECONDS)
    seconds = time.monotonic() - start
    which = "every project" if repos is None else ", ".join(r.full_name for r in repos)
    after = "the fault ended" if since else "asked"
    what = "converged" if settled else "at their heads"
    stack.mark(f"{what} ({which}), {seconds:.1f} s after {after}")
    return seconds


def check_state(stack: FaultStack) -> None:
    """The full oracle on a converged stack (see the module docstring)."""
    with stack.app.app_context():
        try:
            for repo in stack.repos:
                head = repo.branch_head()
                pid = stack.project_of(repo)
                project = db.session.get_one(Project, pid)
                assert project.current_sync is not None, f"{repo.full_name} never synced"
                assert project.current_sync.head_commit_sha == head, repo.full_name
                tracked = Tracked(stack.github, repo.history, repo.git_dir, repo.clone_url,
                                  pid, project.repository_id)
                assert_matches_git(tracked, head)
                assert_single_chain(pid)
            duplicated = db.session.execute(
                select(WebhookDelivery.delivery_id, func.count())
                .group_by(WebhookDelivery.delivery_id)
                .having(func.count() > 1)
            ).all()
            assert duplicated == [], f"delivery GUIDs stored more than once: {duplicated}"
            orphans = [
                (s.id, s.status, s.rq_job_id, stack.job_state(s.rq_job_id))
                for s in _unfinished() if not job_is_live(stack, s.rq_job_id)
            ]
            assert orphans == [], f"unfinished syncs without a live job: {orphans}"
        finally:
            db.session.remove()


def assert_converged(stack: FaultStack, timeout: float, *, since: float | None = None) -> float:
    """Wait for convergence, then check the state in full; return the seconds it took
    (from ``since``, the end of the fault, when given)."""
    seconds = wait_converged(stack, timeout, since=since)
    check_state(stack)
    return seconds


@dataclass(frozen=True)
class Losses:
    """What the benchmark reports besides the time to converge."""

    rows_stuck: int
    """Unfinished syncs plus projects not at their branch head."""
    deliveries_lost: int
    """Deliveries of handled events GitHub attempted whose GUID was never stored."""
    deliveries_unprocessed: int
    """Stored deliveries still pending, queued or failed."""


def losses(stack: FaultStack) -> Losses:
    sent = {d.guid for d in stack.github.deliveries if d.event in HANDLED_EVENTS}

    def read() -> tuple[int, set[str], int]:
        unfinished = len(_unfinished())
        stored = set(db.session.scalars(select(WebhookDelivery.delivery_id)))
        waiting = db.session.scalar(
            select(func.count()).select_from(WebhookDelivery).where(
                WebhookDelivery.status.in_(
                    (DeliveryStatus.PENDING, DeliveryStatus.QUEUED, DeliveryStatus.FAILED)
                )
            )
        ) or 0
        return unfinished, stored, waiting

    unfinished, stored, waiting = stack.query(read)
    behind = sum(
        1 for repo in stack.repos
        if (pid := stack.project_id(repo)) is None or stack.current_head(pid) != repo.branch_head()
    )
    return Losses(unfinished + behind, len(sent - stored), waiting)
