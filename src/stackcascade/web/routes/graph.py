"""Console pages: graph (being built)."""

from __future__ import annotations

from stackcascade.web.routing import console_router

router = console_router()
