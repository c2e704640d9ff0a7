"""What the benchmarks share: a real ``cascade serve`` in a subprocess, a throwaway PostgreSQL database,
free ports and CPU counters read from /proc. Each script imports it from its own folder."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2

HOST = "127.0.0.1"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432/"
CASCADE = Path(sys.executable).parent / "cascade"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """CPU time all processes of the machine spent busy so far (from /proc/stat)."""
    with open("/proc/stat") as fh:
        values = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def database_url(kind: str, prefix: str = "cascade_bench") -> Iterator[str | None]:
    """None for SQLite (the server's own data dir); for PostgreSQL a fresh database, dropped afterwards."""
    if kind == "sqlite":
        yield None
        return
    import psycopg

    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(PG_SERVER + "postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_SERVER + name
    finally:
        with psycopg.connect(PG_SERVER + "postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class Served:
    url: str
    pid: int
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def serve(
    data_dir: Path,
    token: str,
    *,
    database_url: str | None = None,
    runners: int = 0,
    env: dict[str, str] | None = None,
) -> Iterator[Served]:
    """``cascade serve`` on a free port until it answers ``/healthz``; SIGTERM (then SIGKILL) at the end.

    The log goes next to ``data_dir``; the environment is this one without ``CASCADE_*`` plus ``env``.
    """
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
    environment |= {"CASCADE_ADMIN_TOKEN": token, **(env or {})}
    command = [str(CASCADE), "serve", "--data-dir", str(data_dir), "--port", str(port), "--runners", str(runners)]
    if database_url:
        command += ["--database-url", database_url]
    log = data_dir.parent / f"{data_dir.name}-server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=environment, stdout=out, stderr=subprocess.STDOUT, cwd=data_dir.parent)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"cascade serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx2.TransportError):
                if httpx2.get(url + "/healthz", timeout=1, trust_env=False).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("cascade serve did not become healthy in 60 s")
            time.sleep(0.05)
        yield Served(url, process.pid, log)
    finally:
        terminate(process)


def terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if it has not exited a minute later."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def pg_backend_cpu(database_url: str | None) -> float:
    """CPU so far of the PostgreSQL backends connected to this database (0 for SQLite)."""
    if not database_url:
        return 0.0
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_SERVER + "postgres", autocommit=True, connect_timeout=5) as conn:
        pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,))]
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += cpu_seconds(pid)
    return total


def wait_quiet(server_pid: int, max_wait: float, threshold_pct: float = 25.0) -> float:
    """Wait (at most ``max_wait`` s) for a 1 s window where other processes use < ``threshold_pct`` of a core.

    Returns the other processes' CPU % of the last window; 0 s waits nothing. Other sessions share this
    machine: their load is reported next to every result either way.
    """
    deadline = time.perf_counter() + max_wait
    other = float("nan")
    while time.perf_counter() < deadline:
        busy0, server0, own0 = system_busy_seconds(), cpu_seconds(server_pid), time.process_time()
        time.sleep(1.0)
        busy = system_busy_seconds() - busy0 - (cpu_seconds(server_pid) - server0) - (time.process_time() - own0)
        other = 100 * max(0.0, busy)
        if other < threshold_pct:
            break
    return other
