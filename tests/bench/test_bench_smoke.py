"""Smoke runs of the benchmark scripts in ``bench/``: each one, as a real subprocess from the repository root,
at the smallest sizes that still take its whole path, on each database it supports.

Only that a script runs, exits 0, prints its result tables and that its own correctness checks pass is
asserted: never a timing or a performance target (this is a shared 2-core machine). Each run gets its own
``TMPDIR``, which every process it starts inherits: a ``cascade serve``, runner or receiver still alive
after the script exited is found by it, stopped and reported, and so is a file left in it; on PostgreSQL
a benchmark database left behind is reported too. (The scripts use PostgreSQL at 127.0.0.1:5432 whatever
``CASCADE_TEST_PG`` says; ``require_postgres`` decides whether it is there: skip locally, fail under CI=true.)
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.support import DATABASES, PG_ADMIN_DSN, require_postgres

REPO = Path(__file__).resolve().parents[2]
GRACE_S = 15  # after its timeout, for a script to clean up after SIGINT (every timeout + this < pytest's 120 s)
BENCH_DATABASE = re.compile(r"^(cascade_bench|bench_runner)_[0-9a-f]+$")  # what bench/ names its databases


def bench_databases() -> set[str]:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
        names = [row[0] for row in conn.execute("SELECT datname FROM pg_database")]
    return {name for name in names if BENCH_DATABASE.match(name)}


def processes_under(marker: str) -> list[int]:
    """Live processes whose environment has ``TMPDIR=marker``: only the ones a smoke run started."""
    needle = f"TMPDIR={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def stop(pids: list[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.1)


def run_bench(script: str, *args: str, database: str, tmp_path: Path, timeout: float) -> str:
    """``python bench/<script> args`` from the repository root; its stdout, after checking it exited 0 and left
    nothing running (and, on PostgreSQL, no database) behind."""
    before: set[str] = set()
    if database == "postgresql":
        require_postgres()
        before = bench_databases()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
    env |= {"TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    command = [sys.executable, f"bench/{script}", *args]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    started = time.monotonic()
    timed_out = False
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        process.send_signal(signal.SIGINT)  # KeyboardInterrupt: its cleanup stops its servers, drops its database
        try:
            stdout, stderr = process.communicate(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: it and whatever it started
            stdout, stderr = process.communicate()
    finally:
        leftovers = processes_under(str(scratch))
        stop(leftovers)
    print(f"{script}: {time.monotonic() - started:.1f} s")
    output = f"--- stdout ---\n{stdout[-6000:]}\n--- stderr ---\n{stderr[-6000:]}"
    left = bench_databases() - before if database == "postgresql" else set()
    assert not timed_out, f"{' '.join(command[1:])} still running after {timeout:.0f} s (left {sorted(left)})\n{output}"
    assert process.returncode == 0, f"{' '.join(command[1:])} exited {process.returncode}\n{output}"
    assert not leftovers, f"{script} left processes running: {leftovers}\n{output}"
    assert not any(scratch.iterdir()), f"{script} left files in its TMPDIR: {sorted(scratch.iterdir())}"
    assert not left, f"{script} left PostgreSQL databases behind: {sorted(left)}"
    return stdout


def table_rows(stdout: str, first_cell: str) -> list[list[str]]:
    """The cells of every Markdown table row whose first cell is ``first_cell``."""
    rows = []
    for line in stdout.splitlines():
        if line.startswith("|") and line.endswith("|"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if cells[0] == first_cell:
                rows.append(cells)
    return rows


@pytest.mark.parametrize("database", DATABASES)
def test_cascade(database: str, tmp_path: Path) -> None:
    """Coalesced cascades on a 2-layer DAG and a chain (cold and warm), the per-edge counts and the bounded
    full per-edge run: every member deployed exactly once, per-edge counts as expected."""
    stdout = run_bench(
        "cascade.py",
        f"--databases={database}",
        "--runners=2",
        "--layers=2",
        "--width=3",
        "--chain=3",
        "--per-edge-layers=2",  # root + 3 + 3 with fan-in 3: per-edge runs 13 deployments, coalesced 7
        "--per-edge-full-seconds=10",
        "--floor-runs=1",
        "--wait-quiet=0",
        "--quiet-seconds=1",
        database=database,
        tmp_path=tmp_path,
        timeout=80,
    )
    for header in (
        "**Coalesced cascades: wall time against the minimal runner**",
        "**Trigger latency (latest upstream member finished -> member's deployment started), ms**",
        "**Deployments executed: coalesced vs per-edge**",
        "**Targets**",
    ):
        assert header in stdout
    runs = {(cells[2], cells[4]) for cells in table_rows(stdout, database) if len(cells) == 17}
    assert runs == {(dag, run) for dag in ("layered", "chain") for run in ("cold", "warm")}
    counted = {(cells[1], cells[3]): cells for cells in table_rows(stdout, database) if len(cells) == 8}
    assert set(counted) == {
        ("chain", "per-edge"),
        ("chain", "coalesced"),
        ("layered-small", "per-edge"),
        ("layered-small", "coalesced"),
        ("layered", "per-edge"),
    }, stdout
    for (dag, mode), cells in counted.items():
        if dag != "layered":  # the full per-edge run may be stopped by its time bound
            assert cells[4] == cells[5] and cells[6] == "yes", f"{dag} {mode}: {cells}"
    assert counted[("layered-small", "per-edge")][4] == "13" and counted[("layered-small", "coalesced")][4] == "7"
    [exact] = table_rows(stdout, "coalesced: exactly one deployment per member")
    assert exact[1] == "4 cascades + 2 counted runs checked" and exact[2] == "**yes**", exact


@pytest.mark.parametrize("database", DATABASES)
def test_graph_scale(database: str, tmp_path: Path) -> None:
    """Seeding, valid edge creations, cycle refusals (409 naming the cycle) and impact plans checked against
    the seeded graph."""
    stdout = run_bench(
        "graph_scale.py",
        f"--databases={database}",
        "--layers=4",
        "--width=4",
        "--fanin=2",
        "--creates=2",
        "--cycles=2",
        "--cycle-depth=2",
        "--plans=3",
        "--wait-quiet=0",
        database=database,
        tmp_path=tmp_path,
        timeout=60,
    )
    assert "| database | operation | group | requests | p50 ms | p99 ms |" in stdout
    assert "**Targets**" in stdout
    phases = {(cells[1], cells[2].split(" (")[0]) for cells in table_rows(stdout, database) if len(cells) == 12}
    assert phases >= {
        ("impact plan, first (reads the graph)", "a layer-0 stack"),
        ("create edge (valid)", "all"),
        ("create edge (closes a cycle: 409)", "all"),
        ("impact plan", "top"),
        ("impact plan", "middle"),
        ("impact plan", "bottom"),
    }, stdout


@pytest.mark.parametrize("database", DATABASES)
def test_webhook_delivery(database: str, tmp_path: Path) -> None:
    """Live and backlog scenarios: every webhook got each event exactly once and the server's delivery
    history records one successful first attempt each. 30 x 4 deliveries: more than the server sends at
    once, so the stalled receiver makes a backlog."""
    stdout = run_bench(
        "webhook_delivery.py",
        f"--databases={database}",
        "--events=30",
        "--webhooks=4",
        "--stacks=2",
        "--clients=2",
        "--timeout=30",
        "--wait-quiet=0",
        database=database,
        tmp_path=tmp_path,
        timeout=60,
    )
    assert "**Live: events created while delivering (first create sent -> last delivery received)**" in stdout
    assert "**Backlog: events created behind a stalled receiver, then released" in stdout
    assert [cells[1:3] for cells in table_rows(stdout, database)] == [["30 x 4", "120"], ["30 x 4", "120"]]
    assert "no errors: every delivery arrived exactly once and is recorded as one successful attempt" in stdout


@pytest.mark.parametrize("database", DATABASES)
def test_runner_overhead(database: str, tmp_path: Path) -> None:
    """Sequential and queued-at-once deployments through the local runners: every one must succeed."""
    stdout = run_bench(
        "runner_overhead.py",
        f"--database={database}",
        "--count=4",
        "--sequential=2",
        "--runners=2",
        "--stacks=4",
        database=database,
        tmp_path=tmp_path,
        timeout=60,
    )
    assert f"runner overhead on {database}" in stdout
    assert "| measure | value |" in stdout
    for row in (
        "| direct `bash -c true`, median |",
        "| deployment created -> finished, median of 2 sequential |",
        "| **added latency per deployment (median)** |",
        "| 4 deployments over 4 stacks, queued at once |",
    ):
        assert row in stdout


@pytest.mark.parametrize("database", DATABASES)
def test_console_pages(database: str, tmp_path: Path) -> None:
    """The org built through the API, the console's sign-in and every measured page answering 200."""
    stdout = run_bench(
        "console_pages.py",
        f"--databases={database}",
        "--layers=2",
        "--width=3",
        "--fanin=1",
        "--repeat=2",
        database=database,
        tmp_path=tmp_path,
        timeout=60,
    )
    assert re.search(r"^  page +median ms +p95 ms +max ms +KiB$", stdout, re.MULTILINE), stdout
    for page in (
        "overview",
        "graph",
        "graph state (live JSON)",
        "cascades",
        "cascade",
        "stack (top layer)",
        "deployment",
        "org webhooks",
        "webhook + deliveries",
    ):
        assert re.search(rf"^  {re.escape(page)} +[0-9.]+ ", stdout, re.MULTILINE), page


@pytest.mark.parametrize("database", DATABASES)
def test_api_throughput(database: str, tmp_path: Path) -> None:
    """Create and get phases, idle memory and a cold start: every response had the expected status and the
    server's deployment count matches the acknowledged creates."""
    stdout = run_bench(
        "api_throughput.py",
        f"--databases={database}",
        "--quick",
        "--plain",
        "--duration=0.5",
        "--requests=40",
        "--concurrency=2",
        "--warmup=0",
        "--idle=0",
        "--cold-runs=1",
        "--stacks=2",
        "--wait-quiet=0",
        database=database,
        tmp_path=tmp_path,
        timeout=60,
    )
    for header in (
        "Throughput (one keep-alive connection per client)",
        "Resident memory of `cascade serve` (VmRSS, idle)",
        "Cold start (spawn to first 200 from GET /healthz, fresh data dir / database)",
        "Targets",
    ):
        assert re.search(rf"^{re.escape(header)}$", stdout, re.MULTILINE), header
    for operation in ("create", "get"):
        # clients 2, requests (up to 40: the phase may end on its duration first), errors 0
        assert re.search(rf"^{database} +{operation} +2 +[1-9][0-9]* +0 ", stdout, re.MULTILINE), operation
    assert "no errors: every response had the expected status" in stdout


def test_pg_statements(tmp_path: Path) -> None:
    """PostgreSQL only: every statement kind through both connections."""
    stdout = run_bench(
        "pg_statements.py",
        "--rounds=1",
        "--transactions=4",
        "--statements=4",  # one of each kind: select by key, select by list, update ... returning, insert
        "--concurrency=2",
        database="postgresql",
        tmp_path=tmp_path,
        timeout=60,
    )
    assert "| connection | CPU ms/statement (median) | min-max | wall ms/statement (median) |" in stdout
    assert len(table_rows(stdout, "sqlalchemy-async")) == 1 and len(table_rows(stdout, "store")) == 1
