"""Fault benchmark: how long after each fault until every project is at its branch head.

``python -m bench.faults`` (also run by ``make bench``; ``--only NAME`` for some
scenarios, ``--list`` for their names). Each scenario of ``tests/faults/scenarios.py``
runs once on its own stack from ``tests/faults/harness.py``: a fresh PostgreSQL
database (on a private server for the scenarios that stop it, else on the shared one,
``TEST_POSTGRES_URL``), a private redis-server, gunicorn, RQ workers and the
maintenance process as separate processes, the GitHub emulator in this process. The
same code the fault tests run; here nothing is asserted early, everything is measured.

Per scenario it reports:

- ``seconds``: from the end of the fault until every project is at its head (the
  benchmark waits up to the target plus 120 s);
- ``settled_s``: until, in addition, no sync is left unfinished;
- ``rows_stuck``: unfinished syncs plus projects not at their head, at the end;
- ``lost``: deliveries of handled events GitHub attempted that were never stored (the
  benchmark waits for the failed-delivery reconciler up to the same limit);
  ``stored_s``: when the last of them was stored;
- ``oracle``: the fault suite's full check (files and texts equal git, one chain per
  project, no GUID stored twice, nothing unfinished without a live job);
- ``alive``: the workers and the maintenance process outlived the fault;

against the targets: 60 s, and the reconciler interval plus 60 s where only a
reconciler can repair the damage. Each scenario's report (timeline, projects, log
tails) is written to ``bench/results/faults/<scenario>.txt``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from github_emulator.state import generate_private_key_pem
from tests.faults.harness import FaultStack, PostgresServer, ServiceMissingError, running_stack
from tests.faults.oracle import ConvergenceError, check_state, losses, wait_converged
from tests.faults.scenarios import SCENARIOS, Scenario

RESULTS = Path(__file__).resolve().parent / "results"
EXTRA_WAIT_SECONDS = 120
"""How long past its target a scenario may take before the benchmark stops waiting."""


def measure(scenario: Scenario, stack: FaultStack) -> dict[str, Any]:
    row: dict[str, Any] = {"target": scenario.target}
    outcome = scenario.run(stack)
    timeout = scenario.target + EXTRA_WAIT_SECONDS
    deadline = outcome.fault_end + timeout
    try:
        row["seconds"] = round(
            wait_converged(stack, timeout, since=outcome.fault_end, settled=False), 1
        )
        row["settled_s"] = round(wait_converged(stack, timeout, since=outcome.fault_end), 1)
    except ConvergenceError as exc:
        row["error"] = str(exc).splitlines()[0]
    # Deliveries refused or never received come back through the failed-delivery
    # reconciler, possibly after the projects converged through later pushes; the syncs
    # they ask for must settle too before anything is counted as stuck.
    if losses(stack).deliveries_lost:
        while losses(stack).deliveries_lost and time.monotonic() < deadline:
            time.sleep(1)
        if not losses(stack).deliveries_lost:
            row["stored_s"] = round(time.monotonic() - outcome.fault_end, 1)
        with contextlib.suppress(ConvergenceError):
            wait_converged(stack, max(1.0, deadline - time.monotonic()))
    try:
        check_state(stack)
        row["oracle"] = "ok"
    except AssertionError as exc:
        row["oracle"] = f"FAILED: {str(exc).splitlines()[0] if str(exc) else 'assertion'}"
    found = losses(stack)
    row.update(rows_stuck=found.rows_stuck, lost=found.deliveries_lost,
               unprocessed=found.deliveries_unprocessed)
    try:
        stack.assert_alive()
        row["alive"] = "yes"
    except AssertionError as exc:
        row["alive"] = str(exc).splitlines()[0]
    return row


def run_one(scenario: Scenario, key: str, postgres: PostgresServer | None) -> dict[str, Any]:
    reports = RESULTS / "faults"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"bench-faults-{scenario.name}-") as tmp:
        stack_ref: list[FaultStack] = []

        def on_exit(stack: FaultStack, error: BaseException | None) -> None:
            stack_ref.append(stack)
            reports.mkdir(parents=True, exist_ok=True)
            (reports / f"{scenario.name}.txt").write_text(stack.report(60))

        try:
            with running_stack(Path(tmp), private_key_pem=key, postgres=postgres,
                               workers=scenario.workers, settings=scenario.settings,
                               on_exit=on_exit) as stack:
                row = measure(scenario, stack)
        except ServiceMissingError as exc:
            row = {"target": scenario.target, "error": f"skipped: {exc}"}
        except Exception as exc:
            row = {"target": scenario.target, "error": f"{type(exc).__name__}: {exc}"
                   .splitlines()[0]}
            traceback.print_exc()
    row["wall_s"] = round(time.monotonic() - started, 1)
    seconds = row.get("seconds")
    row["met"] = bool(seconds is not None and seconds <= scenario.target
                      and row.get("oracle") == "ok" and row.get("alive") == "yes"
                      and row.get("rows_stuck") == 0 and row.get("lost") == 0)
    return row


def _cell(value: Any, width: int) -> str:
    text = "-" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)
    return f"{text[:width]:>{width}}"


def table(results: dict[str, dict[str, Any]]) -> str:
    head = (f"{'scenario':16} {'title':52} {'s':>6} {'target':>6} {'settled':>7} "
            f"{'stored':>6} {'stuck':>5} {'lost':>4} {'oracle':>6} {'alive':>5} met")
    lines = [head, "-" * len(head)]
    for name, row in results.items():
        lines.append(
            f"{name:16} {SCENARIOS[name].title[:52]:52} {_cell(row.get('seconds'), 6)} "
            f"{_cell(float(row['target']), 6)} {_cell(row.get('settled_s'), 7)} "
            f"{_cell(row.get('stored_s'), 6)} {_cell(row.get('rows_stuck'), 5)} "
            f"{_cell(row.get('lost'), 4)} {_cell(row.get('oracle'), 6)} "
            f"{_cell(row.get('alive'), 5)} {'yes' if row['met'] else 'NO'}"
        )
        if row.get("error"):
            lines.append(f"{'':16} {row['error'][:150]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seconds from each fault to convergence.")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS),
                        help="run this scenario (repeatable); default: all")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--json", type=Path, default=RESULTS / "faults.json",
                        help="where to write the results")
    args = parser.parse_args(argv)
    if args.list:
        for name, scenario in SCENARIOS.items():
            if scenario.bench:
                print(f"{name:18} {scenario.title} (target {scenario.target:.0f} s)")
        return 0
    names = args.only or [name for name, scenario in SCENARIOS.items() if scenario.bench]
    key = generate_private_key_pem()
    postgres: PostgresServer | None = None
    results: dict[str, dict[str, Any]] = {}
    try:
        for name in names:
            scenario = SCENARIOS[name]
            if scenario.private_postgres and postgres is None:
                try:
                    postgres = PostgresServer().init()
                    postgres.start()
                except (ServiceMissingError, RuntimeError) as exc:
                    results[name] = {"target": scenario.target, "met": False,
                                     "error": f"skipped: private PostgreSQL: {exc}"}
                    continue
            print(f"--- {name}: {scenario.title}", flush=True)
            results[name] = run_one(scenario, key, postgres if scenario.private_postgres
                                    else None)
            print(json.dumps(results[name]), flush=True)
    finally:
        if postgres is not None:
            postgres.destroy()
    print()
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.json}")
    return 0 if all(row["met"] for row in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
