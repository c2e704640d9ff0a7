"""External update events: what happened to a stack outside stackcascade (``pulumi up`` in someone's CI).

Recorded like a deployment's finish: outputs stored on a successful update, the same events emitted,
and a cascade started from the stack, all in one transaction.
"""

from __future__ import annotations

from typing import Any

from stackcascade.domain.cascade import Plan
from stackcascade.domain.deployments import Operation, Status
from stackcascade.domain.errors import InvalidInput, NotFound
from stackcascade.domain.roles import Principal, Role
from stackcascade.services import cascades
from stackcascade.services.context import Context
from stackcascade.services.queueing import FIRES_EDGES
from stackcascade.services.runs import open_outputs, seal_outputs
from stackcascade.store import cascades as cascade_rows
from stackcascade.store import events, runs
from stackcascade.store import stacks as stack_rows

KINDS = {
    f"{operation.value}_{result}": (operation, Status.SUCCEEDED if result == "succeeded" else Status.FAILED)
    for operation in Operation
    for result in ("succeeded", "failed")
}
MAX_OUTPUTS = 1000


def _outputs(body: dict[str, Any]) -> tuple[dict[str, Any] | None, set[str]]:
    """``outputs`` as the command runtime writes them: ``{"secret": v}`` marks a secret value."""
    raw = body.get("outputs")
    if raw is None:
        return None, set()
    if not isinstance(raw, dict) or len(raw) > MAX_OUTPUTS:
        raise InvalidInput(f"outputs must be a JSON object of at most {MAX_OUTPUTS} names")
    values: dict[str, Any] = {}
    secret: set[str] = set()
    for name, value in raw.items():
        if isinstance(value, dict) and set(value) == {"secret"}:
            values[name] = value["secret"]
            secret.add(name)
        else:
            values[name] = value
    return values, secret


def _heard(plan: Plan, kind: str) -> bool:
    """Whether an edge out of the root listens to ``kind``, the one event an external update emits.

    The plan holds every edge out of the root that could fire for the operation (either result), so one
    that listens only to the other result, or to ``deployment_*`` events, is in it but starts nothing
    (design section 4: only an event matching an outgoing deployment edge starts a cascade).
    """
    return any(edge.upstream == plan.root and edge.listens_to(kind) for edge in plan.edges)


def _resource_changes(body: dict[str, Any]) -> dict[str, int] | None:
    raw = body.get("resourcechanges")
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in raw.items()
    ):
        raise InvalidInput('resourceChanges must map operation names to counts, e.g. {"create": 2, "same": 5}')
    return dict(raw)


async def record(
    ctx: Context, principal: Principal, org: str, project: str, stack: str, body: dict[str, Any]
) -> dict[str, Any]:
    principal.require(org, Role.MEMBER, f"stack {org}/{project}/{stack}")
    # Keys match case-insensitively and a null means "not given", as everywhere in the API (README).
    body = {str(key).lower(): value for key, value in body.items() if value is not None}
    kind = body.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(sorted(KINDS))}, got {kind!r}")
    operation, status = KINDS[kind]
    outputs, secret_keys = _outputs(body)
    if outputs is not None and kind != "update_succeeded":
        raise InvalidInput("outputs are recorded only with kind update_succeeded")
    changes = _resource_changes(body)
    now = ctx.now()
    async with ctx.db.write() as conn:
        row = await stack_rows.find(conn, org, project, stack)
        if row is None:
            raise NotFound(f"stack {org}/{project}/{stack} not found")
        changed = False
        if outputs is not None:
            sealed = seal_outputs(ctx, outputs, secret_keys)
            changed = open_outputs(ctx, row.outputs, True) != open_outputs(ctx, sealed, True)
            await runs.set_stack_outputs(conn, row.id, sealed, now)
        planned = await cascades.plan_for(conn, org, f"{project}/{stack}", operation, row.id, graphs=ctx.graphs)
        started = planned if isinstance(planned, cascades.Started) and _heard(planned.plan, kind) else None
        payload: dict[str, Any] = {
            "stack": {"organization": org, "projectName": project, "stackName": stack},
            "operation": operation.value,
            "status": status.value,
            "initiator": "external",
            "requestedBy": principal.name,
        }
        if changes:
            payload["resourceChanges"] = changes
        if started is not None:
            payload["cascadeId"] = started.id
        elif planned is cascades.PER_EDGE:
            payload[FIRES_EDGES] = True
        await events.append(
            conn, org=org, kind=str(kind), payload=payload, now=now, stack_id=row.id, deployment_id=None
        )
        if started is not None:
            await cascades.record_in(conn, started, org, None, now, root_events=(str(kind),), root_status=status)
            await cascade_rows.set_root_outputs_changed(conn, started.id, changed)
            queued = await cascades.advance_in(conn, started.id, now)
        else:
            queued = False
    if queued:
        ctx.work.notify()
    return {"kind": kind, "cascadeId": started.id if started else None, "outputsChanged": changed}
