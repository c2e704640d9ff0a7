"""Webhook CRUD rules and the deployment graph: names, scopes, validation, cycle refusal (also concurrent)."""

from __future__ import annotations

import asyncio
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from stackcascade.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from stackcascade.domain.roles import Principal, Role, TokenKind
from stackcascade.domain.targets import parse_allowed_networks
from stackcascade.services import webhooks
from stackcascade.services.context import Context
from stackcascade.services.webhooks import Scope
from stackcascade.store.db import Database
from stackcascade.webhooks.sender import HttpSender
from tests.services.helpers import ADMIN, make_stack

ORG = "acme"
VIEWER = Principal(token_id="v", name="viewer", kind=TokenKind.ORG, org=ORG, role=Role.VIEWER)
MEMBER = Principal(token_id="m", name="member", kind=TokenKind.ORG, org=ORG, role=Role.MEMBER)


@pytest.fixture
def hooks_ctx(ctx: Context) -> Context:
    ctx.webhook_client = HttpSender(parse_allowed_networks("127.0.0.0/8"))
    return ctx


def stack(name: str) -> Scope:
    project, _, stack_name = name.partition("/")
    return Scope(ORG, project, stack_name)


async def edge(ctx: Context, upstream: str, downstream: str, **extra: Any) -> Any:
    body = {"format": "pulumi_deployments", "payloadUrl": downstream, **extra}
    return await webhooks.create(ctx, ADMIN, stack(upstream), body)


async def test_create_generates_a_name_defaults_the_display_name_and_never_returns_the_secret(
    hooks_ctx: Context,
) -> None:
    await make_stack(hooks_ctx, ORG, "net")
    row = await webhooks.create(
        hooks_ctx, ADMIN, stack("net/prod"), {"payloadUrl": "http://127.0.0.1:9/x", "secret": "s3cret"}
    )
    assert len(row.name) == 8 and row.display_name == row.name
    assert row.format == "raw" and row.active is True and row.filters == [] and row.groups == []
    assert row.secret is not None and "s3cret" not in row.secret  # stored encrypted
    assert hooks_ctx.secrets.open(row.secret) == "s3cret"


async def test_a_taken_name_is_a_conflict_but_the_same_name_on_another_scope_is_fine(hooks_ctx: Context) -> None:
    await make_stack(hooks_ctx, ORG, "net")
    await make_stack(hooks_ctx, ORG, "db")
    body = {"name": "notify", "payloadUrl": "http://127.0.0.1:9/x"}
    await webhooks.create(hooks_ctx, ADMIN, stack("net/prod"), body)
    with pytest.raises(Conflict, match="already has a webhook named 'notify'"):
        await webhooks.create(hooks_ctx, ADMIN, stack("net/prod"), body)
    await webhooks.create(hooks_ctx, ADMIN, stack("db/prod"), body)
    await webhooks.create(hooks_ctx, ADMIN, Scope(ORG), body)
    assert [r.name for r in await webhooks.list_webhooks(hooks_ctx, ADMIN, Scope(ORG))] == ["notify"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"organizationName": "other", "payloadUrl": "http://127.0.0.1:9/"}, "disagrees"),
        ({"stackName": "dev", "payloadUrl": "http://127.0.0.1:9/"}, "disagrees"),
        ({"payloadUrl": "ftp://127.0.0.1/"}, "http"),
        ({}, "payloadUrl is required"),
        ({"payloadUrl": "http://127.0.0.1:9/", "filters": ["update_succeeded", "drift_detected"]}, "drift_detected"),
        ({"payloadUrl": "http://127.0.0.1:9/", "filters": ["stack_created"]}, "organization"),
        ({"payloadUrl": "http://127.0.0.1:9/", "groups": ["policies"]}, "policies"),
        ({"payloadUrl": "http://127.0.0.1:9/", "format": "xml"}, "raw"),
        ({"payloadUrl": "http://127.0.0.1:9/", "active": "yes"}, "true or false"),
        ({"payloadUrl": "http://127.0.0.1:9/", "colour": "red"}, "colour"),
        ({"payloadUrl": "http://169.254.169.254/latest"}, "169.254.169.254"),
        ({"payloadUrl": "http://10.0.0.1/"}, "CASCADE_WEBHOOK_ALLOW_NETWORKS"),
        ({"format": "pulumi_deployments", "payloadUrl": "db"}, "project/stack"),
        ({"format": "pulumi_deployments", "payloadUrl": "db/missing"}, "does not exist"),
    ],
)
async def test_bad_stack_webhooks_are_refused_with_a_message_naming_the_problem(
    hooks_ctx: Context, body: dict[str, Any], message: str
) -> None:
    await make_stack(hooks_ctx, ORG, "net")
    with pytest.raises(InvalidInput, match=message):
        await webhooks.create(hooks_ctx, ADMIN, stack("net/prod"), body)
    assert await webhooks.list_webhooks(hooks_ctx, ADMIN, stack("net/prod")) == []


async def test_deployment_webhooks_are_for_stacks_only(hooks_ctx: Context) -> None:
    await make_stack(hooks_ctx, ORG, "db")
    with pytest.raises(InvalidInput, match="stack webhooks only"):
        await webhooks.create(hooks_ctx, ADMIN, Scope(ORG), {"format": "pulumi_deployments", "payloadUrl": "db/prod"})


async def test_patch_changes_only_the_fields_given(hooks_ctx: Context) -> None:
    await make_stack(hooks_ctx, ORG, "net")
    await webhooks.create(
        hooks_ctx,
        ADMIN,
        stack("net/prod"),
        {"name": "n", "payloadUrl": "http://127.0.0.1:9/a", "filters": ["update_failed"], "secret": "k"},
    )
    row = await webhooks.update(hooks_ctx, ADMIN, stack("net/prod"), "n", {"active": False, "groups": ["deployments"]})
    assert (row.active, row.groups, row.filters, row.payload_url) == (
        False,
        ["deployments"],
        ["update_failed"],
        "http://127.0.0.1:9/a",
    )
    assert row.secret is not None
    row = await webhooks.update(hooks_ctx, ADMIN, stack("net/prod"), "n", {"secret": "", "name": "renamed"})
    assert row.secret is None and row.name == "renamed"
    with pytest.raises(NotFound):
        await webhooks.get(hooks_ctx, ADMIN, stack("net/prod"), "n")


async def test_viewers_may_not_see_or_change_webhooks_and_other_orgs_see_nothing(hooks_ctx: Context) -> None:
    await make_stack(hooks_ctx, ORG, "net")
    await webhooks.create(hooks_ctx, MEMBER, stack("net/prod"), {"name": "n", "payloadUrl": "http://127.0.0.1:9/"})
    with pytest.raises(Forbidden):
        await webhooks.list_webhooks(hooks_ctx, VIEWER, stack("net/prod"))
    stranger = Principal(token_id="x", name="x", kind=TokenKind.ORG, org="other", role=Role.ADMIN)
    with pytest.raises(NotFound):
        await webhooks.get(hooks_ctx, stranger, stack("net/prod"), "n")


async def test_an_edge_that_closes_a_cycle_is_refused_with_the_cycle_spelled_out(hooks_ctx: Context) -> None:
    for project in ("network", "database", "app"):
        await make_stack(hooks_ctx, ORG, project)
    await edge(hooks_ctx, "network/prod", "app/prod")
    with pytest.raises(Conflict, match=r"app/prod -> network/prod -> app/prod"):
        await edge(hooks_ctx, "app/prod", "network/prod")
    with pytest.raises(Conflict, match=r"network/prod -> network/prod"):
        await edge(hooks_ctx, "network/prod", "network/prod")


async def test_a_long_cycle_is_refused_and_inactive_edges_do_not_count(hooks_ctx: Context) -> None:
    names = [f"s{i}" for i in range(12)]
    for name in names:
        await make_stack(hooks_ctx, ORG, name)
    for up, down in itertools.pairwise(names):
        await edge(hooks_ctx, f"{up}/prod", f"{down}/prod", name="next")
    with pytest.raises(Conflict) as caught:
        await edge(hooks_ctx, "s11/prod", "s0/prod", name="back")
    assert caught.value.message.endswith(" -> ".join([f"s{i}/prod" for i in [11, *range(12)]]))
    # Deactivating one edge of the chain breaks the cycle; reactivating it is refused again.
    await webhooks.update(hooks_ctx, ADMIN, stack("s5/prod"), "next", {"active": False})
    await edge(hooks_ctx, "s11/prod", "s0/prod", name="back")
    with pytest.raises(Conflict, match="cycle"):
        await webhooks.update(hooks_ctx, ADMIN, stack("s5/prod"), "next", {"active": True})


async def test_retargeting_an_edge_is_checked_for_cycles_too(hooks_ctx: Context) -> None:
    for project in ("a", "b", "c"):
        await make_stack(hooks_ctx, ORG, project)
    await edge(hooks_ctx, "a/prod", "b/prod")
    await edge(hooks_ctx, "b/prod", "c/prod", name="bc")
    with pytest.raises(Conflict, match="b/prod -> a/prod -> b/prod"):
        await webhooks.update(hooks_ctx, ADMIN, stack("b/prod"), "bc", {"payloadUrl": "a/prod"})


async def test_references_answer_from_the_graph(hooks_ctx: Context) -> None:
    for project in ("network", "database", "cluster", "app"):
        await make_stack(hooks_ctx, ORG, project)
    await edge(hooks_ctx, "network/prod", "database/prod")
    await edge(hooks_ctx, "network/prod", "cluster/prod")
    await edge(hooks_ctx, "database/prod", "app/prod")
    await edge(hooks_ctx, "cluster/prod", "app/prod")
    down = await webhooks.references(hooks_ctx, VIEWER, stack("network/prod"), downstream=True)
    up = await webhooks.references(hooks_ctx, VIEWER, stack("app/prod"), downstream=False)
    assert [r.project for r in down] == ["cluster", "database"]
    assert [r.project for r in up] == ["cluster", "database"]


@pytest.mark.stress
async def test_concurrent_creations_cannot_sneak_a_cycle_in(hooks_ctx: Context) -> None:
    """Pairs of writers each add one direction of a two-stack cycle at the same moment: one must lose."""
    pairs = 6
    for i in range(pairs):
        await make_stack(hooks_ctx, ORG, f"a{i}")
        await make_stack(hooks_ctx, ORG, f"b{i}")
    start = threading.Barrier(pairs * 2)

    def actor(index: int) -> str:
        pair, direction = divmod(index, 2)
        up, down = (f"a{pair}/prod", f"b{pair}/prod") if direction == 0 else (f"b{pair}/prod", f"a{pair}/prod")

        async def main() -> str:
            actor_ctx = Context(db=Database(hooks_ctx.db.url, pool_size=2), secrets=hooks_ctx.secrets)
            try:
                start.wait(timeout=30)
                await edge(actor_ctx, up, down)
                return "created"
            except Conflict:
                return "refused"
            finally:
                await actor_ctx.db.dispose()

        return asyncio.run(main())

    with ThreadPoolExecutor(pairs * 2) as pool:
        outcomes = await asyncio.to_thread(lambda: list(pool.map(actor, range(pairs * 2))))
    for pair in range(pairs):
        assert sorted(outcomes[pair * 2 : pair * 2 + 2]) == ["created", "refused"], outcomes
    from stackcascade.domain.graph import find_cycle
    from stackcascade.store import webhooks as store

    async with hooks_ctx.db.read() as conn:
        edges = [(u, d) for _, u, d in await store.edges(conn, ORG)]
    assert len(edges) == pairs and find_cycle(edges) is None


async def test_webhooks_managed_by_the_auto_deploy_declaration_are_changed_only_through_it(hooks_ctx: Context) -> None:
    from stackcascade.services import autodeploy

    for project in ("network", "app"):
        await make_stack(hooks_ctx, ORG, project)
    await autodeploy.apply(
        hooks_ctx,
        ADMIN,
        ORG,
        {"stacks": [{"project": "network", "stack": "prod", "downstreamRefs": ["app/prod"]}]},
        dry_run=False,
    )
    [managed] = await webhooks.list_webhooks(hooks_ctx, ADMIN, stack("network/prod"))
    assert managed.managed is True
    with pytest.raises(Conflict, match="Auto Deploy declaration"):
        await webhooks.update(hooks_ctx, ADMIN, stack("network/prod"), managed.name, {"active": False})
    with pytest.raises(Conflict, match="Auto Deploy declaration"):
        await webhooks.delete(hooks_ctx, ADMIN, stack("network/prod"), managed.name)


async def declare(ctx: Context, upstream: str, *downstream: str) -> None:
    from stackcascade.services import autodeploy

    project, _, stack_name = upstream.partition("/")
    entry = {"project": project, "stack": stack_name, "downstreamRefs": list(downstream)}
    await autodeploy.apply(ctx, ADMIN, ORG, {"stacks": [entry]}, dry_run=False)


async def reapply_the_declaration(ctx: Context) -> None:
    """What ``GET`` then ``PUT /api/orgs/{org}/autodeploy`` of the same body does."""
    from stackcascade.services import autodeploy

    document, _ = await autodeploy.show(ctx, ADMIN, ORG)
    await autodeploy.apply(ctx, ADMIN, ORG, document, dry_run=False)


async def test_an_active_deployment_webhook_may_not_duplicate_an_edge_the_declaration_manages(
    hooks_ctx: Context,
) -> None:
    for project in ("network", "app"):
        await make_stack(hooks_ctx, ORG, project)
    await declare(hooks_ctx, "network/prod", "app/prod")
    with pytest.raises(Conflict, match="managed by the org's Auto Deploy declaration") as refused:
        await edge(hooks_ctx, "network/prod", "app/prod", name="manual")
    assert "/api/orgs/acme/autodeploy" in str(refused.value)
    # An inactive one is no edge: it may exist, but not be switched on while the declaration manages the edge.
    await edge(hooks_ctx, "network/prod", "app/prod", name="manual", active=False)
    with pytest.raises(Conflict, match="managed by the org's Auto Deploy declaration"):
        await webhooks.update(hooks_ctx, ADMIN, stack("network/prod"), "manual", {"active": True})
    await reapply_the_declaration(hooks_ctx)  # still the org's own declaration, still accepted
    assert [(r.name, r.active) for r in await webhooks.list_webhooks(hooks_ctx, ADMIN, stack("network/prod"))] == [
        ("autodeploy-app-prod", True),
        ("manual", False),
    ]


async def test_retargeting_an_active_deployment_webhook_onto_a_managed_edge_is_refused(hooks_ctx: Context) -> None:
    for project in ("network", "app", "cache"):
        await make_stack(hooks_ctx, ORG, project)
    await declare(hooks_ctx, "network/prod", "app/prod")
    await edge(hooks_ctx, "network/prod", "cache/prod", name="manual")
    with pytest.raises(Conflict, match="managed by the org's Auto Deploy declaration"):
        await webhooks.update(hooks_ctx, ADMIN, stack("network/prod"), "manual", {"payloadUrl": "app/prod"})
    await reapply_the_declaration(hooks_ctx)


async def test_a_second_active_deployment_webhook_between_the_same_stacks_is_refused(hooks_ctx: Context) -> None:
    for project in ("network", "app"):
        await make_stack(hooks_ctx, ORG, project)
    await edge(hooks_ctx, "network/prod", "app/prod", name="first", filters=["update_succeeded"])
    with pytest.raises(Conflict, match="already has an active deployment webhook 'first' to app/prod"):
        await edge(hooks_ctx, "network/prod", "app/prod", name="second", filters=["refresh_succeeded"])
    await edge(hooks_ctx, "network/prod", "app/prod", name="second", active=False)
    with pytest.raises(Conflict, match="already has an active deployment webhook 'first' to app/prod"):
        await webhooks.update(hooks_ctx, ADMIN, stack("network/prod"), "second", {"active": True})
    # The webhook that carries the edge may change, and once it is off the other may carry the edge.
    await webhooks.update(hooks_ctx, ADMIN, stack("network/prod"), "first", {"filters": ["update_failed"]})
    await webhooks.update(hooks_ctx, ADMIN, stack("network/prod"), "first", {"active": False})
    await webhooks.update(hooks_ctx, ADMIN, stack("network/prod"), "second", {"active": True})
    # HTTP webhooks are not edges: any number may post to the same URL.
    for name in ("a", "b"):
        await webhooks.create(
            hooks_ctx, ADMIN, stack("network/prod"), {"name": name, "payloadUrl": "http://127.0.0.1:9/x"}
        )
