"""Deployment operations, statuses and the transitions between them."""

from __future__ import annotations

from enum import StrEnum

from stackcascade.domain.errors import Conflict, InvalidInput


class Operation(StrEnum):
    UPDATE = "update"
    PREVIEW = "preview"
    REFRESH = "refresh"
    DESTROY = "destroy"


class Status(StrEnum):
    """Exactly Pulumi's six job statuses; clients parse them strictly."""

    NOT_STARTED = "not-started"
    ACCEPTED = "accepted"
    RUNNING = "running"
    FAILED = "failed"
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"


QUEUED = frozenset({Status.NOT_STARTED})
ACTIVE = frozenset({Status.ACCEPTED, Status.RUNNING})
TERMINAL = frozenset({Status.FAILED, Status.SUCCEEDED, Status.SKIPPED})

_ALLOWED: dict[Status, frozenset[Status]] = {
    Status.NOT_STARTED: frozenset({Status.ACCEPTED, Status.SKIPPED}),
    Status.ACCEPTED: frozenset({Status.RUNNING, Status.FAILED, Status.SUCCEEDED}),
    Status.RUNNING: frozenset({Status.FAILED, Status.SUCCEEDED}),
    Status.FAILED: frozenset(),
    Status.SUCCEEDED: frozenset(),
    Status.SKIPPED: frozenset(),
}

_UNSUPPORTED = {"detect-drift", "remediate-drift"}


def parse_operation(value: object) -> Operation:
    """Parse the top-level ``operation`` of a create-deployment request."""
    choices = ", ".join(o.value for o in Operation)
    if value is None:
        raise InvalidInput(f"'operation' is required: one of {choices}")
    if not isinstance(value, str):
        raise InvalidInput(f"'operation' must be a string: one of {choices}")
    if value in _UNSUPPORTED:
        raise InvalidInput(f"operation {value!r} is not supported by stackcascade; use one of {choices}")
    try:
        return Operation(value)
    except ValueError:
        raise InvalidInput(f"unknown operation {value!r}: use one of {choices}") from None


def check_transition(current: Status, target: Status) -> None:
    """Raise Conflict unless a deployment in ``current`` may move to ``target``."""
    if target not in _ALLOWED[current]:
        raise Conflict(f"a deployment that is {current.value} cannot become {target.value}")


def event_kinds_for_finish(operation: Operation, status: Status) -> tuple[str, ...]:
    """Events a finished deployment emits: the deployment's and the operation's (design section 2)."""
    if status is Status.SUCCEEDED:
        return ("deployment_succeeded", f"{operation.value}_succeeded")
    if status is Status.FAILED:
        return ("deployment_failed", f"{operation.value}_failed")
    return ()
