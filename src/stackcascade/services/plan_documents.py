"""Plans as JSON documents: stored with each cascade, returned by impact plans (one shape for both)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any

from stackcascade.domain.cascade import Edge, Plan, TriggerOn
from stackcascade.domain.deployments import Operation


def edge_document(edge: Edge) -> dict[str, Any]:
    return {
        "upstream": edge.upstream,
        "downstream": edge.downstream,
        "filters": list(edge.filters),
        "groups": list(edge.groups),
        "triggerOn": edge.trigger_on.value,
        "requireApproval": edge.require_approval,
    }


def plan_document(plan: Plan | None, operation: str) -> dict[str, Any]:
    """The plan, or the empty plan of ``operation`` (a change that would start no cascade)."""
    if plan is None:
        return {"root": None, "operation": operation, "members": [], "waves": [], "edges": []}
    return {
        "root": plan.root,
        "operation": plan.operation.value,
        "members": list(plan.members),
        "waves": [list(wave) for wave in plan.waves],
        "edges": [edge_document(edge) for edge in plan.edges],
    }


def plan_of(document: dict[str, Any]) -> Plan:
    return Plan(
        root=document["root"],
        operation=Operation(document["operation"]),
        members=tuple(document["members"]),
        waves=tuple(tuple(wave) for wave in document["waves"]),
        edges=tuple(
            Edge(
                edge["upstream"],
                edge["downstream"],
                tuple(edge["filters"]),
                tuple(edge["groups"]),
                TriggerOn(edge["triggerOn"]),
                bool(edge["requireApproval"]),
            )
            for edge in document["edges"]
        ),
    )


def to_json(value: Any) -> str:
    """Compact JSON, as the API's ``JSONResponse`` writes it."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def edge_json(edge: Edge) -> str:
    """``to_json(edge_document(edge))``, written faster: what follows the two stacks is shared by most edges."""
    return (
        '{"upstream":'
        + json_string(edge.upstream)
        + ',"downstream":'
        + json_string(edge.downstream)
        + _edge_rest(edge.filters, edge.groups, edge.trigger_on, edge.require_approval)
    )


json_string = encode_basestring  # a JSON string as json.dumps(..., ensure_ascii=False) writes it


@lru_cache(maxsize=1024)
def _edge_rest(filters: tuple[str, ...], groups: tuple[str, ...], trigger_on: TriggerOn, approval: bool) -> str:
    rest = {
        "filters": list(filters),
        "groups": list(groups),
        "triggerOn": trigger_on.value,
        "requireApproval": approval,
    }
    return "," + to_json(rest)[1:]


def edges_json(edges: Iterable[Edge]) -> str:
    """The edges' JSON objects, comma-separated (the inside of the plan's ``edges`` array)."""
    return ",".join(map(edge_json, edges))


def plan_json(plan: Plan | None, operation: str) -> str:
    """``plan_document`` as JSON text (``services.org_graphs`` writes large plans faster)."""
    return to_json(plan_document(plan, operation))
