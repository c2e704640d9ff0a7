"""Org settings over real HTTP: ``PATCH /api/orgs/{org}/settings`` changes all it is given, or nothing."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from tests.support import assert_error


def settings_of(admin: httpx2.Client, org: str) -> tuple[int, str]:
    meta = admin.get(f"/api/orgs/{org}/deployments/metadata").json()
    return meta["concurrency"], meta["cascadeMode"]


def test_both_settings_change_together(admin: httpx2.Client, org: str) -> None:
    response = admin.patch(f"/api/orgs/{org}/settings", json={"concurrency": 7, "cascadeMode": "per-edge"})
    assert response.status_code == 200, response.text
    assert (response.json()["concurrency"], response.json()["cascadeMode"]) == (7, "per-edge")
    assert settings_of(admin, org) == (7, "per-edge")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"concurrency": 7, "cascadeMode": "bogus"}, "cascadeMode must be one of"),
        ({"concurrency": 0, "cascadeMode": "per-edge"}, "concurrency must be a whole number"),
        ({"concurrency": "7", "cascadeMode": "per-edge"}, "concurrency must be a whole number"),
        ({"cascadeMode": ["per-edge"], "concurrency": 7}, "cascadeMode must be one of"),
    ],
)
def test_a_bad_setting_changes_none_of_them(
    admin: httpx2.Client, org: str, body: dict[str, Any], fragment: str
) -> None:
    assert admin.patch(f"/api/orgs/{org}/settings", json={"concurrency": 3}).status_code == 200
    assert fragment in assert_error(admin.patch(f"/api/orgs/{org}/settings", json=body), 400)
    assert settings_of(admin, org) == (3, "coalesced")


def test_a_bad_setting_does_not_create_the_org(admin: httpx2.Client, org: str) -> None:
    assert_error(admin.patch(f"/api/orgs/{org}/settings", json={"concurrency": 7, "cascadeMode": "bogus"}), 400)
    assert admin.get(f"/api/orgs/{org}/deployments/metadata").json()["concurrency"] == 25


def test_setting_names_match_case_insensitively(admin: httpx2.Client, org: str) -> None:
    response = admin.patch(f"/api/orgs/{org}/settings", json={"Concurrency": 4, "cascademode": "per-edge"})
    assert response.status_code == 200, response.text
    assert settings_of(admin, org) == (4, "per-edge")
