"""Print the served OpenAPI document (``make openapi`` writes it to openapi.json)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from stackcascade.api.app import create_app
from stackcascade.services.context import Context
from stackcascade.services.secrets import SecretBox
from stackcascade.store.db import Database


def document() -> dict[str, Any]:
    """The document without touching a database: building routes needs no connection."""
    never_opened = Path(tempfile.gettempdir()) / "stackcascade-openapi-unused.db"
    ctx = Context(db=Database(f"sqlite:///{never_opened}"), secrets=SecretBox.generate())
    return create_app(ctx).openapi()


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
