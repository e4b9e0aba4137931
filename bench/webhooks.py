"""Webhook receiver benchmark: gunicorn + PostgreSQL + Redis, load from another process.

``python -m bench.webhooks`` (``--help`` for knobs; bench/README.md has the results). It
creates its own PostgreSQL database and starts its own redis-server on a free port
(nothing shared is touched), starts gunicorn on 127.0.0.1 with ``wsgi:app``, and drives
it with a small asyncio HTTP/1.1 client in a separate process, sending signed
deliveries of the recorded ~10 KB push payload (signed once; each request differs only
in its ``X-GitHub-Delivery``). Each connection mode is measured in turn: a new
connection per delivery, as GitHub does (the headline), then kept-alive connections:

1. saturation: a closed loop over ``--connections`` connections for ``--seconds``;
   reports deliveries/s;
2. fixed rate: an open loop at ``--rate`` deliveries/s; latency is measured from each
   request's scheduled send time, so a stall is not hidden (no coordinated omission);
   reports p50/p99;
3. count check: every delivery answered 202 is stored exactly once.

Before each run it waits (up to a minute) for the machine to be idle, and it reports
the CPU share of the load generator, gunicorn's workers, PostgreSQL and the whole
machine, since all of them share the two cores.

``--profile`` instead runs the request path in-process under cProfile (test client,
same database) and prints where the time goes. Everything stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = ROOT / "tests" / "webhooks" / "payloads" / "push.json"
SECRET = "bench-webhook-secret"
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PROBOT_REFERENCE = 10_000
"""Deliveries/s Probot verifies and routes on this machine while storing nothing."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def body_bytes() -> bytes:
    return json.dumps(json.loads(PAYLOAD.read_text()), separators=(",", ":")).encode()


# --- load generator (runs in its own process) --------------------------------------------


def _request(port: int, body: bytes, signature: str, delivery_id: str, keep_alive: bool) -> bytes:
    head = (
        f"POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "User-Agent: GitHub-Hookshot/bench\r\nContent-Type: application/json\r\n"
        f"X-GitHub-Event: push\r\nX-GitHub-Delivery: {delivery_id}\r\n"
        f"X-GitHub-Hook-ID: 77\r\nX-Hub-Signature-256: {signature}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bool]:
    """Send one request, read its answer; return the status and whether the server
    closes the connection. The head is read in one call, not line by line: the load
    generator shares the two cores with the server and must cost as little as it can."""
    writer.write(request)
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    status = int(head[9:12])
    length = 0
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        length = int(head[at + 17 : head.index(b"\r\n", at + 2)])
    if length:
        await reader.readexactly(length)
    return status, b"\r\nconnection: close" in head


class Client:
    """Sends deliveries over kept-alive connections, or (``keep_alive=False``) one new
    connection per delivery, as GitHub does."""

    def __init__(self, port: int, body: bytes, signature: str, keep_alive: bool) -> None:
        self.port, self.body, self.signature = port, body, signature
        self.keep_alive = keep_alive
        self.acknowledged: list[str] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0

    async def one(self, conn: list[Any]) -> None:
        delivery_id = str(uuid.uuid4())
        request = _request(self.port, self.body, self.signature, delivery_id, self.keep_alive)
        try:
            if conn[0] is None:
                conn[0] = await asyncio.open_connection("127.0.0.1", self.port)
            status, close = await _exchange(*conn[0], request)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            # Not resent: a delivery the server may have stored but whose answer was
            # lost would then count as a duplicate, hiding a real failure.
            self.errors += 1
            close, status = True, 0
        if close and conn[0] is not None:
            reader, writer = conn[0]
            conn[0] = None
            if status:
                await reader.read()  # the server closes first, so its side keeps TIME_WAIT
            writer.close()
        if status:
            self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 202:
            self.acknowledged.append(delivery_id)


async def _saturate(client: Client, connections: int, seconds: float) -> float:
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        conn: list[Any] = [None]
        while time.perf_counter() < deadline:
            await client.one(conn)

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(connections)))
    return time.perf_counter() - started


async def _fixed_rate(client: Client, rate: float, seconds: float, pool: int) -> list[float]:
    idle: asyncio.Queue[list[Any]] = asyncio.Queue()
    for _ in range(pool):
        idle.put_nowait([None])
    latencies: list[float] = []
    tasks = []

    async def fire(scheduled: float) -> None:
        conn = await idle.get()
        try:
            await client.one(conn)
            latencies.append(time.perf_counter() - scheduled)
        finally:
            idle.put_nowait(conn)

    start = time.perf_counter()
    total = int(rate * seconds)
    for number in range(total):
        scheduled = start + number / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(scheduled)))
    await asyncio.gather(*tasks)
    return latencies


def load_process(mode: str, port: int, options: dict[str, Any], out: Any) -> None:
    import hashlib
    import hmac

    body = body_bytes()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    client = Client(port, body, signature, options["keep_alive"])
    result: dict[str, Any] = {}
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    if mode == "saturation":
        elapsed = asyncio.run(_saturate(client, options["connections"], options["seconds"]))
        result["elapsed"] = elapsed
    else:
        latencies = asyncio.run(
            _fixed_rate(client, options["rate"], options["seconds"], options["connections"])
        )
        result["latencies"] = latencies
    result["load_cpu_share"] = (time.process_time() - cpu_started) / (
        (time.perf_counter() - wall_started) * (os.cpu_count() or 1)
    )
    result.update(acknowledged=client.acknowledged, statuses=client.statuses, errors=client.errors)
    out.send(result)


def run_load(mode: str, port: int, **options: Any) -> dict[str, Any]:
    receiver, sender = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.Process(target=load_process, args=(mode, port, options, sender))
    process.start()
    result: dict[str, Any] = receiver.recv()
    process.join()
    return result


# --- services ------------------------------------------------------------------------------


class Services:
    """A fresh PostgreSQL database and a private redis-server, removed at the end."""

    def __init__(self) -> None:
        self.database = f"bench_webhooks_{os.getpid()}_{secrets.token_hex(3)}"
        self.redis_port = free_port()
        self.redis: subprocess.Popen[bytes] | None = None

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.database}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def __enter__(self) -> Services:
        import psycopg
        from redis import Redis

        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        self.redis = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                Redis.from_url(self.redis_url).ping()
                break
            except Exception:
                time.sleep(0.05)
        from models import db
        from webhook_app import create_app

        app = create_app(self.settings())
        with app.app_context():
            db.create_all()
            db.engine.dispose()
        return self

    def settings(self) -> dict[str, Any]:
        return {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "SECRET_KEY": "bench",
            "WEBHOOK_SECRETS": (SECRET,),
        }

    def environment(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS"))}
        return {
            **keep,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "SECRET_KEY": "bench",
            "WEBHOOK_SECRET": SECRET,
            "PYTHONPATH": str(ROOT),
        }

    def stored(self) -> tuple[int, int]:
        import psycopg

        url = f"postgresql://postgres@127.0.0.1:5432/{self.database}"
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT delivery_id) FROM webhook_delivery"
            ).fetchone()
            assert row is not None
            return int(row[0]), int(row[1])

    def stored_ids(self) -> set[str]:
        import psycopg

        url = f"postgresql://postgres@127.0.0.1:5432/{self.database}"
        with psycopg.connect(url) as conn:
            return {r[0] for r in conn.execute("SELECT delivery_id FROM webhook_delivery")}

    def truncate(self) -> None:
        import psycopg

        url = f"postgresql://postgres@127.0.0.1:5432/{self.database}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE webhook_delivery")

    def __exit__(self, *exc: object) -> None:
        import psycopg

        if self.redis is not None:
            self.redis.terminate()
            self.redis.wait()
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


def start_gunicorn(
    services: Services, args: argparse.Namespace
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "wsgi:app",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        "--worker-class",
        args.worker_class,
        "--threads",
        str(args.threads),
        "--keep-alive",
        "30",
        "--backlog",
        "2048",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=services.environment())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        raise RuntimeError("gunicorn did not start")
    time.sleep(1.0)  # let every worker finish importing the app
    return process, port


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from ``/proc/stat``."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def wait_for_quiet_machine(limit: float = 60.0) -> float:
    """Wait (at most ``limit`` seconds) until the machine is at least 90% idle over a
    second, so other work on the two cores does not pass for the receiver's cost;
    return the busy share last seen (reported with the result)."""
    deadline = time.monotonic() + limit
    while True:
        before = _machine_cpu()
        time.sleep(1.0)
        after = _machine_cpu()
        busy = (after[0] - before[0]) / max(1, after[1] - before[1])
        if busy < 0.1 or time.monotonic() > deadline:
            return busy


def _postgres_cpu() -> float:
    """CPU seconds used so far by every PostgreSQL process (server-wide: the database
    is shared, so this counts any other client too)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        name, _, rest = text.partition(") ")
        if name.endswith("(postgres"):
            fields = rest.split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _children_cpu(pid: int) -> float:
    """CPU seconds used so far by the children of ``pid`` (gunicorn's workers)."""
    total = 0
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            pids = children.read().split()
        for child in pids:
            with open(f"/proc/{child}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    except OSError:
        pass
    return total / os.sysconf("SC_CLK_TCK")


def _measure(
    run: Any, gunicorn: subprocess.Popen[bytes], mode: str, **options: Any
) -> dict[str, Any]:
    idle_before = wait_for_quiet_machine()
    machine_before, server_before = _machine_cpu(), _children_cpu(gunicorn.pid)
    postgres_before = _postgres_cpu()
    started = time.perf_counter()
    result: dict[str, Any] = run(mode, **options)
    wall = time.perf_counter() - started
    machine_after = _machine_cpu()
    cores = wall * (os.cpu_count() or 1)
    result["busy_before_share"] = idle_before
    result["server_cpu_share"] = (_children_cpu(gunicorn.pid) - server_before) / cores
    result["postgres_cpu_share"] = (_postgres_cpu() - postgres_before) / cores
    result["machine_busy_share"] = (machine_after[0] - machine_before[0]) / max(
        1, machine_after[1] - machine_before[1]
    )
    return result


CPU_KEYS = (
    "load_cpu_share",
    "server_cpu_share",
    "postgres_cpu_share",
    "machine_busy_share",
    "busy_before_share",
)
"""Shares of both cores during a run, printed in this order: the load generator,
gunicorn's workers, PostgreSQL, the whole machine, and the machine just before."""


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Both connection modes against one server: a new connection per delivery (what
    GitHub does, the headline) and kept-alive connections (the best case)."""
    runs: dict[str, dict[str, Any]] = {}
    with Services() as services:
        gunicorn, port = start_gunicorn(services, args)

        def run(mode: str, **options: Any) -> dict[str, Any]:
            return run_load(mode, port, **options)

        try:
            run("saturation", connections=args.connections, seconds=2, keep_alive=True)
            services.truncate()
            for name, keep_alive in (("new_connection", False), ("keep_alive", True)):
                runs[f"{name}_saturation"] = _measure(
                    run,
                    gunicorn,
                    "saturation",
                    connections=args.connections,
                    seconds=args.seconds,
                    keep_alive=keep_alive,
                )
                runs[f"{name}_fixed"] = _measure(
                    run,
                    gunicorn,
                    "fixed",
                    rate=args.rate,
                    seconds=args.seconds,
                    connections=args.connections,
                    keep_alive=keep_alive,
                )
        finally:
            gunicorn.send_signal(signal.SIGTERM)
            gunicorn.wait(timeout=30)
        acknowledged = [i for one in runs.values() for i in one["acknowledged"]]
        rows, distinct = services.stored()
        stored_ids = services.stored_ids()
    result: dict[str, Any] = {
        "server": f"gunicorn {args.worker_class} workers={args.workers} threads={args.threads}",
    }
    for name in ("new_connection", "keep_alive"):
        saturation, fixed = runs[f"{name}_saturation"], runs[f"{name}_fixed"]
        throughput = len(saturation["acknowledged"]) / saturation["elapsed"]
        latencies_ms = [value * 1000 for value in fixed["latencies"]]
        result.update(
            {
                f"{name}_deliveries_per_second": round(throughput, 1),
                f"{name}_ratio_to_probot": round(throughput / PROBOT_REFERENCE, 3),
                f"{name}_saturation_cpu": [round(saturation[key], 2) for key in CPU_KEYS],
                # CPU per delivery at saturation: steadier than deliveries/s when
                # other work shares the machine.
                f"{name}_cpu_ms_per_delivery_load_server_postgres": [
                    round(saturation[key] * (os.cpu_count() or 1) / throughput * 1000, 3)
                    for key in CPU_KEYS[:3]
                ],
                f"{name}_saturation_statuses": saturation["statuses"],
                f"{name}_p50_ms_at_rate": round(statistics.median(latencies_ms), 2),
                f"{name}_p99_ms_at_rate": round(percentile(latencies_ms, 0.99), 2),
                f"{name}_rate_achieved": round(len(latencies_ms) / args.seconds, 1),
                f"{name}_fixed_cpu": [round(fixed[key], 2) for key in CPU_KEYS],
                f"{name}_fixed_statuses": fixed["statuses"],
            }
        )
    result.update(
        {
            "fixed_rate": args.rate,
            "errors": sum(one["errors"] for one in runs.values()),
            "acknowledged": len(acknowledged),
            "stored_rows": rows,
            "stored_exactly_once": rows == distinct == len(acknowledged)
            and stored_ids == set(acknowledged),
        }
    )
    return result


def profile(requests: int) -> None:
    """The request path in-process under cProfile: where one delivery's time goes."""
    import cProfile
    import pstats

    from webhook_app import create_app

    with Services() as services:
        app = create_app(services.settings())
        client = app.test_client()
        body = body_bytes()
        from githubkit.webhooks import sign

        signature = sign(SECRET, body, "sha256")

        def send() -> None:
            response = client.post(
                "/webhooks/github",
                data=body,
                headers={
                    "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": str(uuid.uuid4()),
                    "X-Hub-Signature-256": signature,
                    "Content-Type": "application/json",
                },
            )
            assert response.status_code == 202, response.data

        for _ in range(50):
            send()
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for _ in range(requests):
            send()
        profiler.disable()
        elapsed = time.perf_counter() - started
        print(
            f"{requests} deliveries in-process: {elapsed / requests * 1e3:.3f} ms each "
            "(profiler overhead included)"
        )
        stats = pstats.Stats(profiler)
        stats.sort_stats(os.environ.get("BENCH_SORT", "cumulative"))
        stats.print_stats(int(os.environ.get("BENCH_TOP", "30")))
        with app.app_context():
            from models import db

            db.engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument(
        "--profile", type=int, metavar="N", default=0, help="profile N in-process requests instead"
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if args.profile:
        profile(args.profile)
        return
    result = benchmark(args)
    for key, value in result.items():
        print(f"{key:50} {value}")
    floor_ok = (
        result["new_connection_deliveries_per_second"] >= 1000
        and result["new_connection_p99_ms_at_rate"] < 50
        and result["stored_exactly_once"]
    )
    floor = "floor (new connections: >=1000/s, p99<50ms at 500/s, exactly once)"
    print(f"{floor} {'met' if floor_ok else 'NOT met'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
