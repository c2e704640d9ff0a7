"""Cascades end to end: wall time against the physical floor, trigger latency, coalesced vs per-edge.

For each database (SQLite in a fresh data dir, PostgreSQL in a fresh database ``cascade_bench_<random>``
that is dropped afterwards) and each runner count (``--runners 4,16``), this starts a real
``cascade serve --runners N`` (with ``--runner-process``: ``cascade serve --runners 0`` and a
``cascade runner --concurrency N`` process next to it; with ``--replicas K`` on PostgreSQL: K servers on
the one database, each with its share of the N runners) and builds over HTTP, in org ``bench``:

* a **layered DAG**: ``--layers`` (10) layers of ``--width`` (20) stacks, each stack of layer ``i > 0``
  depending on ``--fanin`` (3) random stacks of layer ``i - 1`` (``random.Random(--seed)``), plus one
  root stack ``root/prod`` above layer 0 that every layer-0 stack depends on (a cascade starts from one
  root): 201 stacks, 560 deployment edges;
* a **chain** of ``--chain`` (50) stacks ``c00 -> c01 -> ... -> c49``.

Every stack has deployment settings pointing at one local git repository (``file://``) whose
``Cascade.yaml`` maps ``update`` to ``true`` (command runtime: the runner runs ``bash -c true``).
With ``--source plain`` they point at a plain local directory holding that ``Cascade.yaml`` instead,
which the runner copies into the workspace without git: a no-op deployment doing what the minimal
runner does, so the ratio compares like with like (the git-steps floor is then not measured).
Every edge is a stack webhook ``{"format": "pulumi_deployments", "payloadUrl": "down/prod",
"filters": ["update_succeeded"]}``.

Measured, per (database, runners):

1. **wall time** of a cascade: a deployment of the root (``POST .../deployments {"operation":
   "update"}``) until the cascade is no longer ``running``, from the server's own timestamps (root
   deployment ``created`` -> cascade ``finished``). Each DAG runs twice: ``cold`` (the first deployment
   of every stack clones the repository into its workspace) and ``warm`` (a fetch).
2. the **minimal runner** on the same DAG: ``graphlib.TopologicalSorter`` + a thread pool of N
   running ``bash -c true`` (the command runtime's own invocation) for every node: the physical floor.
   Median of ``--floor-runs`` runs. The ratio is stackcascade's wall time over this.
   Next to it, for reference, the same minimal runner doing a warm deployment's **git steps** before
   ``bash -c true``, as the runner does them (``fetch --prune --force --no-auto-maintenance
   --no-write-fetch-head`` of all heads, ``checkout --force --detach`` of the branch, ``clean -ffdx``),
   each node in a clone of its own made beforehand: what the same work costs without stackcascade.
3. **trigger latency** of every non-root member: ``started`` of its deployment minus the latest
   ``finished`` among its upstream members (members' timestamps from ``GET /api/orgs/{org}/cascades/{id}``,
   which are the deployments' ``started_at``/``finished_at``: ``started`` is set when the runner starts
   the claimed deployment). On the layered DAG this includes waiting for a free runner when all N are
   busy; the ``runner free`` columns keep only the members that became ready while fewer than N
   deployments were running or waiting ahead of them. On the chain no member ever waits for a runner.
4. **deployments executed**, ``coalesced`` vs ``per-edge``, on the chain and on a smaller layered DAG
   (``--per-edge-layers`` (3) layers of ``--width`` + a root) in a second org ``bench-pe``: deployments
   counted (``GET /api/orgs/{org}/deployments/metadata``) until the org is quiet (nothing queued or
   running for ``--quiet-seconds`` (2) s). The expected counts come from ``domain.cascade.per_edge_runs``.
   On the full layered DAG per-edge mode would start about 20 * 3^10 deployments, so it runs only for
   ``--per-edge-full-seconds`` and the count reached is reported next to the expected total.

Every member must have succeeded with exactly one deployment (and the org's deployment count must grow
by exactly the number of members), every per-edge deployment must succeed, and the per-edge count must
equal the expected count; otherwise the run is invalid and exits 1. Next to every timing the load
average and the CPU that other processes used (other sessions share this 2-core machine) are reported.
Traffic goes to 127.0.0.1 only; every wait is bounded.

    .venv/bin/python bench/cascade.py                                    # both databases, 4 and 16 runners
    .venv/bin/python bench/cascade.py --databases sqlite --runners 4 --layers 4 --chain 10 --per-edge-full-seconds 0 --floor-runs 1
    .venv/bin/python bench/cascade.py --databases postgresql --runner-process  # runners in their own process
    .venv/bin/python bench/cascade.py --databases postgresql --replicas 2      # two servers, one database
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import json
import math
import os
import platform
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import httpx2
from _support import (
    CASCADE,
    Served,
    cpu_seconds,
    database_url,
    pg_backend_cpu,
    serve,
    system_busy_seconds,
    terminate,
    wait_quiet,
)
from cryptography.fernet import Fernet

from stackcascade.domain.cascade import Edge, Outcome, per_edge_runs
from stackcascade.domain.deployments import Operation, Status

ORG, PE_ORG = "bench", "bench-pe"
STACK = "prod"
TARGETS = {"ratio_sqlite": 5.0, "trigger_p99_ms": 50.0}


# --------------------------------------------------------------------------- the graphs


@dataclass
class Dag:
    """Nodes are projects (every stack is ``<project>/prod``); ``parents[node]`` are its upstreams."""

    name: str
    root: str
    parents: dict[str, list[str]]

    @property
    def nodes(self) -> list[str]:
        return list(self.parents)

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(up, down) for down, ups in self.parents.items() for up in ups]


def layered(name: str, layers: int, width: int, fanin: int, seed: int, prefix: str = "l") -> Dag:
    rng = random.Random(seed)
    root = f"{prefix}root"
    parents: dict[str, list[str]] = {root: []}
    previous = [root]
    for layer in range(layers):
        current = [f"{prefix}{layer:02d}n{i:02d}" for i in range(width)]
        for node in current:
            parents[node] = [root] if layer == 0 else sorted(rng.sample(previous, min(fanin, len(previous))))
        previous = current
    return Dag(name, root, parents)


def chain(name: str, length: int, prefix: str = "c") -> Dag:
    nodes = [f"{prefix}{i:02d}" for i in range(length)]
    return Dag(name, nodes[0], {node: ([nodes[i - 1]] if i else []) for i, node in enumerate(nodes)})


def per_edge_expected(dag: Dag) -> int:
    """Deployments per-edge mode starts from the root (every no-op update succeeds and fires every edge)."""
    edges = [Edge(f"{u}/{STACK}", f"{d}/{STACK}", ("update_succeeded",)) for u, d in dag.edges]
    runs = per_edge_runs(
        f"{dag.root}/{STACK}", Operation.UPDATE, edges, lambda _s, _n: Outcome.of(Operation.UPDATE, Status.SUCCEEDED)
    )
    return int(runs.total())


def path_count_total(dag: Dag) -> int:
    """The same count by dynamic programming (runs of a node = sum of its parents' runs): for huge totals."""
    order = list(TopologicalSorter(dag.parents).static_order())
    runs: dict[str, int] = {}
    for node in order:
        runs[node] = 1 if node == dag.root else sum(runs[p] for p in dag.parents[node])
    return sum(runs.values())


# --------------------------------------------------------------------------- machine load


def children_cpu(pid: int) -> float:
    """CPU of reaped children of ``pid`` (cutime + cstime): the processes its runners ran."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """CPU during a window: the server, the processes its runners ran, PostgreSQL, this script, others."""

    def __init__(self, server_pid: int, database_url: str | None, extra_pids: tuple[int, ...] = ()) -> None:
        self.pid, self.url, self.extra_pids = server_pid, database_url, extra_pids
        self.t0 = time.perf_counter()
        self.server0, self.children0 = self._server_cpu(), self._children_cpu()
        self.db0 = pg_backend_cpu(database_url)
        self.bench0 = time.process_time()
        self.system0 = system_busy_seconds()
        self.load0 = os.getloadavg()[0]

    def _server_cpu(self) -> float:
        """The server's CPU, with the runner process's (``--runner-process``) or the other replicas' own."""
        return sum(cpu_seconds(pid) for pid in (self.pid, *self.extra_pids))

    def _children_cpu(self) -> float:
        return sum(children_cpu(pid) for pid in (self.pid, *self.extra_pids))

    def read(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        server = self._server_cpu() - self.server0
        children = self._children_cpu() - self.children0  # git and bash, run by the runners
        database = max(0.0, pg_backend_cpu(self.url) - self.db0)  # backends that lived through the window
        bench = time.process_time() - self.bench0
        system = system_busy_seconds() - self.system0
        other = max(0.0, system - server - children - database - bench)
        return {
            "wall_s": wall,
            "server_cpu_pct": 100 * server / wall,
            "runner_processes_cpu_pct": 100 * children / wall,
            "server_cpu_s": server,
            "runner_processes_cpu_s": children,
            "db_cpu_pct": 100 * database / wall,
            "bench_cpu_pct": 100 * bench / wall,
            "other_cpu_pct": 100 * other / wall,
            "load1_start": self.load0,
            "load1_end": os.getloadavg()[0],
        }


# --------------------------------------------------------------------------- the server


@dataclass
class Server:
    """A running ``cascade serve`` and the database it uses (None: SQLite in its data dir), and the
    processes beside it: the ``cascade runner`` of ``--runner-process``, or the other ``--replicas``."""

    served: Served
    database_url: str | None
    extra_pids: tuple[int, ...] = ()

    @property
    def pid(self) -> int:
        return self.served.pid

    @property
    def url(self) -> str:
        return self.served.url

    def tail(self, lines: int = 40) -> str:
        return self.served.tail(lines)


@contextlib.contextmanager
def server(kind: str, runners: int, token: str, *, runner_process: bool = False, replicas: int = 1) -> Iterator[Server]:
    """``cascade serve`` with a local pool of ``runners``; or (``runner_process``) with none and a
    ``cascade runner --concurrency runners`` process next to it, as a busy PostgreSQL server would run;
    or (``replicas`` > 1, PostgreSQL) that many servers on the one database, the runners shared out
    among their local pools. The API goes to the first."""
    with (
        tempfile.TemporaryDirectory(prefix="cascade-bench-") as tmp,
        database_url(kind) as url,
        contextlib.ExitStack() as stack,
    ):
        shared = {"CASCADE_SECRET_KEY": Fernet.generate_key().decode()}  # replicas share it (README)
        pools = [runners // replicas + (1 if i < runners % replicas else 0) for i in range(replicas)]
        if runner_process:
            pools = [0]
        started = [
            stack.enter_context(serve(Path(tmp) / f"data{i}", token, database_url=url, runners=n, env=shared))
            for i, n in enumerate(pools)
        ]
        extra = tuple(other.pid for other in started[1:])
        if runner_process:
            extra += (stack.enter_context(runner_beside(started[0].url, token, runners, Path(tmp) / "runner")),)
        yield Server(started[0], url, extra)


@contextlib.contextmanager
def runner_beside(url: str, admin_token: str, concurrency: int, work_dir: Path) -> Iterator[int]:
    """A ``cascade runner`` process for the server at ``url`` (its token in the environment, not argv)."""
    with api_client(url, admin_token) as api:
        issued = check(api.post("/api/tokens", json={"runner": True, "name": "bench runner"}), 201, "runner token")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
    environment["CASCADE_RUNNER_TOKEN"] = issued["token"]
    command = [str(CASCADE), "runner", "--server", url, "--concurrency", str(concurrency)]
    command += ["--work-dir", str(work_dir), "--name", "bench"]
    log = work_dir.parent / "runner.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=environment, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process.pid
    finally:
        terminate(process)


class Invalid(Exception):
    """The run broke a rule (a member failed, a count is off): its numbers are not a result."""


def api_client(url: str, token: str) -> httpx2.Client:
    return httpx2.Client(base_url=url, headers={"Authorization": f"token {token}"}, timeout=60, trust_env=False)


def check(response: httpx2.Response, expect: int, what: str) -> Any:
    if response.status_code != expect:
        raise Invalid(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response.json() if response.content else None


def build(api: httpx2.Client, org: str, dag: Dag, repo: str) -> None:
    """The DAG's stacks, settings and edges; ``repo``: a ``file://`` git repository or a plain directory."""
    git = {"repoUrl": repo, "branch": "main"} if repo.startswith("file://") else {"repoUrl": repo}
    settings = {"sourceContext": {"git": git}}
    for node in dag.nodes:
        check(api.post(f"/api/stacks/{org}/{node}", json={"stackName": STACK}), 200, f"create {node}")
        check(api.post(f"/api/stacks/{org}/{node}/{STACK}/deployments/settings", json=settings), 200, "settings")
    for up, down in dag.edges:
        edge = {"format": "pulumi_deployments", "payloadUrl": f"{down}/{STACK}", "filters": ["update_succeeded"]}
        check(api.post(f"/api/stacks/{org}/{up}/{STACK}/hooks", json=edge), 201, f"edge {up} -> {down}")


def counts(api: httpx2.Client, org: str) -> dict[str, int]:
    return dict(check(api.get(f"/api/orgs/{org}/deployments/metadata"), 200, "org metadata")["deploymentCounts"])


def parse(ts: str | None) -> float:
    if ts is None:
        raise Invalid("a timestamp is missing")
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(1, min(len(ordered), math.ceil(p / 100 * len(ordered)))) - 1]


# --------------------------------------------------------------------------- one cascade


@dataclass
class CascadeRun:
    database: str
    runners: int
    dag: str
    members: int
    run: str  # cold | warm
    wall_s: float  # root deployment created -> cascade finished (server timestamps)
    observed_s: float  # this script: POST of the root -> cascade seen not running
    floor_s: float
    ratio: float
    git_floor_s: float  # the minimal runner doing the git steps too
    deployments_per_s: float
    trigger_ms: list[float]
    free_trigger_ms: list[float]
    deployment_ms_median: float  # one member's deployment, started -> finished
    busy_share: float  # runner-seconds busy / (N * wall)
    steps_ms: dict[str, float]  # median step durations over a sample of members
    load: dict[str, float]

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in {"trigger_ms", "free_trigger_ms"}}
        for name, values in (("trigger", self.trigger_ms), ("free_trigger", self.free_trigger_ms)):
            out[f"{name}_n"] = len(values)
            out[f"{name}_p50_ms"] = pct(values, 50)
            out[f"{name}_p99_ms"] = pct(values, 99)
            out[f"{name}_max_ms"] = max(values) if values else float("nan")
        return out


def wait_cascade_done(api: httpx2.Client, org: str, cascade_id: str, timeout: float) -> None:
    """Poll the cheap cascade list (no members) until the cascade is not running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = check(api.get(f"/api/orgs/{org}/cascades", params={"pageSize": 1}), 200, "cascades")["cascades"]
        if any(row["id"] == cascade_id and row["status"] != "running" for row in rows):
            return
        time.sleep(0.25)  # the wall time comes from the server's timestamps: polling only has to be cheap
    raise Invalid(f"cascade {cascade_id} still running after {timeout} s")


def trigger_latencies(members: dict[str, dict[str, Any]], dag: Dag, runners: int) -> tuple[list[float], list[float]]:
    """(every non-root member, only those that became ready while a runner was free), in ms."""
    spans = {name: (parse(m["started"]), parse(m["finished"])) for name, m in members.items()}
    ready = {node: max(spans[f"{up}/{STACK}"][1] for up in dag.parents[node]) for node in dag.nodes if node != dag.root}
    everything, free = [], []
    for node, at in ready.items():
        started = spans[f"{node}/{STACK}"][0]
        latency = (started - at) * 1000
        everything.append(latency)
        running = sum(1 for s, f in spans.values() if s <= at < f)
        waiting_ahead = sum(  # ready no later, not started yet, and started before it: ahead in the queue
            1
            for other, other_at in ready.items()
            if other != node and other_at <= at < spans[f"{other}/{STACK}"][0] < started
        )
        if running + waiting_ahead < runners:
            free.append(latency)
    return everything, free


def step_breakdown(api: httpx2.Client, org: str, members: dict[str, dict[str, Any]], sample: int) -> dict[str, float]:
    """Median time (ms) of each part of a member deployment, over ``sample`` members."""
    parts: dict[str, list[float]] = {}
    for name, member in list(members.items())[:sample]:
        body = check(api.get(f"/api/stacks/{org}/{name}/deployments/{member['deploymentId']}"), 200, "deployment")
        created = parse(body["created"])
        started = parse(body["started"])
        parts.setdefault("created -> started (claim + start)", []).append((started - created) * 1000)
        previous = started
        for step in body["jobs"][0]["steps"]:
            if "started" in step and "lastUpdated" in step:
                begin, end = parse(step["started"]), parse(step["lastUpdated"])
                parts.setdefault(f"gap before step {step['name']}", []).append((begin - previous) * 1000)
                parts.setdefault(f"step {step['name']}", []).append((end - begin) * 1000)
                previous = end
        parts.setdefault("last step -> finished", []).append((parse(body["finished"]) - previous) * 1000)
    return {name: statistics.median(values) for name, values in parts.items()}


def run_cascade(
    api: httpx2.Client,
    srv: Server,
    org: str,
    dag: Dag,
    runners: int,
    database: str,
    label: str,
    floor: float,
    git_floor: float,
) -> CascadeRun:
    before = counts(api, org)
    meter = Meter(srv.pid, srv.database_url, srv.extra_pids)
    t0 = time.perf_counter()
    created = check(
        api.post(f"/api/stacks/{org}/{dag.root}/{STACK}/deployments", json={"operation": "update"}), 202, "deploy"
    )
    root = check(api.get(f"/api/stacks/{org}/{dag.root}/{STACK}/deployments/{created['id']}"), 200, "root")
    cascade_id = root["cascadeId"]
    if not cascade_id:
        raise Invalid(f"the root deployment of {dag.name} started no cascade")
    wait_cascade_done(api, org, cascade_id, timeout=900)
    observed = time.perf_counter() - t0
    load = meter.read()
    cascade = check(api.get(f"/api/orgs/{org}/cascades/{cascade_id}"), 200, "cascade")
    members = {m["stack"]: m for m in cascade["members"]}
    expected = {f"{node}/{STACK}" for node in dag.nodes}
    if set(members) != expected:
        raise Invalid(f"{dag.name}: cascade members {len(members)} != the DAG's {len(expected)} stacks")
    bad = [(n, m["status"], m["reason"]) for n, m in members.items() if m["status"] != "succeeded"]
    if cascade["status"] != "succeeded" or bad:
        raise Invalid(f"{dag.name}: cascade {cascade['status']}, members not succeeded: {bad[:5]}")
    ids = [m["deploymentId"] for m in members.values()]
    if None in ids or len(set(ids)) != len(ids):
        raise Invalid(f"{dag.name}: a member has no deployment, or two share one")
    after = counts(api, org)
    if after["total"] - before["total"] != len(members):
        raise Invalid(f"{dag.name}: {after['total'] - before['total']} deployments for {len(members)} members")
    if after["succeeded"] - before["succeeded"] != len(members):
        raise Invalid(f"{dag.name}: {after['succeeded'] - before['succeeded']} succeeded for {len(members)} members")
    wall = parse(cascade["finished"]) - parse(root["created"])
    trigger, free = trigger_latencies(members, dag, runners)
    durations = [parse(m["finished"]) - parse(m["started"]) for m in members.values()]
    return CascadeRun(
        database=database,
        runners=runners,
        dag=dag.name,
        members=len(members),
        run=label,
        wall_s=wall,
        observed_s=observed,
        floor_s=floor,
        ratio=wall / floor,
        git_floor_s=git_floor,
        deployments_per_s=len(members) / wall,
        trigger_ms=trigger,
        free_trigger_ms=free,
        deployment_ms_median=statistics.median(durations) * 1000,
        busy_share=sum(durations) / (runners * wall),
        steps_ms=step_breakdown(api, org, members, sample=20),
        load=load,
    )


# --------------------------------------------------------------------------- the floor


def minimal_runner(dag: Dag, parallel: int, one: Callable[[str], None] | None = None) -> float:
    """Seconds to run ``one(node)`` (default: ``bash -c true``) for every node in dependency order,
    ``parallel`` at a time."""
    bash = shutil.which("bash") or "bash"

    def just_bash(_node: str) -> None:
        subprocess.run([bash, "-c", "true"], check=True, stdin=subprocess.DEVNULL)

    one = one or just_bash
    sorter = TopologicalSorter(dag.parents)
    sorter.prepare()
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        pending: dict[concurrent.futures.Future[None], str] = {}
        while sorter.is_active():
            for node in sorter.get_ready():
                pending[pool.submit(one, node)] = node
            done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                future.result()
                sorter.done(pending.pop(future))
    return time.perf_counter() - start


def floor_of(dag: Dag, parallel: int, runs: int) -> float:
    return statistics.median(minimal_runner(dag, parallel) for _ in range(runs))


def git_floor_of(dag: Dag, parallel: int, runs: int, repo: str) -> float:
    """The minimal runner doing a warm deployment's git steps before ``bash -c true`` (see the module doc)."""
    git, bash = shutil.which("git") or "git", shutil.which("bash") or "bash"
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}

    def run(argv: list[str], cwd: Path | None = None) -> None:
        subprocess.run(argv, cwd=cwd, env=env, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    with tempfile.TemporaryDirectory(prefix="cascade-floor-") as scratch:
        workspaces = {node: Path(scratch) / node for node in dag.nodes}
        for workspace in workspaces.values():
            run([git, "clone", "-q", "--no-checkout", "--", repo, str(workspace)])
        fetch = [git, "fetch", "-q", "--prune", "--force", "--no-auto-maintenance", "--no-write-fetch-head"]

        def deploy(node: str) -> None:
            workspace = workspaces[node]
            run([*fetch, "--", repo, "+refs/heads/*:refs/remotes/origin/*"], workspace)
            run([git, "checkout", "-q", "--force", "--detach", "refs/remotes/origin/main", "--"], workspace)
            run([git, "clean", "-q", "-ffdx"], workspace)
            run([bash, "-c", "true"], workspace)

        return statistics.median(minimal_runner(dag, parallel, deploy) for _ in range(runs))


# --------------------------------------------------------------------------- per-edge


@dataclass
class CountResult:
    database: str
    runners: int
    dag: str
    members: int
    mode: str
    deployments: int
    expected: int
    complete: bool  # ran until quiet (else: stopped after a time bound)
    seconds: float
    failed: int


def run_until_quiet(
    api: httpx2.Client,
    org: str,
    dag: Dag,
    mode: str,
    *,
    expected: int,
    bound_s: float,
    database: str,
    runners: int,
    quiet_s: float = 2.0,
) -> CountResult:
    """Deploy the root in ``mode``; count the org's deployments until nothing is queued/running for ``quiet_s``."""
    check(api.patch(f"/api/orgs/{org}/settings", json={"cascadeMode": mode}), 200, "cascadeMode")
    before = counts(api, org)
    t0 = time.perf_counter()
    check(api.post(f"/api/stacks/{org}/{dag.root}/{STACK}/deployments", json={"operation": "update"}), 202, "deploy")
    quiet_since: float | None = None
    complete = False
    now = counts(api, org)
    while time.perf_counter() - t0 < bound_s:
        time.sleep(0.2)
        now = counts(api, org)
        active = now["notStarted"] + now["accepted"] + now["running"]
        if active:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.perf_counter()
        elif time.perf_counter() - quiet_since >= quiet_s:
            complete = True
            break
    seconds = (quiet_since if complete and quiet_since else time.perf_counter()) - t0
    return CountResult(
        database=database,
        runners=runners,
        dag=dag.name,
        members=len(dag.nodes),
        mode=mode,
        deployments=now["total"] - before["total"],
        expected=expected,
        complete=complete,
        seconds=seconds,
        failed=now["failed"] - before["failed"] + now["skipped"] - before["skipped"],
    )


# --------------------------------------------------------------------------- main


@dataclass
class Report:
    runs: list[CascadeRun] = field(default_factory=list)
    counts: list[CountResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def git_repo(path: Path) -> str:
    path.mkdir(parents=True)
    (path / "Cascade.yaml").write_text("operations:\n  update: 'true'\n")
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    subprocess.run(["git", "add", "."], cwd=path, check=True)
    subprocess.run(["git", *identity, "commit", "-q", "-m", "no-op"], cwd=path, check=True)
    return path.resolve().as_uri()


def plain_directory(path: Path) -> str:
    """A plain directory (no git) with the no-op ``Cascade.yaml``: the runner copies it for each deployment."""
    path.mkdir(parents=True)
    (path / "Cascade.yaml").write_text("operations:\n  update: 'true'\n")
    return str(path.resolve())


def one_server(
    args: argparse.Namespace, database: str, runners: int, repo: str, report: Report, per_edge: bool
) -> None:
    token = "csc_bench_" + secrets.token_hex(16)
    big = layered("layered", args.layers, args.width, args.fanin, args.seed)
    line = chain("chain", args.chain)
    with (
        server(database, runners, token, runner_process=args.runner_process, replicas=args.replicas) as srv,
        api_client(srv.url, token) as api,
    ):
        try:
            t0 = time.perf_counter()
            check(api.patch(f"/api/orgs/{ORG}/settings", json={"cascadeMode": "coalesced"}), 200, "org")
            build(api, ORG, big, repo)
            build(api, ORG, line, repo)
            print(
                f"  [{database}, {runners} runners] built {len(big.nodes) + len(line.nodes)} stacks, "
                f"{len(big.edges) + len(line.edges)} edges in {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
            for dag in (big, line):
                floor = floor_of(dag, runners, args.floor_runs)
                git_floor = git_floor_of(dag, runners, args.floor_runs, repo) if args.source == "git" else math.nan
                for label in ("cold", "warm"):
                    wait_quiet(srv.pid, args.wait_quiet)
                    result = run_cascade(api, srv, ORG, dag, runners, database, label, floor, git_floor)
                    report.runs.append(result)
                    s = result.summary()
                    print(
                        f"  [{database}, {runners} runners] {dag.name} {label}: {result.wall_s:.2f} s "
                        f"(floor {floor:.3f} s, x{result.ratio:.1f}), trigger p50 {s['trigger_p50_ms']:.0f} ms "
                        f"p99 {s['trigger_p99_ms']:.0f} ms",
                        flush=True,
                    )
            if per_edge:
                small = layered("layered-small", args.per_edge_layers, args.width, args.fanin, args.seed, prefix="s")
                pe_chain = chain("chain", args.chain, prefix="p")
                check(api.patch(f"/api/orgs/{PE_ORG}/settings", json={"cascadeMode": "per-edge"}), 200, "org")
                build(api, PE_ORG, small, repo)
                build(api, PE_ORG, pe_chain, repo)
                for dag in (pe_chain, small):
                    expected = per_edge_expected(dag)
                    for mode, want in (("per-edge", expected), ("coalesced", len(dag.nodes))):
                        wait_quiet(srv.pid, args.wait_quiet)
                        counted = run_until_quiet(
                            api,
                            PE_ORG,
                            dag,
                            mode,
                            expected=want,
                            bound_s=args.quiet_timeout,
                            database=database,
                            runners=runners,
                            quiet_s=args.quiet_seconds,
                        )
                        report.counts.append(counted)
                        print(
                            f"  [{database}, {runners} runners] {dag.name} {mode}: {counted.deployments} deployments "
                            f"(expected {want}) in {counted.seconds:.1f} s",
                            flush=True,
                        )
                        if not counted.complete or counted.deployments != want or counted.failed:
                            raise Invalid(f"{mode} on {dag.name}: {counted}")
                if args.per_edge_full_seconds > 0:
                    counted = run_until_quiet(
                        api,
                        ORG,
                        big,
                        "per-edge",
                        expected=path_count_total(big),
                        bound_s=args.per_edge_full_seconds,
                        database=database,
                        runners=runners,
                        quiet_s=args.quiet_seconds,
                    )
                    report.counts.append(counted)
                    print(
                        f"  [{database}, {runners} runners] {big.name} per-edge: {counted.deployments} deployments "
                        f"in {counted.seconds:.1f} s ({'ran until quiet' if counted.complete else 'stopped'}) "
                        f"of {counted.expected} expected",
                        flush=True,
                    )
                    if counted.failed:
                        raise Invalid(f"per-edge on {big.name}: {counted.failed} deployments failed or were skipped")
        except (Invalid, httpx2.HTTPError) as exc:
            report.errors.append(f"{database}, {runners} runners: {exc}")
            print(f"ERROR: {exc}\n--- server log tail ---\n{srv.tail()}", file=sys.stderr, flush=True)


def fmt(value: float, digits: int = 0) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def print_tables(report: Report) -> None:
    print("\n**Coalesced cascades: wall time against the minimal runner**\n")
    print(
        "| database | runners | DAG | members | run | stackcascade s | minimal runner s | ratio "
        "| minimal runner with git s | ratio to it | deployments/s "
        "| median deployment ms | runners busy % | server CPU ms/deployment | git+bash CPU ms/deployment "
        "| load avg (1 min) | other procs CPU % |"
    )
    print("|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in report.runs:
        print(
            f"| {r.database} | {r.runners} | {r.dag} | {r.members} | {r.run} | {r.wall_s:.2f} | {r.floor_s:.3f} "
            f"| {r.ratio:.0f}x | {fmt(r.git_floor_s, 3)} | {fmt(r.wall_s / r.git_floor_s, 1)}x | {r.deployments_per_s:.1f} | {r.deployment_ms_median:.0f} | {100 * r.busy_share:.0f} "
            f"| {fmt(1000 * r.load.get('server_cpu_s', float('nan')) / r.members)} "
            f"| {fmt(1000 * r.load.get('runner_processes_cpu_s', float('nan')) / r.members)} "
            f"| {r.load['load1_start']:.1f}-{r.load['load1_end']:.1f} | {r.load['other_cpu_pct']:.0f} |"
        )
    print("\n**Trigger latency (latest upstream member finished -> member's deployment started), ms**\n")
    print("| database | runners | DAG | run | members | p50 | p99 | max | runner free: members | p50 | p99 | max |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in report.runs:
        s = r.summary()
        print(
            f"| {r.database} | {r.runners} | {r.dag} | {r.run} | {s['trigger_n']} | {fmt(s['trigger_p50_ms'])} "
            f"| {fmt(s['trigger_p99_ms'])} | {fmt(s['trigger_max_ms'])} | {s['free_trigger_n']} "
            f"| {fmt(s['free_trigger_p50_ms'])} | {fmt(s['free_trigger_p99_ms'])} | {fmt(s['free_trigger_max_ms'])} |"
        )
    if report.counts:
        print("\n**Deployments executed: coalesced vs per-edge**\n")
        print("| database | DAG | stacks | mode | deployments | expected | ran until quiet | seconds |")
        print("|---|---|---:|---|---:|---:|---|---:|")
        for c in report.counts:
            done = "yes" if c.complete else "no: stopped"
            print(
                f"| {c.database} | {c.dag} | {c.members} | {c.mode} | {c.deployments} | {c.expected:,} | {done} "
                f"| {c.seconds:.1f} |"
            )
    warm = [r for r in report.runs if r.run == "warm" and r.dag == "layered"]
    if warm:
        print("\n**Where a member deployment's time goes (median over 20 members, layered, warm), ms**\n")
        names = list(warm[0].steps_ms)
        print("| part | " + " | ".join(f"{r.database} {r.runners}r" for r in warm) + " |")
        print("|---|" + "---:|" * len(warm))
        for name in names:
            if all(r.steps_ms.get(name, 0.0) < 0.5 for r in warm):
                continue  # an empty gap between steps
            print(f"| {name} | " + " | ".join(fmt(r.steps_ms.get(name, float("nan")), 1) for r in warm) + " |")
    print("\n**Targets**\n")
    print("| target | measured | met |")
    print("|---|---|---|")
    sqlite = [r for r in report.runs if r.database == "sqlite"]
    if sqlite:
        worst = max(r.ratio for r in sqlite)
        best = min(r.ratio for r in sqlite)
        print(
            f"| within 5x of the minimal runner on SQLite | {best:.0f}x-{worst:.0f}x | "
            f"{'**yes**' if worst <= TARGETS['ratio_sqlite'] else '**no**'} |"
        )
        with_git = [r.wall_s / r.git_floor_s for r in sqlite if r.git_floor_s == r.git_floor_s]
        if with_git:
            print(
                f"| (for reference) SQLite against the minimal runner doing the same git steps "
                f"| {min(with_git):.1f}x-{max(with_git):.1f}x | - |"
            )
    limit = TARGETS["trigger_p99_ms"]
    for database in dict.fromkeys(r.database for r in report.runs):
        chains = [r for r in report.runs if r.database == database and r.dag == "chain"]
        if chains:
            worst = max(pct(r.trigger_ms, 99) for r in chains)
            print(
                f"| p99 trigger latency < 50 ms, {database} (chain: never waits for a runner) "
                f"| p99 {', '.join(f'{pct(r.trigger_ms, 99):.0f}' for r in chains)} ms "
                f"| {'**yes**' if worst < limit else '**no**'} |"
            )
        layers = [r for r in report.runs if r.database == database and r.dag != "chain" and r.free_trigger_ms]
        if layers:
            worst = max(pct(r.free_trigger_ms, 99) for r in layers)
            print(
                f"| p99 trigger latency < 50 ms, {database} (layered, members that found a free runner) "
                f"| p99 {', '.join(f'{pct(r.free_trigger_ms, 99):.0f}' for r in layers)} ms "
                f"| {'**yes**' if worst < limit else '**no**'} |"
            )
    exact = all(r.members > 0 for r in report.runs) and not report.errors
    coalesced = [c for c in report.counts if c.mode == "coalesced"]
    print(
        f"| coalesced: exactly one deployment per member | {len(report.runs)} cascades + {len(coalesced)} counted runs "
        f"checked | {'**yes**' if exact and report.runs else '**no**'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--runners", default="4,16", help="comma-separated local runner pool sizes")
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--width", type=int, default=20)
    parser.add_argument("--fanin", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--chain", type=int, default=50)
    parser.add_argument("--per-edge-layers", type=int, default=3)
    parser.add_argument("--per-edge-full-seconds", type=float, default=20.0, help="0: skip the bounded full run")
    parser.add_argument("--quiet-timeout", type=float, default=600.0)
    parser.add_argument(
        "--quiet-seconds",
        type=float,
        default=2.0,
        help="a counted run (4.) ends when nothing is queued or running in the org for this many s "
        "(smoke runs: 1; shorter risks stopping a per-edge run between two deployments)",
    )
    parser.add_argument("--floor-runs", type=int, default=3)
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each measurement wait up to this many s for other processes to use < 25%% of a core",
    )
    parser.add_argument(
        "--runner-process",
        action="store_true",
        help="run the deployments in a `cascade runner` process next to `cascade serve --runners 0` "
        "instead of the server's local pool (its CPU counts as the server's)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="PostgreSQL: this many `cascade serve` on the one database, the runners shared out among them",
    )
    parser.add_argument(
        "--source",
        choices=("git", "plain"),
        default="git",
        help="git: every stack deploys from a local git repository (fetch, checkout, clean); plain: from a plain "
        "directory copied without git, the same no-op work as the minimal runner",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if args.replicas < 1 or (args.replicas > 1 and (args.runner_process or "sqlite" in args.databases)):
        parser.error("--replicas N: N >= 1, PostgreSQL only (--databases postgresql), not with --runner-process")

    databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    runner_counts = [int(x) for x in args.runners.split(",")]
    report = Report()
    report.meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "per_edge_expected_full": path_count_total(layered("layered", args.layers, args.width, args.fanin, args.seed)),
    }
    print(
        f"cascade benchmark, {report.meta['date']}, Python {report.meta['python']}, {os.cpu_count()} CPUs, "
        f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="cascade-bench-repo-"))
    try:
        repo = git_repo(work / "repo") if args.source == "git" else plain_directory(work / "project")
        for database in databases:
            for runners in runner_counts:
                one_server(args, database, runners, repo, report, per_edge=runners == max(runner_counts))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_tables(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "meta": report.meta,
                    "runs": [r.summary() for r in report.runs],
                    "counts": [asdict(c) for c in report.counts],
                    "errors": report.errors,
                },
                indent=2,
            )
        )
    if report.errors:
        print("\nINVALID RUN:\n" + "\n".join(report.errors), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
