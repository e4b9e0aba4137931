"""The suite's own promise: absent services skip outside CI and fail on CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEAD_REDIS = "redis://127.0.0.1:1"  # nothing listens on port 1


def run_smoke_test(ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["TEST_REDIS_URL"] = DEAD_REDIS
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_smoke.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("ci", [None, "false"])
def test_missing_redis_is_a_stated_skip_outside_ci(ci: str | None) -> None:
    result = run_smoke_test(ci)
    assert result.returncode == 0, result.stdout
    assert "skipped" in result.stdout
    assert f"Redis is not reachable at {DEAD_REDIS}" in result.stdout


def test_missing_redis_fails_on_ci() -> None:
    result = run_smoke_test("true")
    assert result.returncode != 0
    assert "CI=true: required services must be running" in result.stdout
