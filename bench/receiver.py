"""The webhook receiver against Probot 14: the same signed deliveries to both, one run.

``python -m bench.receiver`` (``--help`` for the knobs). Ours is gunicorn as deployed
(``gunicorn -c gunicorn.conf.py wsgi:app``, ``WEB_CONCURRENCY`` workers of
``WEB_THREADS`` threads) on a PostgreSQL database and a redis-server of the run's own;
every delivery it acknowledges is stored (committed, WAL flushed) and queued, and the
count check at the end says so. Probot 14 is installed with npm into
``--probot-dir`` (outside the repository; nothing of it is committed) and runs a tiny
app with an empty ``push`` handler: it verifies the signature, parses and routes, and
stores nothing.

Both get the ~10 KB recorded push payload, signed once, each request with its own
``X-GitHub-Delivery``, a new connection per delivery as GitHub sends them, from the
asyncio load generator of :mod:`bench.webhooks` in a process of its own:

- saturation: ``--connections`` connections in a closed loop for ``--seconds``
  (wrk-like) → deliveries/s answered 2xx;
- fixed rate: an open loop at ``--rate``/s for ``--seconds``, latency from each
  request's scheduled send time → p50/p99.

With ``--floor`` (the default) the run also measures the stack's own ceiling: gunicorn
with the deployed worker settings serving a Flask app and a bare WSGI callable that do
nothing but answer 202 (:mod:`bench.floor_apps`).

Without node and npm, or when npm cannot install Probot, the Probot column is skipped
with a message. Everything binds to 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.webhooks import (
    ROOT,
    SECRET,
    Services,
    free_port,
    percentile,
    run_load,
    wait_for_quiet_machine,
)

PROBOT_VERSION = "14"
PROBOT_APP = """\
import crypto from "node:crypto";
import http from "node:http";
import { Probot, createNodeMiddleware } from "probot";

// A key only so Probot starts; nothing here calls GitHub.
const { privateKey } = crypto.generateKeyPairSync("rsa", {
  modulusLength: 2048,
  privateKeyEncoding: { type: "pkcs1", format: "pem" },
  publicKeyEncoding: { type: "spki", format: "pem" },
});
const probot = new Probot({
  appId: 1,
  privateKey,
  secret: process.env.WEBHOOK_SECRET,
  logLevel: "warn",
});
const app = (app) => {
  app.on("push", async () => {});
};
const middleware = await createNodeMiddleware(app, { probot, webhooksPath: "/webhooks/github" });
http.createServer(middleware).listen(Number(process.env.PORT), "127.0.0.1");
"""


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port}")


def start_ours(services: Services) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**services.environment(), "PORT": str(port), "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
    )
    _wait_port(port, process, "gunicorn")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # every worker has imported the app
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200:
                break
        except OSError:
            time.sleep(0.1)
    time.sleep(1.0)
    return process, port


def start_floor(app: str) -> tuple[subprocess.Popen[bytes], int]:
    """gunicorn with the deployed worker settings (gunicorn.conf.py's class, processes,
    threads and keep-alive, not the file itself: its hooks need the real app) serving
    one of :mod:`bench.floor_apps`."""
    port = free_port()
    workers = os.environ.get("WEB_CONCURRENCY", str(os.cpu_count() or 1))
    threads = os.environ.get("WEB_THREADS", "16")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "--config", os.devnull, "--worker-class", "gthread",
            "--workers", workers, "--threads", threads, "--keep-alive", "5",
            "--bind", f"127.0.0.1:{port}", "--log-level", "warning", f"bench.floor_apps:{app}",
        ],
        cwd=ROOT,
    )  # fmt: skip
    _wait_port(port, process, f"gunicorn ({app})")
    time.sleep(1.0)
    return process, port


def install_probot(directory: Path) -> str | None:
    """Install Probot into ``directory``; None, or why it cannot run."""
    if not (shutil.which("node") and shutil.which("npm")):
        return "node and npm are not installed (apt-get install nodejs npm)"
    if not (directory / "node_modules" / "probot").is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "package.json").write_text('{"name": "probot-bench", "private": true}\n')
        done = subprocess.run(
            ["npm", "install", f"probot@{PROBOT_VERSION}", "--no-audit", "--no-fund"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            return f"npm install probot@{PROBOT_VERSION} failed: {done.stderr.strip()[-300:]}"
    (directory / "app.mjs").write_text(PROBOT_APP)
    return None


def start_probot(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "WEBHOOK_SECRET": SECRET, "NODE_ENV": "production"}
    process = subprocess.Popen(["node", "app.mjs"], cwd=directory, env=env)
    _wait_port(port, process, "probot")
    return process, port


def measure(port: int, args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, then saturation and fixed rate, each after the machine is quiet."""
    run_load("saturation", port, connections=args.connections, seconds=2, keep_alive=False)
    busy = wait_for_quiet_machine()
    saturation = run_load(
        "saturation", port, connections=args.connections, seconds=args.seconds, keep_alive=False
    )
    wait_for_quiet_machine()
    fixed = run_load(
        "fixed",
        port,
        rate=args.rate,
        seconds=args.seconds,
        connections=args.connections,
        keep_alive=False,
    )
    answered = sum(n for status, n in saturation["statuses"].items() if 200 <= int(status) < 300)
    latencies = [value * 1000 for value in fixed["latencies"]]
    return {
        "deliveries_per_second": round(answered / saturation["elapsed"], 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "saturation_statuses": saturation["statuses"],
        "fixed_statuses": fixed["statuses"],
        "errors": saturation["errors"] + fixed["errors"],
        "acknowledged": saturation["acknowledged"] + fixed["acknowledged"],
        "busy_before_share": round(busy, 2),
    }


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with Services() as services:
        gunicorn, port = start_ours(services)
        try:
            ours = measure(port, args)
        finally:
            _stop(gunicorn)
        rows, distinct = services.stored()
        warm_up = rows - len(ours["acknowledged"])  # the warm-up's deliveries are stored too
        ours["stored_exactly_once"] = (
            rows == distinct and set(ours["acknowledged"]) <= services.stored_ids() and warm_up >= 0
        )
    result["ours"] = {k: v for k, v in ours.items() if k != "acknowledged"}
    if args.floor:
        for app in ("flask_app", "wsgi_app"):
            floor, port = start_floor(app)
            try:
                measured = measure(port, args)
            finally:
                _stop(floor)
            result[f"floor_{app}"] = {k: v for k, v in measured.items() if k != "acknowledged"}
    why_not = install_probot(args.probot_dir)
    if why_not:
        print(f"probot skipped: {why_not}")
        return result
    probot, port = start_probot(args.probot_dir)
    try:
        theirs = measure(port, args)
    finally:
        _stop(probot)
    result["probot"] = {k: v for k, v in theirs.items() if k != "acknowledged"}
    return result


def print_table(result: dict[str, Any], args: argparse.Namespace) -> None:
    ours, theirs = result["ours"], result.get("probot")
    rows = [
        (
            f"deliveries/s at saturation ({args.connections} connections)",
            "deliveries_per_second",
        ),
        (f"p50 ms at {args.rate:.0f}/s", "p50_ms"),
        (f"p99 ms at {args.rate:.0f}/s", "p99_ms"),
    ]
    print(f"{'':45} {'ours':>10} {'probot':>10} {'ours/probot':>12}")
    for title, key in rows:
        other = theirs[key] if theirs else None
        ratio = f"{ours[key] / other:.2f}" if other else "-"
        print(f"{title:45} {ours[key]:>10} {other if other is not None else '-':>10} {ratio:>12}")
    for name, label in (("floor_flask_app", "Flask, no work"), ("floor_wsgi_app", "WSGI, no work")):
        if name in result:
            rate = result[name]["deliveries_per_second"]
            other = theirs["deliveries_per_second"] if theirs else None
            ratio = f"{rate / other:.2f}" if other else "-"
            title = f"floor: gunicorn + {label}, deliveries/s"
            print(f"{title:45} {rate:>10} {other if other is not None else '-':>10} {ratio:>12}")
    print(f"{'stored (every 202 committed, once)':45} {ours['stored_exactly_once']!s:>10}")
    if theirs:
        ratio_met = ours["deliveries_per_second"] / theirs["deliveries_per_second"] >= 0.5
        print(f"{'deliveries/s target >= 0.5 of probot':45} {ratio_met!s:>10}")
    print(f"{'p99 target <= 30 ms at the rate':45} {ours['p99_ms'] <= 30!s:>10}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--probot-dir", type=Path, default=Path("/tmp/probot-bench"))
    parser.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure gunicorn as deployed serving a Flask app and a bare WSGI "
        "callable that do nothing (bench/floor_apps.py): the most any receiver on that "
        "stack can reach here",
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = benchmark(args)
    print(json.dumps(result, indent=2))
    print_table(result, args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
