"""Cycle check and impact planning on a large org: 10,000 stacks and ~30,000 deployment edges.

For each database (SQLite in a fresh data dir, PostgreSQL in a fresh database ``cascade_bench_<random>``
that is dropped afterwards) this

1. brings a fresh database to the current schema (``Database(url).migrate()``, as ``cascade serve`` does)
   and seeds it directly with SQLAlchemy Core bulk inserts (through the API it would take an hour): org
   ``scale``, a **layered DAG** of ``--layers`` (100) layers of ``--width`` (100) stacks
   ``p<layer>x<i>/prod``, each stack below layer 0 depending on ``--fanin`` (3) random stacks of the
   layer above (``random.Random(--seed)``): 10,000 stacks, 29,700 edges. An edge is what
   ``POST .../hooks`` writes for ``{"format": "pulumi_deployments", "payloadUrl": "down/prod",
   "filters": ["update_succeeded"]}``: a stack webhook of the upstream (``scope`` = its id), active,
   ``target_stack_id`` = the downstream, ``groups`` [], ``triggerOn`` always, a name unique per scope;
2. starts ``cascade serve --runners 0`` on it and measures over HTTP on 127.0.0.1, one keep-alive
   connection, requests one after the other:

   a. ``--creates`` (300) **valid edge creations** ``POST /api/stacks/scale/{up}/prod/hooks`` from a stack
      of layer i to a stack of a lower layer j > i that it is not linked to yet (DAG-preserving): 201;
   b. ``--cycles`` (100) **creations that would close a cycle** (from a stack to one of its ancestors,
      1-``--layers`` layers up): 409, and the message must spell the cycle out (both ends named);
   c. ``--plans`` (100) **impact plans** ``GET /api/stacks/scale/{p}/prod/cascade-plan?operation=update`` for
      random stacks of the top (layers 0-9), middle (45-54) and bottom (90-99) tenth, with the number of
      members of each plan checked against the seeded graph.

   The very first plan, of a top stack, is measured on its own row ("impact plan, first"): it reads the
   org's whole graph into the server's memory, as the first plan after a restart or a deleted stack
   does; the plans of (c) use that graph, kept current by the changes of (a). Ten unmeasured creations
   and plans then warm the server up. Every response is checked; a wrong status, a wrong member count or
   a cycle message without the cycle makes the run invalid (exit 1).

Next to every phase: the server's CPU per request and the CPU other processes used (other sessions share
this 2-core machine), and the load average.

    .venv/bin/python bench/graph_scale.py                                    # both databases
    .venv/bin/python bench/graph_scale.py --databases sqlite --layers 20 --width 50   # quick
"""

from __future__ import annotations

import argparse
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
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import sqlalchemy as sa
from _support import cpu_seconds, database_url, pg_backend_cpu, serve, system_busy_seconds, wait_quiet

from stackcascade.store.db import Database, sqlite_url_for
from stackcascade.store.schema import orgs, stacks, webhooks

ORG, STACK = "scale", "prod"
TARGETS = {"create_p99_ms": 20.0, "plan_ms": 100.0}


# --------------------------------------------------------------------------- the graph


class Graph:
    """Layered DAG of projects ``p<layer>x<i>``; ``down[a]`` are a's downstreams, ``up[b]`` its upstreams."""

    def __init__(self, layers: int, width: int, fanin: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.layers, self.width = layers, width
        self.layer_of: dict[str, int] = {}
        self.by_layer: list[list[str]] = []
        self.down: dict[str, set[str]] = {}
        self.up: dict[str, set[str]] = {}
        for layer in range(layers):
            nodes = [f"p{layer:03d}x{i:03d}" for i in range(width)]
            self.by_layer.append(nodes)
            for node in nodes:
                self.layer_of[node] = layer
                self.down[node], self.up[node] = set(), set()
                if layer:
                    for parent in self.rng.sample(self.by_layer[layer - 1], min(fanin, width)):
                        self.add(parent, node)

    def add(self, up: str, down: str) -> None:
        self.down[up].add(down)
        self.up[down].add(up)

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(up, down) for up, downs in self.down.items() for down in sorted(downs)]

    def reach(self, start: str) -> set[str]:
        seen, queue = {start}, deque([start])
        while queue:
            for nxt in self.down[queue.popleft()]:
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        return seen


# --------------------------------------------------------------------------- database and seeding


@contextlib.contextmanager
def fresh_database(kind: str, data_dir: Path) -> Iterator[tuple[str, str | None]]:
    """(URL for ``Database``, ``--database-url`` for the server or None for SQLite in the data dir)."""
    with database_url(kind) as url:
        yield (url or sqlite_url_for(data_dir)), url


def seed(url: str, graph: Graph) -> tuple[dict[str, str], float]:
    """Migrate, then insert the org, the stacks and the edges; returns (project -> stack id, seconds)."""
    started = time.perf_counter()
    Database(url).migrate()
    sync_url = sa.engine.make_url(url)
    sync_url = sync_url.set(
        drivername="sqlite+pysqlite" if sync_url.get_backend_name() == "sqlite" else "postgresql+psycopg"
    )
    engine = sa.create_engine(sync_url)
    now = time.time()
    ids = {node: str(uuid.uuid4()) for node in graph.layer_of}
    with engine.begin() as conn:
        conn.execute(
            orgs.insert(),
            [{"name": ORG, "paused": False, "concurrency": 25, "cascade_mode": "coalesced", "created_at": now}],
        )
        stack_rows: list[dict[str, Any]] = [
            {
                "id": ids[node],
                "org": ORG,
                "project": node,
                "name": STACK,
                "tags": {},
                "outputs": None,
                "paused": False,
                "last_version": 0,
                "settings_version": 0,
                "require_approval": False,
                "created_at": now,
            }
            for node in graph.layer_of
        ]
        for i in range(0, len(stack_rows), 2000):
            conn.execute(stacks.insert(), stack_rows[i : i + 2000])
        edge_rows = [
            {
                "id": str(uuid.uuid4()),
                "org": ORG,
                "stack_id": ids[up],
                "scope": ids[up],
                "name": f"to-{down}",
                "display_name": f"to-{down}",
                "payload_url": f"{down}/{STACK}",
                "format": "pulumi_deployments",
                "filters": ["update_succeeded"],
                "groups": [],
                "active": True,
                "secret": None,
                "target_stack_id": ids[down],
                "trigger_on": "always",
                "require_approval": False,
                "managed": False,
                "created_at": now,
                "modified_at": now,
            }
            for up, down in graph.edges
        ]
        for i in range(0, len(edge_rows), 2000):
            conn.execute(webhooks.insert(), edge_rows[i : i + 2000])
    with engine.begin() as conn:  # fresh statistics for the planner, as autovacuum / a long-lived db would have
        conn.execute(sa.text("ANALYZE"))
    engine.dispose()
    return ids, time.perf_counter() - started


# --------------------------------------------------------------------------- the server


@contextlib.contextmanager
def server(data_dir: Path, database_url: str | None, token: str) -> Iterator[tuple[str, int, Path]]:
    with serve(data_dir, token, database_url=database_url) as served:
        yield served.url, served.pid, served.log


# --------------------------------------------------------------------------- measuring


class Invalid(Exception):
    pass


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(1, min(len(ordered), math.ceil(p / 100 * len(ordered)))) - 1]


@dataclass
class Phase:
    database: str
    operation: str
    group: str
    requests: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_members: float  # plans: members per plan; creations: stacks reachable from the target (cycle check)
    server_cpu_ms_per_req: float
    db_cpu_ms_per_req: float
    other_cpu_pct: float
    load1: float


class Window:
    def __init__(self, pid: int, database_url: str | None) -> None:
        self.pid, self.url = pid, database_url
        self.t0, self.server0, self.db0 = time.perf_counter(), cpu_seconds(pid), pg_backend_cpu(database_url)
        self.bench0, self.system0 = time.process_time(), system_busy_seconds()

    def read(self) -> tuple[float, float, float, float]:
        """(wall s, server CPU s, PostgreSQL CPU s, other processes' CPU % of one core)."""
        wall = time.perf_counter() - self.t0
        server = cpu_seconds(self.pid) - self.server0
        database = max(0.0, pg_backend_cpu(self.url) - self.db0)
        bench = time.process_time() - self.bench0
        other = max(0.0, system_busy_seconds() - self.system0 - server - database - bench)
        return wall, server, database, 100 * other / wall


def phase(database: str, operation: str, group: str, samples: list[tuple[float, int]], window: Window) -> Phase:
    _wall, server, db, other = window.read()
    latencies = [ms for ms, _ in samples]
    n = len(samples)
    return Phase(
        database=database,
        operation=operation,
        group=group,
        requests=n,
        p50_ms=pct(latencies, 50),
        p99_ms=pct(latencies, 99),
        max_ms=max(latencies),
        mean_members=statistics.mean(m for _, m in samples),
        server_cpu_ms_per_req=1000 * server / n,
        db_cpu_ms_per_req=1000 * db / n,
        other_cpu_pct=other,
        load1=os.getloadavg()[0],
    )


def timed(
    api: httpx2.Client, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[httpx2.Response, float]:
    start = time.perf_counter()
    response = api.request(method, path, json=body)
    return response, 1000 * (time.perf_counter() - start)


def edge_body(down: str) -> dict[str, Any]:
    return {"format": "pulumi_deployments", "payloadUrl": f"{down}/{STACK}", "filters": ["update_succeeded"]}


def new_valid_edge(graph: Graph, rng: random.Random) -> tuple[str, str]:
    """From layer i to a lower layer j > i, not linked yet (adding it keeps the graph acyclic)."""
    while True:
        i = rng.randrange(graph.layers - 1)
        j = rng.randrange(i + 1, graph.layers)
        up, down = rng.choice(graph.by_layer[i]), rng.choice(graph.by_layer[j])
        if down not in graph.down[up]:
            return up, down


def cycle_edge(graph: Graph, rng: random.Random, max_up: int) -> tuple[str, str]:
    """From a stack to one of its ancestors (1..max_up layers up): that edge would close a cycle."""
    layer = rng.randrange(1, graph.layers)
    node = rng.choice(graph.by_layer[layer])
    ancestor = node
    for _ in range(rng.randint(1, min(max_up, layer))):
        if not graph.up[ancestor]:  # an added edge can skip layers: the walk reached the top early
            break
        ancestor = rng.choice(sorted(graph.up[ancestor]))
    return node, ancestor


def measure(
    args: argparse.Namespace, database: str, graph: Graph, url: str, pid: int, db_url: str | None, token: str
) -> list[Phase]:
    rng = random.Random(args.seed + 1)
    phases: list[Phase] = []
    headers = {"Authorization": f"token {token}"}
    with httpx2.Client(base_url=url, headers=headers, timeout=120, trust_env=False) as api:

        def create(up: str, down: str, expect: int) -> tuple[httpx2.Response, float]:
            response, ms = timed(api, "POST", f"/api/stacks/{ORG}/{up}/{STACK}/hooks", edge_body(down))
            if response.status_code != expect:
                raise Invalid(
                    f"create {up} -> {down}: HTTP {response.status_code} (expected {expect}) {response.text[:300]}"
                )
            return response, ms

        def plan(node: str) -> tuple[int, float]:
            response, ms = timed(api, "GET", f"/api/stacks/{ORG}/{node}/{STACK}/cascade-plan?operation=update")
            if response.status_code != 200:
                raise Invalid(f"plan of {node}: HTTP {response.status_code} {response.text[:300]}")
            members = len(response.json()["members"])
            want = len(graph.reach(node))
            if members != (want if want > 1 else 0):
                raise Invalid(f"plan of {node}: {members} members, the graph says {want}")
            return members, ms

        # The first plan reads the org's whole graph into the server's memory (as after a restart or a
        # deleted stack); later plans use it. Reported on its own row: the target is for the plans after.
        wait_quiet(pid, args.wait_quiet)
        window = Window(pid, db_url)
        first = next(node for node in graph.by_layer[0] if graph.down[node])
        members, ms = plan(first)
        phases.append(
            phase(database, "impact plan, first (reads the graph)", "a layer-0 stack", [(ms, members)], window)
        )

        for _ in range(10):  # warm-up, not measured
            up, down = new_valid_edge(graph, rng)
            create(up, down, 201)
            graph.add(up, down)
            plan(rng.choice(graph.by_layer[rng.randrange(graph.layers)]))

        # (a) valid creations: the cycle check walks everything below the target
        wait_quiet(pid, args.wait_quiet)
        window = Window(pid, db_url)
        samples: list[tuple[float, int]] = []
        groups: dict[str, list[tuple[float, int]]] = {}
        for _ in range(args.creates):
            up, down = new_valid_edge(graph, rng)
            _, ms = create(up, down, 201)
            reached = len(graph.reach(down))
            graph.add(up, down)
            samples.append((ms, reached))
            tenth = graph.layer_of[down] * 10 // graph.layers
            groups.setdefault("target in top half" if tenth < 5 else "target in bottom half", []).append((ms, reached))
        phases.append(phase(database, "create edge (valid)", "all", samples, window))
        for name in sorted(groups, reverse=True):
            p = phase(database, "create edge (valid)", name, groups[name], window)
            p.server_cpu_ms_per_req = p.db_cpu_ms_per_req = p.other_cpu_pct = float("nan")  # shared window
            phases.append(p)

        # (b) creations that would close a cycle: 409 with the cycle spelled out
        wait_quiet(pid, args.wait_quiet)
        window = Window(pid, db_url)
        samples = []
        for _ in range(args.cycles):
            node, ancestor = cycle_edge(graph, rng, args.cycle_depth)
            response, ms = create(node, ancestor, 409)
            message = response.json().get("message", "")
            if "cycle" not in message or f"{node}/{STACK}" not in message or f"{ancestor}/{STACK}" not in message:
                raise Invalid(f"409 for {node} -> {ancestor} does not spell the cycle out: {message[:300]}")
            samples.append((ms, graph.layer_of[node] - graph.layer_of[ancestor]))
        phases.append(phase(database, "create edge (closes a cycle: 409)", "all", samples, window))

        # (c) impact plans from the top, the middle and the bottom tenth
        tenth = max(1, graph.layers // 10)
        bands = {
            "top (layers 0-9)": range(0, tenth),
            "middle (layers 45-54)": range(graph.layers // 2 - tenth // 2, graph.layers // 2 - tenth // 2 + tenth),
            "bottom (layers 90-99)": range(graph.layers - tenth, graph.layers),
        }
        per_band = {name: args.plans // 3 + (1 if i < args.plans % 3 else 0) for i, name in enumerate(bands)}
        for name, layers in bands.items():
            wait_quiet(pid, args.wait_quiet)
            window = Window(pid, db_url)
            samples = []
            for _ in range(per_band[name]):
                node = rng.choice(graph.by_layer[rng.choice(list(layers))])
                members, ms = plan(node)
                samples.append((ms, members))
            if tenth != 10:
                name = name.split(" (")[0] + f" (layers {layers.start}-{layers.stop - 1})"
            phases.append(phase(database, "impact plan", name, samples, window))
    return phases


# --------------------------------------------------------------------------- main


@dataclass
class Report:
    phases: list[Phase] = field(default_factory=list)
    seeding: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def print_tables(report: Report) -> None:
    print(
        "\n| database | operation | group | requests | p50 ms | p99 ms | max ms | mean members / reach "
        "| server CPU ms/req | PostgreSQL CPU ms/req | other procs CPU % | load avg |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in report.phases:
        print(
            f"| {p.database} | {p.operation} | {p.group} | {p.requests} | {fmt(p.p50_ms)} | {fmt(p.p99_ms)} "
            f"| {fmt(p.max_ms)} | {fmt(p.mean_members, 0)} | {fmt(p.server_cpu_ms_per_req)} "
            f"| {fmt(p.db_cpu_ms_per_req)} | {fmt(p.other_cpu_pct, 0)} | {p.load1:.1f} |"
        )
    print("\n**Targets**\n")
    print("| target | database | measured | met |")
    print("|---|---|---|---|")
    for database in dict.fromkeys(p.database for p in report.phases):
        creates = [
            p
            for p in report.phases
            if p.database == database and p.operation == "create edge (valid)" and p.group == "all"
        ]
        for p in creates:
            met = "**yes**" if p.p99_ms < TARGETS["create_p99_ms"] else "**no**"
            print(f"| create webhook p99 < 20 ms | {database} | p99 {p.p99_ms:.1f} ms (max {p.max_ms:.1f}) | {met} |")
        plans = [p for p in report.phases if p.database == database and p.operation == "impact plan"]
        if plans:
            worst = max(plans, key=lambda p: p.p99_ms)
            met = "**yes**" if worst.p99_ms < TARGETS["plan_ms"] else "**no**"
            detail = ", ".join(f"{p.group.split(' ')[0]} p99 {p.p99_ms:.0f} ms" for p in plans)
            print(f"| plan < 100 ms | {database} | {detail} | {met} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--fanin", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--creates", type=int, default=300)
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--cycle-depth", type=int, default=10, help="how many layers up the ancestor is, at most")
    parser.add_argument("--plans", type=int, default=100)
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each measurement wait up to this many s for other processes to use < 25%% of a core",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.layers < 2 or args.width < 1 or args.fanin < 1 or args.creates < 1 or args.cycles < 1 or args.plans < 3:
        parser.error("need --layers >= 2, --width and --fanin >= 1, --creates and --cycles >= 1, --plans >= 3")
    pairs = args.width**2 * args.layers * (args.layers - 1) // 2  # (up, down) with up in a higher layer
    room = pairs - (args.layers - 1) * args.width * min(args.fanin, args.width)  # minus the seeded edges
    if args.creates + 10 > room // 2:  # new_valid_edge draws until it finds an unlinked pair
        parser.error(f"--creates {args.creates} (+ 10 warm-up) needs a bigger graph: at most {room // 2 - 10} here")

    report = Report()
    report.meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    print(
        f"graph scale benchmark, {report.meta['date']}, Python {report.meta['python']}, {os.cpu_count()} CPUs, "
        f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    for database in [d.strip() for d in args.databases.split(",") if d.strip()]:
        graph = Graph(args.layers, args.width, args.fanin, args.seed)
        edges = sum(map(len, graph.down.values()))
        work = Path(tempfile.mkdtemp(prefix="cascade-bench-scale-"))
        token = "csc_bench_" + secrets.token_hex(16)
        try:
            data_dir = work / "data"
            with fresh_database(database, data_dir) as (url, server_url):
                _, seconds = seed(url, graph)
                report.seeding[database] = seconds
                print(
                    f"  [{database}] seeded {len(graph.layer_of)} stacks, {edges} edges in {seconds:.1f} s", flush=True
                )
                with server(data_dir, server_url, token) as (base, pid, log):
                    try:
                        phases = measure(args, database, graph, base, pid, server_url, token)
                        report.phases += phases
                        for p in phases:
                            print(
                                f"  [{database}] {p.operation}, {p.group}: p50 {p.p50_ms:.1f} ms, p99 {p.p99_ms:.1f} ms",
                                flush=True,
                            )
                    except (Invalid, httpx2.HTTPError) as exc:
                        report.errors.append(f"{database}: {exc}")
                        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                        print(f"ERROR: {exc}\n--- server log tail ---\n{tail}", file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print_tables(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "meta": report.meta,
                    "seeding_s": report.seeding,
                    "phases": [asdict(p) for p in report.phases],
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
