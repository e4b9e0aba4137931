"""``make bench``: every benchmark, one after another, each in its own process.

Each prints its numbers and writes them as JSON under ``bench/results/`` (ignored by
git). See ``bench/README.md`` for what each one measures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

BENCHMARKS = [
    ("webhook receiver", ["bench.webhooks", "--json", str(RESULTS / "webhooks.json")]),
    ("receiver vs probot", ["bench.receiver", "--json", str(RESULTS / "receiver.json")]),
    ("sync engine", ["bench.sync"]),
    ("transports", ["bench.transport"]),
    ("faults", ["bench.faults", "--json", str(RESULTS / "faults.json")]),
    ("job cost", ["bench.job_cost", "--json", str(RESULTS / "job_cost.json")]),
    ("push to applied", ["bench.latency"]),
    ("large changes and first sync", ["bench.large"]),
]


def main() -> int:
    failures = 0
    for title, argv in BENCHMARKS:
        print(f"\n=== {title} ({' '.join(argv)}) ===", flush=True)
        failures += subprocess.call([sys.executable, "-m", *argv]) != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
