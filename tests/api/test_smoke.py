"""The live server answers over real HTTP on both databases."""

from __future__ import annotations

import httpx2


def test_health_answers_without_a_token(anonymous: httpx2.Client) -> None:
    response = anonymous.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_api_routes_require_a_token(anonymous: httpx2.Client, org: str) -> None:
    response = anonymous.get(f"/api/user/stacks?organization={org}")
    assert response.status_code == 401
    assert "Authorization" in response.json()["message"]
