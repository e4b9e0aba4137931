"""The loop the demo exists to show, in a real browser: push a commit, watch it arrive.

Everything is real: gunicorn and an RQ worker as deployed, the emulator serving git's
smart HTTP (the push below is ``git push`` over HTTP with a personal token, and the
emulator's hook sends the signed webhook), headless Chromium running the page's own
script. No page is reloaded while a test watches it: each test marks the window and
checks the mark is still there at the end.
"""

from __future__ import annotations

import subprocess
from contextlib import suppress
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from github_emulator.testing import with_credentials
from models import Project, ProjectSync, SyncStatus, SyncTrigger, db
from tests.e2e.conftest import Stack, query, wait_for

from .conftest import Screenshots

pytestmark = pytest.mark.slow

# Each test runs once, on one database: SQLite as `make run` has it for what a new user
# sees first, PostgreSQL as deployed for the controls.
ON_SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
ON_POSTGRESQL = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)

OWNER = "octo"
# Long enough for the page to show the running sync and its bar: each emulated GitHub
# request takes this long, as a distant GitHub would.
LATENCY_SECONDS = 0.4
WATCH_MS = 60_000


def git(work: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Octo", "-c", "user.email=octo@example.com", *args],
        cwd=work, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class Repository:
    """A working copy pushed over smart HTTP to an emulated repository."""

    def __init__(self, stack: Stack, work: Path, name: str) -> None:
        self.record = stack.github.create_repository(OWNER, name)
        token = stack.github.personal_token(OWNER)
        self.remote = with_credentials(stack.github.http_clone_url(self.record), token,
                                       username=OWNER)
        self.work = work
        work.mkdir(parents=True)
        git(work, "init", "--quiet", "--initial-branch=main")

    def commit(self, files: dict[str, str | None], message: str) -> str:
        for path, text in files.items():
            target = self.work / path
            if text is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        git(self.work, "add", "--all")
        git(self.work, "commit", "--quiet", "-m", message)
        return git(self.work, "rev-parse", "HEAD")

    def push(self) -> None:
        git(self.work, "push", "--quiet", self.remote, "HEAD:refs/heads/main")

    def blobs_at(self, commit: str) -> dict[str, str]:
        listing = git(self.work, "ls-tree", "-r", commit)
        entries = (line.split(None, 3) for line in listing.splitlines())
        return {path: sha for _mode, _kind, sha, path in entries}


def first_files(index: int) -> dict[str, str | None]:
    return {f"docs/page-{n}.md": f"# Page {n}\n\nversion {index}\n" for n in range(6)}


def tracked_project(stack: Stack, repository: Repository) -> int:
    stack.github.install(OWNER, [repository.record])

    def project_id() -> int | None:
        found = db.session.scalar(
            db.select(Project.id).where(Project.branch == "main").order_by(Project.id.desc())
        )
        return int(found) if found is not None else None

    return int(wait_for(lambda: query(stack, project_id), "the installation's project"))


def synced_to(stack: Stack, project_id: int, head: str) -> None:
    def at_head() -> bool:
        project = db.session.get(Project, project_id)
        current = project.current_sync if project else None
        return current is not None and current.head_commit_sha == head

    wait_for(lambda: query(stack, at_head), f"the sync of {head[:10]}", timeout=90)


def mark_window(page: Page) -> None:
    """Remember every progress value the page shows, and mark the window: a reload
    loses both."""
    page.evaluate(
        """() => {
          window.__notReloaded = true;
          window.__percents = [];
          const seen = (node) => {
            if (node.nodeType !== 1) return;
            const bars = node.matches('progress') ? [node] : node.querySelectorAll('progress');
            const value = (bar) => Number(bar.getAttribute('aria-valuenow'));
            bars.forEach((bar) => window.__percents.push(value(bar)));
          };
          new MutationObserver((changes) => changes.forEach((change) => {
            if (change.type === 'attributes') seen(change.target);
            change.addedNodes.forEach(seen);
          })).observe(document.body, {subtree: true, childList: true, attributes: true,
                                      attributeFilter: ['aria-valuenow']});
        }"""
    )


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("() => window.__notReloaded === true"), "the page was reloaded"


@ON_SQLITE
def test_a_push_appears_on_the_open_status_page_with_its_bar_reaching_100(
    stack: Stack, page: Page, screenshots: Screenshots, tmp_path: Path
) -> None:
    repository = Repository(stack, tmp_path / "work", "live")
    repository.commit(first_files(1), "first")
    repository.push()
    project_id = tracked_project(stack, repository)
    synced_to(stack, project_id, git(repository.work, "rev-parse", "HEAD"))

    page.goto(stack.url + "/")
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
    row = page.locator(f"#project-{project_id}")
    expect(row.locator("[data-status]").first).to_have_attribute("data-status", "succeeded")
    screenshots.take("status-before-push")
    mark_window(page)

    stack.github.knobs.latency = LATENCY_SECONDS
    head = repository.commit({"docs/page-1.md": "# Page 1\n\nchanged\n", "new.txt": "new\n"},
                             "second")
    repository.push()

    expect(page.locator(f"#project-{project_id} .progress")).to_be_visible(timeout=WATCH_MS)
    with suppress(PlaywrightTimeoutError):  # a fast sync may skip from 0 to 100 %
        page.wait_for_function(
            "() => [...document.querySelectorAll('progress')].some("
            "(bar) => bar.value > 0 && bar.value < 100)", timeout=15_000)
    screenshots.take("status-sync-running")
    expect(row.locator(f"code.sha[title='{head}']")).to_be_visible(timeout=WATCH_MS)
    expect(row.locator("[data-status]").first).to_have_attribute(
        "data-status", "succeeded", timeout=WATCH_MS)
    screenshots.take("status-after-push")

    assert_not_reloaded(page)
    percents = page.evaluate("() => window.__percents")
    assert percents, "the page never showed the running sync's progress bar"
    assert max(percents) == 100, f"the bar stopped at {max(percents)} %: {percents}"
    assert percents == sorted(percents), f"the bar went backwards: {percents}"


@ON_POSTGRESQL
def test_restore_through_the_confirmation_shows_that_syncs_files(
    stack: Stack, page: Page, screenshots: Screenshots, tmp_path: Path
) -> None:
    repository = Repository(stack, tmp_path / "work", "restore")
    first_head = repository.commit(first_files(1), "first")
    repository.push()
    project_id = tracked_project(stack, repository)
    synced_to(stack, project_id, first_head)
    second_head = repository.commit(
        {"docs/page-0.md": None, "docs/page-2.md": "# Page 2\n\nrewritten\n", "extra.md": "x\n"},
        "second",
    )
    repository.push()
    synced_to(stack, project_id, second_head)
    first_sync = query(stack, lambda: db.session.scalar(
        db.select(ProjectSync.id).where(ProjectSync.project_id == project_id,
                                        ProjectSync.head_commit_sha == first_head,
                                        ProjectSync.status == SyncStatus.SUCCEEDED)))

    page.goto(f"{stack.url}/projects/{project_id}")
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
    screenshots.take("project-before-restore")
    page.locator(f"#sync-{first_sync} button[data-action='restore']").click()
    expect(page.locator("#confirm-restore")).to_be_visible()
    screenshots.take("restore-confirmation")
    page.locator("#confirm-restore-button").click()

    expect(page.locator("#memory-restored, #memory-lag").first).to_be_visible(timeout=WATCH_MS)
    restored = query(stack, lambda: db.session.scalar(
        db.select(ProjectSync.status).where(ProjectSync.project_id == project_id,
                                            ProjectSync.trigger == SyncTrigger.RESTORE)))
    assert restored == SyncStatus.SUCCEEDED

    def shown() -> dict[str, str | None]:
        return {
            row.locator("td code").first.inner_text():
                row.locator("code.sha").get_attribute("title")
            for row in page.locator("#memory tbody tr").all()
        }

    expected = repository.blobs_at(first_head)
    wait_for(lambda: shown() == expected, "the page to show the restored sync's files")
    screenshots.take("project-after-restore")


@ON_POSTGRESQL
def test_untracking_a_branch_through_its_confirmation(
    stack: Stack, page: Page, screenshots: Screenshots, tmp_path: Path
) -> None:
    repository = Repository(stack, tmp_path / "work", "untrack")
    head = repository.commit(first_files(1), "first")
    repository.push()
    project_id = tracked_project(stack, repository)
    synced_to(stack, project_id, head)

    page.goto(f"{stack.url}/projects/{project_id}")
    page.locator("#untrack").click()
    expect(page.locator("#confirm-untrack")).to_be_visible()
    screenshots.take("untrack-confirmation")
    page.locator("#confirm-untrack-button").click()
    page.wait_for_load_state()
    screenshots.take("after-untrack")

    page.goto(stack.url + "/")
    expect(page.locator(f"#project-{project_id}")).to_have_count(0)
    screenshots.take("status-without-the-branch")
    later = repository.commit({"after.md": "after\n"}, "after untracking")
    repository.push()

    def pushes_seen() -> bool:
        return any(d.event == "push" and d.payload.get("after") == later
                   for d in stack.github.deliveries)

    wait_for(pushes_seen, "the push webhook after untracking")
    assert query(stack, lambda: db.session.scalar(
        db.select(db.func.count()).select_from(ProjectSync).where(
            ProjectSync.project_id == project_id, ProjectSync.head_commit_sha == later))) == 0


@ON_SQLITE
def test_the_status_page_fits_a_phone(
    stack: Stack, page: Page, screenshots: Screenshots, tmp_path: Path
) -> None:
    repository = Repository(stack, tmp_path / "work", "a-rather-long-repository-name")
    head = repository.commit(first_files(1), "first")
    repository.push()
    project_id = tracked_project(stack, repository)
    synced_to(stack, project_id, head)

    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/", f"/projects/{project_id}", "/no/such/page"):
        page.goto(stack.url + path)
        screenshots.take("phone" + path.replace("/", "-"))
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} is {overflow} px wider than a 390 px screen"

    # On a laptop's screen every sync's row fits whole: Restore is reachable without
    # scrolling the table sideways (a second sync makes the first one restorable).
    second = repository.commit({"second.txt": "second\n"}, "second")
    repository.push()
    synced_to(stack, project_id, second)
    page.set_viewport_size({"width": 1024, "height": 768})
    page.goto(f"{stack.url}/projects/{project_id}")
    restore = page.locator('button[data-action="restore"]').first
    box = restore.bounding_box()
    assert box is not None
    assert box["x"] + box["width"] <= 1024, f"Restore ends at {box['x'] + box['width']} px"
    table_overflow = page.evaluate(
        "() => { const s = document.querySelector('#syncs').parentElement;"
        " return s.scrollWidth - s.clientWidth; }")
    assert table_overflow <= 0, f"the syncs table scrolls {table_overflow} px sideways at 1024 px"
