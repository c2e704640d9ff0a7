"""Rendering: one Jinja environment (autoescaped), the shared page context, redirects with a flash."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup

from stackcascade import __version__
from stackcascade.web import urls

TEMPLATES = Path(__file__).parent / "templates"
FLASH_COOKIE = "cascade_flash"

# Deployment statuses as a newcomer reads them (Pulumi's names stay in the API).
STATUS_LABELS = {
    "not-started": "queued",
    "accepted": "starting",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "skipped": "skipped",
    "waiting": "waiting",
    "awaiting-approval": "awaiting approval",
    "queued": "queued",
    None: "never deployed",
}


def status_label(status: str | None) -> str:
    return STATUS_LABELS.get(status, status or "never deployed")


def status_class(status: str | None) -> str:
    """One CSS class per state family, so colour means the same thing on every page."""
    return {
        "succeeded": "st-ok",
        "failed": "st-bad",
        "running": "st-run",
        "accepted": "st-run",
        "not-started": "st-wait",
        "queued": "st-wait",
        "waiting": "st-wait",
        "awaiting-approval": "st-gate",
        "skipped": "st-skip",
    }.get(status or "", "st-none")


def iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else ""


def ago(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "never"
    seconds = max(0, int((now or time.time()) - ts))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago" if seconds else "just now"


def duration(start: float | None, end: float | None) -> str:
    if not start:
        return ""
    seconds = max(0.0, (end or time.time()) - start)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s"


def when(ts: float | None) -> Markup:
    """A ``<time>`` element: relative text, the exact UTC time on hover and for assistive technology."""
    if not ts:
        return Markup('<span class="muted">never</span>')
    stamp = iso(ts)
    return Markup('<time datetime="{0}" title="{0}">{1}</time>').format(stamp, ago(ts))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(urls=urls, status_label=status_label, status_class=status_class, when=when, version=__version__)
    env.filters.update(ago=ago, duration=duration, iso=iso, tojson_pretty=lambda v: json.dumps(v, indent=2))
    return env


ENV = _environment()


def render(request: Request, template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
    """A full page: the template plus who is signed in, the CSRF token, the org and any flash message."""
    flash = request.cookies.get(FLASH_COOKIE)
    context = {
        "request": request,
        "principal": getattr(request.state, "principal", None),
        "csrf": getattr(request.state, "csrf", ""),
        "org": values.pop("org", None),
        "flash": unquote(flash) if flash else None,
        **values,
    }
    html = ENV.get_template(template).render(context)
    response = HTMLResponse(html, status_code=status)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/")
    response.headers["cache-control"] = "no-store"
    return response


def fragment(template: str, **values: Any) -> HTMLResponse:
    """A piece of a page, fetched by the page's script to refresh itself in place."""
    response = HTMLResponse(ENV.get_template(template).render(values))
    response.headers["cache-control"] = "no-store"
    return response


def redirect(url: str, flash: str | None = None) -> RedirectResponse:
    """POST-redirect-GET, carrying a one-shot message to the next page."""
    response = RedirectResponse(url, status_code=303)
    if flash:
        response.set_cookie(FLASH_COOKIE, quote(flash[:500]), path="/", httponly=True, samesite="strict")
    return response
