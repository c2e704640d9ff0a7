"""Which of a cascade's edges fired, and why one did not, told from its members as the planner saw them.

One answer for the API (``edges[].fired``) and the console's edge table: each upstream member's outcome
is the one ``services.cascades`` decides with (``member_outcome``), so what a reader is told is what
decided the downstream member.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stackcascade.domain.cascade import TERMINAL, Edge, MemberStatus, Outcome, fires
from stackcascade.services.cascades import member_outcome
from stackcascade.services.plan_documents import plan_of

_TERMINAL_STATUSES = frozenset(status.value for status in TERMINAL)


@dataclass(frozen=True, slots=True)
class EdgeState:
    edge: Edge
    fired: bool | None  # None: its upstream member has not finished yet
    why: str | None  # why it did not fire, in words


def edge_states(cascade: Any, members: Iterable[Any]) -> list[EdgeState]:
    """Every edge of the cascade's plan, in the plan's order, with whether it fired."""
    plan = plan_of(cascade.plan)
    root_events = frozenset(cascade.plan.get("rootEvents") or ())
    outcomes: dict[str, Outcome] = {
        member.stack: member_outcome(plan, member, root_events)
        for member in members
        if member.status in _TERMINAL_STATUSES
    }
    return [_state(edge, outcomes.get(edge.upstream)) for edge in plan.edges]


def _state(edge: Edge, outcome: Outcome | None) -> EdgeState:
    if outcome is None:
        return EdgeState(edge, None, None)
    if fires(edge, outcome):
        return EdgeState(edge, True, None)
    return EdgeState(edge, False, _why_not(edge, outcome))


def _why_not(edge: Edge, outcome: Outcome) -> str:
    if outcome.status is MemberStatus.SKIPPED:
        return f"{edge.upstream} was skipped"
    if outcome.status is MemberStatus.FAILED and not any(edge.listens_to(event) for event in outcome.events):
        return f"{edge.upstream} failed"
    if any(edge.listens_to(event) for event in outcome.events):
        return f"outputs of {edge.upstream} unchanged"
    return f"{edge.upstream} emitted no event it listens to"
