"""Headless Chromium, driven by Playwright's Python API, against the deployed stack.

The browser is Debian's ``chromium`` (``CHROMIUM_PATH`` overrides): Playwright's own
browser downloads are not used. Outside CI a missing Chromium skips these tests with
the reason; with ``CI=true`` it fails them. Every test leaves screenshots under
``test-artifacts/browser/<test name>/`` (``BROWSER_ARTIFACTS`` overrides the root).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.conftest import unavailable
from tests.e2e.conftest import stack  # noqa: F401 - the deployed stack, re-exported as a fixture

ROOT = Path(__file__).resolve().parents[2]

# Chromium's own background traffic is refused by a closed network, many connections at
# a time; these flags keep it to the pages under test.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")


# Module scope, not session: Playwright's sync API runs an asyncio loop in this thread
# while it is open, and tests after these (asyncio.run in a load generator) need none.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    executable = chromium_path()
    if executable is None:
        unavailable("Chromium is not installed (apt-get install chromium, or set CHROMIUM_PATH)")
    launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


class Screenshots:
    """Numbered full-page screenshots of one test, kept as artefacts."""

    def __init__(self, page: Page, directory: Path) -> None:
        self.page = page
        self.directory = directory
        self.taken = 0

    def take(self, name: str) -> Path:
        self.taken += 1
        path = self.directory / f"{self.taken:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def _artefact_directory(test_name: str) -> Path:
    root = Path(os.environ.get("BROWSER_ARTIFACTS", ROOT / "test-artifacts" / "browser"))
    directory = root / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    yield opened
    context.close()


@pytest.fixture
def screenshots(page: Page, request: pytest.FixtureRequest) -> Iterator[Screenshots]:
    shots = Screenshots(page, _artefact_directory(request.node.name))
    yield shots
    outcome = getattr(request.node, "rep_call", None)
    if outcome is not None and outcome.failed:
        shots.take("failure")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
