"""Cascades under concurrency: two roots at once, superseded members, many runners finishing members together."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter, defaultdict
from typing import Any

import pytest
import sqlalchemy as sa

from stackcascade.domain.deployments import Status
from stackcascade.domain.roles import Principal, TokenKind
from stackcascade.services import cascades, deployment_settings, deployments, queue, runs, webhooks
from stackcascade.services.context import Context
from stackcascade.services.webhooks import Scope
from stackcascade.store.runs import StepUpdate
from stackcascade.store.schema import cascade_members
from stackcascade.store.schema import cascades as cascades_table
from stackcascade.store.schema import deployments as deployments_table
from stackcascade.store.schema import stacks as stacks_table
from tests.services.helpers import ADMIN, make_stack
from tests.services.test_queue_stress import _in_threads

ORG = "acme"
RUNNER = Principal(token_id="runner-token", name="pool", kind=TokenKind.RUNNER)


async def graph(ctx: Context, edges: list[tuple[str, str]], *, skip_intermediate: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    for project in sorted({name for edge in edges for name in edge}):
        await make_stack(ctx, ORG, project)
        settings: dict[str, Any] = {"sourceContext": {"git": {"repoUrl": "file:///tmp/nowhere", "branch": "main"}}}
        if project in skip_intermediate:
            settings["operationContext"] = {"options": {"skipIntermediateDeployments": True}}
        await deployment_settings.save(ctx, ADMIN, ORG, project, "prod", settings, replace=True)
    for up, down in edges:
        body = {"format": "pulumi_deployments", "payloadUrl": f"{down}/prod", "filters": ["update_succeeded"]}
        await webhooks.create(ctx, ADMIN, Scope(ORG, up, "prod"), body)


async def finish_next(ctx: Context, expect: str | None = None) -> Any:
    row = await queue.claim(ctx, "r1")
    assert row is not None
    if expect is not None:
        assert row.project == expect
    await queue.start(ctx, row.id, "r1")
    return await queue.finish(ctx, row.id, "r1", Status.SUCCEEDED)


async def states(ctx: Context, cascade_id: str) -> dict[str, tuple[str, str | None]]:
    _, rows = await cascades.get(ctx, ADMIN, ORG, cascade_id)
    return {m.stack.split("/")[0]: (m.status, m.reason) for m in rows}


async def test_two_roots_at_once_give_two_cascades_whose_members_queue_per_stack(ctx: Context) -> None:
    await graph(ctx, [("network", "database"), ("database", "app")])
    first = await deployments.create(ctx, ADMIN, ORG, "network", "prod", {"operation": "update"})
    second = await deployments.create(ctx, ADMIN, ORG, "network", "prod", {"operation": "update"})
    assert first.cascade_id != second.cascade_id
    order = [(await finish_next(ctx)).project for _ in range(6)]
    assert order == ["network", "network", "database", "database", "app", "app"]
    for root in (first, second):
        assert await states(ctx, root.cascade_id) == {
            "network": ("succeeded", None),
            "database": ("succeeded", None),
            "app": ("succeeded", None),
        }


async def test_with_skip_intermediate_the_older_member_and_its_descendants_are_skipped(ctx: Context) -> None:
    await graph(ctx, [("network", "database"), ("database", "app")], skip_intermediate={"database"})
    first = await deployments.create(ctx, ADMIN, ORG, "network", "prod", {"operation": "update"})
    second = await deployments.create(ctx, ADMIN, ORG, "network", "prod", {"operation": "update"})
    await finish_next(ctx, "network")
    await finish_next(ctx, "network")  # both cascades now have database queued: the older is superseded
    await finish_next(ctx, "database")  # its claim superseded the older one
    await ctx.settle()  # the older cascade is advanced right after that claim's commit, not by the sweeper
    older = await states(ctx, first.cascade_id)
    assert older["database"][0] == "skipped" and "superseded" in (older["database"][1] or "")
    superseded = "upstream database/prod superseded by a newer deployment (skipIntermediateDeployments)"
    assert older["app"] == ("skipped", superseded)  # the descendants are skipped with that reason
    await finish_next(ctx, "app")
    assert await states(ctx, second.cascade_id) == {
        "network": ("succeeded", None),
        "database": ("succeeded", None),
        "app": ("succeeded", None),
    }
    assert await queue.claim(ctx, "r1") is None


async def test_a_member_superseded_by_a_finish_of_its_stack_skips_its_descendants_right_after_that_finish(
    ctx: Context,
) -> None:
    # m runs a deployment of its own while two cascades queue one each: the finish of the running one
    # supersedes the older queued one, inside its own transaction; that cascade must move on at once.
    await graph(ctx, [("r1", "m"), ("r2", "m"), ("m", "n")], skip_intermediate={"m"})
    own = await deployments.create(ctx, ADMIN, ORG, "m", "prod", {"operation": "update"})
    running = await queue.claim(ctx, "r1")
    assert running is not None and running.id == own.id
    await queue.start(ctx, own.id, "r1")
    first = await deployments.create(ctx, ADMIN, ORG, "r1", "prod", {"operation": "update"})
    second = await deployments.create(ctx, ADMIN, ORG, "r2", "prod", {"operation": "update"})
    await finish_next(ctx, "r1")
    await finish_next(ctx, "r2")  # both cascades now have m queued behind the running deployment
    assert (await states(ctx, first.cascade_id))["m"][0] == "queued"
    await queue.finish(ctx, own.id, "r1", Status.SUCCEEDED)
    await ctx.settle()
    older = await states(ctx, first.cascade_id)
    assert older["m"][0] == "skipped" and "superseded" in (older["m"][1] or "")
    assert older["n"] == ("skipped", "upstream m/prod superseded by a newer deployment (skipIntermediateDeployments)")
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, first.cascade_id)
    assert cascade.status != "running"
    await finish_next(ctx, "m")
    await finish_next(ctx, "n")  # the own deployment of m is a root too: its cascade queued n first
    await finish_next(ctx, "n")
    assert await states(ctx, own.cascade_id) == {"m": ("succeeded", None), "n": ("succeeded", None)}
    assert await states(ctx, second.cascade_id) == {
        "r2": ("succeeded", None),
        "m": ("succeeded", None),
        "n": ("succeeded", None),
    }


async def test_an_edge_added_while_a_cascade_runs_does_not_join_it(ctx: Context) -> None:
    await graph(ctx, [("network", "database")])
    await make_stack(ctx, ORG, "late")
    root = await deployments.create(ctx, ADMIN, ORG, "network", "prod", {"operation": "update"})
    body = {"format": "pulumi_deployments", "payloadUrl": "late/prod", "filters": ["update_succeeded"]}
    await webhooks.create(ctx, ADMIN, Scope(ORG, "database", "prod"), body)
    await finish_next(ctx, "network")
    await finish_next(ctx, "database")
    assert set(await states(ctx, root.cascade_id)) == {"network", "database"}
    assert await queue.claim(ctx, "r1") is None  # late was not deployed: the edge came after the plan


def layered(seed: int, layers: int, width: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    edges = [("root", f"l0s{i}") for i in range(width)]
    for layer in range(1, layers):
        for i in range(width):
            for parent in rng.sample(range(width), 2):
                edges.append((f"l{layer - 1}s{parent}", f"l{layer}s{i}"))
    return edges


@pytest.mark.stress
async def test_many_runners_finishing_members_at_once_keep_every_cascade_rule(ctx: Context) -> None:
    """Eight runners in their own threads and engines finish members concurrently, some failing, across two
    cascades over the same graph. Every member runs at most once per cascade, never before its upstreams
    finished, and both cascades end with every member decided."""
    edges = layered(seed=7, layers=4, width=4)
    await graph(ctx, edges)
    roots = [await deployments.create(ctx, ADMIN, ORG, "root", "prod", {"operation": "update"}) for _ in range(2)]
    failing = {"l1s2"}
    done = threading.Event()
    lock = threading.Lock()

    async def runner(actor: Context, index: int) -> None:
        rng = random.Random(index)
        idle = 0
        while not done.is_set():
            row = await queue.claim(actor, f"runner-{index}")
            if row is None:
                idle += 1
                await cascades.reconcile(actor) if idle % 20 == 0 else None
                await asyncio.sleep(0.005)  # idle poll; correctness never depends on it
                continue
            idle = 0
            await queue.start(actor, row.id, f"runner-{index}")
            await asyncio.sleep(rng.uniform(0, 0.02))
            status = Status.FAILED if row.project in failing else Status.SUCCEEDED
            await queue.finish(actor, row.id, f"runner-{index}", status)
            async with actor.db.read() as conn:
                running = await conn.scalar(
                    sa.select(sa.func.count()).select_from(cascades_table).where(cascades_table.c.status == "running")
                )
            if running == 0:
                with lock:
                    done.set()

    await asyncio.wait_for(asyncio.to_thread(_in_threads, ctx, 8, runner), timeout=240)
    await _check_every_cascade_rule(ctx, edges, roots)


@pytest.mark.stress
async def test_runner_slots_of_several_replicas_taking_their_next_job_with_each_finish_keep_every_cascade_rule(
    ctx: Context,
) -> None:
    """The runner protocol's own path: three replicas of four long-polling slots each, every finish also
    claiming its slot's next job (protocol 3) and handing what it made ready to the waiting slots."""
    edges = layered(seed=11, layers=4, width=4)
    await graph(ctx, edges)
    roots = [await deployments.create(ctx, ADMIN, ORG, "root", "prod", {"operation": "update"}) for _ in range(2)]
    done = threading.Event()
    start = [StepUpdate(0, "source", "running")]

    async def replica(actor: Context, index: int) -> None:
        async def slot(name: str) -> None:
            rng = random.Random(name)
            job = None
            while not done.is_set() or job is not None:
                if job is None:
                    job = await runs.claim(actor, RUNNER, name, 0.2, start=start)
                    if job is None:
                        await cascades.reconcile(actor)
                        continue
                await asyncio.sleep(rng.uniform(0, 0.02))
                status = Status.FAILED if job["project"] == "l1s2" else Status.SUCCEEDED
                _, job = await runs.finish_and_claim(
                    actor, RUNNER, name, str(job["deploymentId"]), runs.Result(status), start=start
                )
                async with actor.db.read() as conn:
                    running = await conn.scalar(
                        sa.select(sa.func.count())
                        .select_from(cascades_table)
                        .where(cascades_table.c.status == "running")
                    )
                if running == 0:
                    done.set()
            actor.work.close()

        await asyncio.gather(*(slot(f"replica-{index}-slot-{n}") for n in range(4)))

    await asyncio.wait_for(asyncio.to_thread(_in_threads, ctx, 3, replica), timeout=240)
    await _check_every_cascade_rule(ctx, edges, roots)


async def _check_every_cascade_rule(ctx: Context, edges: list[tuple[str, str]], roots: list[Any]) -> None:
    """Both cascades: every member decided, run at most once, never before its upstreams finished, and the
    failing member's descendants skipped with its name."""
    async with ctx.db.read() as conn:
        members = (await conn.execute(sa.select(cascade_members))).all()
        deployed = (
            await conn.execute(
                sa.select(deployments_table, stacks_table.c.project).join(
                    stacks_table, stacks_table.c.id == deployments_table.c.stack_id
                )
            )
        ).all()
    by_id = {run.id: run for run in deployed}
    upstreams: dict[str, set[str]] = defaultdict(set)
    for up, down in edges:
        upstreams[down].add(up)
    for root in roots:
        mine = {m.stack.split("/")[0]: m for m in members if m.cascade_id == root.cascade_id}
        assert set(mine) == {name for edge in edges for name in edge}
        assert all(m.status in {"succeeded", "failed", "skipped"} for m in mine.values()), {
            k: m.status for k, m in mine.items()
        }
        ran = Counter(r.project for r in deployed if r.cascade_id == root.cascade_id)
        assert max(ran.values()) == 1, ran
        for name, member in mine.items():
            if member.deployment_id is None or name == "root":
                continue
            started = by_id[member.deployment_id].started_at
            for up in upstreams[name]:
                upstream = mine[up]
                if upstream.deployment_id is not None:
                    assert by_id[upstream.deployment_id].finished_at <= started, f"{name} started before {up} finished"
        skipped_for_failure = {k for k, m in mine.items() if m.reason and "l1s2/prod failed" in m.reason}
        assert skipped_for_failure, "the failing member's descendants were skipped with its name"
