"""What the cascade and autodeploy commands share: connecting to work in an organization or on a stack."""

from __future__ import annotations

from stackcascade.cli.connection import Connection, connect
from stackcascade.cli.refs import StackRef


def connect_to_org(server: str | None, token: str | None, org: str | None) -> tuple[Connection, str]:
    """The connection and its organization; an error when no organization is set."""
    conn = connect(server, token, org)
    return conn, conn.require_org()


def connect_for_stack(
    stack: str, server: str | None, token: str | None, org: str | None
) -> tuple[Connection, StackRef]:
    """The connection and the stack ``stack`` names (project/stack is in the default org).

    Unlike ``outputs.connect_to_stack`` this always goes through ``connect``, login file included.
    """
    conn = connect(server, token, org)
    return conn, conn.stack(stack)
