"""Queueing a deployment inside a caller's transaction: shared by the API, webhooks and cascades."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from stackcascade.domain import settings as doc
from stackcascade.domain.deployments import Operation, Status
from stackcascade.domain.errors import InvalidInput, NotFound
from stackcascade.store import deployments as rows
from stackcascade.store import events
from stackcascade.store import stacks as stack_rows

# In an event's payload: the deployment (or external event) began while its org deployed per edge, so
# the event fires the stack's edges whatever the org's mode is when it is dispatched.
FIRES_EDGES = "firesEdges"


def ref(org: str, project: str, stack: str) -> str:
    return f"{org}/{project}/{stack}"


def event_payload(row: Any, org: str, project: str, stack: str, **extra: Any) -> dict[str, Any]:
    payload = {
        "deploymentId": row.id,
        "version": row.version,
        "operation": row.operation,
        "status": row.status,
        "initiator": row.initiator,
        "requestedBy": row.requested_by,
        "stack": {"organization": org, "projectName": project, "stackName": stack},
    }
    if row.reason:
        payload["reason"] = row.reason
    if row.cascade_id:
        payload["cascadeId"] = row.cascade_id
    if getattr(row, "fires_edges", False):
        payload[FIRES_EDGES] = True  # read by the dispatcher only; no webhook body carries it
    payload.update(extra)
    return payload


def settings_for(stack_row: Any, request_doc: dict[str, Any], *, inherit: bool) -> dict[str, Any]:
    """The settings a deployment of ``stack_row`` runs with: its saved ones (``inherit``) patched by the
    request's. ``InvalidInput`` when they name no source, or when the request sends back a ciphertext
    the stack's saved settings do not hold (one from another stack would be decrypted into this one)."""
    stored = dict(stack_row.settings_document or {})
    stack_ref = ref(stack_row.org, stack_row.project, stack_row.name)
    request_doc = doc.bind_ciphertexts(request_doc, stored, stack_ref)
    effective = doc.merge_patch(stored if inherit else {}, request_doc)
    if not doc.git_source(effective).get("repoUrl"):
        hint = "save deployment settings with sourceContext.git.repoUrl" if inherit else "inheritSettings is false"
        raise InvalidInput(f"no source for stack {stack_ref}: {hint}, or give sourceContext in the request")
    return effective


async def queue_in(
    conn: Any,
    stack_row: Any,
    operation: Operation,
    request_doc: dict[str, Any],
    *,
    inherit: bool,
    initiator: str,
    requested_by: str,
    now: float,
    triggered_by: str | None = None,
    cascade_id: str | None = None,
    fires_edges: bool = False,
) -> Any:
    """Queue a deployment of ``stack_row`` (with ``settings_document``) inside the caller's transaction.

    The caller wakes the runners (``ctx.work.notify()``) after its commit. A refusal (``InvalidInput``:
    no source) comes before any write, so a caller may go on with its transaction after one.
    """
    effective = settings_for(stack_row, request_doc, inherit=inherit)
    [row] = await queue_all_in(
        conn,
        [(stack_row, effective)],
        operation,
        initiator=initiator,
        requested_by=requested_by,
        now=now,
        triggered_by=triggered_by,
        cascade_id=cascade_id,
        fires_edges=fires_edges,
    )
    return row


async def queue_all_in(
    conn: Any,
    stacks: list[tuple[Any, dict[str, Any]]],
    operation: Operation,
    *,
    initiator: str,
    requested_by: str,
    now: float,
    triggered_by: str | None = None,
    cascade_id: str | None = None,
    fires_edges: bool = False,
    skip_deleted: bool = False,
) -> list[Any]:
    """Queue a deployment of each stack with its settings (``settings_for``), in a few statements for
    them all (a cascade's finish can make a whole layer ready): the deployments, in the same order.

    ``fires_edges``: the org deploys per edge (or an edge fired it), see ``FIRES_EDGES``.
    A stack deleted since the caller read it (its deletion committed while this transaction waited for
    the row) is ``NotFound``, before anything is written; with ``skip_deleted`` it is left out instead,
    and the deployments returned are those of the stacks that are still there."""
    versions = await stack_rows.next_versions(conn, [stack_row.id for stack_row, _ in stacks])
    gone = [stack_row for stack_row, _ in stacks if stack_row.id not in versions]
    if gone and not skip_deleted:
        raise NotFound(f"stack {ref(gone[0].org, gone[0].project, gone[0].name)} not found: it was deleted")
    inserted, queued, queued_events = [], [], []
    for stack_row, effective in stacks:
        if stack_row.id not in versions:
            continue
        org, project, stack = stack_row.org, stack_row.project, stack_row.name
        deployment_id = str(uuid.uuid4())
        version = versions[stack_row.id]
        inserted.append(
            {
                "id": deployment_id,
                "stack_id": stack_row.id,
                "org": org,
                "version": version,
                "operation": operation.value,
                "status": Status.NOT_STARTED.value,
                "initiator": initiator,
                "requested_by": requested_by,
                "settings": effective,
                "skip_intermediate": bool(doc.option(effective, "skipIntermediateDeployments")),
                "triggered_by": triggered_by,
                "cascade_id": cascade_id,
                "fires_edges": fires_edges,
                "created_at": now,
                "modified_at": now,
            }
        )
        row = SimpleNamespace(  # what is inserted, without reading it back
            id=deployment_id,
            stack_id=stack_row.id,
            org=org,
            project=project,
            stack=stack,
            version=version,
            operation=operation.value,
            status=Status.NOT_STARTED.value,
            initiator=initiator,
            requested_by=requested_by,
            reason=None,
            cascade_id=cascade_id,
            fires_edges=fires_edges,
        )
        queued.append(row)
        queued_events.append(
            {
                "org": org,
                "kind": "deployment_queued",
                "payload": event_payload(row, org, project, stack),
                "created_at": now,
                "stack_id": stack_row.id,
                "deployment_id": deployment_id,
            }
        )
    await rows.insert_many(conn, inserted)
    await events.append_all(conn, queued_events)
    return queued
