"""Deployment settings of a stack: merge-patch, replace, read, delete; secrets sealed at rest."""

from __future__ import annotations

from typing import Any

from stackcascade.domain import settings as doc
from stackcascade.domain.errors import NotFound
from stackcascade.domain.roles import Principal, Role
from stackcascade.services.context import Context
from stackcascade.services.stacks import load, ref
from stackcascade.store import stacks as stack_rows


def normalise(ctx: Context, raw: object, *, patch: bool) -> dict[str, Any]:
    """The request's settings; a ciphertext in them is only offered until bound to a stack."""
    return doc.normalise(raw, seal=ctx.secrets.seal, is_sealed=ctx.secrets.is_sealed, patch=patch)


async def get(ctx: Context, principal: Principal, org: str, project: str, stack: str) -> tuple[dict[str, Any], int]:
    principal.require(org, Role.VIEWER, f"stack {ref(org, project, stack)}")
    async with ctx.db.read() as conn:
        row = await load(conn, org, project, stack)
        saved = await stack_rows.get_settings(conn, row.id)
    if saved is None:
        raise NotFound(f"stack {ref(org, project, stack)} has no deployment settings")
    return dict(saved.document), int(saved.version)


async def save(
    ctx: Context, principal: Principal, org: str, project: str, stack: str, raw: object, *, replace: bool
) -> tuple[dict[str, Any], int]:
    """POST merges ``raw`` over the saved settings (nested null deletes); PUT replaces them.

    A ciphertext sent back is kept only if these settings hold it (``doc.bind_ciphertexts``)."""
    principal.require(org, Role.MEMBER, f"stack {ref(org, project, stack)}")
    incoming = normalise(ctx, raw, patch=not replace)
    async with ctx.db.write() as conn:
        row = await load(conn, org, project, stack)
        saved = await stack_rows.get_settings(conn, row.id)
        current = dict(saved.document) if saved else {}
        incoming = doc.bind_ciphertexts(incoming, current, ref(org, project, stack))
        document = incoming if replace else doc.merge_patch(current, incoming)
        version = await stack_rows.save_settings(conn, row.id, document, ctx.now())
    return document, version


async def delete(ctx: Context, principal: Principal, org: str, project: str, stack: str) -> None:
    principal.require(org, Role.MEMBER, f"stack {ref(org, project, stack)}")
    async with ctx.db.write() as conn:
        row = await load(conn, org, project, stack)
        if not await stack_rows.delete_settings(conn, row.id):
            raise NotFound(f"stack {ref(org, project, stack)} has no deployment settings")
