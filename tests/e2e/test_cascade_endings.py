"""A cascade ends (succeeded or failed) once every member is terminal, however its skips travel: a real server
with real local runners, both databases."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.helpers import cascade_of, cascade_yaml, deploy, git_repo, graph, wait_cascade
from tests.support import LiveServer


def test_a_failure_whose_skips_reach_a_member_over_a_longer_path_still_ends_the_cascade(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    # network -> database (fails) -> migrate -> seed -> app, and database -> app: app's upstream seed is
    # still waiting when database's failure is recorded; the skips reach seed, then app, in the same advance.
    update = 'if [ "$CASCADE_PROJECT" = database ]; then echo broken; exit 3; fi\necho ok'
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)})
    edges = [("network", "database"), ("database", "migrate"), ("migrate", "seed"), ("seed", "app")]
    with pool_server.client() as api:
        graph(api, org, repo, [*edges, ("database", "app")])
        cascade_id = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        cascade = wait_cascade(
            api, org, cascade_id, lambda c: all(m["status"] in {"succeeded", "failed", "skipped"} for m in c["members"])
        )
        assert {m["stack"]: m["status"] for m in cascade["members"]} == {
            "network/prod": "succeeded",
            "database/prod": "failed",
            "migrate/prod": "skipped",
            "seed/prod": "skipped",
            "app/prod": "skipped",
        }
        ended = wait_cascade(api, org, cascade_id, lambda c: c["status"] != "running", seconds=30)
        assert ended["status"] == "failed" and ended["finished"]
        assert api.get(f"/api/orgs/{org}/cascades", params={"status": "running"}).json()["cascades"] == []
