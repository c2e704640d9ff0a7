"""Delivery through the outbox to a real local HTTP receiver: filters, formats, signatures, retries, restarts,
deployment edges."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
import sqlalchemy as sa

from stackcascade.domain.backoff import RetryPolicy
from stackcascade.domain.deployments import Status
from stackcascade.domain.targets import parse_allowed_networks
from stackcascade.services import deployment_settings, org_settings, queue, stacks, webhook_delivery, webhooks
from stackcascade.services.context import Context
from stackcascade.services.webhooks import Scope
from stackcascade.store.schema import deployments as deployments_table
from stackcascade.store.schema import webhook_deliveries
from stackcascade.webhooks.dispatcher import Dispatcher
from stackcascade.webhooks.sender import HttpSender
from tests.services.helpers import ADMIN, make_stack
from tests.services.helpers import queue as enqueue
from tests.webhook_receiver import receiving

ORG = "acme"
NET = Scope(ORG, "net", "prod")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def hooks_ctx(ctx: Context, clock: Clock) -> Any:
    sender = HttpSender(parse_allowed_networks("127.0.0.0/8"), timeout=5)
    ctx.webhook_client = sender
    ctx.clock = clock
    ctx.webhook_retry = RetryPolicy(max_attempts=3, first_delay=60, factor=2, max_delay=600, jitter=0)
    yield ctx
    await sender.close()


async def drain(ctx: Context) -> None:
    """Run dispatcher rounds until nothing is left to do right now."""
    dispatcher = Dispatcher(ctx, ctx.webhook_client)  # type: ignore[arg-type]
    while await dispatcher.step():
        pass


async def run_once(ctx: Context, status: Status = Status.SUCCEEDED) -> Any:
    row = await queue.claim(ctx, "r1")
    assert row is not None
    await queue.start(ctx, row.id, "r1")
    return await queue.finish(ctx, row.id, "r1", status)


async def test_every_matching_event_arrives_signed_with_the_pulumi_headers(hooks_ctx: Context) -> None:
    await make_stack(hooks_ctx, ORG, "net")
    with receiving() as receiver:
        await webhooks.create(hooks_ctx, ADMIN, NET, {"name": "all", "payloadUrl": receiver.url, "secret": "k3y"})
        await enqueue(hooks_ctx, ORG, "net")
        await run_once(hooks_ctx)
        await drain(hooks_ctx)
        requests = receiver.wait_for(4)  # deployment queued, started, succeeded; update succeeded
        assert len(receiver.requests) == 4
    kinds = [r.headers["Pulumi-Webhook-Kind"] for r in requests]
    assert sorted(kinds) == ["deployment", "deployment", "deployment", "stack_update"]
    for request in requests:
        expected = hmac.new(b"k3y", request.body, hashlib.sha256).hexdigest()
        assert request.headers["Pulumi-Webhook-Signature"] == expected
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"].startswith("stackcascade/")
        assert len(request.headers["Pulumi-Webhook-ID"]) == 36
    update = next(json.loads(r.body) for r in requests if r.headers["Pulumi-Webhook-Kind"] == "stack_update")
    assert update["projectName"] == "net" and update["stackName"] == "prod" and update["result"] == "succeeded"


async def test_filters_and_groups_choose_the_events(hooks_ctx: Context, clock: Clock) -> None:
    await make_stack(hooks_ctx, ORG, "net")
    clock.now += 1  # net's stack_created happened before the webhooks existed: they do not get it
    with receiving() as only_failed, receiving() as deployments_group, receiving() as org_stacks:
        await webhooks.create(hooks_ctx, ADMIN, NET, {"payloadUrl": only_failed.url, "filters": ["update_failed"]})
        await webhooks.create(hooks_ctx, ADMIN, NET, {"payloadUrl": deployments_group.url, "groups": ["deployments"]})
        await webhooks.create(hooks_ctx, ADMIN, Scope(ORG), {"payloadUrl": org_stacks.url, "groups": ["stacks"]})
        await make_stack(hooks_ctx, ORG, "db")  # stack_created: the org webhook's stacks group
        await enqueue(hooks_ctx, ORG, "net")
        await run_once(hooks_ctx, Status.FAILED)
        await drain(hooks_ctx)
        failed = only_failed.wait_for(1)
        grouped = deployments_group.wait_for(3)
        org_side = org_stacks.wait_for(2)
    assert (len(only_failed.requests), len(deployments_group.requests), len(org_stacks.requests)) == (1, 3, 2)
    assert [json.loads(r.body)["result"] for r in failed] == ["failed"]
    assert {r.headers["Pulumi-Webhook-Kind"] for r in grouped} == {"deployment"}
    assert sorted(r.headers["Pulumi-Webhook-Kind"] for r in org_side) == ["stack", "stack_update"]


async def test_an_inactive_webhook_gets_nothing(hooks_ctx: Context) -> None:
    await make_stack(hooks_ctx, ORG, "net")
    with receiving() as receiver:
        await webhooks.create(hooks_ctx, ADMIN, NET, {"payloadUrl": receiver.url, "active": False})
        await enqueue(hooks_ctx, ORG, "net")
        await drain(hooks_ctx)
        async with hooks_ctx.db.read() as conn:
            count = await conn.scalar(sa.select(sa.func.count()).select_from(webhook_deliveries))
    assert count == 0 and receiver.requests == []


async def test_a_failing_receiver_is_retried_with_backoff_until_it_recovers(hooks_ctx: Context, clock: Clock) -> None:
    await make_stack(hooks_ctx, ORG, "net")
    with receiving(plan=[500, 503]) as receiver:
        await webhooks.create(
            hooks_ctx, ADMIN, NET, {"name": "h", "payloadUrl": receiver.url, "filters": ["deployment_queued"]}
        )
        await enqueue(hooks_ctx, ORG, "net")
        await drain(hooks_ctx)
        assert len(receiver.wait_for(1)) == 1
        clock.now += 59  # not due yet: the first retry waits 60 s
        await drain(hooks_ctx)
        assert len(receiver.requests) == 1
        clock.now += 1
        await drain(hooks_ctx)
        receiver.wait_for(2)
        clock.now += 120  # the second retry waits 60 * 2
        await drain(hooks_ctx)
        requests = receiver.wait_for(3)
    assert len({r.body for r in requests}) == 1  # the same body every time
    history = await webhook_delivery.history(hooks_ctx, ADMIN, NET, "h", page_size=10, before=None)
    assert [(a.attempt, a.response_code, a.status) for a in history] == [
        (3, 200, "succeeded"),
        (2, 503, "succeeded"),
        (1, 500, "succeeded"),
    ]


async def test_a_receiver_that_never_recovers_is_given_up_after_the_last_attempt(
    hooks_ctx: Context, clock: Clock
) -> None:
    await make_stack(hooks_ctx, ORG, "net")
    with receiving(then=500) as receiver:
        await webhooks.create(
            hooks_ctx, ADMIN, NET, {"name": "h", "payloadUrl": receiver.url, "filters": ["deployment_queued"]}
        )
        await enqueue(hooks_ctx, ORG, "net")
        for _ in range(5):
            await drain(hooks_ctx)
            clock.now += 3600
        receiver.wait_for(3)
        assert len(receiver.requests) == 3
    history = await webhook_delivery.history(hooks_ctx, ADMIN, NET, "h", page_size=10, before=None)
    assert [a.status for a in history] == ["failed"] * 3


async def test_a_refused_connection_is_recorded_and_retried(hooks_ctx: Context, clock: Clock) -> None:
    await make_stack(hooks_ctx, ORG, "net")
    with receiving() as gone:
        url = gone.url  # nothing listens on this port after the block
    await webhooks.create(hooks_ctx, ADMIN, NET, {"name": "h", "payloadUrl": url, "filters": ["deployment_queued"]})
    await enqueue(hooks_ctx, ORG, "net")
    await drain(hooks_ctx)
    [attempt] = await webhook_delivery.history(hooks_ctx, ADMIN, NET, "h", page_size=10, before=None)
    assert attempt.response_code == 0 and attempt.error and attempt.status == "pending"


async def test_a_dispatcher_that_dies_mid_delivery_loses_nothing(hooks_ctx: Context, clock: Clock) -> None:
    """Claimed but never recorded (the process died): the lease runs out and the delivery comes due again."""
    await make_stack(hooks_ctx, ORG, "net")
    with receiving() as receiver:
        await webhooks.create(hooks_ctx, ADMIN, NET, {"payloadUrl": receiver.url, "filters": ["deployment_queued"]})
        for _ in range(3):
            await enqueue(hooks_ctx, ORG, "net")
        await webhook_delivery.fan_out(hooks_ctx)
        claimed = await webhook_delivery.claim_due(hooks_ctx, limit=2, lease_seconds=60)
        assert len(claimed) == 2  # ... and then the process dies: nothing sent, nothing recorded
        await drain(hooks_ctx)
        assert len(receiver.wait_for(1)) == 1  # only the unclaimed one
        clock.now += 61
        await drain(hooks_ctx)
        requests = receiver.wait_for(3)
    versions = sorted(json.loads(r.body)["version"] for r in requests)
    assert len(requests) == 3 and versions == [1, 2, 3]


async def test_ping_and_redeliver_send_synchronously_and_are_recorded(hooks_ctx: Context) -> None:
    await make_stack(hooks_ctx, ORG, "net")
    with receiving(plan=[500]) as receiver:
        await webhooks.create(
            hooks_ctx, ADMIN, NET, {"name": "h", "payloadUrl": receiver.url, "filters": ["deployment_queued"]}
        )
        await enqueue(hooks_ctx, ORG, "net")
        await drain(hooks_ctx)
        [failed] = await webhook_delivery.history(hooks_ctx, ADMIN, NET, "h", page_size=10, before=None)
        assert failed.response_code == 500
        again = await webhook_delivery.redeliver(hooks_ctx, ADMIN, NET, "h", failed.id)
        pinged = await webhook_delivery.ping(hooks_ctx, ADMIN, NET, "h")
        requests = receiver.wait_for(3)
    assert again.response_code == 200 and again.body == failed.body and again.delivery_id != failed.delivery_id
    assert requests[1].body == requests[0].body
    assert (
        pinged.kind == "ping" and pinged.response_code == 200 and requests[2].headers["Pulumi-Webhook-Kind"] == "ping"
    )
    history = await webhook_delivery.history(hooks_ctx, ADMIN, NET, "h", page_size=2, before=None)
    assert [a.id for a in history] == [pinged.id, again.id]
    rest = await webhook_delivery.history(hooks_ctx, ADMIN, NET, "h", page_size=2, before=history[-1].id)
    assert [a.id for a in rest] == [failed.id]


async def test_a_target_refused_at_delivery_time_is_recorded_not_sent(hooks_ctx: Context) -> None:
    """Loopback allowed when saved, no longer allowed when sent (the check is repeated after resolution)."""
    await make_stack(hooks_ctx, ORG, "net")
    with receiving() as receiver:
        await webhooks.create(hooks_ctx, ADMIN, NET, {"name": "h", "payloadUrl": receiver.url})
        strict = HttpSender(())
        try:
            hooks_ctx.webhook_client = strict
            pinged = await webhook_delivery.ping(hooks_ctx, ADMIN, NET, "h")
        finally:
            await strict.close()
    assert pinged.response_code == 0 and "CASCADE_WEBHOOK_ALLOW_NETWORKS" in pinged.error
    assert receiver.requests == []


async def _with_settings(ctx: Context, project: str) -> None:
    """A stack that can deploy, in an org where edges fire one by one (per-edge mode, as Pulumi does)."""
    await make_stack(ctx, ORG, project)
    await org_settings.update(ctx, ADMIN, ORG, {"cascadeMode": "per-edge"})
    settings = {"sourceContext": {"git": {"repoUrl": "file:///tmp/nowhere", "branch": "main"}}}
    await deployment_settings.save(ctx, ADMIN, ORG, project, "prod", settings, replace=True)


async def _deployments_of(ctx: Context) -> list[Any]:
    async with ctx.db.read() as conn:
        query = sa.select(deployments_table).order_by(deployments_table.c.seq)
        return list((await conn.execute(query)).all())


async def test_a_deployment_edge_fires_once_per_upstream_deployment(hooks_ctx: Context) -> None:
    await _with_settings(hooks_ctx, "net")
    await _with_settings(hooks_ctx, "db")
    # No filters: every event of the upstream deployment matches, yet the edge fires once.
    await webhooks.create(
        hooks_ctx, ADMIN, NET, {"name": "deploy-db", "format": "pulumi_deployments", "payloadUrl": "db/prod"}
    )
    upstream = await enqueue(hooks_ctx, ORG, "net")
    await drain(hooks_ctx)
    await run_once(hooks_ctx)  # net's deployment
    await drain(hooks_ctx)
    rows = await _deployments_of(hooks_ctx)
    triggered = [r for r in rows if r.initiator == "webhook"]
    assert len(triggered) == 1
    assert triggered[0].triggered_by == upstream.id and triggered[0].operation == "update"
    history = await webhook_delivery.history(hooks_ctx, ADMIN, NET, "deploy-db", page_size=10, before=None)
    assert [a.response_code for a in history] == [202]
    assert json.loads(history[0].response_body)["id"] == triggered[0].id


async def test_an_edge_to_a_stack_without_settings_records_why_nothing_was_deployed(hooks_ctx: Context) -> None:
    await _with_settings(hooks_ctx, "net")
    await make_stack(hooks_ctx, ORG, "db")
    await webhooks.create(
        hooks_ctx,
        ADMIN,
        NET,
        {"name": "e", "format": "pulumi_deployments", "payloadUrl": "db/prod", "filters": ["update_succeeded"]},
    )
    await enqueue(hooks_ctx, ORG, "net")
    await run_once(hooks_ctx)
    await drain(hooks_ctx)
    [attempt] = await webhook_delivery.history(hooks_ctx, ADMIN, NET, "e", page_size=10, before=None)
    assert attempt.response_code == 400 and "no source for stack acme/db/prod" in attempt.response_body
    assert [r.initiator for r in await _deployments_of(hooks_ctx)] == ["api"]


async def test_stack_webhooks_die_with_their_stack_and_org_webhooks_hear_of_it(hooks_ctx: Context) -> None:
    await make_stack(hooks_ctx, ORG, "net")
    with receiving() as receiver:
        await webhooks.create(hooks_ctx, ADMIN, NET, {"name": "s", "payloadUrl": receiver.url})
        await webhooks.create(
            hooks_ctx, ADMIN, Scope(ORG), {"name": "o", "payloadUrl": receiver.url, "filters": ["stack_deleted"]}
        )
        await stacks.delete(hooks_ctx, ADMIN, ORG, "net", "prod")
        await drain(hooks_ctx)
        [request] = receiver.wait_for(1)
    assert json.loads(request.body)["action"] == "deleted"
