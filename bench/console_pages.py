"""Console page load times for an organization of 200 stacks (issue 6: every page under 300 ms).

For each database (SQLite in a fresh data dir; PostgreSQL in a fresh database ``cascade_bench_<random>``,
dropped afterwards) this starts ``cascade serve --runners 0`` and, through the REST API only, builds org
``bench``: ``--layers`` (10) layers of ``--width`` (20) stacks ``p<layer>x<i>/prod`` (200), each stack below
the top layer fed by ``--fanin`` (2) random stacks of the layer above (deployment edges, ~360), settings on
every stack, a queued deployment on 40 stacks, two org webhooks with a ping each, and three cascades started
by external ``update_succeeded`` events on top-layer stacks (their members queue: no runners).

It then signs in through the console's form (one keep-alive connection, like a browser tab) and requests
each page ``--repeat`` (30) times after two unmeasured warm-ups, checking every answer is a 200 page:
overview, graph, graph state (the live JSON), cascades, a cascade (~150 members), the top stack's page (its
impact plan covers most of the org), a deployment, org webhooks, a webhook with its deliveries.
Times are wall-clock at the client over 127.0.0.1 (the whole request: routing, queries, rendering).

    .venv/bin/python bench/console_pages.py                       # both databases
    .venv/bin/python bench/console_pages.py --databases sqlite
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import re
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx2
from _support import database_url, serve

ORG = "bench"
TARGET_MS = 300.0


def check(response: httpx2.Response, *expected: int) -> httpx2.Response:
    if response.status_code not in (expected or (200,)):
        raise SystemExit(
            f"{response.request.method} {response.request.url}: {response.status_code} {response.text[:300]}"
        )
    return response


def build_org(api: httpx2.Client, layers: int, width: int, fanin: int, seed: int) -> dict[str, str]:
    """The org through the REST API; returns what the pages are measured on."""
    rng = random.Random(seed)
    settings = {"sourceContext": {"git": {"repoUrl": "file:///nowhere", "branch": "main"}}}
    for layer in range(layers):
        for i in range(width):
            project = f"p{layer}x{i}"
            check(
                api.post(f"/api/stacks/{ORG}/{project}", json={"stackName": "prod", "tags": {"layer": str(layer)}}), 200
            )
            check(api.post(f"/api/stacks/{ORG}/{project}/prod/deployments/settings", json=settings), 200)
    edges = 0
    for layer in range(1, layers):
        for i in range(width):
            for up in rng.sample(range(width), fanin):
                body = {
                    "name": f"to-p{layer}x{i}",
                    "displayName": f"to p{layer}x{i}",
                    "payloadUrl": f"p{layer}x{i}/prod",
                    "format": "pulumi_deployments",
                    "filters": ["update_succeeded"],
                    "triggerOn": "outputs-changed" if rng.random() < 0.2 else "always",
                }
                check(api.post(f"/api/stacks/{ORG}/p{layer - 1}x{up}/prod/hooks", json=body), 201)
                edges += 1
    deployment_id = ""
    queued = min(40, layers * width)
    for i in range(queued):
        project = f"p{i % layers}x{(i // layers) % width}"
        made = check(api.post(f"/api/stacks/{ORG}/{project}/prod/deployments", json={"operation": "update"}), 202)
        deployment_id = deployment_id or made.json()["id"]
    for name in ("audit", "chat"):
        hook = {"name": name, "displayName": name, "payloadUrl": "http://127.0.0.1:9/hook", "format": "raw"}
        check(api.post(f"/api/orgs/{ORG}/hooks", json=hook), 201)
        check(api.post(f"/api/orgs/{ORG}/hooks/{name}/ping"), 200, 201)
    for i in range(min(3, width)):  # three cascades (fewer when the top layer is narrower)
        check(
            api.post(f"/api/stacks/{ORG}/p0x{i}/prod/events", json={"kind": "update_succeeded", "outputs": {"v": i}}),
            202,
        )
    cascades = check(api.get(f"/api/orgs/{ORG}/cascades")).json()["cascades"]
    biggest = max(cascades, key=lambda c: len(check(api.get(f"/api/orgs/{ORG}/cascades/{c['id']}")).json()["members"]))
    members = len(check(api.get(f"/api/orgs/{ORG}/cascades/{biggest['id']}")).json()["members"])
    print(
        f"  org {ORG}: {layers * width} stacks, {edges} edges, {queued} queued deployments, {len(cascades)} cascades "
        f"(largest {members} members)"
    )
    return {"deployment": deployment_id, "cascade": biggest["id"], "deployment_stack": "p0x0/prod"}


def sign_in(client: httpx2.Client, token: str) -> None:
    nonce = re.search(r'name="login_nonce" value="([^"]+)"', check(client.get("/~/login")).text)
    assert nonce is not None
    check(client.post("/~/login", data={"token": token, "login_nonce": nonce.group(1), "next": "/"}), 303)


def measure(client: httpx2.Client, path: str, repeat: int) -> list[float]:
    for _ in range(2):
        check(client.get(path), 200)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        check(client.get(path), 200)
        times.append((time.perf_counter() - started) * 1000)
    return times


def run(kind: str, args: argparse.Namespace) -> list[tuple[str, list[float], int]]:
    token = "csc_bench_" + uuid.uuid4().hex
    with (
        tempfile.TemporaryDirectory(prefix="console-bench-") as tmp,
        database_url(kind) as url,
        serve(
            Path(tmp) / "data", token, database_url=url, env={"CASCADE_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8"}
        ) as served,
    ):
        base = served.url
        headers = {"Authorization": f"token {token}"}
        with httpx2.Client(base_url=base, headers=headers, timeout=60, trust_env=False) as api:
            ids = build_org(api, args.layers, args.width, args.fanin, args.seed)
            deployment = f"/{ORG}/p0x0/prod/deployments/{ids['deployment']}"
            pages = [
                ("overview", f"/{ORG}"),
                ("graph", f"/{ORG}/~/graph"),
                ("graph state (live JSON)", f"/{ORG}/~/graph/state"),
                ("cascades", f"/{ORG}/~/cascades"),
                ("cascade", f"/{ORG}/~/cascades/{ids['cascade']}"),
                ("stack (top layer)", f"/{ORG}/p0x0/prod"),
                ("deployment", deployment),
                ("org webhooks", f"/{ORG}/~/webhooks"),
                ("webhook + deliveries", f"/{ORG}/~/webhooks/audit"),
            ]
        with httpx2.Client(base_url=base, timeout=60, trust_env=False) as browser:
            sign_in(browser, token)
            results = []
            for name, path in pages:
                size = len(check(browser.get(path), 200).content)
                results.append((name, measure(browser, path, args.repeat), size))
            return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--width", type=int, default=20)
    parser.add_argument("--fanin", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.layers < 2 or args.width < 1 or not 1 <= args.fanin <= args.width or args.repeat < 2:
        parser.error("need --layers >= 2 (a cascade to show), 1 <= --fanin <= --width, --repeat >= 2 (a p95)")
    print(
        f"console pages, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, target < {TARGET_MS:.0f} ms"
    )
    slow = []
    for kind in args.databases.split(","):
        print(f"\n{kind}:")
        results = run(kind, args)
        print(f"  {'page':<26} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'KiB':>7}")
        for name, times, size in results:
            p95 = statistics.quantiles(times, n=20)[18]
            print(f"  {name:<26} {statistics.median(times):>10.1f} {p95:>8.1f} {max(times):>8.1f} {size / 1024:>7.1f}")
            if p95 > TARGET_MS:
                slow.append(f"{kind} {name}")
    print("\nall pages under target (p95)" if not slow else f"\nover target (p95): {', '.join(slow)}")


if __name__ == "__main__":
    main()
