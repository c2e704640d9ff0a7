"""Deployment operations, statuses and transitions (design sections 2 and 3)."""

from __future__ import annotations

import itertools

import pytest

from stackcascade.domain.deployments import (
    ACTIVE,
    QUEUED,
    TERMINAL,
    Operation,
    Status,
    check_transition,
    event_kinds_for_finish,
    parse_operation,
)
from stackcascade.domain.errors import Conflict, InvalidInput

CHOICES = "update, preview, refresh, destroy"


def test_statuses_are_exactly_pulumis_six() -> None:
    assert {s.value for s in Status} == {"not-started", "accepted", "running", "failed", "succeeded", "skipped"}


def test_queued_active_and_terminal_partition_the_statuses() -> None:
    assert set(Status) == QUEUED | ACTIVE | TERMINAL
    assert not (QUEUED & ACTIVE or QUEUED & TERMINAL or ACTIVE & TERMINAL)


@pytest.mark.parametrize("value", ["update", "preview", "refresh", "destroy"])
def test_parse_operation_accepts_the_four_operations(value: str) -> None:
    assert parse_operation(value) is Operation(value)


def test_parse_operation_requires_a_value() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_operation(None)
    assert caught.value.message == f"'operation' is required: one of {CHOICES}"


@pytest.mark.parametrize("value", [1, True, ["update"], {"operation": "update"}])
def test_parse_operation_refuses_non_strings(value: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_operation(value)
    assert caught.value.message == f"'operation' must be a string: one of {CHOICES}"


@pytest.mark.parametrize("value", ["deploy", "Update", "UPDATE", "", " update"])
def test_parse_operation_refuses_unknown_operations_naming_the_choices(value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_operation(value)
    assert caught.value.message == f"unknown operation {value!r}: use one of {CHOICES}"


@pytest.mark.parametrize("value", ["detect-drift", "remediate-drift"])
def test_parse_operation_says_pulumi_only_operations_are_unsupported(value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_operation(value)
    assert "not supported by stackcascade" in caught.value.message
    assert CHOICES in caught.value.message


ALLOWED = {
    (Status.NOT_STARTED, Status.ACCEPTED),
    (Status.NOT_STARTED, Status.SKIPPED),
    (Status.ACCEPTED, Status.RUNNING),
    (Status.ACCEPTED, Status.FAILED),
    (Status.ACCEPTED, Status.SUCCEEDED),
    (Status.RUNNING, Status.FAILED),
    (Status.RUNNING, Status.SUCCEEDED),
}


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_allowed_transitions_pass(current: Status, target: Status) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(("current", "target"), sorted(set(itertools.product(Status, Status)) - ALLOWED))
def test_every_other_transition_is_a_conflict(current: Status, target: Status) -> None:
    with pytest.raises(Conflict) as caught:
        check_transition(current, target)
    assert caught.value.status_code == 409
    assert caught.value.message == f"a deployment that is {current.value} cannot become {target.value}"


def test_a_running_deployment_cannot_be_skipped_or_requeued() -> None:
    for target in (Status.SKIPPED, Status.NOT_STARTED, Status.ACCEPTED):
        with pytest.raises(Conflict):
            check_transition(Status.RUNNING, target)


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_never_change(terminal: Status) -> None:
    for target in Status:
        with pytest.raises(Conflict):
            check_transition(terminal, target)


@pytest.mark.parametrize("operation", list(Operation))
def test_finish_events_name_the_deployment_and_the_operation(operation: Operation) -> None:
    assert event_kinds_for_finish(operation, Status.SUCCEEDED) == ("deployment_succeeded", f"{operation}_succeeded")
    assert event_kinds_for_finish(operation, Status.FAILED) == ("deployment_failed", f"{operation}_failed")


@pytest.mark.parametrize("status", [Status.SKIPPED, Status.NOT_STARTED, Status.ACCEPTED, Status.RUNNING])
def test_non_finished_or_skipped_deployments_emit_no_finish_events(status: Status) -> None:
    assert event_kinds_for_finish(Operation.UPDATE, status) == ()
