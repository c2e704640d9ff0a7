"""API throughput, idle memory and cold start of a real ``cascade serve`` process.

Measures, for each database (SQLite in a fresh data dir, PostgreSQL in a fresh database that is dropped
afterwards):

1. create-deployment throughput: ``POST /api/stacks/{org}/{project}/{stack}/deployments`` with
   ``{"operation": "update"}``, round-robin over ``--stacks`` stacks that have saved deployment settings;
2. get-deployment throughput: ``GET /api/stacks/{org}/{project}/{stack}/deployments/{id}`` over the
   deployments created in (1);
3. idle resident memory: ``VmRSS`` of the server process after a warm-up and ``--idle`` seconds idle
   (and again after all load phases);
4. cold start: process spawn to the first ``200`` from ``GET /healthz`` on a fresh data dir / database.

Each client is one asyncio task with its own ``httpx2.AsyncClient`` limited to one keep-alive
connection. Every phase is bounded by ``--duration`` seconds *and* ``--requests`` requests; traffic goes
to 127.0.0.1 only. Every response's status (and the id in its body) is checked, and at the end the
server's deployment count must equal the number of acknowledged creates: a run with any error prints
the server log tail, exits 1, and its numbers are not a valid result.

The server runs with ``--runners 0`` by default so that the API is measured alone (queued deployments
are not executed); ``--runners N`` includes the local runner pool.

Besides req/s and latency, every phase reports the CPU time the server spent per request (the number
that bounds a single-process server: max req/s per core ~ 1000 / ms-per-request) and the CPU used by
this load generator, by the PostgreSQL backends of the benchmark database, and by everything else on
the machine -- other work on a shared machine lowers throughput, and this column shows by how much.
The load generator itself costs about 2 ms of CPU per request on a 2 GHz core; ``--processes N`` spreads
each phase's clients over N processes when one process would be the bottleneck. ``--nice -10`` (root)
and ``--wait-quiet SECONDS`` reduce the effect of other work on a shared machine.

    .venv/bin/python bench/api_throughput.py                      # full run, both databases
    .venv/bin/python bench/api_throughput.py --quick --databases sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import json
import math
import multiprocessing
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx2

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/"
HOST = "127.0.0.1"
ORG, PROJECT = "bench", "throughput"
CREATE_BODY = b'{"operation": "update"}'
SETTINGS_BODY = b'{"sourceContext": {"git": {"repoUrl": "file:///tmp/x", "branch": "main"}}}'
JSON_HEADERS = {"Content-Type": "application/json"}

TARGETS = {
    "creates_per_s": 300.0,  # SQLite, best of the concurrency levels
    "reads_per_s": 1000.0,  # SQLite, best of the concurrency levels
    "idle_rss_mb": 150.0,
    "cold_start_s": 1.5,
}


# --------------------------------------------------------------------------- results


@dataclass
class PhaseResult:
    database: str
    operation: str
    clients: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_pct: float
    client_cpu_pct: float
    db_cpu_pct: float
    other_cpu_pct: float
    server_cpu_ms_per_req: float


@dataclass
class MemoryResult:
    database: str
    rss_after_warmup_mb: float
    rss_after_load_mb: float
    peak_rss_mb: float


@dataclass
class ColdStartResult:
    database: str
    runs_s: list[float]
    other_cpu_pct: float = 0.0  # other processes' CPU during the runs, % of one CPU (mean)

    @property
    def median_s(self) -> float:
        return statistics.median(self.runs_s)

    @property
    def max_s(self) -> float:
        return max(self.runs_s)


@dataclass
class Report:
    phases: list[PhaseResult] = field(default_factory=list)
    memory: list[MemoryResult] = field(default_factory=list)
    cold: list[ColdStartResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    server_logs: dict[str, str] = field(default_factory=dict)

    def error(self, message: str) -> None:
        self.errors.append(message)
        print(f"ERROR: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the server process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def cascade_executable() -> str:
    candidate = Path(sys.executable).parent / "cascade"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("cascade")
    if found is None:
        raise SystemExit("cannot find the `cascade` command: run `make` / `pip install -e .` first")
    return found


def proc_status(pid: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    return int(proc_status(pid)[key].split()[0]) / 1024  # the value is in kB


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        raw = fh.read()
    after_comm = raw.rsplit(")", 1)[1].split()
    utime, stime = int(after_comm[11]), int(after_comm[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy since boot (user+nice+system+irq+softirq+steal), from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def pg_backend_cpu(database_url: str | None) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to the benchmark's database (pid -> s)."""
    if not database_url:
        return {}
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL + "postgres", autocommit=True, connect_timeout=5) as conn:
        pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,))]
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            found[pid] = cpu_seconds(pid)
    return found


@dataclass
class CpuUse:
    wall: float  # seconds
    server: float  # CPU seconds of the `cascade serve` process (all threads)
    bench: float  # CPU seconds of this process (the load generator)
    database: float  # CPU seconds of the PostgreSQL backends serving the benchmark's database
    other: float  # CPU seconds of everything else on the machine (other sessions, ...)


class CpuMeter:
    """CPU used during a window by the server, its database, this benchmark and everything else."""

    def __init__(self, server_pid: int, database_url: str | None = None) -> None:
        self.server_pid = server_pid
        self.database_url = database_url
        self.db0 = pg_backend_cpu(database_url)
        self.wall0 = time.perf_counter()
        self.server0 = cpu_seconds(server_pid)
        self.bench0 = time.process_time()
        self.system0 = system_busy_seconds()

    def read(self) -> CpuUse:
        wall = time.perf_counter() - self.wall0
        server = cpu_seconds(self.server_pid) - self.server0
        bench = time.process_time() - self.bench0
        system = system_busy_seconds() - self.system0
        db1 = pg_backend_cpu(self.database_url)
        database = sum(max(0.0, cpu - self.db0.get(pid, 0.0)) for pid, cpu in db1.items())
        return CpuUse(wall, server, bench, database, max(0.0, system - server - bench - database))


async def wait_until_quiet(server_pid: int, max_wait: float, threshold_pct: float) -> float:
    """Wait (at most max_wait s) for a 1 s window where other processes use < threshold_pct of one CPU.

    Returns the other processes' CPU % of the last window. Other sessions share this machine; their
    load is reported next to every result either way.
    """
    deadline = time.perf_counter() + max_wait
    other_pct = 0.0
    while True:
        meter = CpuMeter(server_pid)
        await asyncio.sleep(1.0)
        use = meter.read()
        other_pct = 100 * use.other / use.wall
        if other_pct < threshold_pct or time.perf_counter() >= deadline:
            return other_pct


class Server:
    """``cascade serve`` in a subprocess on a free loopback port with a fresh data dir."""

    def __init__(self, database_url: str | None, token: str, nice: int = 0, runners: int = 0) -> None:
        self.database_url = database_url
        self.token = token
        self.nice = nice
        self.runners = runners
        self.port = free_port()
        self.data_dir = Path(tempfile.mkdtemp(prefix="cascade-bench-"))
        self.log_path = self.data_dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        cmd = [cascade_executable(), "serve", "--data-dir", str(self.data_dir / "data"), "--port", str(self.port)]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        if self.runners >= 0:
            cmd += ["--runners", str(self.runners)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
        env["CASCADE_ADMIN_TOKEN"] = self.token
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.spawned_at = time.perf_counter()
        preexec = None
        if self.nice:
            nice = self.nice

            def preexec() -> None:  # in the child, before exec: every server thread inherits it
                os.setpriority(os.PRIO_PROCESS, 0, nice)

        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.data_dir, preexec_fn=preexec
        )

    def wait_healthy(self, timeout: float = 30.0) -> float:
        """Poll /healthz until the first 200; returns seconds since spawn."""
        assert self.proc is not None
        deadline = self.spawned_at + timeout
        with httpx2.Client(base_url=self.base_url, trust_env=False, timeout=2.0) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    response = client.get("/healthz")
                except httpx2.TransportError:
                    time.sleep(0.005)
                    continue
                if response.status_code == 200:
                    return time.perf_counter() - self.spawned_at
                time.sleep(0.005)
        raise RuntimeError(f"server not healthy after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        with contextlib.suppress(AttributeError):
            self._log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)


# --------------------------------------------------------------------------- PostgreSQL


def pg_available() -> str | None:
    """None when the PostgreSQL server answers, else why not."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a dependency
        return f"psycopg is not installed ({exc})"
    try:
        with psycopg.connect(PG_ADMIN_URL + "postgres", connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"cannot connect to {PG_ADMIN_URL}: {exc}"
    return None


@contextlib.contextmanager
def fresh_pg_database() -> Iterator[str]:
    import psycopg

    name = f"cascade_bench_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL + "postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL + name
    finally:
        with psycopg.connect(PG_ADMIN_URL + "postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def database_url_for(database: str) -> Iterator[str | None]:
    if database == "sqlite":
        yield None  # the server's default: SQLite in --data-dir
    else:
        with fresh_pg_database() as url:
            yield url


@contextlib.contextmanager
def running_server(database: str, token: str, nice: int = 0, runners: int = 0) -> Iterator[Server]:
    with database_url_for(database) as url:
        server = Server(url, token, nice, runners)
        try:
            server.start()
            server.wait_healthy()
            yield server
        finally:
            server.stop()


# --------------------------------------------------------------------------- load generation


class Budget:
    """A shared request budget: at most ``limit`` requests are started."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


@dataclass
class Request:
    method: str
    url: str
    content: bytes | None
    expect: int
    check: Callable[[httpx2.Response], str | None] | None = None


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def client_for(base_url: str, token: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"token {token}"},
        limits=httpx2.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=60.0),
        timeout=httpx2.Timeout(30.0),
        trust_env=False,  # never route loopback traffic through a proxy from the environment
    )


async def _worker(
    client: httpx2.AsyncClient, next_request: Callable[[], Request], stop_at: float, budget: Budget, tally: Tally
) -> None:
    while time.perf_counter() < stop_at and budget.take():
        req = next_request()
        started = time.perf_counter()
        try:
            response = await client.request(
                req.method, req.url, content=req.content, headers=JSON_HEADERS if req.content else None
            )
        except httpx2.HTTPError as exc:
            tally.errors.append(f"{req.method} {req.url}: {type(exc).__name__}: {exc}")
            continue
        elapsed = time.perf_counter() - started
        if response.status_code != req.expect:
            tally.errors.append(f"{req.method} {req.url}: HTTP {response.status_code} {response.text[:200]}")
            continue
        problem = req.check(response) if req.check else None
        if problem:
            tally.errors.append(f"{req.method} {req.url}: {problem}")
            continue
        tally.latencies.append(elapsed)


async def run_load(
    clients: list[httpx2.AsyncClient], next_request: Callable[[], Request], seconds: float, max_requests: int
) -> tuple[Tally, float]:
    tally = Tally()
    budget = Budget(max_requests)
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(_worker(c, next_request, stop_at, budget, tally) for c in clients))
    return tally, time.perf_counter() - started


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(pct / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


# --------------------------------------------------------------------------- the workloads


class Workload:
    """Stacks with saved settings, and the deployments created on them."""

    def __init__(self, stacks: int, created: list[tuple[str, str]] | None = None, offset: int = 0) -> None:
        self.stacks = [f"s{i:03d}" for i in range(stacks)]
        self.created: list[tuple[str, str]] = list(created or [])  # (stack, deployment id)
        self._create_i = offset
        self._get_i = offset

    def path(self, stack: str) -> str:
        return f"/api/stacks/{ORG}/{PROJECT}/{stack}/deployments"

    async def setup(self, client: httpx2.AsyncClient) -> None:
        for stack in self.stacks:
            body = json.dumps({"stackName": stack}).encode()
            r = await client.post(f"/api/stacks/{ORG}/{PROJECT}", content=body, headers=JSON_HEADERS)
            if r.status_code != 200:
                raise RuntimeError(f"create stack {stack}: HTTP {r.status_code} {r.text[:200]}")
            r = await client.post(self.path(stack) + "/settings", content=SETTINGS_BODY, headers=JSON_HEADERS)
            if r.status_code != 200:
                raise RuntimeError(f"save settings of {stack}: HTTP {r.status_code} {r.text[:200]}")

    def next_create(self) -> Request:
        stack = self.stacks[self._create_i % len(self.stacks)]
        self._create_i += 1

        def check(response: httpx2.Response) -> str | None:
            try:
                deployment_id = response.json()["id"]
            except (ValueError, KeyError, TypeError):
                return f"no id in {response.text[:200]}"
            self.created.append((stack, deployment_id))
            return None

        return Request("POST", self.path(stack), CREATE_BODY, 202, check)

    def next_get(self) -> Request:
        stack, deployment_id = self.created[self._get_i % len(self.created)]
        self._get_i += 1
        needle = deployment_id.encode()

        def check(response: httpx2.Response) -> str | None:
            return None if needle in response.content else f"body does not name {deployment_id}"

        return Request("GET", f"{self.path(stack)}/{deployment_id}", None, 200, check)


def _child_phase(spec: dict[str, Any]) -> dict[str, Any]:
    """One load-generator process of a multi-process phase (``--processes``): its share of the clients."""
    return asyncio.run(_child_phase_async(spec))


async def _child_phase_async(spec: dict[str, Any]) -> dict[str, Any]:
    work = Workload(spec["stacks"], spec["created"], spec["offset"])
    known = len(work.created)
    make = work.next_create if spec["operation"] == "create" else work.next_get
    clients = [client_for(spec["base_url"], spec["token"]) for _ in range(spec["clients"])]
    try:
        warm, _ = await run_load(clients, make, spec["warmup"], max(spec["clients"] * 20, 50))
        late = time.time() - spec["start_at"]
        if late < 0:
            await asyncio.sleep(-late)
        cpu0, started = time.process_time(), time.time()
        remaining = max(0.0, spec["start_at"] + spec["duration"] - started)
        tally, _ = await run_load(clients, make, remaining, spec["requests"])
        cpu, ended = time.process_time() - cpu0, time.time()
    finally:
        for client in clients:
            await client.aclose()
    return {
        "latencies": tally.latencies,
        "errors": tally.errors,
        "warm_errors": warm.errors,
        "created": work.created[known:],
        "cpu": cpu,
        "late": max(0.0, late),
        "ended": ended,
    }


async def run_load_processes(
    pool: concurrent.futures.ProcessPoolExecutor,
    processes: int,
    server: Server,
    work: Workload,
    operation: str,
    concurrency: int,
    args: argparse.Namespace,
    first: bool,
) -> tuple[Tally, Tally, float, CpuUse, list[float]]:
    """The phase's clients spread over ``processes`` processes that start together at a wall-clock time.

    Returns (measured tally, warm-up tally, measured seconds, CPU use in the window, lateness per process).
    """
    shares = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    shares = [n for n in shares if n > 0]
    start_at = time.time() + (8.0 if first else 2.0) + args.warmup
    step = max(1, len(work.created) // len(shares))
    specs = [
        {
            "base_url": server.base_url,
            "token": server.token,
            "operation": operation,
            "stacks": len(work.stacks),
            "created": work.created if operation == "get" else [],
            "offset": i * (step if operation == "get" else len(work.stacks) // len(shares)),
            "clients": n,
            "warmup": args.warmup,
            "start_at": start_at,
            "duration": args.duration,
            "requests": math.ceil(args.requests * n / concurrency),
        }
        for i, n in enumerate(shares)
    ]
    loop = asyncio.get_running_loop()
    futures = [loop.run_in_executor(pool, _child_phase, spec) for spec in specs]
    await asyncio.sleep(max(0.0, start_at - time.time()))
    meter = CpuMeter(server.pid, server.database_url)
    results = await asyncio.gather(*futures)
    use = meter.read()
    children_cpu = sum(r["cpu"] for r in results)
    use.bench += children_cpu
    use.other = max(0.0, use.other - children_cpu)
    tally, warm = Tally(), Tally()
    for result in results:
        tally.latencies += result["latencies"]
        tally.errors += result["errors"]
        warm.errors += result["warm_errors"]
        work.created += [tuple(pair) for pair in result["created"]]
    seconds = max(r["ended"] for r in results) - start_at
    return tally, warm, seconds, use, [r["late"] for r in results]


async def measure_phase(
    server: Server,
    database: str,
    operation: str,
    next_request: Callable[[], Request],
    concurrency: int,
    args: argparse.Namespace,
    report: Report,
    work: Workload | None = None,
    pool: concurrent.futures.ProcessPoolExecutor | None = None,
) -> PhaseResult:
    processes = min(args.processes, concurrency)
    if pool is not None and work is not None and processes > 1:
        if args.wait_quiet > 0:
            await wait_until_quiet(server.pid, args.wait_quiet, args.quiet_threshold)
        first = not getattr(pool, "_bench_used", False)
        tally, warm, seconds, use, late = await run_load_processes(
            pool, processes, server, work, operation, concurrency, args, first
        )
        pool._bench_used = True  # type: ignore[attr-defined]
        if max(late) > 0.5:
            report.error(f"{database} {operation} x{concurrency}: a load process started {max(late):.1f} s late")
        for message in warm.errors[:5]:
            report.error(f"{database} {operation} x{concurrency} warm-up: {message}")
    else:
        clients = [client_for(server.base_url, server.token) for _ in range(concurrency)]
        try:
            warm, _ = await run_load(clients, next_request, args.warmup, max(concurrency * 20, 100))
            for message in warm.errors[:5]:
                report.error(f"{database} {operation} x{concurrency} warm-up: {message}")
            if args.wait_quiet > 0:
                await wait_until_quiet(server.pid, args.wait_quiet, args.quiet_threshold)
            meter = CpuMeter(server.pid, server.database_url)
            tally, seconds = await run_load(clients, next_request, args.duration, args.requests)
            use = meter.read()
        finally:
            for client in clients:
                await client.aclose()
    for message in tally.errors[:10]:
        report.error(f"{database} {operation} x{concurrency}: {message}")
    if len(tally.errors) > 10:
        report.error(f"{database} {operation} x{concurrency}: ... {len(tally.errors) - 10} more errors")
    lat = sorted(tally.latencies)
    result = PhaseResult(
        database=database,
        operation=operation,
        clients=concurrency,
        requests=len(lat),
        errors=len(tally.errors) + len(warm.errors),
        seconds=round(seconds, 3),
        rps=round(len(lat) / seconds, 1) if seconds else 0.0,
        p50_ms=round(percentile(lat, 50) * 1000, 2),
        p99_ms=round(percentile(lat, 99) * 1000, 2),
        max_ms=round((lat[-1] if lat else float("nan")) * 1000, 2),
        server_cpu_pct=round(100 * use.server / use.wall, 1),
        client_cpu_pct=round(100 * use.bench / use.wall, 1),
        db_cpu_pct=round(100 * use.database / use.wall, 1),
        other_cpu_pct=round(100 * use.other / use.wall, 1),
        server_cpu_ms_per_req=round(1000 * use.server / len(lat), 2) if lat else float("nan"),
    )
    print(
        f"  {database:10} {operation:6} x{concurrency:<3} {result.rps:8.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
        f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}  server CPU {result.server_cpu_pct:.0f}%  "
        f"bench CPU {result.client_cpu_pct:.0f}%  PostgreSQL CPU {result.db_cpu_pct:.0f}%  "
        f"other CPU {result.other_cpu_pct:.0f}%",
        flush=True,
    )
    return result


async def bench_database(server: Server, database: str, args: argparse.Namespace, report: Report) -> None:
    work = Workload(args.stacks)
    async with client_for(server.base_url, server.token) as client:
        await work.setup(client)

    # Warm-up for the idle-memory reading: some creates and reads at moderate concurrency.
    warm_clients = [client_for(server.base_url, server.token) for _ in range(8)]
    try:
        for make in (work.next_create, work.next_get):
            tally, _ = await run_load(warm_clients, make, 5.0, args.memory_warmup_requests)
            for message in tally.errors[:5]:
                report.error(f"{database} memory warm-up: {message}")
    finally:
        for client in warm_clients:
            await client.aclose()
    await asyncio.sleep(args.idle)
    rss_warm = rss_mb(server.pid)

    pool = None
    if args.processes > 1:
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=args.processes, mp_context=multiprocessing.get_context("spawn")
        )
    try:
        for operation, make in (("create", work.next_create), ("get", work.next_get)):
            for concurrency in args.concurrency:
                report.phases.append(
                    await measure_phase(server, database, operation, make, concurrency, args, report, work, pool)
                )
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    # Consistency: the server counts exactly the deployments that were acknowledged.
    async with client_for(server.base_url, server.token) as client:
        r = await client.get(f"/api/orgs/{ORG}/deployments/metadata")
        if r.status_code != 200:
            report.error(f"{database} org metadata: HTTP {r.status_code} {r.text[:200]}")
        else:
            total = r.json()["deploymentCounts"]["total"]
            if total != len(work.created):
                report.error(f"{database}: server counts {total} deployments, {len(work.created)} were acknowledged")

    await asyncio.sleep(args.idle)
    report.memory.append(
        MemoryResult(
            database=database,
            rss_after_warmup_mb=round(rss_warm, 1),
            rss_after_load_mb=round(rss_mb(server.pid), 1),
            peak_rss_mb=round(rss_mb(server.pid, "VmHWM"), 1),
        )
    )


def cold_start(database: str, runs: int, token: str, nice: int = 0, runners: int = 0) -> ColdStartResult:
    times, others = [], []
    for _ in range(runs):
        with database_url_for(database) as url:
            server = Server(url, token, nice, runners)
            try:
                system0, bench0 = system_busy_seconds(), time.process_time()
                server.start()
                times.append(round(server.wait_healthy(), 3))
                busy = system_busy_seconds() - system0 - (time.process_time() - bench0) - cpu_seconds(server.pid)
                others.append(100 * max(0.0, busy) / times[-1])
            finally:
                server.stop()
    return ColdStartResult(database, times, round(statistics.fmean(others), 1))


# --------------------------------------------------------------------------- output


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def verdicts(report: Report) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, threshold, met) rows; met is None when not measured."""
    rows: list[tuple[str, str, str, bool | None]] = []

    def best(op: str) -> PhaseResult | None:
        found = [p for p in report.phases if p.database == "sqlite" and p.operation == op]
        return max(found, key=lambda p: p.rps) if found else None

    for op, key, label in (("create", "creates_per_s", "creates/s"), ("get", "reads_per_s", "reads/s")):
        phase = best(op)
        threshold = f">= {TARGETS[key]:,.0f} {label} (SQLite)"
        if phase is None:
            rows.append((f"{op} throughput", "not measured", threshold, None))
        else:
            measured = f"{phase.rps:,.1f} {label} (best, {phase.clients} clients)"
            rows.append((f"{op} throughput", measured, threshold, phase.rps >= TARGETS[key]))
    if report.memory:
        worst = max(report.memory, key=lambda m: max(m.rss_after_warmup_mb, m.rss_after_load_mb))
        value = max(worst.rss_after_warmup_mb, worst.rss_after_load_mb)
        rows.append(
            (
                "idle RSS",
                f"{value:.1f} MB (worst, {worst.database})",
                f"< {TARGETS['idle_rss_mb']:.0f} MB",
                value < TARGETS["idle_rss_mb"],
            )
        )
    if report.cold:
        worst_cold = max(report.cold, key=lambda c: c.median_s)
        rows.append(
            (
                "cold start",
                f"{worst_cold.median_s:.3f} s median (worst, {worst_cold.database})",
                f"< {TARGETS['cold_start_s']} s",
                worst_cold.median_s < TARGETS["cold_start_s"],
            )
        )
    return rows


def write_markdown(path: Path, tables: list[tuple[str, list[str], list[list[str]]]]) -> None:
    """The same tables as GitHub-flavoured Markdown (for docs/benchmarks.md)."""
    out: list[str] = []
    for title, headers, rows in tables:
        out += [f"**{title}**", "", "| " + " | ".join(headers) + " |"]
        out.append("|" + "|".join("---" if i < 2 or title == "Targets" else "---:" for i in range(len(headers))) + "|")
        out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        out.append("")
    path.write_text("\n".join(out))


def print_report(report: Report, plain: bool, markdown: Path | None = None) -> None:
    tables: list[tuple[str, list[str], list[list[str]]]] = [
        (
            "Throughput (one keep-alive connection per client)",
            [
                "database",
                "operation",
                "clients",
                "requests",
                "errors",
                "req/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "server CPU ms/req",
                "server CPU %",
                "bench CPU %",
                "PostgreSQL CPU %",
                "other procs CPU %",
            ],
            [
                [
                    p.database,
                    p.operation,
                    str(p.clients),
                    str(p.requests),
                    str(p.errors),
                    f"{p.rps:,.1f}",
                    f"{p.p50_ms:.2f}",
                    f"{p.p99_ms:.2f}",
                    f"{p.max_ms:.2f}",
                    f"{p.server_cpu_ms_per_req:.2f}",
                    f"{p.server_cpu_pct:.0f}",
                    f"{p.client_cpu_pct:.0f}",
                    f"{p.db_cpu_pct:.0f}",
                    f"{p.other_cpu_pct:.0f}",
                ]
                for p in report.phases
            ],
        ),
        (
            "Resident memory of `cascade serve` (VmRSS, idle)",
            ["database", "after warm-up MB", "after load MB", "peak (VmHWM) MB"],
            [
                [m.database, f"{m.rss_after_warmup_mb:.1f}", f"{m.rss_after_load_mb:.1f}", f"{m.peak_rss_mb:.1f}"]
                for m in report.memory
            ],
        ),
        (
            "Cold start (spawn to first 200 from GET /healthz, fresh data dir / database)",
            ["database", "runs", "median s", "max s", "all runs s", "other procs CPU %"],
            [
                [
                    c.database,
                    str(len(c.runs_s)),
                    f"{c.median_s:.3f}",
                    f"{c.max_s:.3f}",
                    ", ".join(f"{t:.3f}" for t in c.runs_s),
                    f"{c.other_cpu_pct:.0f}",
                ]
                for c in report.cold
            ],
        ),
        (
            "Targets",
            ["target", "measured", "threshold", "met"],
            [
                [name, measured, threshold, "n/a" if met is None else ("yes" if met else "NO")]
                for name, measured, threshold, met in verdicts(report)
            ],
        ),
    ]
    if markdown is not None:
        write_markdown(markdown, tables)
    if not plain:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            plain = True
    if plain:
        for title, headers, rows in tables:
            widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
            print(f"\n{title}")
            print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
            print("  ".join("-" * w for w in widths))
            for row in rows:
                print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    else:
        console = Console(width=max(Console().width, 150))
        for title, headers, rows in tables:
            table = Table(title=title, title_justify="left")
            for i, header in enumerate(headers):
                table.add_column(header, justify="right" if i >= 2 and title != "Targets" else "left")
            for row in rows:
                table.add_row(*row)
            console.print(table)
    noisy = [p for p in report.phases if p.other_cpu_pct >= 20]
    if noisy:
        print(
            f"\nnote: in {len(noisy)} of {len(report.phases)} phases other processes on this machine used >= 20% "
            "of a CPU (column 'other procs CPU %'); those numbers are lower bounds of what a quiet machine gives."
        )
    if report.errors:
        print(f"\nINVALID RUN: {len(report.errors)} error message(s) above; these numbers are not a result.")
    else:
        print("\nno errors: every response had the expected status")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma list of sqlite,postgresql")
    parser.add_argument("--duration", type=float, default=None, help="seconds per measured phase (default 10)")
    parser.add_argument("--requests", type=int, default=None, help="max requests per measured phase (default 50000)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma list of concurrent clients")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="load-generator processes to spread each phase's clients over (default 1: one asyncio process)",
    )
    parser.add_argument("--stacks", type=int, default=50, help="stacks to spread the creates over")
    parser.add_argument("--warmup", type=float, default=None, help="unmeasured seconds before each phase (default 1)")
    parser.add_argument("--idle", type=float, default=None, help="idle seconds before reading RSS (default 5)")
    parser.add_argument("--cold-runs", type=int, default=None, help="cold starts per database (default 5)")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: load,cold")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each phase wait up to SECONDS for other processes to use < --quiet-threshold %% of a CPU",
    )
    parser.add_argument("--quiet-threshold", type=float, default=20.0, help="percent of one CPU (default 20)")
    parser.add_argument(
        "--nice", type=int, default=0, help="scheduling priority for the server and this process (negative needs root)"
    )
    parser.add_argument(
        "--runners",
        type=int,
        default=0,
        help="`cascade serve --runners N` (default 0: measure the API alone, deployments stay queued; -1: server default)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument(
        "--from-json", type=Path, default=None, help="only print (and --markdown) the tables of a saved --json run"
    )
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables as Markdown here")
    parser.add_argument("--plain", action="store_true", help="plain-text tables instead of Rich")
    parser.add_argument("--quick", action="store_true", help="short smoke run: 2 s phases, 2 cold starts, 1 s idle")
    args = parser.parse_args(argv)

    quick = args.quick
    args.duration = args.duration if args.duration is not None else (2.0 if quick else 10.0)
    args.requests = args.requests if args.requests is not None else (5_000 if quick else 50_000)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if quick else 1.0)
    args.idle = args.idle if args.idle is not None else (1.0 if quick else 5.0)
    args.cold_runs = args.cold_runs if args.cold_runs is not None else (2 if quick else 5)
    args.memory_warmup_requests = 100 if quick else 500
    if quick:
        args.stacks = min(args.stacks, 10)
    args.databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    for name in args.databases:
        if name not in {"sqlite", "postgresql"}:
            parser.error(f"unknown database {name!r}: use sqlite and/or postgresql")
    if not args.concurrency or min(args.concurrency) < 1 or max(args.concurrency) > 256:
        parser.error("--concurrency must be whole numbers between 1 and 256")
    if not 0 < args.duration <= 600 or not 0 < args.requests <= 1_000_000:
        parser.error("--duration must be in (0, 600] s and --requests in (0, 1000000]")
    if not 1 <= args.processes <= 16:
        parser.error("--processes must be 1-16")
    if not -1 <= args.runners <= 64:
        parser.error("--runners must be -1 (server default) to 64")
    if not 0 <= args.wait_quiet <= 600 or not -20 <= args.nice <= 19:
        parser.error("--wait-quiet must be 0-600 s and --nice -20..19")
    if not 1 <= args.cold_runs <= 50 or args.stacks < 1:
        parser.error("--cold-runs must be 1-50 and --stacks at least 1")
    return args


def load_report(path: Path) -> Report:
    saved = json.loads(path.read_text())
    report = Report(errors=list(saved.get("errors", [])), server_logs=dict(saved.get("server_logs", {})))
    report.phases = [PhaseResult(**phase) for phase in saved["phases"]]
    report.memory = [MemoryResult(**memory) for memory in saved["memory"]]
    report.cold = [
        ColdStartResult(c["database"], c["runs_s"], c.get("other_cpu_pct", 0.0)) for c in saved["cold_start"]
    ]
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        report = load_report(args.from_json)
        print_report(report, args.plain, args.markdown)
        return 1 if report.errors else 0
    report = Report()
    token = "csc_bench_" + secrets.token_urlsafe(24)
    info = machine_info()
    print(f"machine: {info['cpus']} CPUs, {info['cpu']}, {info['memory']}; Python {info['python']}", flush=True)
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}", flush=True)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)

    for database in args.databases:
        if database == "postgresql" and (why := pg_available()):
            report.error(f"postgresql skipped: {why}")
            continue
        if "load" not in args.skip:
            print(f"[{database}] load phases ({args.duration:g} s or {args.requests} requests each)", flush=True)
            with running_server(database, token, args.nice, args.runners) as server:
                errors_before = len(report.errors)
                asyncio.run(bench_database(server, database, args, report))
                if len(report.errors) > errors_before:
                    tail = server.log_tail(40)
                    report.server_logs[database] = tail
                    print(f"--- last lines of the {database} server log ---\n{tail}\n---", file=sys.stderr, flush=True)
        if "cold" not in args.skip:
            print(f"[{database}] cold start x{args.cold_runs}", flush=True)
            result = cold_start(database, args.cold_runs, token, args.nice, args.runners)
            print(
                f"  median {result.median_s:.3f} s, max {result.max_s:.3f} s, other CPU {result.other_cpu_pct:.0f}%",
                flush=True,
            )
            report.cold.append(result)

    print_report(report, args.plain, args.markdown)
    if args.json:
        payload = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": info,
            "argv": sys.argv,
            "targets": TARGETS,
            "phases": [asdict(p) for p in report.phases],
            "memory": [asdict(m) for m in report.memory],
            "cold_start": [{**asdict(c), "median_s": c.median_s, "max_s": c.max_s} for c in report.cold],
            "verdicts": [
                dict(zip(("target", "measured", "threshold", "met"), v, strict=True)) for v in verdicts(report)
            ],
            "errors": report.errors,
            "server_logs": report.server_logs,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
