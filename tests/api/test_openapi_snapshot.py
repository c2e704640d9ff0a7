"""The committed openapi.json is the document the server serves."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2

from stackcascade.api.snapshot import render

SNAPSHOT = Path(__file__).resolve().parents[2] / "openapi.json"


def test_committed_openapi_matches_the_code() -> None:
    assert SNAPSHOT.read_text() == render(), "openapi.json is stale: run `make openapi` and commit it"


def test_served_openapi_is_the_committed_document(anonymous: httpx2.Client) -> None:
    served = anonymous.get("/api/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(SNAPSHOT.read_text())
