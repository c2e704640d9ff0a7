"""Webhook delivery throughput of a real ``cascade serve`` process to a local receiver.

For each database (SQLite in a fresh data dir, PostgreSQL in a fresh database that is dropped
afterwards) two scenarios run, each against a fresh server (``--runners 0``,
``CASCADE_WEBHOOK_ALLOW_NETWORKS=127.0.0.0/8``) with ``--webhooks`` organization webhooks (format
``raw``, filter ``deployment_queued``) that all point at one local receiver:

1. **live**: ``--events`` events are produced as fast as ``--clients`` API clients can (each event is
   one ``POST /api/stacks/{org}/{project}/{stack}/deployments`` with ``{"operation": "update"}``,
   round-robin over ``--stacks`` stacks with saved deployment settings; with ``--runners 0`` the
   deployment stays queued and emits exactly one ``deployment_queued`` event), so fan-out and delivery
   run while events keep coming. Result: deliveries/s from the first create sent to the last delivery
   received, and each delivery's latency (received - its create's response).
2. **backlog**: the same events are produced while the receiver *stalls*: it accepts every request and
   starts its response, then trickles one byte of a header per second (so the sender's 10 s read
   timeout never fires) until it is released. The dispatcher sends in batches and waits for the whole
   batch, so the first batch (the deliveries of the first event or few) stays in flight and every
   later event waits in the outbox, exactly as behind one slow receiver. When all events are in, the
   receiver is released; the drain is release -> last delivery received. A receiver that is *down*
   would not give a backlog to time: failed deliveries are retried after about 60 s, spread by
   jitter, so the retry schedule, not the dispatcher, would set the pace.

The receiver is an asyncio (uvloop) HTTP/1.1 server in its own process, answering ``200`` with an
empty body, with keep-alive. It records every request by webhook (the URL path ``/hook/N``), its
``Pulumi-Webhook-ID`` and the ``deploymentId`` in the body. A run is valid only if every webhook got
exactly one delivery per event (each created deployment once, no ``Pulumi-Webhook-ID`` twice, nothing
else), and the server's delivery history (``GET /api/orgs/{org}/hooks/{name}/deliveries``) shows
exactly one successful first attempt per event and webhook. Any error: the tail of the server log,
exit status 1, and the numbers are not a result. All waits are on conditions, with timeouts.

Besides rates, each scenario reports CPU used by the server, the receiver, this load generator, the
PostgreSQL backends of the benchmark database and everything else on the machine (100 % = one core),
and the load average, because other work on a shared machine lowers the numbers.

    .venv/bin/python bench/webhook_delivery.py                       # both databases, both scenarios
    .venv/bin/python bench/webhook_delivery.py --quick --databases sqlite
    .venv/bin/python bench/webhook_delivery.py --profile /tmp/prof   # the server under cProfile
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/"
HOST = "127.0.0.1"
ORG, PROJECT = "bench", "hooks"
EVENT = "deployment_queued"
SETTINGS = {"sourceContext": {"git": {"repoUrl": "file:///tmp/x", "branch": "main"}}}
TARGET_DELIVERIES_PER_S = 300.0  # SQLite, live scenario


# =========================================================================== the receiver process
#
# A deliberately small HTTP/1.1 server: one asyncio.Protocol per connection, requests parsed by hand
# (request line, Content-Length, the two headers it needs), keep-alive, no pipelining needed (httpx
# sends one request per connection at a time). ``/_control/*`` paths steer it from the benchmark.

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_HELD_HEAD = b"HTTP/1.1 200 OK\r\nX-Stalled: "
_HELD_TAIL = b"\r\nContent-Length: 0\r\n\r\n"


class ReceiverState:
    def __init__(self) -> None:
        self.paused = False
        self.held: list[asyncio.Transport] = []
        self.tasks: set[asyncio.Future[None]] = set()
        self.reset()
        self.waiters: list[tuple[int, asyncio.Future[None]]] = []

    def reset(self) -> None:
        self.total = 0
        self.first: float | None = None
        self.last: float | None = None
        self.held_at_release: int | None = None
        self.released_at: float | None = None
        self.ids: dict[str, set[str]] = {}  # path -> Pulumi-Webhook-IDs
        self.duplicates: list[str] = []
        self.arrivals: dict[str, list[tuple[str, float]]] = {}  # path -> (deploymentId, monotonic)
        self.kinds: dict[str, int] = {}
        self.unexpected: list[str] = []

    def record(self, path: str, headers: dict[str, str], body: bytes) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.last = now
        self.total += 1
        delivery_id = headers.get("pulumi-webhook-id", "")
        kind = headers.get("pulumi-webhook-kind", "")
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        seen = self.ids.setdefault(path, set())
        if not delivery_id:
            self.unexpected.append(f"{path}: no Pulumi-Webhook-ID header")
        elif delivery_id in seen:
            self.duplicates.append(f"{path} {delivery_id}")
        seen.add(delivery_id)
        try:
            deployment = str(json.loads(body).get("deploymentId", ""))
        except (ValueError, AttributeError):
            deployment = ""
            self.unexpected.append(f"{path}: body is not a JSON object")
        self.arrivals.setdefault(path, []).append((deployment, now))
        for target, waiter in list(self.waiters):
            if self.total >= target and not waiter.done():
                waiter.set_result(None)

    def release(self) -> None:
        self.paused = False
        self.held_at_release = len(self.held)
        self.released_at = time.monotonic()
        for transport in self.held:
            if not transport.is_closing():
                transport.write(_HELD_TAIL)
        self.held.clear()

    def stats(self, detail: bool) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "total": self.total,
            "first": self.first,
            "last": self.last,
            "held": len(self.held),
            "held_at_release": self.held_at_release,
            "released_at": self.released_at,
            "duplicates": self.duplicates[:20],
            "duplicate_count": len(self.duplicates),
            "kinds": self.kinds,
            "unexpected": self.unexpected[:20],
            "per_path": {path: len(ids) for path, ids in self.ids.items()},
            "cpu_s": time.process_time(),
        }
        if detail:
            stats["arrivals"] = self.arrivals
        return stats


class ReceiverProtocol(asyncio.Protocol):
    def __init__(self, state: ReceiverState) -> None:
        self.state = state
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            method, target = head[0].split(" ", 2)[:2]
            self.handle(method, target, headers, body)

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        assert self.transport is not None
        state = self.state
        if target.startswith("/hook/") and method == "POST":
            state.record(target, headers, body)
            if state.paused:
                self.transport.write(_HELD_HEAD)
                state.held.append(self.transport)
            else:
                self.transport.write(_OK)
            return
        if target.startswith("/_control/"):
            task = asyncio.ensure_future(self.control(target))
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)
            return
        state.unexpected.append(f"{method} {target}")
        self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    async def control(self, target: str) -> None:
        assert self.transport is not None
        state = self.state
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        action = url.path.removeprefix("/_control/")
        if action == "pause":
            state.paused = True
        elif action == "release":
            state.release()
        elif action == "reset":
            state.reset()
        elif action == "wait":  # long poll: until ``total`` requests arrived, at most ``timeout`` s
            wanted, timeout = int(query["total"]), float(query["timeout"])
            if state.total < wanted:
                waiter = asyncio.get_running_loop().create_future()
                state.waiters.append((wanted, waiter))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(waiter, timeout)
                state.waiters.remove((wanted, waiter))
        payload = json.dumps(state.stats(detail=query.get("detail") == "1")).encode()
        if not self.transport.is_closing():
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)
                + payload
            )


async def _trickle(state: ReceiverState) -> None:
    """One byte of the stalled responses' header each second: the sender's read timeout never fires."""
    while True:
        await asyncio.sleep(1.0)
        for transport in state.held:
            if not transport.is_closing():
                transport.write(b".")


async def _receiver_main() -> None:
    state = ReceiverState()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ReceiverProtocol(state), HOST, 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"ready {port}", flush=True)
    trickle = asyncio.ensure_future(_trickle(state))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    trickle.cancel()
    server.close()


def run_receiver() -> None:
    try:
        import uvloop

        uvloop.run(_receiver_main())
    except ImportError:
        asyncio.run(_receiver_main())


class Receiver:
    """The receiver subprocess, and the benchmark's handle on it."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-receiver"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until it listens (or dies)
        if not line.startswith("ready "):
            raise RuntimeError(f"the receiver did not start: {line}{self.proc.stdout.read()}")
        self.port = int(line.split()[1])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, n: int) -> str:
        return f"http://{HOST}:{self.port}/hook/{n}"

    async def control(self, action: str, **query: Any) -> dict[str, Any]:
        import httpx2

        timeout = float(query.get("timeout", 0)) + 30
        async with httpx2.AsyncClient(trust_env=False, timeout=timeout) as client:
            response = await client.get(f"http://{HOST}:{self.port}/_control/{action}", params=query)
            response.raise_for_status()
            return dict(response.json())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


# =========================================================================== the server process


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


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        after_comm = fh.read().rsplit(")", 1)[1].split()
    return (int(after_comm[11]) + int(after_comm[12])) / os.sysconf("SC_CLK_TCK")


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
    wall: float
    server: float
    receiver: float
    bench: float
    database: float
    other: float

    def pct(self, name: str) -> float:
        return 100 * float(getattr(self, name)) / self.wall if self.wall > 0 else 0.0


class CpuMeter:
    """CPU used during a window by the server, the receiver, this process, PostgreSQL and everything else."""

    def __init__(self, server_pid: int, receiver_pid: int, database_url: str | None) -> None:
        self.pids = (server_pid, receiver_pid)
        self.database_url = database_url
        self.db0 = pg_backend_cpu(database_url)
        self.server0, self.receiver0 = (cpu_seconds(pid) for pid in self.pids)
        self.bench0 = time.process_time()
        self.system0 = system_busy_seconds()
        self.wall0 = time.perf_counter()

    def read(self) -> CpuUse:
        wall = time.perf_counter() - self.wall0
        server = cpu_seconds(self.pids[0]) - self.server0
        receiver = cpu_seconds(self.pids[1]) - self.receiver0
        bench = time.process_time() - self.bench0
        system = system_busy_seconds() - self.system0
        db1 = pg_backend_cpu(self.database_url)
        database = sum(max(0.0, cpu - self.db0.get(pid, 0.0)) for pid, cpu in db1.items())
        other = max(0.0, system - server - receiver - bench - database)
        return CpuUse(wall, server, receiver, bench, database, other)


class Server:
    """``cascade serve`` in a subprocess on a free loopback port with a fresh data dir."""

    def __init__(self, database_url: str | None, token: str, profile: Path | None = None) -> None:
        self.database_url = database_url
        self.token = token
        self.profile = profile
        self.port = free_port()
        self.data_dir = Path(tempfile.mkdtemp(prefix="cascade-bench-hooks-"))
        self.log_path = self.data_dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        cmd = [cascade_executable(), "serve", "--data-dir", str(self.data_dir / "data"), "--port", str(self.port)]
        cmd += ["--runners", "0"]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        if self.profile is not None:
            cmd = [sys.executable, "-m", "cProfile", "-o", str(self.profile), *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
        env["CASCADE_ADMIN_TOKEN"] = self.token
        env["CASCADE_WEBHOOK_ALLOW_NETWORKS"] = "127.0.0.0/8"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.data_dir)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        import httpx2

        assert self.proc is not None
        deadline = time.monotonic() + timeout
        with httpx2.Client(base_url=self.base_url, trust_env=False, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if client.get("/healthz").status_code == 200:
                        return
                except httpx2.TransportError:
                    pass
                time.sleep(0.01)  # waiting for the server to listen, not for a result
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
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        with contextlib.suppress(AttributeError):
            self._log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)


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
def database_url_for(database: str) -> Iterator[str | None]:
    if database == "sqlite":
        yield None  # the server's default: SQLite in --data-dir
        return
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
def running_server(database: str, token: str, profile: Path | None) -> Iterator[Server]:
    with database_url_for(database) as url:
        server = Server(url, token, profile)
        try:
            server.start()
            server.wait_healthy()
            yield server
        finally:
            server.stop()


# =========================================================================== the benchmark


@dataclass
class ScenarioResult:
    database: str
    scenario: str  # live | backlog
    events: int
    webhooks: int
    deliveries: int
    create_s: float  # first create sent -> last create answered
    creates_per_s: float
    measured_s: float  # live: first create sent -> last delivery; backlog: release -> last delivery
    deliveries_per_s: float  # deliveries received in measured_s / measured_s
    in_flight_at_release: int  # backlog: deliveries held by the stalled receiver at release
    lag_s: float  # live: last create answered -> last delivery
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    server_cpu_pct: float
    server_cpu_ms_per_delivery: float
    receiver_cpu_pct: float
    bench_cpu_pct: float
    db_cpu_pct: float
    other_cpu_pct: float
    load_avg: str


@dataclass
class Report:
    results: list[ScenarioResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    server_logs: dict[str, str] = field(default_factory=dict)

    def error(self, message: str) -> None:
        self.errors.append(message)
        print(f"ERROR: {message}", file=sys.stderr, flush=True)


class ApiError(Exception):
    pass


def api_client(server: Server, connections: int = 1) -> Any:
    import httpx2

    return httpx2.AsyncClient(
        base_url=server.base_url,
        headers={"Authorization": f"token {server.token}"},
        limits=httpx2.Limits(max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=60),
        trust_env=False,
        timeout=60.0,
    )


async def expect(response: Any, status: int) -> Any:
    if response.status_code != status:
        raise ApiError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text[:300]}"
        )
    return response.json() if response.content else None


async def setup(server: Server, receiver: Receiver, args: argparse.Namespace) -> list[str]:
    """Stacks with deployment settings, then the webhooks, each pinged once (a warm-up of the send path)."""
    stacks = [f"{ORG}/{PROJECT}/s{i}" for i in range(args.stacks)]
    async with api_client(server, 8) as api:

        async def make_stack(ref: str) -> None:
            name = ref.rsplit("/", 1)[1]
            await expect(await api.post(f"/api/stacks/{ORG}/{PROJECT}", json={"stackName": name}), 200)
            await expect(await api.post(f"/api/stacks/{ref}/deployments/settings", json=SETTINGS), 200)

        for start in range(0, len(stacks), 8):
            await asyncio.gather(*(make_stack(ref) for ref in stacks[start : start + 8]))
        for n in range(args.webhooks):
            hook = {
                "name": f"hook{n}",
                "displayName": f"bench hook {n}",
                "payloadUrl": receiver.url(n),
                "format": "raw",
                "filters": [EVENT],
                "active": True,
                "secret": f"bench-secret-{n}",
            }
            await expect(await api.post(f"/api/orgs/{ORG}/hooks", json=hook), 201)
        for n in range(args.webhooks):
            ping = await expect(await api.post(f"/api/orgs/{ORG}/hooks/hook{n}/ping"), 200)
            if ping.get("responseCode") != 200:
                raise ApiError(f"ping of hook{n} failed: {ping.get('responseCode')} {ping.get('error')}")
    return stacks


async def produce(
    server: Server, stacks: list[str], events: int, clients: int
) -> tuple[dict[str, float], float, float]:
    """``events`` deployment creates over ``clients`` connections: (deployment id -> answered at), first sent, last answered."""
    created: dict[str, float] = {}
    next_index = 0
    body = {"operation": "update"}

    async def client_loop() -> None:
        nonlocal next_index
        async with api_client(server) as api:
            while next_index < events:
                ref = stacks[next_index % len(stacks)]
                next_index += 1
                answer = await expect(await api.post(f"/api/stacks/{ref}/deployments", json=body), 202)
                created[str(answer["id"])] = time.monotonic()

    started = time.monotonic()
    await asyncio.gather(*(client_loop() for _ in range(clients)))
    return created, started, max(created.values())


def verify_receiver(stats: dict[str, Any], created: dict[str, float], webhooks: int) -> list[str]:
    """Every webhook got each created deployment exactly once, and nothing else arrived."""
    problems = []
    expected_total = len(created) * webhooks
    if stats["total"] != expected_total:
        problems.append(f"receiver got {stats['total']} requests, expected {expected_total}")
    if stats["duplicate_count"]:
        problems.append(f"{stats['duplicate_count']} Pulumi-Webhook-IDs arrived twice: {stats['duplicates'][:3]}")
    if stats["unexpected"]:
        problems.append(f"unexpected requests: {stats['unexpected'][:3]}")
    if set(stats["kinds"]) != {"deployment"}:
        problems.append(f"unexpected Pulumi-Webhook-Kind values: {stats['kinds']}")
    wanted = sorted(created)
    for n in range(webhooks):
        path = f"/hook/{n}"
        got = [deployment for deployment, _ in stats["arrivals"].get(path, [])]
        if stats["per_path"].get(path, 0) != len(created):
            problems.append(f"{path}: {stats['per_path'].get(path, 0)} distinct delivery ids, expected {len(created)}")
        if sorted(got) != wanted:
            missing = len(set(wanted) - set(got))
            problems.append(
                f"{path}: deployments received != deployments created ({len(got)} received, {missing} missing)"
            )
    extra = set(stats["arrivals"]) - {f"/hook/{n}" for n in range(webhooks)}
    if extra:
        problems.append(f"deliveries to unknown paths: {sorted(extra)[:3]}")
    return problems


async def verify_history(server: Server, events: int, webhooks: int, within: float) -> list[str]:
    """The server's own record: one successful first attempt per event and webhook (waits for the last commit)."""
    deadline = time.monotonic() + within
    async with api_client(server, 4) as api:

        async def attempts_of(n: int) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            before = None
            while True:
                params: dict[str, Any] = {"pageSize": 100}
                if before:
                    params["before"] = before
                page = await expect(await api.get(f"/api/orgs/{ORG}/hooks/hook{n}/deliveries", params=params), 200)
                found += page
                if len(page) < 100:
                    return [a for a in found if a["event"] == EVENT]
                before = page[-1]["id"]

        while True:
            problems = []
            every = await asyncio.gather(*(attempts_of(n) for n in range(webhooks)))
            for n, attempts in enumerate(every):
                good = [
                    a
                    for a in attempts
                    if a["responseCode"] == 200 and a["attempt"] == 1 and a["deliveryStatus"] == "succeeded"
                ]
                if len(attempts) != events or len(good) != events or len({a["deliveryId"] for a in attempts}) != events:
                    bad = [a for a in attempts if a not in good][:2]
                    problems.append(
                        f"hook{n}: {len(attempts)} attempts recorded, {len(good)} successful first attempts, "
                        f"expected {events}; e.g. {[(a['responseCode'], a['attempt'], a['error']) for a in bad]}"
                    )
            if not problems or time.monotonic() > deadline:
                return problems
            await asyncio.sleep(0.2)  # the last batch's record commits just after its deliveries arrive


async def wait_until_quiet(server: Server, receiver: Receiver, max_wait: float, threshold_pct: float) -> float:
    """Wait (at most max_wait s) for a 1 s window where other processes use < threshold_pct of one CPU.

    Returns the other processes' CPU % of the last window; it is reported next to every result either way.
    """
    deadline = time.monotonic() + max_wait
    while True:
        meter = CpuMeter(server.pid, receiver.pid, server.database_url)
        await asyncio.sleep(1.0)
        other = meter.read().pct("other")
        if other < threshold_pct or time.monotonic() >= deadline:
            return other


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_scenario(
    database: str, scenario: str, server: Server, receiver: Receiver, args: argparse.Namespace, report: Report
) -> None:
    events, webhooks = args.events, args.webhooks
    total = events * webhooks
    stacks = await setup(server, receiver, args)
    await receiver.control("reset")
    if args.wait_quiet > 0:
        other = await wait_until_quiet(server, receiver, args.wait_quiet, args.quiet_threshold)
        print(f"  other processes' CPU before the measurement: {other:.0f}% of a core", flush=True)
    if scenario == "backlog":
        await receiver.control("pause")
    load0 = os.getloadavg()
    meter = CpuMeter(server.pid, receiver.pid, server.database_url)
    created, first_sent, last_answered = await produce(server, stacks, events, args.clients)
    print(
        f"  {events} events in {last_answered - first_sent:.2f} s ({events / (last_answered - first_sent):.0f}/s)",
        flush=True,
    )
    held = 0
    released = first_sent
    if scenario == "backlog":
        stats = await receiver.control("stats")
        held = int(stats["held"])
        if held >= total:
            report.error(f"backlog: all {total} deliveries arrived while stalled: there was no backlog")
        meter = CpuMeter(server.pid, receiver.pid, server.database_url)  # the drain alone
        released = time.monotonic()
        stats = await receiver.control("release")
        print(f"  released with {held} deliveries held in flight, {total - held} waiting", flush=True)
    stats = await receiver.control("wait", total=total, timeout=args.timeout, detail=1)
    cpu = meter.read()
    load1 = os.getloadavg()
    if stats["total"] < total:
        report.error(
            f"{database} {scenario}: only {stats['total']} of {total} deliveries arrived in {args.timeout:g} s"
        )
    problems = verify_receiver(stats, created, webhooks)
    problems += await verify_history(server, events, webhooks, within=30.0)
    for problem in problems:
        report.error(f"{database} {scenario}: {problem}")
    last = float(stats["last"] or released)
    measured = last - released
    counted = total - held
    latencies = [
        (arrived - created[deployment]) * 1000
        for arrivals in stats["arrivals"].values()
        for deployment, arrived in arrivals
        if deployment in created
    ]
    result = ScenarioResult(
        database=database,
        scenario=scenario,
        events=events,
        webhooks=webhooks,
        deliveries=int(stats["total"]),
        create_s=last_answered - first_sent,
        creates_per_s=events / (last_answered - first_sent),
        measured_s=measured,
        deliveries_per_s=counted / measured if measured > 0 else 0.0,
        in_flight_at_release=held,
        lag_s=last - last_answered if scenario == "live" else 0.0,
        latency_p50_ms=percentile(latencies, 0.5) if scenario == "live" else 0.0,
        latency_p99_ms=percentile(latencies, 0.99) if scenario == "live" else 0.0,
        latency_max_ms=max(latencies, default=0.0) if scenario == "live" else 0.0,
        server_cpu_pct=cpu.pct("server"),
        server_cpu_ms_per_delivery=1000 * cpu.server / counted if counted else 0.0,
        receiver_cpu_pct=cpu.pct("receiver"),
        bench_cpu_pct=cpu.pct("bench"),
        db_cpu_pct=cpu.pct("database"),
        other_cpu_pct=cpu.pct("other"),
        load_avg=f"{load0[0]:.2f} -> {load1[0]:.2f}",
    )
    report.results.append(result)
    print(
        f"  {scenario}: {result.deliveries_per_s:,.1f} deliveries/s over {measured:.2f} s; "
        f"server CPU {result.server_cpu_pct:.0f}% ({result.server_cpu_ms_per_delivery:.2f} ms/delivery), "
        f"receiver {result.receiver_cpu_pct:.0f}%, bench {result.bench_cpu_pct:.0f}%, "
        f"PostgreSQL {result.db_cpu_pct:.0f}%, other {result.other_cpu_pct:.0f}%",
        flush=True,
    )


# =========================================================================== output


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpus": str(os.cpu_count()), "cpu": cpu, "python": platform.python_version()}


def tables(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    live = [r for r in report.results if r.scenario == "live"]
    backlog = [r for r in report.results if r.scenario == "backlog"]
    cpu_headers = [
        "server CPU %",
        "server CPU ms/delivery",
        "receiver CPU %",
        "bench CPU %",
        "PostgreSQL CPU %",
        "other procs CPU %",
        "load avg (1 min)",
    ]

    def cpu_cells(r: ScenarioResult) -> list[str]:
        return [
            f"{r.server_cpu_pct:.0f}",
            f"{r.server_cpu_ms_per_delivery:.2f}",
            f"{r.receiver_cpu_pct:.0f}",
            f"{r.bench_cpu_pct:.0f}",
            f"{r.db_cpu_pct:.0f}",
            f"{r.other_cpu_pct:.0f}",
            r.load_avg,
        ]

    best = max((r for r in live if r.database == "sqlite"), key=lambda r: r.deliveries_per_s, default=None)
    target_rows = [
        [
            "live delivery throughput (SQLite)",
            "not measured" if best is None else f"{best.deliveries_per_s:,.1f} deliveries/s",
            f">= {TARGET_DELIVERIES_PER_S:,.0f} deliveries/s",
            "n/a" if best is None else ("yes" if best.deliveries_per_s >= TARGET_DELIVERIES_PER_S else "NO"),
        ]
    ]
    return [
        (
            "Live: events created while delivering (first create sent -> last delivery received)",
            [
                "database",
                "events x webhooks",
                "deliveries",
                "creates s",
                "creates/s",
                "seconds",
                "deliveries/s",
                "lag after last create s",
                "latency p50 ms",
                "p99 ms",
                "max ms",
                *cpu_headers,
            ],
            [
                [
                    r.database,
                    f"{r.events} x {r.webhooks}",
                    str(r.deliveries),
                    f"{r.create_s:.2f}",
                    f"{r.creates_per_s:.0f}",
                    f"{r.measured_s:.2f}",
                    f"{r.deliveries_per_s:,.1f}",
                    f"{r.lag_s:.2f}",
                    f"{r.latency_p50_ms:.0f}",
                    f"{r.latency_p99_ms:.0f}",
                    f"{r.latency_max_ms:.0f}",
                    *cpu_cells(r),
                ]
                for r in live
            ],
        ),
        (
            "Backlog: events created behind a stalled receiver, then released (release -> last delivery received)",
            [
                "database",
                "events x webhooks",
                "deliveries",
                "fill s",
                "in flight at release",
                "drain s",
                "deliveries/s",
                *cpu_headers,
            ],
            [
                [
                    r.database,
                    f"{r.events} x {r.webhooks}",
                    str(r.deliveries),
                    f"{r.create_s:.2f}",
                    str(r.in_flight_at_release),
                    f"{r.measured_s:.2f}",
                    f"{r.deliveries_per_s:,.1f}",
                    *cpu_cells(r),
                ]
                for r in backlog
            ],
        ),
        ("Target", ["target", "measured", "threshold", "met"], target_rows),
    ]


def print_report(report: Report, markdown: Path | None) -> None:
    out: list[str] = []
    for title, headers, rows in tables(report):
        out += [f"**{title}**", "", "| " + " | ".join(headers) + " |"]
        out.append("|" + "|".join("---" if i < 2 or title == "Target" else "---:" for i in range(len(headers))) + "|")
        out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        out.append("")
    text = "\n".join(out)
    print("\n" + text)
    if markdown is not None:
        markdown.write_text(text)
    if report.errors:
        print(f"INVALID RUN: {len(report.errors)} error message(s) above; these numbers are not a result.")
    else:
        print("no errors: every delivery arrived exactly once and is recorded as one successful attempt")


# =========================================================================== main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma list of sqlite,postgresql")
    parser.add_argument("--scenarios", default="live,backlog", help="comma list of live,backlog")
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        help="events per scenario (default 1000); backlog needs events x webhooks well above the 32 deliveries "
        "the server sends at once, else they all arrive while stalled and the run is invalid (no backlog)",
    )
    parser.add_argument("--webhooks", type=int, default=10, help="org webhooks, each gets every event (default 10)")
    parser.add_argument("--stacks", type=int, default=50, help="stacks the deployments are spread over (default 50)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent API clients producing events (default 8)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each scenario, each on a fresh server")
    parser.add_argument("--timeout", type=float, default=600.0, help="max seconds to wait for all deliveries")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each scenario wait up to SECONDS for other processes to use < --quiet-threshold %% of a CPU",
    )
    parser.add_argument("--quiet-threshold", type=float, default=20.0, help="percent of one CPU (default 20)")
    parser.add_argument("--profile", type=Path, default=None, help="run the server under cProfile; .prof files here")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables as Markdown here")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 events")
    parser.add_argument("--serve-receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.events = args.events if args.events is not None else (100 if args.quick else 1000)
    args.databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for name in args.databases:
        if name not in {"sqlite", "postgresql"}:
            parser.error(f"unknown database {name!r}: use sqlite and/or postgresql")
    for name in args.scenarios:
        if name not in {"live", "backlog"}:
            parser.error(f"unknown scenario {name!r}: use live and/or backlog")
    if not 1 <= args.events <= 100_000 or not 1 <= args.webhooks <= 100 or not 1 <= args.clients <= 64:
        parser.error("--events must be 1-100000, --webhooks 1-100 and --clients 1-64")
    if args.stacks < 1 or not 1 <= args.repeat <= 10 or args.timeout <= 0 or not 0 <= args.wait_quiet <= 600:
        parser.error("--stacks must be at least 1, --repeat 1-10, --timeout positive and --wait-quiet 0-600 s")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_receiver:
        run_receiver()
        return 0
    report = Report()
    token = "csc_bench_" + secrets.token_urlsafe(24)
    info = machine_info()
    print(f"machine: {info['cpus']} CPUs, {info['cpu']}; Python {info['python']}", flush=True)
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}", flush=True)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    receiver = Receiver()
    try:
        for database in args.databases:
            if database == "postgresql" and (why := pg_available()):
                report.error(f"postgresql skipped: {why}")
                continue
            for scenario in args.scenarios:
                for run in range(args.repeat):
                    print(f"[{database}] {scenario} ({args.events} events x {args.webhooks} webhooks)", flush=True)
                    profile = None
                    if args.profile is not None:
                        profile = args.profile / f"server-{database}-{scenario}-{run}.prof"
                    errors_before = len(report.errors)
                    try:
                        with running_server(database, token, profile) as server:
                            try:
                                asyncio.run(run_scenario(database, scenario, server, receiver, args, report))
                            except Exception as exc:  # a failed request: the run is invalid, the others go on
                                report.error(f"{database} {scenario}: {type(exc).__name__}: {exc}")
                            if len(report.errors) > errors_before:
                                tail = server.log_tail(40)
                                report.server_logs[f"{database} {scenario}"] = tail
                                print(f"--- last lines of the server log ---\n{tail}\n---", file=sys.stderr, flush=True)
                    except RuntimeError as exc:
                        report.error(f"{database} {scenario}: {exc}")
                    with contextlib.suppress(Exception):
                        asyncio.run(receiver.control("release"))  # never leave it stalled for the next run
    finally:
        receiver.stop()
    print_report(report, args.markdown)
    if args.json:
        payload = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": info,
            "argv": sys.argv,
            "target_deliveries_per_s": TARGET_DELIVERIES_PER_S,
            "results": [asdict(r) for r in report.results],
            "errors": report.errors,
            "server_logs": report.server_logs,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
