"""The rules of the property tests (tests/domain/test_cascade.py), checked on a real server with real local
runners on both databases: seeded random DAGs with random failures and upstreams whose outputs stay the same.
Every member is deployed at most once, never before its upstream members finished, and runs or is skipped
exactly as a small reference of the decision rule says (design section 4)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.e2e.helpers import cascade_yaml, deploy, git_repo, wait_cascade
from tests.support import LiveServer

STACKS = 14


def random_dag(seed: int) -> tuple[list[tuple[str, str, str]], set[str], set[str]]:
    """Edges ``(up, down, triggerOn)`` where every stack but s00 has 1-3 upstreams among the earlier ones (so
    all are reachable from s00); the stacks that will fail, and those whose outputs change on every update."""
    rng = random.Random(seed)
    names = [f"s{i:02d}" for i in range(STACKS)]
    edges = []
    for i in range(1, STACKS):
        for parent in rng.sample(names[:i], min(i, rng.randint(1, 3))):
            edges.append((parent, names[i], "outputs-changed" if rng.random() < 0.3 else "always"))
    failing = set(rng.sample(names[1:], 2))
    changing = {name for name in names if rng.random() < 0.5}
    return edges, failing, changing


def expected(
    edges: list[tuple[str, str, str]], failing: set[str], changing: set[str]
) -> dict[str, tuple[str, bool, bool]]:
    """Per stack, in a cascade from s00 where earlier outputs exist: (status, deployed, outputs changed)."""
    upstreams: dict[str, list[tuple[str, str]]] = {}
    for up, down, trigger in edges:
        upstreams.setdefault(down, []).append((up, trigger))
    outcome: dict[str, tuple[str, bool, bool]] = {}
    stopped: set[str] = set()  # failed, or below a failure: a failure stops every descendant
    for i in range(STACKS):
        stack = f"s{i:02d}"
        ups = upstreams.get(stack, [])
        if any(up in stopped for up, _ in ups):
            stopped.add(stack)
            outcome[stack] = ("skipped", False, False)
            continue
        fired = not ups or any(
            outcome[up][0] == "succeeded" and (trigger == "always" or outcome[up][2]) for up, trigger in ups
        )
        if not fired:
            outcome[stack] = ("skipped", False, False)
        elif stack in failing:
            stopped.add(stack)
            outcome[stack] = ("failed", True, False)
        else:
            outcome[stack] = ("succeeded", True, stack in changing)
    return outcome


def build(api: httpx2.Client, org: str, repo: str, edges: list[tuple[str, str, str]]) -> None:
    for i in range(STACKS):
        assert api.post(f"/api/stacks/{org}/s{i:02d}", json={"stackName": "prod"}).status_code == 200
        settings = {"sourceContext": {"git": {"repoUrl": repo, "branch": "main"}}}
        assert api.post(f"/api/stacks/{org}/s{i:02d}/prod/deployments/settings", json=settings).status_code == 200
    for up, down, trigger in edges:
        body = {"format": "pulumi_deployments", "payloadUrl": f"{down}/prod", "triggerOn": trigger}
        response = api.post(f"/api/stacks/{org}/{up}/prod/hooks", json=body | {"filters": ["update_succeeded"]})
        assert response.status_code == 201, response.text


def run(api: httpx2.Client, org: str) -> dict[str, Any]:
    root = deploy(api, f"{org}/s00/prod")
    cascade_id = api.get(f"/api/stacks/{org}/s00/prod/deployments/{root}").json()["cascadeId"]
    return wait_cascade(api, org, cascade_id, lambda c: c["status"] != "running", seconds=180)


@pytest.mark.parametrize("seed", [5, 11, 2026])
def test_a_random_dag_with_failures_and_unchanged_outputs_runs_each_member_once_as_the_rule_says(
    pool_server: LiveServer, org: str, tmp_path: Path, seed: int
) -> None:
    edges, failing, changing = random_dag(seed)
    update = f"""
case " {" ".join(sorted(failing))} " in *" $CASCADE_PROJECT "*)
  [ -f "{tmp_path}/failing" ] && {{ echo "planned failure"; exit 3; }} ;;
esac
case " {" ".join(sorted(changing))} " in *" $CASCADE_PROJECT "*) out="v$CASCADE_VERSION" ;; *) out=same ;; esac
printf '{{"out": "%s"}}' "$out" > "$CASCADE_OUTPUTS"
"""
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)})
    with pool_server.client() as api:
        build(api, org, repo, edges)
        first = run(api, org)  # no failures yet, and every output is new: everything runs once
        assert first["status"] == "succeeded"
        assert sorted(m["stack"] for m in first["members"]) == [f"s{i:02d}/prod" for i in range(STACKS)]
        assert {(m["status"], m["version"]) for m in first["members"]} == {("succeeded", 1)}

        (tmp_path / "failing").touch()
        second = run(api, org)
        want = expected(edges, failing, changing)
        got = {m["stack"].removesuffix("/prod"): m for m in second["members"]}
        assert {stack: m["status"] for stack, m in got.items()} == {stack: w[0] for stack, w in want.items()}, (
            f"seed {seed}: edges {edges}, failing {sorted(failing)}, changing {sorted(changing)}"
        )
        assert second["status"] == ("failed" if any(w[0] == "failed" for w in want.values()) else "succeeded")
        finished = {stack: m["finished"] for stack, m in got.items() if m["deploymentId"]}
        for stack, m in got.items():
            deployed = want[stack][1]
            assert (m["deploymentId"] is not None, m["version"]) == (deployed, 2 if deployed else None), stack
            listed = api.get(f"/api/stacks/{org}/{stack}/prod/deployments").json()["deployments"]
            assert len(listed) == (2 if deployed else 1), stack  # at most once in each cascade
            if deployed:
                ran_before = [finished[up] for up, down, _ in edges if down == stack and up in finished]
                assert all(m["started"] >= end for end in ran_before), stack  # after every upstream member
            if m["status"] == "skipped":
                assert m["reason"], stack
