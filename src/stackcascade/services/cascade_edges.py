"""Which of a cascade's edges fired, and why one did not, told from its members as the planner saw them.

One answer for the API (``edges[].fired``) and the console's edge table: each upstream member's outcome
is the one ``services.cascades`` decides with (``member_outcome``), so what a reader is told is what
decided the downstream member.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stackcascade.domain.cascade import TERMINAL, Edge, Outcome, edge_fired
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
    return [EdgeState(edge, *edge_fired(plan, outcomes, edge)) for edge in plan.edges]
