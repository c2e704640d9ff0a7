"""A cascade ends (succeeded or failed) once every member is terminal, however its skips travel: a real server
with real local runners, both databases.

The advance that makes the last member terminal must end the cascade itself. The lease sweeper would end a
cascade left running with every member terminal (a safety net) within its interval, which would hide an
advance that forgot to: so the server here sweeps only once an hour."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import cascade_of, cascade_yaml, deploy, git_repo, graph, wait_cascade
from tests.support import DATABASES, LiveServer, serving


@pytest.fixture(scope="module", params=DATABASES)
def unswept_pool(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real server with two local runners whose lease sweeper does not run during the tests."""
    data_dir = tmp_path_factory.mktemp("unswept-pool")
    with serving(request.param, data_dir, runners=2, sweep_seconds=3600) as server:
        yield server


def test_a_failure_whose_skips_reach_a_member_over_a_longer_path_still_ends_the_cascade(
    unswept_pool: LiveServer, org: str, tmp_path: Path
) -> None:
    # network -> database (fails) -> migrate -> seed -> app, and database -> app: app's upstream seed is
    # still waiting when database's failure is recorded; the skips reach seed, then app, in the same advance.
    update = 'if [ "$CASCADE_PROJECT" = database ]; then echo broken; exit 3; fi\necho ok'
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)})
    edges = [("network", "database"), ("database", "migrate"), ("migrate", "seed"), ("seed", "app")]
    with unswept_pool.client() as api:
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
