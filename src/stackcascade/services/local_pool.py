"""The local runner pool runs every org's deployments as the server's own user: say so when orgs share it.

A deployment's commands can then read the server's data dir (the database and ``secret.key``), so whoever
may deploy to one org can read the secrets of all (README, "Who can reach what"). Separating them needs
another user, which a server cannot make for itself; it can warn.
"""

from __future__ import annotations

from stackcascade.services.context import Context
from stackcascade.store import orgs

_WARNING = (
    "warning: the local runner pool runs the deployments of {count} organizations as this server's user, "
    "who can read the data dir (the database and secret.key): whoever may deploy to one of them can read "
    "the secrets of all. For several teams run `cascade serve --runners 0` and `cascade runner` as another "
    "user (README: Who can reach what)."
)


async def shared_pool_warning(ctx: Context) -> str | None:
    """The warning to show when more than one org shares the local pool; None when one or none does."""
    async with ctx.db.read() as conn:
        count = await orgs.count(conn)
    return _WARNING.format(count=count) if count > 1 else None
