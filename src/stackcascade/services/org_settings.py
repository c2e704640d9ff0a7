"""Org settings (``PATCH /api/orgs/{org}/settings``): all of them checked first, then applied in one transaction.

A request that changes ``concurrency`` and ``cascadeMode`` either changes both or, when one is
invalid, neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stackcascade.domain.errors import InvalidInput, NotFound
from stackcascade.domain.names import check_name
from stackcascade.domain.roles import Principal, Role
from stackcascade.services.cascades import MODES
from stackcascade.services.context import Context
from stackcascade.services.stacks import ensure_org
from stackcascade.store import cascades as cascade_rows
from stackcascade.store import orgs

MAX_CONCURRENCY = 10_000


@dataclass(frozen=True, slots=True)
class Changes:
    """The settings a request changes; None: left as it is (absent or ``null``)."""

    concurrency: int | None = None
    cascade_mode: str | None = None


def check_concurrency(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise InvalidInput(f"concurrency must be a whole number between 1 and {MAX_CONCURRENCY}")
    return value


def check_cascade_mode(value: object) -> str:
    if not isinstance(value, str) or value not in MODES:
        raise InvalidInput(f"cascadeMode must be one of {', '.join(MODES)}, got {value!r}")
    return value


def parse(body: dict[str, Any]) -> Changes:
    """Every setting in ``body`` checked; the first invalid one raises before anything is written.

    Keys match case-insensitively, as everywhere in the API."""
    given = {str(key).lower(): value for key, value in body.items() if value is not None}
    concurrency = given.get("concurrency")
    mode = given.get("cascademode")
    return Changes(
        concurrency=None if concurrency is None else check_concurrency(concurrency),
        cascade_mode=None if mode is None else check_cascade_mode(mode),
    )


async def require_existing(ctx: Context, principal: Principal, org: str) -> None:
    """Reading settings: an org nobody created is not found (a typo must not read as the defaults)."""
    principal.require(org, Role.VIEWER, f"organization {org!r}")
    check_name("organization", org, may_start_with_dot=True)
    async with ctx.db.read() as conn:
        if await orgs.get(conn, org) is None:
            raise NotFound(f"organization {org!r} not found")


async def update(ctx: Context, principal: Principal, org: str, body: dict[str, Any]) -> None:
    """Apply the settings in ``body`` to ``org`` (created on first use), all or none."""
    principal.require(org, Role.ADMIN, f"organization {org!r}")
    check_name("organization", org, may_start_with_dot=True)  # this may create the org
    changes = parse(body)
    if changes == Changes():
        return
    async with ctx.db.write() as conn:
        await ensure_org(ctx, conn, org)
        if changes.concurrency is not None:
            await orgs.set_concurrency(conn, org, changes.concurrency)
        if changes.cascade_mode is not None:
            await cascade_rows.set_cascade_mode(conn, org, changes.cascade_mode)
    if changes.concurrency is not None:
        ctx.work.notify()  # a higher limit may let queued work start
