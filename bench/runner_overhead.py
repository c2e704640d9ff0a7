"""Runner overhead: what a deployment costs beyond the process it runs.

Starts a real ``cascade serve --runners 4`` on a fresh data dir (SQLite, or PostgreSQL with
``--database postgresql``), 20 stacks whose project is a plain local directory with a command-runtime
``Cascade.yaml`` whose update is ``true``, and measures:

1. sequential: one deployment at a time (``--sequential`` of them); per deployment the server's own
   timestamps give ``finished - created`` = claim + every step + finish. The added latency is that
   minus the median time of running the same command (``bash -c true``) directly.
2. throughput: ``--count`` deployments across 20 stacks queued at once; deployments/s from the first
   ``created`` to the last ``finished``, against running the same processes directly, 4 at a time.

For both, the server's CPU time per deployment (user + system, from /proc) is reported too: on a shared
machine it is steadier than wall time. It includes serving this script's status polls (every 10 ms).

Every deployment must succeed, or the run is invalid (exit 1). Traffic goes to 127.0.0.1 only and
every wait is bounded.

    .venv/bin/python bench/runner_overhead.py
    .venv/bin/python bench/runner_overhead.py --database postgresql --count 100
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
from _support import cpu_seconds, database_url, serve


@contextlib.contextmanager
def server(kind: str, runners: int) -> Iterator[tuple[httpx2.Client, int]]:
    """A real ``cascade serve --runners N`` and an admin client for it."""
    token = "csc_bench_" + secrets.token_hex(16)
    with (
        tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp,
        database_url(kind, prefix="bench_runner") as url,
        serve(Path(tmp) / "data", token, database_url=url, runners=runners) as served,
        httpx2.Client(base_url=served.url, headers={"Authorization": f"token {token}"}, timeout=30) as api,
    ):
        yield api, served.pid


def parse(ts: str) -> float:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def wait_terminal(api: httpx2.Client, stack: str, deployment_id: str, seconds: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = api.get(f"/api/stacks/{stack}/deployments/{deployment_id}").json()
        if body["status"] in {"succeeded", "failed", "skipped"}:
            if body["status"] != "succeeded":
                raise SystemExit(
                    f"deployment {deployment_id} ended {body['status']}: {body.get('reason')} -- invalid run"
                )
            return dict(body)
        time.sleep(0.01)
    raise SystemExit(f"deployment {deployment_id} did not finish in {seconds}s")


def direct_runs(count: int, parallel: int) -> tuple[float, float]:
    """Median seconds of one ``bash -c true``, and wall seconds for ``count`` of them ``parallel`` at a time."""
    bash = shutil.which("bash") or "bash"

    def one(_: int) -> float:
        start = time.perf_counter()
        subprocess.run([bash, "-c", "true"], check=True)
        return time.perf_counter() - start

    singles = [one(i) for i in range(50)]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(count)))
    return statistics.median(singles), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--sequential", type=int, default=50)
    parser.add_argument("--runners", type=int, default=4)
    parser.add_argument("--stacks", type=int, default=20)
    args = parser.parse_args()

    project = Path(tempfile.mkdtemp(prefix="bench-project-"))
    (project / "Cascade.yaml").write_text("operations:\n  update: 'true'\n")
    direct_median, direct_wall = direct_runs(args.count, args.runners)
    with server(args.database, args.runners) as (api, pid):
        stacks = [f"bench/p{i}/s" for i in range(args.stacks)]
        for ref in stacks:
            org, proj, name = ref.split("/")
            api.post(f"/api/stacks/{org}/{proj}", json={"stackName": name}).raise_for_status()
            settings = {"sourceContext": {"git": {"repoUrl": str(project)}}}
            api.post(f"/api/stacks/{ref}/deployments/settings", json=settings).raise_for_status()
        for ref in stacks[:4]:  # warm-up: workspaces created, code paths hot
            wait_terminal(
                api, ref, api.post(f"/api/stacks/{ref}/deployments", json={"operation": "update"}).json()["id"]
            )

        latencies = []
        cpu_start = cpu_seconds(pid)
        for i in range(args.sequential):
            ref = stacks[i % len(stacks)]
            body = wait_terminal(
                api, ref, api.post(f"/api/stacks/{ref}/deployments", json={"operation": "update"}).json()["id"]
            )
            latencies.append(parse(str(body["finished"])) - parse(str(body["created"])))

        sequential_cpu = cpu_seconds(pid) - cpu_start
        queued = []
        cpu_start = cpu_seconds(pid)
        for i in range(args.count):
            ref = stacks[i % len(stacks)]
            queued.append((ref, api.post(f"/api/stacks/{ref}/deployments", json={"operation": "update"}).json()["id"]))
        bodies = [wait_terminal(api, ref, deployment_id, seconds=600) for ref, deployment_id in queued]
        queued_cpu = cpu_seconds(pid) - cpu_start
        first = min(parse(str(b["created"])) for b in bodies)
        last = max(parse(str(b["finished"])) for b in bodies)

    median = statistics.median(latencies)
    print(
        f"runner overhead on {args.database} ({platform.python_version()}, {os.cpu_count()} CPUs), {args.runners} local runners"
    )
    print("| measure | value |")
    print("|---|---|")
    print(f"| direct `bash -c true`, median | {direct_median * 1000:.1f} ms |")
    print(f"| deployment created -> finished, median of {args.sequential} sequential | {median * 1000:.1f} ms |")
    print(f"| p90 of the same | {statistics.quantiles(latencies, n=10)[-1] * 1000:.1f} ms |")
    print(f"| **added latency per deployment (median)** | **{(median - direct_median) * 1000:.1f} ms** |")
    print(f"| server CPU per deployment, sequential | {sequential_cpu / args.sequential * 1000:.1f} ms |")
    print(
        f"| {args.count} deployments over {args.stacks} stacks, queued at once | {last - first:.2f} s = {args.count / (last - first):.1f} deployments/s |"
    )
    print(f"| server CPU per deployment, queued at once | {queued_cpu / args.count * 1000:.1f} ms |")
    print(
        f"| the same {args.count} processes run directly, {args.runners} at a time | {direct_wall:.2f} s = {args.count / direct_wall:.1f} processes/s |"
    )
    shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    main()
