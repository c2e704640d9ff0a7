"""What a cascade member's deployment costs the database: a budget of statements for the runner protocol's
two calls, so a change that adds round trips to the hot path fails here (``bench/cascade.py`` measures
the time; this counts, deterministically, on both databases)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from stackcascade.domain.deployments import Status
from stackcascade.domain.roles import Principal, TokenKind
from stackcascade.services import cascades, deployment_settings, runs, webhooks
from stackcascade.services.context import Context
from stackcascade.services.webhooks import Scope
from stackcascade.store.runs import LogLine, StepUpdate
from tests.services.helpers import ADMIN, make_stack
from tests.services.test_cascades import ORG, deploy, diamond
from tests.support import counting_round_trips

RUNNER = Principal(token_id="runner-token", name="pool", kind=TokenKind.RUNNER)
SLOT = "slot-0"
# Statements per call as counted when the budget was set (SQLite's include its BEGINs and its look before
# the claim). Finishes, in the order they run: network (queues database and cluster), cluster (queues
# nothing: app still waits for database), database (queues app), app (ends the cascade).
CLAIM_BUDGET = {"sqlite": 14, "postgresql": 11}
FINISH_BUDGET = {"sqlite": [23, 18, 23, 21], "postgresql": [22, 17, 22, 20]}
# PostgreSQL only: how often a call waits for the server's answers (BEGIN and COMMIT included). Writes
# whose result is not read are sent without waiting, reads that do not depend on each other are sent
# together (store/pipelined), and BEGIN goes with the first statement: the finishes waited 24, 19, 24 and
# 22 times before, the claims 13 or 14. The write of a cascade's final status does not wait either (app's
# finish waited 6 times with it).
CLAIM_ROUND_TRIPS = 5
FINISH_ROUND_TRIPS = [5, 3, 5, 5]


class Statements:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @property
    def count(self) -> int:
        return len(self.seen)

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.seen.append(statement)


@contextmanager
def counting() -> Iterator[Statements]:
    counter = Statements()
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", counter)
    try:
        yield counter
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", counter)


async def _claim_and_finish_each_member(
    ctx: Context, measuring: Callable[[], AbstractContextManager[Any]]
) -> tuple[list[int], list[int], list[str]]:
    """Claim and finish the diamond's members one at a time (each with its steps, log lines and outputs):
    what ``measuring`` counted for each claim and each finish, and the projects in the order claimed."""
    claims: list[int] = []
    finishes: list[int] = []
    order: list[str] = []
    for _ in range(4):
        with measuring() as claimed:
            job = await runs.claim(ctx, RUNNER, SLOT, 0, start=[StepUpdate(0, "source", "running")])
        assert job is not None and job["started"]
        claims.append(claimed.count)
        order.append(job["project"])
        steps = [StepUpdate(0, "source", "succeeded"), StepUpdate(1, "operation", "running")]
        steps.append(StepUpdate(1, "operation", "succeeded"))
        lines = [LogLine(0, 0, "$ git fetch", 1.0), LogLine(1, 0, "done", 2.0)]
        result = runs.Result(Status.SUCCEEDED, outputs={"url": "https://example.test"})
        with measuring() as finished:
            await runs.finish(ctx, RUNNER, SLOT, job["deploymentId"], result, steps, lines)
        finishes.append(finished.count)
    return claims, finishes, order


async def test_each_member_of_the_diamond_costs_at_most_its_budget_of_statements(ctx: Context) -> None:
    await diamond(ctx)
    root = await deploy(ctx, "network")
    claims, finishes, order = await _claim_and_finish_each_member(ctx, counting)
    assert await runs.claim(ctx, RUNNER, SLOT, 0) is None
    assert order == ["network", "cluster", "database", "app"]
    dialect = ctx.db.dialect
    assert max(claims) <= CLAIM_BUDGET[dialect], f"claims took {claims} statements"
    assert all(n <= most for n, most in zip(finishes, FINISH_BUDGET[dialect], strict=True)), f"finishes: {finishes}"
    assert root.cascade_id is not None


async def test_on_postgresql_each_member_of_the_diamond_waits_for_the_server_at_most_its_budget_of_times(
    ctx: Context,
) -> None:
    if not ctx.db.is_postgres:
        pytest.skip("SQLite statements run in the process: nothing waits for a server")
    await diamond(ctx)
    root = await deploy(ctx, "network")
    claims, finishes, order = await _claim_and_finish_each_member(ctx, counting_round_trips)
    assert order == ["network", "cluster", "database", "app"]
    assert max(claims) <= CLAIM_ROUND_TRIPS, f"claims waited {claims} times"
    assert all(n <= most for n, most in zip(finishes, FINISH_ROUND_TRIPS, strict=True)), f"finishes: {finishes}"
    _, members = await cascades.get(ctx, ADMIN, ORG, str(root.cascade_id))
    assert all(member.status == "succeeded" for member in members)


async def test_a_finish_that_makes_a_whole_layer_ready_costs_no_more_statements_than_one_making_two(
    ctx: Context,
) -> None:
    """The members a finish makes ready are queued in a few statements for them all, not a few each:
    the root of a fan-out to 20 stays within the budget of the diamond's network (which queues two)."""
    leaves = [f"leaf{i:02d}" for i in range(20)]
    for project in ["root", *leaves]:
        await make_stack(ctx, ORG, project)
        settings = {"sourceContext": {"git": {"repoUrl": "file:///tmp/nowhere", "branch": "main"}}}
        await deployment_settings.save(ctx, ADMIN, ORG, project, "prod", settings, replace=True)
    for leaf in leaves:
        body = {"format": "pulumi_deployments", "payloadUrl": f"{leaf}/prod", "filters": ["update_succeeded"]}
        await webhooks.create(ctx, ADMIN, Scope(ORG, "root", "prod"), body)
    root = await deploy(ctx, "root")
    job = await runs.claim(ctx, RUNNER, SLOT, 0, start=[StepUpdate(0, "source", "running")])
    assert job is not None and job["deploymentId"] == root.id

    with counting() as finished:
        await runs.finish(ctx, RUNNER, SLOT, root.id, runs.Result(Status.SUCCEEDED, outputs={"url": "x"}))

    assert len(finished.seen) <= FINISH_BUDGET[ctx.db.dialect][0], f"the finish took {len(finished.seen)}"
    _, members = await cascades.get(ctx, ADMIN, ORG, str(root.cascade_id))
    queued = {m.stack: m.deployment_id for m in members if m.status == "queued"}
    assert sorted(queued) == [f"{leaf}/prod" for leaf in leaves]
    async with ctx.db.read() as conn:
        versions = (await conn.execute(sa.text("SELECT id, version FROM deployments"))).all()
    assert len({deployment_id for deployment_id, _ in versions}) == 21
    assert {version for deployment_id, version in versions if deployment_id in queued.values()} == {1}
