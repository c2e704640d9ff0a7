"""Applying Auto Deploy declarations: managed webhooks only, atomically, refused as a whole (both databases)."""

from __future__ import annotations

from typing import Any

import pytest

from stackcascade.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from stackcascade.domain.roles import Principal, Role, TokenKind
from stackcascade.services import autodeploy, cascades, webhooks
from stackcascade.services.context import Context
from stackcascade.services.webhooks import Scope
from stackcascade.store import webhooks as rows
from stackcascade.store import webhooks as store_webhooks
from tests.services.helpers import ADMIN, make_stack

ORG = "acme"
VIEWER = Principal(token_id="v", name="viewer", kind=TokenKind.ORG, org=ORG, role=Role.VIEWER)
MEMBER = Principal(token_id="m", name="member", kind=TokenKind.ORG, org=ORG, role=Role.MEMBER)
STRANGER = Principal(token_id="s", name="stranger", kind=TokenKind.ORG, org="other", role=Role.ADMIN)


async def apply(ctx: Context, principal: Principal, org: str, document: object, **options: Any) -> dict[str, Any]:
    """``autodeploy.apply``'s answer without the basis (its ETag), which the API tests check."""
    result, _ = await autodeploy.apply(ctx, principal, org, document, **options)
    return result


async def show(ctx: Context, principal: Principal, org: str) -> dict[str, Any]:
    document, _ = await autodeploy.show(ctx, principal, org)
    return document


DIAMOND = {
    "stacks": [
        {"project": "network", "stack": "prod", "downstreamRefs": ["database/prod", "cluster/prod"]},
        {"project": "database", "stack": "prod", "downstreamRefs": ["app/prod"]},
        {"project": "cluster", "stack": "prod", "downstreamRefs": ["app/prod"]},
        {"project": "app", "stack": "prod", "downstreamRefs": []},
    ]
}


@pytest.fixture
async def diamond(ctx: Context) -> Context:
    for project in ("network", "database", "cluster", "app", "monitoring"):
        await make_stack(ctx, ORG, project)
    return ctx


async def state(ctx: Context) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every deployment webhook and every stack gate of the org: to prove that nothing changed."""
    async with ctx.db.read() as conn:
        hooks = [tuple(row) for row in await rows.deployment_webhooks(conn, ORG)]
        gates = [(row.ref, row.require_approval) for row in await rows.org_stacks(conn, ORG)]
    return hooks, gates


async def managed(ctx: Context) -> dict[tuple[str, str], Any]:
    async with ctx.db.read() as conn:
        return {(r.upstream, r.downstream): r for r in await rows.deployment_webhooks(conn, ORG) if r.managed}


def keys(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(entry["upstream"], entry["downstream"]) for entry in entries]


async def unmanaged_edge(ctx: Context, upstream: str, downstream: str, **extra: Any) -> Any:
    project, _, stack = upstream.partition("/")
    body = {"format": "pulumi_deployments", "payloadUrl": downstream, "name": f"manual-{downstream.replace('/', '-')}"}
    return await webhooks.create(ctx, ADMIN, Scope(ORG, project, stack), body | extra)


async def test_apply_creates_one_managed_webhook_per_edge_and_show_gives_the_declaration_back(
    diamond: Context,
) -> None:
    result = await apply(diamond, MEMBER, ORG, DIAMOND, dry_run=False)
    assert result["applied"] is True
    assert keys(result["diff"]["create"]) == [
        ("cluster/prod", "app/prod"),
        ("database/prod", "app/prod"),
        ("network/prod", "cluster/prod"),
        ("network/prod", "database/prod"),
    ]
    assert result["diff"]["update"] == result["diff"]["delete"] == result["diff"]["unchanged"] == []
    hooks = await managed(diamond)
    assert set(hooks) == set(keys(result["diff"]["create"]))
    hook = hooks[("network/prod", "database/prod")]
    assert hook.name == "autodeploy-database-prod" and hook.active is True
    assert (hook.filters, hook.groups, hook.trigger_on, hook.require_approval) == (
        ["update_succeeded"],
        [],
        "always",
        False,
    )
    assert result["diff"]["create"][3]["webhook"] == "autodeploy-database-prod"
    # the edges are the graph's, like any deployment webhook's
    listed = await webhooks.list_webhooks(diamond, ADMIN, Scope(ORG, "network", "prod"))
    assert sorted((w.name, w.format, w.payload_url) for w in listed) == [
        ("autodeploy-cluster-prod", "pulumi_deployments", "cluster/prod"),
        ("autodeploy-database-prod", "pulumi_deployments", "database/prod"),
    ]
    document = await show(diamond, VIEWER, ORG)
    assert document == {
        "stacks": [
            {"project": "app", "stack": "prod", "requireApproval": False, "downstreamRefs": []},
            {"project": "cluster", "stack": "prod", "requireApproval": False, "downstreamRefs": ["app/prod"]},
            {"project": "database", "stack": "prod", "requireApproval": False, "downstreamRefs": ["app/prod"]},
            {
                "project": "network",
                "stack": "prod",
                "requireApproval": False,
                "downstreamRefs": ["cluster/prod", "database/prod"],
            },
        ]
    }
    again = await apply(diamond, MEMBER, ORG, document, dry_run=False)
    assert len(again["diff"]["unchanged"]) == 4 and not any(
        again["diff"][k] for k in ("create", "update", "delete", "gates")
    )


async def test_reapplying_or_reordering_is_a_no_op(diamond: Context) -> None:
    await apply(diamond, ADMIN, ORG, DIAMOND, dry_run=False)
    before = await state(diamond)
    reordered = {
        "stacks": [
            {"project": "app", "stack": "prod", "downstreamRefs": []},
            {"project": "cluster", "stack": "prod", "downstreamRefs": ["app/prod"]},
            {"project": "network", "stack": "prod", "downstreamRefs": ["cluster/prod", "database/prod"]},
            {"project": "database", "stack": "prod", "downstreamRefs": ["app/prod"]},
        ]
    }
    for document in (DIAMOND, reordered):
        result = await apply(diamond, ADMIN, ORG, document, dry_run=False)
        assert result["diff"]["create"] == result["diff"]["update"] == result["diff"]["delete"] == []
        assert len(result["diff"]["unchanged"]) == 4
    assert await state(diamond) == before  # not even modified_at moved


async def test_changing_an_edge_option_updates_its_webhook_in_place(diamond: Context) -> None:
    await apply(diamond, ADMIN, ORG, DIAMOND, dry_run=False)
    before = await managed(diamond)
    changed = {
        "stacks": [
            {
                "project": "network",
                "stack": "prod",
                "triggerOn": "outputs-changed",
                "downstreamRefs": ["database/prod", {"ref": "cluster/prod", "requireApproval": True}],
            },
            *DIAMOND["stacks"][1:],
        ]
    }
    result = await apply(diamond, ADMIN, ORG, changed, dry_run=False)
    update = {(u["upstream"], u["downstream"]): u for u in result["diff"]["update"]}
    assert set(update) == {("network/prod", "cluster/prod"), ("network/prod", "database/prod")}
    assert update[("network/prod", "cluster/prod")]["changes"] == {
        "triggerOn": {"from": "always", "to": "outputs-changed"},
        "requireApproval": {"from": False, "to": True},
    }
    assert result["diff"]["create"] == result["diff"]["delete"] == []
    after = await managed(diamond)
    for key in update:
        assert after[key].id == before[key].id and after[key].name == before[key].name
        assert after[key].trigger_on == "outputs-changed"
    assert after[("network/prod", "cluster/prod")].require_approval is True
    assert after[("database/prod", "app/prod")].modified_at == before[("database/prod", "app/prod")].modified_at
    shown = await show(diamond, ADMIN, ORG)
    assert shown["stacks"][3]["triggerOn"] == "outputs-changed"
    assert shown["stacks"][3]["downstreamRefs"] == [{"ref": "cluster/prod", "requireApproval": True}, "database/prod"]


async def test_removing_an_entry_deletes_only_managed_webhooks(diamond: Context) -> None:
    await apply(diamond, ADMIN, ORG, DIAMOND, dry_run=False)
    manual = await unmanaged_edge(diamond, "app/prod", "monitoring/prod")
    smaller = {"stacks": [entry for entry in DIAMOND["stacks"] if entry["project"] != "network"]}
    result = await apply(diamond, ADMIN, ORG, smaller, dry_run=False)
    assert keys(result["diff"]["delete"]) == [("network/prod", "cluster/prod"), ("network/prod", "database/prod")]
    assert set(await managed(diamond)) == {("cluster/prod", "app/prod"), ("database/prod", "app/prod")}
    still = await webhooks.get(diamond, ADMIN, Scope(ORG, "app", "prod"), manual.name)
    assert still.id == manual.id and still.managed is False
    # an empty declaration deletes every managed webhook, and still no other
    await apply(diamond, ADMIN, ORG, {"stacks": []}, dry_run=False)
    assert await managed(diamond) == {}
    assert [w.name for w in await webhooks.list_webhooks(diamond, ADMIN, Scope(ORG, "app", "prod"))] == [manual.name]
    assert await show(diamond, ADMIN, ORG) == {"stacks": []}


async def test_unknown_stacks_refuse_the_whole_declaration(diamond: Context) -> None:
    await apply(diamond, ADMIN, ORG, DIAMOND, dry_run=False)
    before = await state(diamond)
    document = {
        "stacks": [
            {"project": "network", "stack": "prod", "requireApproval": True, "downstreamRefs": ["ghost/prod"]},
            {"project": "phantom", "stack": "dev", "downstreamRefs": []},
        ]
    }
    for dry_run in (True, False):
        with pytest.raises(InvalidInput) as raised:
            await apply(diamond, ADMIN, ORG, document, dry_run=dry_run)
        assert "acme/ghost/prod, acme/phantom/dev" in raised.value.message
        assert "nothing was changed" in raised.value.message
    assert await state(diamond) == before


async def test_a_cycle_with_an_unmanaged_edge_refuses_the_whole_declaration(diamond: Context) -> None:
    await unmanaged_edge(diamond, "app/prod", "network/prod")
    before = await state(diamond)
    for dry_run in (True, False):
        with pytest.raises(Conflict) as raised:
            await apply(diamond, ADMIN, ORG, DIAMOND, dry_run=dry_run)
        message = raised.value.message
        assert "would close a cycle in the deployment graph of acme" in message
        assert "app/prod -> network/prod" in message and "manual-network-prod" in message
        assert "nothing was changed" in message
    assert await state(diamond) == before
    assert await managed(diamond) == {}


async def test_a_cycle_inside_the_declaration_is_refused(diamond: Context) -> None:
    document = {
        "stacks": [
            {"project": "network", "stack": "prod", "downstreamRefs": ["database/prod"]},
            {"project": "database", "stack": "prod", "downstreamRefs": ["network/prod"]},
        ]
    }
    with pytest.raises(
        Conflict, match=r"network/prod -> database/prod -> network/prod|database/prod -> network/prod -> database/prod"
    ):
        await apply(diamond, ADMIN, ORG, document, dry_run=False)
    assert await managed(diamond) == {}


async def test_an_edge_an_unmanaged_webhook_carries_is_not_declared_again(diamond: Context) -> None:
    await unmanaged_edge(diamond, "network/prod", "database/prod")
    before = await state(diamond)
    with pytest.raises(Conflict, match="unmanaged webhooks already carry: network/prod -> database/prod"):
        await apply(diamond, ADMIN, ORG, DIAMOND, dry_run=False)
    assert await state(diamond) == before
    # an inactive one is no edge: the declaration may add the edge (under another name)
    await webhooks.update(diamond, ADMIN, Scope(ORG, "network", "prod"), "manual-database-prod", {"active": False})
    await unmanaged_edge(diamond, "network/prod", "monitoring/prod", name="autodeploy-cluster-prod")  # a name taken
    result = await apply(diamond, ADMIN, ORG, DIAMOND, dry_run=False)
    names = {(c["upstream"], c["downstream"]): c["webhook"] for c in result["diff"]["create"]}
    assert names[("network/prod", "database/prod")] == "autodeploy-database-prod"
    assert names[("network/prod", "cluster/prod")].startswith("autodeploy-cluster-prod-")
    hooks = await managed(diamond)
    assert hooks[("network/prod", "cluster/prod")].name == names[("network/prod", "cluster/prod")]


async def test_a_dry_run_changes_nothing_and_shows_the_same_diff(diamond: Context) -> None:
    await apply(diamond, ADMIN, ORG, {"stacks": DIAMOND["stacks"][:2]}, dry_run=False)
    before = await state(diamond)
    changed = {
        "stacks": [
            {"project": "network", "stack": "prod", "downstreamRefs": [{"ref": "database/prod", "triggerOn": "outputs-changed"}]},
            {"project": "cluster", "stack": "prod", "requireApproval": True, "downstreamRefs": ["app/prod"]},
        ]
    }  # fmt: skip
    preview = await apply(diamond, VIEWER, ORG, changed, dry_run=True)
    assert preview["applied"] is False
    assert await state(diamond) == before
    assert keys(preview["diff"]["create"]) == [("cluster/prod", "app/prod")]
    assert keys(preview["diff"]["update"]) == [("network/prod", "database/prod")]
    assert keys(preview["diff"]["delete"]) == [("database/prod", "app/prod"), ("network/prod", "cluster/prod")]
    assert preview["diff"]["gates"] == [{"stack": "cluster/prod", "from": False, "to": True}]
    applied = await apply(diamond, MEMBER, ORG, changed, dry_run=False)
    assert applied["applied"] is True and applied["diff"] == preview["diff"]
    assert await cascades.stack_gate(diamond, ADMIN, ORG, "cluster", "prod") is True


async def test_stack_gates_are_set_by_entries_that_give_them_and_left_alone_otherwise(diamond: Context) -> None:
    await cascades.set_stack_gate(diamond, ADMIN, ORG, "app", "prod", True)
    await cascades.set_stack_gate(diamond, ADMIN, ORG, "monitoring", "prod", True)
    document = {
        "stacks": [
            {"project": "network", "stack": "prod", "requireApproval": True, "downstreamRefs": ["database/prod"]},
            {"project": "app", "stack": "prod", "downstreamRefs": []},  # no requireApproval: its gate stays
            {"project": "monitoring", "stack": "prod", "requireApproval": False, "downstreamRefs": []},
        ]
    }
    result = await apply(diamond, ADMIN, ORG, document, dry_run=False)
    assert result["diff"]["gates"] == [
        {"stack": "monitoring/prod", "from": True, "to": False},
        {"stack": "network/prod", "from": False, "to": True},
    ]
    gates = {
        project: await cascades.stack_gate(diamond, ADMIN, ORG, project, "prod")
        for project in ("network", "app", "monitoring", "database")
    }
    assert gates == {"network": True, "app": True, "monitoring": False, "database": False}
    shown = await show(diamond, ADMIN, ORG)
    assert [(s["project"], s["requireApproval"]) for s in shown["stacks"]] == [
        ("app", True),
        ("database", False),
        ("network", True),
    ]
    again = await apply(diamond, ADMIN, ORG, shown, dry_run=True)
    assert again["diff"]["gates"] == [] and again["diff"]["create"] == again["diff"]["delete"] == []


async def test_a_managed_webhook_that_drifted_is_switched_on_again(diamond: Context) -> None:
    """The webhook API refuses to change managed webhooks; drift written straight to the database is repaired."""
    await apply(diamond, ADMIN, ORG, DIAMOND, dry_run=False)
    drifted = (await managed(diamond))[("network/prod", "database/prod")]
    async with diamond.db.write() as conn:
        await store_webhooks.update(conn, drifted.id, active=False)
    result = await apply(diamond, ADMIN, ORG, DIAMOND, dry_run=False)
    assert [(u["downstream"], u["changes"]) for u in result["diff"]["update"]] == [
        ("database/prod", {"active": {"from": False, "to": True}})
    ]
    assert (await managed(diamond))[("network/prod", "database/prod")].active is True


async def test_roles_and_visibility(diamond: Context) -> None:
    with pytest.raises(Forbidden, match="needs member"):
        await apply(diamond, VIEWER, ORG, DIAMOND, dry_run=False)
    assert (await apply(diamond, VIEWER, ORG, DIAMOND, dry_run=True))["applied"] is False
    for call in (
        autodeploy.show(diamond, STRANGER, ORG),
        autodeploy.apply(diamond, STRANGER, ORG, DIAMOND, dry_run=True),
    ):
        with pytest.raises(NotFound):
            await call
    assert await managed(diamond) == {}


async def test_an_invalid_document_is_refused_before_anything_is_read(diamond: Context) -> None:
    with pytest.raises(InvalidInput, match=r"stacks\[1\] \(database/prod\): triggerOn must be one of"):
        await apply(
            diamond,
            ADMIN,
            ORG,
            {"stacks": [DIAMOND["stacks"][0], {"project": "database", "stack": "prod", "triggerOn": "never"}]},
            dry_run=False,
        )
    assert await managed(diamond) == {}
