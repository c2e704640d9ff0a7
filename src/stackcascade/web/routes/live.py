"""``/{org}/~/live``: server-sent events that tell open pages something changed, so they refresh in place.

Woken by this process's outbox signal as soon as a change commits; polls every second as well, so
changes made through another replica arrive too. A stream lasts a minute, or until the server begins
to shut down; EventSource reconnects.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import asdict

from fastapi import Request
from fastapi.responses import StreamingResponse

from stackcascade.services import overview
from stackcascade.services.context import Context
from stackcascade.web.routing import console_router
from stackcascade.web.session import Viewer, still_signed_in

router = console_router()

STREAM_SECONDS = 60.0
POLL_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0


@router.get("/{org}/~/live")
async def live(request: Request, org: str, principal: Viewer) -> StreamingResponse:
    ctx: Context = request.app.state.context
    cursor = await overview.live_cursor(ctx, principal, org)  # checks access before the stream starts
    return StreamingResponse(
        _stream(request, ctx, org, cursor),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


async def _stream(request: Request, ctx: Context, org: str, cursor: overview.Cursor) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    ends = loop.time() + STREAM_SECONDS
    quiet_since = loop.time()
    yield "retry: 1000\nevent: hello\ndata: {}\n\n"
    while loop.time() < ends and not ctx.stopping:
        await ctx.outbox.wait(POLL_SECONDS)
        if ctx.stopping or await request.is_disconnected():  # shutting down: EventSource reconnects
            return
        changes, moved = await overview.changes_since(ctx, org, cursor)
        if not await still_signed_in(request):  # checked after the read: nothing read is sent once revoked
            return
        if changes or moved != cursor:
            data = {
                "events": [asdict(change) for change in changes],
                "cascades": moved.cascades_at != cursor.cascades_at,
            }
            cursor = moved
            quiet_since = loop.time()
            yield f"event: change\ndata: {json.dumps(data)}\n\n"
        elif loop.time() - quiet_since > KEEPALIVE_SECONDS:
            quiet_since = loop.time()
            yield ": still here\n\n"
