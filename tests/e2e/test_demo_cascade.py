"""The demo as ``make run`` starts it (``cascade serve --demo`` with the default runners, data in ``.cascade``):
one deployment of network is a coalesced cascade through the diamond — database and cluster once each, app
once and only after both — and nothing else runs (both databases)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2

from tests.e2e.helpers import member, wait_cascade
from tests.test_serve import serve


def quiet(api: httpx2.Client, seconds: float = 60) -> dict[str, int]:
    """Wait until the demo org has nothing queued or running (bounded); returns its deployment counts."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        counts = api.get("/api/orgs/demo/deployments/metadata").json()["deploymentCounts"]
        if counts["notStarted"] + counts["accepted"] + counts["running"] == 0:
            return dict(counts)
        time.sleep(0.05)
    raise AssertionError(f"the demo org did not become quiet in {seconds} s")


def test_make_runs_demo_deploys_the_diamond_as_one_coalesced_cascade(database_url: str, tmp_path: Path) -> None:
    token = "csc_demo_" + "c" * 20
    with (
        serve(
            tmp_path / ".cascade",
            database_url,
            "--demo",
            env={"CASCADE_ADMIN_TOKEN": token},
            relative_to=tmp_path,
        ) as served,
        served.client(token) as api,
    ):
        plan = api.get("/api/stacks/demo/network/prod/cascade-plan").json()
        assert plan["waves"] == [["network/prod"], ["cluster/prod", "database/prod"], ["app/prod"]]

        created = api.post("/api/stacks/demo/network/prod/deployments", json={"operation": "update"})
        assert created.status_code == 202, created.text
        root = api.get(f"/api/stacks/demo/network/prod/deployments/{created.json()['id']}").json()
        cascade = wait_cascade(api, "demo", root["cascadeId"], lambda c: c["status"] != "running", seconds=120)
        assert cascade["status"] == "succeeded", cascade
        assert cascade["waves"] == plan["waves"]
        assert {m["stack"]: (m["status"], m["version"]) for m in cascade["members"]} == {
            f"{project}/prod": ("succeeded", 1) for project in ("network", "database", "cluster", "app")
        }
        database, cluster, app = member(cascade, "database"), member(cascade, "cluster"), member(cascade, "app")
        assert app["started"] >= max(database["finished"], cluster["finished"])  # after both, not the first

        counts = quiet(api)
        assert (counts["total"], counts["succeeded"]) == (4, 4)  # one deployment per stack, nothing more
        for project in ("database", "cluster", "app"):
            [deployment] = api.get(f"/api/stacks/demo/{project}/prod/deployments").json()["deployments"]
            assert (deployment["initiator"], deployment["cascadeId"]) == ("cascade", root["cascadeId"])
        assert [c["id"] for c in api.get("/api/orgs/demo/cascades").json()["cascades"]] == [root["cascadeId"]]
