"""Rows to the contract's JSON shapes (Pulumi Cloud names) plus our documented extensions."""

from __future__ import annotations

from typing import Any

from stackcascade.domain import settings as doc
from stackcascade.domain.timestamps import rfc3339
from stackcascade.services.cascade_edges import EdgeState
from stackcascade.services.context import Context
from stackcascade.services.plan_documents import edge_document


def iso(ts: float | None) -> str | None:
    return None if ts is None else rfc3339(ts)


def user(name: str) -> dict[str, str]:
    return {"name": name, "githubLogin": name, "avatarUrl": ""}


def stack(row: Any, latest_deployment: str | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "orgName": row.org,
        "projectName": row.project,
        "stackName": row.name,
        "activeUpdate": latest_deployment or "",
        "tags": row.tags or {},
        "version": int(row.last_version),
        "created": iso(row.created_at),
    }


def stack_summary(ctx: Context, row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "orgName": row.org,
        "projectName": row.project,
        "stackName": row.name,
        "links": {"self": ctx.console_url(row.org, row.project, row.name)},
    }


def settings(document: dict[str, Any], version: int) -> dict[str, Any]:
    return {"version": version, "source": "api", **doc.public_view(document)}


def _configuration(settings_doc: dict[str, Any]) -> dict[str, Any]:
    # Sorted by name: PostgreSQL (JSONB) does not keep key order and SQLite does, so the stored order
    # would differ by engine.
    variables = [
        {"name": name, "secret": True} if value is None else {"name": name, "secret": False, "value": value}
        for name, value in sorted(doc.environment(settings_doc))
    ]
    configuration: dict[str, Any] = {"environmentVariables": variables}
    git = doc.git_source(settings_doc)
    if git.get("repoUrl"):
        configuration["source"] = {
            "git": {
                key: doc.redact_repo_url(git[src]) if src == "repoUrl" else git[src]
                for key, src in (
                    ("repoURL", "repoUrl"),
                    ("branch", "branch"),
                    ("commit", "commit"),
                    ("repoDir", "repoDir"),
                )
                if git.get(src)
            }
        }
    return configuration


def _step(step: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": step.name, "status": step.status}
    if step.started_at is not None:
        out["started"] = iso(step.started_at)
    if step.finished_at is not None:
        out["lastUpdated"] = iso(step.finished_at)
    return out


def _job(row: Any, steps: list[Any] | None = None) -> dict[str, Any]:
    job: dict[str, Any] = {"status": row.status, "steps": [_step(s) for s in steps or []]}
    if row.started_at is not None:
        job["started"] = iso(row.started_at)
    job["lastUpdated"] = iso(row.modified_at)
    return job


def _common(ctx: Context, row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "created": iso(row.created_at),
        "modified": iso(row.modified_at),
        "status": row.status,
        "version": int(row.version),
        "requestedBy": user(row.requested_by),
        "pulumiOperation": row.operation,
        "initiator": row.initiator,
        "jobs": [_job(row)],
        "orgName": row.org,
        "projectName": row.project,
        "stackName": row.stack,
        "reason": row.reason,
        "cascadeId": row.cascade_id,
        "triggeredBy": row.triggered_by,
        "started": iso(row.started_at),
        "finished": iso(row.finished_at),
        "consoleUrl": deployment_url(ctx, row),
    }


def deployment_url(ctx: Context, row: Any) -> str:
    return ctx.console_url(row.org, row.project, row.stack, "deployments", row.id)


def deployment(ctx: Context, row: Any, latest_version: int, steps: list[Any] | None = None) -> dict[str, Any]:
    body = {**_common(ctx, row), "latestVersion": latest_version, "configuration": _configuration(row.settings)}
    body["jobs"] = [_job(row, steps)]
    body["resourceChanges"] = row.resource_changes
    return body


def deployment_snapshot(ctx: Context, row: Any) -> dict[str, Any]:
    return {**_common(ctx, row), "updates": [], "paused": bool(row.stack_paused)}


def deployment_list(ctx: Context, rows: list[Any], total: int, page_size: int) -> dict[str, Any]:
    return {"deployments": [deployment_snapshot(ctx, r) for r in rows], "itemsPerPage": page_size, "total": total}


def webhook(row: Any) -> dict[str, Any]:
    """The contract's WebhookResponse: the secret is never returned, only whether there is one."""
    shape: dict[str, Any] = {"organizationName": row.org}
    if row.stack_id is not None:
        shape |= {"projectName": row.project, "stackName": row.stack}
    return (
        shape
        | {
            "name": row.name,
            "displayName": row.display_name,
            "payloadUrl": row.payload_url,
            "active": row.active,
            "format": row.format,
            "filters": list(row.filters),
            "groups": list(row.groups),
            "hasSecret": row.secret is not None,
            "secretCiphertext": "",
        }
        | (
            {"triggerOn": row.trigger_on, "requireApproval": row.require_approval, "managed": row.managed}
            if row.format == "pulumi_deployments"
            else {}
        )
    )


def _header_lines(headers: dict[str, str]) -> str:
    return "\n".join(f"{name}: {value}" for name, value in headers.items())


def webhook_delivery(row: Any) -> dict[str, Any]:
    """One attempt in the contract's WebhookDelivery shape, plus documented extensions."""
    return {
        "id": row.id,
        "kind": row.kind,
        "payload": row.body,
        "timestamp": int(row.sent_at),
        "duration": row.duration_ms,
        "requestUrl": row.request_url,
        "requestHeaders": _header_lines(row.request_headers),
        "responseCode": row.response_code,
        "responseHeaders": _header_lines(row.response_headers),
        "responseBody": row.response_body,
        "deliveryId": row.delivery_id,
        "event": row.event,
        "attempt": row.attempt,
        "status": "succeeded" if 200 <= row.response_code < 300 else "failed",
        "deliveryStatus": row.status,
        "error": row.error,
        "nextAttemptAt": iso(row.next_attempt_at) if row.status == "pending" else None,
    }


def stack_reference(row: Any) -> dict[str, Any]:
    return {"organization": row.org, "routingProject": row.project, "name": row.name, "version": row.last_version}


def cascade_summary(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "organization": row.org,
        "root": row.root,
        "rootDeploymentId": row.root_deployment_id,
        "operation": row.operation,
        "status": row.status,
        "created": iso(row.created_at),
        "finished": iso(row.finished_at),
    }


def cascade(row: Any, members: list[Any], edges: list[EdgeState]) -> dict[str, Any]:
    """A cascade with its members in waves: what ran, what waits, what was skipped and why; which edges
    fired."""
    waves = row.plan["waves"]
    return cascade_summary(row) | {
        "waves": waves,
        "edges": [edge_document(state.edge) | {"fired": state.fired, "reason": state.why} for state in edges],
        "members": [
            {
                "stack": m.stack,
                "wave": m.wave,
                "status": "running" if m.status == "queued" and m.deployment_status == "running" else m.status,
                "reason": m.reason,
                "deploymentId": m.deployment_id,
                "version": m.version,
                "approvedBy": m.approved_by,
                "started": iso(m.started_at),
                "finished": iso(m.finished_at),
            }
            for m in members
        ],
    }


def graph(nodes: list[Any], edges: list[Any]) -> dict[str, Any]:
    return {
        "nodes": [
            {
                "stack": n.stack,
                "lastStatus": n.last_status,
                "paused": bool(n.paused),
                "requireApproval": bool(n.require_approval),
            }
            for n in nodes
        ],
        "edges": [
            {
                "upstream": e.upstream,
                "downstream": e.downstream,
                "filters": list(e.filters),
                "groups": list(e.groups),
                "triggerOn": e.trigger_on,
                "requireApproval": bool(e.require_approval),
            }
            for e in sorted(edges, key=lambda e: (e.upstream, e.downstream))
        ],
    }
