"""Fixtures of the fault suite: a running :class:`~tests.faults.harness.FaultStack` per
test, and one private PostgreSQL server per module for the tests that stop it.

A test that fails prints the stack's report (timeline, every project's state and the
tail of every process's log) with its teardown output. A missing redis-server,
initdb, pg_ctl or PostgreSQL skips the test, or fails it with ``CI=true``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unavailable

from .harness import FaultStack, PostgresServer, ServiceMissingError, running_stack
from .oracle import assert_converged
from .scenarios import SCENARIOS, Outcome


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own, which its tests may stop and start."""
    try:
        server = PostgresServer()
    except ServiceMissingError as exc:
        unavailable(f"cannot run a private PostgreSQL: {exc}")
    try:
        server.init()
        server.start()
    except Exception as exc:
        server.destroy()
        unavailable(f"cannot run a private PostgreSQL: {exc}")
    yield server
    server.destroy()


MakeStack = Callable[..., FaultStack]


@pytest.fixture
def make_stack(
    request: pytest.FixtureRequest, tmp_path: Path, emulator_app_key: str
) -> Iterator[MakeStack]:
    """``make_stack(workers=1, postgres=None, settings=None, maintenance=True)`` starts
    the stack for this test (once) and tears it down after it. The stack's report
    (timeline, projects, log tails) is written to ``report.txt`` in the test's tmp
    dir, and printed if the test failed."""
    stacks: list[FaultStack] = []

    def report(stack: FaultStack, error: BaseException | None) -> None:
        text = stack.report()
        (tmp_path / "report.txt").write_text(text)
        if error is not None or _failed(request):
            print(text)

    with contextlib.ExitStack() as exits:

        def make(**options: Any) -> FaultStack:
            assert not stacks, "one stack per test"
            try:
                stack = exits.enter_context(
                    running_stack(tmp_path, private_key_pem=emulator_app_key,
                                  on_exit=report, **options)
                )
            except ServiceMissingError as exc:
                unavailable(str(exc))
            stacks.append(stack)
            return stack

        yield make


GRACE_SECONDS = 30
"""Added to a scenario's recovery target before a test gives up: the machine is shared.
The benchmark (``bench/faults.py``) reports the seconds against the exact target."""


@dataclass
class Run:
    stack: FaultStack
    outcome: Outcome
    seconds: float


@pytest.fixture
def run_scenario(make_stack: MakeStack, request: pytest.FixtureRequest) -> Callable[[str], Run]:
    """``run_scenario(name)``: start the stack the scenario needs, run it, and wait
    for the oracle (within the scenario's target plus :data:`GRACE_SECONDS`)."""

    def run(name: str) -> Run:
        scenario = SCENARIOS[name]
        postgres = (
            request.getfixturevalue("private_postgres") if scenario.private_postgres else None
        )
        stack = make_stack(workers=scenario.workers, settings=scenario.settings,
                           postgres=postgres)
        outcome = scenario.run(stack)
        seconds = assert_converged(
            stack, scenario.target + GRACE_SECONDS, since=outcome.fault_end
        )
        print(f"{name}: every project at its head {seconds:.1f} s after the fault ended "
              f"(target {scenario.target:.0f} s)")
        return Run(stack, outcome, seconds)

    return run


def assert_no_failed_syncs(stack: FaultStack) -> None:
    """A transient fault delays a sync; it never ends one as failed."""
    failed = stack.failed_syncs()
    assert failed == [], f"syncs ended failed: {failed}"
