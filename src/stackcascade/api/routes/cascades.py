"""Cascades (stackcascade extension): list, read, and approve / reject / retry a member."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from stackcascade.api import serializers
from stackcascade.api.deps import Caller, Ctx
from stackcascade.api.schemas import ERRORS, Cascade, CascadeList
from stackcascade.services import cascades

router = APIRouter(tags=["cascades"], responses=ERRORS)
BASE = "/api/orgs/{org}/cascades"
MEMBER = BASE + "/{cascade_id}/members/{project}/{stack}"
PageSize = Annotated[int, Query(alias="pageSize", description="1-100, newest first")]


@router.get(BASE, response_model=None, responses={200: {"model": CascadeList}})
async def list_cascades(ctx: Ctx, caller: Caller, org: str, page_size: PageSize = 50) -> JSONResponse:
    rows = await cascades.list_cascades(ctx, caller, org, limit=page_size)
    return JSONResponse({"cascades": [serializers.cascade_summary(row) for row in rows]})


@router.get(BASE + "/{cascade_id}", response_model=None, responses={200: {"model": Cascade}})
async def get_cascade(ctx: Ctx, caller: Caller, org: str, cascade_id: str) -> JSONResponse:
    row, members = await cascades.get(ctx, caller, org, cascade_id)
    return JSONResponse(serializers.cascade(row, members))


async def _answer(ctx: Ctx, caller: Caller, org: str, cascade_id: str) -> JSONResponse:
    row, members = await cascades.get(ctx, caller, org, cascade_id)
    return JSONResponse(serializers.cascade(row, members))


@router.post(MEMBER + "/approve", response_model=None, responses={200: {"model": Cascade}})
async def approve_member(ctx: Ctx, caller: Caller, org: str, cascade_id: str, project: str, stack: str) -> JSONResponse:
    """Let a member that awaits approval run; who approved is recorded."""
    await cascades.approve(ctx, caller, org, cascade_id, f"{project}/{stack}")
    return await _answer(ctx, caller, org, cascade_id)


@router.post(MEMBER + "/reject", response_model=None, responses={200: {"model": Cascade}})
async def reject_member(ctx: Ctx, caller: Caller, org: str, cascade_id: str, project: str, stack: str) -> JSONResponse:
    """Skip a member that awaits approval (and, through it, what only it would have fired)."""
    await cascades.reject(ctx, caller, org, cascade_id, f"{project}/{stack}")
    return await _answer(ctx, caller, org, cascade_id)


@router.post(MEMBER + "/retry", response_model=None, responses={200: {"model": Cascade}})
async def retry_member(ctx: Ctx, caller: Caller, org: str, cascade_id: str, project: str, stack: str) -> JSONResponse:
    """Run a failed member again; the descendants it had stopped wait for it again."""
    await cascades.retry(ctx, caller, org, cascade_id, f"{project}/{stack}")
    return await _answer(ctx, caller, org, cascade_id)
