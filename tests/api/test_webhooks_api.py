"""Webhooks over real HTTP: the contract's shapes, errors, live delivery, ping, redeliver, references,
signature checked by the documented example receiver, and a restart in the middle of a backlog."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support import DATABASES, LiveServer, assert_error, fresh_database, start_server
from tests.webhook_receiver import receiving

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "webhooks" / "receiver.py"
DELIVERY_FIELDS = {
    "id", "kind", "payload", "timestamp", "duration", "requestUrl", "requestHeaders",
    "responseCode", "responseHeaders", "responseBody",
}  # fmt: skip


@pytest.fixture(scope="module")
def live_server(loopback_server: LiveServer) -> LiveServer:
    """The module's server may deliver webhooks to receivers on 127.0.0.1."""
    return loopback_server


@pytest.fixture
def stack(admin: httpx2.Client, org: str) -> str:
    assert admin.post(f"/api/stacks/{org}/net", json={"stackName": "prod"}).status_code == 200
    settings = {"sourceContext": {"git": {"repoUrl": "file:///tmp/nowhere", "branch": "main"}}}
    assert admin.post(f"/api/stacks/{org}/net/prod/deployments/settings", json=settings).status_code == 200
    return f"{org}/net/prod"


def recorded(admin: httpx2.Client, url: str, count: int, seconds: float = 20) -> list[dict[str, Any]]:
    """The delivery history once ``count`` attempts are recorded (they are, right after the receiver answers)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        history = admin.get(url, params={"pageSize": 100}).json()
        if len(history) >= count:
            return list(history)
        time.sleep(0.02)
    raise AssertionError(f"{count} attempts were not recorded within {seconds} s")


def created(response: httpx2.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_stack_webhook_crud_in_the_contract_shapes(admin: httpx2.Client, stack: str, org: str) -> None:
    hooks = f"/api/stacks/{stack}/hooks"
    body = {"organizationName": org, "projectName": "net", "stackName": "prod", "displayName": "Notify",
            "payloadUrl": "http://127.0.0.1:9/hook", "secret": "s3cret", "format": "slack",
            "filters": ["update_failed"], "active": True}  # fmt: skip
    hook = created(admin.post(hooks, json=body))
    assert "secret" not in hook and hook["hasSecret"] is True and "s3cret" not in json.dumps(hook)
    assert hook | {"name": "x"} == {
        "organizationName": org, "projectName": "net", "stackName": "prod", "name": "x", "displayName": "Notify",
        "payloadUrl": "http://127.0.0.1:9/hook", "active": True, "format": "slack", "filters": ["update_failed"],
        "groups": [], "hasSecret": True, "secretCiphertext": "",
    }  # fmt: skip
    name = hook["name"]
    assert admin.get(hooks).json() == [hook]
    assert admin.get(f"{hooks}/{name}").json() == hook
    patched = admin.patch(f"{hooks}/{name}", json={"active": False, "groups": ["deployments"]}).json()
    assert patched == hook | {"active": False, "groups": ["deployments"]}
    assert admin.delete(f"{hooks}/{name}").status_code == 204
    assert_error(admin.get(f"{hooks}/{name}"), 404)


def test_org_webhooks_live_beside_stack_webhooks(admin: httpx2.Client, stack: str, org: str) -> None:
    hook = created(admin.post(f"/api/orgs/{org}/hooks", json={"name": "all", "payloadUrl": "http://127.0.0.1:9/"}))
    assert "projectName" not in hook and hook["organizationName"] == org and hook["format"] == "raw"
    assert admin.get(f"/api/stacks/{stack}/hooks").json() == []
    assert [h["name"] for h in admin.get(f"/api/orgs/{org}/hooks").json()] == ["all"]


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ({"name": "dup", "payloadUrl": "http://127.0.0.1:9/"}, 409, "already has a webhook named 'dup'"),
        ({"organizationName": "elsewhere", "payloadUrl": "http://127.0.0.1:9/"}, 400, "disagrees"),
        ({"payloadUrl": "http://169.254.169.254/latest/meta-data"}, 400, "169.254.169.254"),
        ({"payloadUrl": "http://192.168.1.10/"}, 400, "CASCADE_WEBHOOK_ALLOW_NETWORKS"),
        ({"payloadUrl": "file:///etc/passwd"}, 400, "http"),
        ({"payloadUrl": "http://127.0.0.1:9/", "filters": ["stack_created"]}, 400, "organization"),
        (
            {"payloadUrl": "http://127.0.0.1:9/", "filters": ["policy_violation_mandatory"]},
            400,
            "policy_violation_mandatory",
        ),
        ({"payloadUrl": "http://127.0.0.1:9/", "groups": ["environments"]}, 400, "environments"),
        ({"format": "pulumi_deployments", "payloadUrl": "nope/prod"}, 400, "does not exist"),
    ],
)
def test_bad_webhooks_get_a_4xx_that_says_what_to_fix(
    admin: httpx2.Client, stack: str, body: dict[str, Any], code: int, fragment: str
) -> None:
    created(admin.post(f"/api/stacks/{stack}/hooks", json={"name": "dup", "payloadUrl": "http://127.0.0.1:9/"}))
    message = assert_error(admin.post(f"/api/stacks/{stack}/hooks", json=body), code)
    assert fragment in message
    assert [h["name"] for h in admin.get(f"/api/stacks/{stack}/hooks").json()] == ["dup"]


def test_deployment_webhooks_on_an_org_are_refused(admin: httpx2.Client, stack: str, org: str) -> None:
    body = {"format": "pulumi_deployments", "payloadUrl": "net/prod"}
    assert "stack webhooks only" in assert_error(admin.post(f"/api/orgs/{org}/hooks", json=body), 400)


def test_viewers_get_403_and_other_orgs_404(
    live_server: LiveServer, admin: httpx2.Client, stack: str, org: str
) -> None:
    created(admin.post(f"/api/stacks/{stack}/hooks", json={"name": "h", "payloadUrl": "http://127.0.0.1:9/"}))
    viewer = admin.post("/api/tokens", json={"org": org, "role": "viewer"}).json()["token"]
    stranger = admin.post("/api/tokens", json={"org": "other-org", "role": "admin"}).json()["token"]
    with httpx2.Client(base_url=live_server.url, headers={"Authorization": f"token {viewer}"}) as client:
        assert_error(client.get(f"/api/stacks/{stack}/hooks/h"), 403)
        assert client.get(f"/api/stacks/{stack}/downstreamreferences").status_code == 200
    with httpx2.Client(base_url=live_server.url, headers={"Authorization": f"token {stranger}"}) as client:
        assert_error(client.get(f"/api/stacks/{stack}/hooks/h"), 404)
        assert_error(client.post(f"/api/stacks/{stack}/hooks/h/ping"), 404)


def test_events_are_delivered_by_the_running_dispatcher(admin: httpx2.Client, stack: str) -> None:
    with receiving() as receiver:
        created(
            admin.post(
                f"/api/stacks/{stack}/hooks",
                json={"name": "q", "payloadUrl": receiver.url, "filters": ["deployment_queued"]},
            )
        )
        deployment = admin.post(f"/api/stacks/{stack}/deployments", json={"operation": "update"}).json()
        [request] = receiver.wait_for(1)
    payload = json.loads(request.body)
    assert request.headers["Pulumi-Webhook-Kind"] == "deployment"
    assert payload["deploymentId"] == deployment["id"] and payload["status"] == "not-started"
    deliveries = recorded(admin, f"/api/stacks/{stack}/hooks/q/deliveries", 1)
    assert len(deliveries) == 1 and deliveries[0].keys() >= DELIVERY_FIELDS
    assert deliveries[0]["payload"] == request.body.decode() and deliveries[0]["responseCode"] == 200


def test_ping_and_redeliver_answer_with_the_delivery(admin: httpx2.Client, stack: str) -> None:
    with receiving(plan=[500]) as receiver:
        created(admin.post(f"/api/stacks/{stack}/hooks", json={"name": "p", "payloadUrl": receiver.url}))
        first = admin.post(f"/api/stacks/{stack}/hooks/p/ping")
        assert first.status_code == 200, first.text
        failed = first.json()
        assert failed.keys() >= DELIVERY_FIELDS and failed["kind"] == "ping" and failed["responseCode"] == 500
        again = admin.post(f"/api/stacks/{stack}/hooks/p/deliveries/{failed['id']}/redeliver").json()
        requests = receiver.wait_for(2)
    assert again["responseCode"] == 200 and again["payload"] == failed["payload"]
    assert requests[0].body == requests[1].body
    assert "Pulumi-Webhook-Kind: ping" in failed["requestHeaders"] and "x-receiver: test" in again["responseHeaders"]
    history = admin.get(f"/api/stacks/{stack}/hooks/p/deliveries", params={"pageSize": 1}).json()
    assert [d["id"] for d in history] == [again["id"]]
    older = admin.get(f"/api/stacks/{stack}/hooks/p/deliveries", params={"pageSize": 1, "before": again["id"]}).json()
    assert [d["id"] for d in older] == [failed["id"]]
    assert_error(admin.post(f"/api/stacks/{stack}/hooks/p/deliveries/{uuid.uuid4()}/redeliver"), 404)
    assert_error(admin.get(f"/api/stacks/{stack}/hooks/p/deliveries", params={"pageSize": 0}), 400)


def test_the_documented_receiver_verifies_the_signature(admin: httpx2.Client, stack: str) -> None:
    env = {**os.environ, "WEBHOOK_SECRET": "docs-example-secret"}
    with subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", "0"], env=env, stdout=subprocess.PIPE, text=True
    ) as receiver:
        try:
            assert receiver.stdout is not None
            url = receiver.stdout.readline().split()[-1]
            hooks = f"/api/stacks/{stack}/hooks"
            created(admin.post(hooks, json={"name": "good", "payloadUrl": url, "secret": "docs-example-secret"}))
            created(admin.post(hooks, json={"name": "bad", "payloadUrl": url, "secret": "wrong"}))
            good = admin.post(f"{hooks}/good/ping").json()
            bad = admin.post(f"{hooks}/bad/ping").json()
            lines = [json.loads(receiver.stdout.readline()) for _ in range(2)]
        finally:
            receiver.terminate()
    assert (good["responseCode"], bad["responseCode"]) == (200, 401)
    assert [line["verified"] for line in lines] == [True, False]
    assert lines[0]["kind"] == "ping" and lines[0]["id"] == good["deliveryId"]


def test_cycles_are_refused_and_references_follow_the_graph(admin: httpx2.Client, org: str) -> None:
    for project in ("network", "app"):
        assert admin.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod"}).status_code == 200
    edge = {"format": "pulumi_deployments", "payloadUrl": "app/prod", "filters": ["update_succeeded"]}
    created(admin.post(f"/api/stacks/{org}/network/prod/hooks", json=edge))
    back = {"format": "pulumi_deployments", "payloadUrl": "network/prod"}
    message = assert_error(admin.post(f"/api/stacks/{org}/app/prod/hooks", json=back), 409)
    assert message.endswith("app/prod -> network/prod -> app/prod")
    down = admin.get(f"/api/stacks/{org}/network/prod/downstreamreferences").json()
    up = admin.get(f"/api/stacks/{org}/app/prod/upstreamreferences").json()
    assert down == {"referencedStacks": [{"organization": org, "routingProject": "app", "name": "prod", "version": 0}]}
    assert [s["routingProject"] for s in up["referencedStacks"]] == ["network"]
    assert admin.get(f"/api/stacks/{org}/app/prod/downstreamreferences").json() == {"referencedStacks": []}
    ping = admin.post(f"/api/stacks/{org}/network/prod/hooks/{created_name(admin, org)}/ping")
    assert "nothing to send" in assert_error(ping, 400)


def test_a_webhook_cannot_take_an_edge_from_the_auto_deploy_declaration(admin: httpx2.Client, org: str) -> None:
    for project in ("network", "app"):
        assert admin.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod"}).status_code == 200
    declaration = {"stacks": [{"project": "network", "stack": "prod", "downstreamRefs": ["app/prod"]}]}
    assert admin.put(f"/api/orgs/{org}/autodeploy", json=declaration).status_code == 200
    hooks = f"/api/stacks/{org}/network/prod/hooks"
    edge = {"name": "manual", "format": "pulumi_deployments", "payloadUrl": "app/prod"}
    assert "managed by the org's Auto Deploy declaration" in assert_error(admin.post(hooks, json=edge), 409)
    created(admin.post(hooks, json=edge | {"active": False}))
    message = assert_error(admin.patch(f"{hooks}/manual", json={"active": True}), 409)
    assert f"PUT /api/orgs/{org}/autodeploy" in message
    # The org's own declaration still applies as it is.
    shown = admin.get(f"/api/orgs/{org}/autodeploy").json()
    assert admin.put(f"/api/orgs/{org}/autodeploy", json=shown).status_code == 200


def created_name(admin: httpx2.Client, org: str) -> str:
    return str(admin.get(f"/api/stacks/{org}/network/prod/hooks").json()[0]["name"])


@pytest.mark.parametrize("database", DATABASES)
def test_a_restart_in_the_middle_of_a_backlog_loses_nothing(
    database: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Deliveries fail and wait for their retry; the server stops; the next server delivers every one."""
    org = f"org-{uuid.uuid4().hex[:8]}"
    retry = "attempts=20,first=3,factor=1,jitter=0"  # long enough that the first server retries nothing
    count = 25
    with fresh_database(database, tmp_path) as url, receiving(plan=[503] * count) as receiver:
        first = start_server(url, tmp_path, webhook_allow_networks="127.0.0.0/8", webhook_retry=retry)
        try:
            with first.client() as api:
                assert api.post(f"/api/stacks/{org}/net", json={"stackName": "prod"}).status_code == 200
                body = {"name": "h", "payloadUrl": receiver.url, "filters": ["deployment_queued"]}
                created(api.post(f"/api/stacks/{org}/net/prod/hooks", json=body))
                source = {"sourceContext": {"git": {"repoUrl": "file:///tmp/nowhere"}}}
                ids = [
                    api.post(f"/api/stacks/{org}/net/prod/deployments", json={"operation": "update", **source}).json()[
                        "id"
                    ]
                    for _ in range(count)
                ]
            receiver.wait_for(count)  # every first attempt failed: the backlog waits for its retries
        finally:
            first.stop()
        # Every first attempt failed, and the backlog still waits for its retries (a loaded machine may
        # reach the first few retries, 3 s in, before the stop; those then succeed, and count as delivered).
        assert count <= len(receiver.requests) < 2 * count
        second = start_server(url, tmp_path, webhook_allow_networks="127.0.0.0/8", webhook_retry=retry)
        try:
            receiver.wait_for(2 * count)
            with second.client() as api:
                history = recorded(api, f"/api/stacks/{org}/net/prod/hooks/h/deliveries", 2 * count)
        finally:
            second.stop()
    delivered = {json.loads(r.body)["deploymentId"] for r in receiver.requests[count:]}
    assert delivered == set(ids)
    assert sum(1 for d in history if d["responseCode"] == 200) == count
    assert all(d["deliveryStatus"] == "succeeded" for d in history)


def test_each_format_sends_its_own_body_for_the_same_event(admin: httpx2.Client, stack: str) -> None:
    with receiving() as raw, receiving() as slack, receiving() as teams:
        for name, receiver, format_ in (("r", raw, "raw"), ("s", slack, "slack"), ("t", teams, "ms_teams")):
            body = {"name": name, "payloadUrl": receiver.url, "format": format_, "filters": ["deployment_queued"]}
            created(admin.post(f"/api/stacks/{stack}/hooks", json=body))
        deployment = admin.post(f"/api/stacks/{stack}/deployments", json={"operation": "update"}).json()
        [as_raw], [as_slack], [as_teams] = raw.wait_for(1), slack.wait_for(1), teams.wait_for(1)
    raw_body, slack_body, teams_body = (json.loads(r.body) for r in (as_raw, as_slack, as_teams))
    assert raw_body["deploymentId"] == deployment["id"] and raw_body["projectName"] == "net"
    assert isinstance(slack_body["text"], str) and slack_body["blocks"][0]["type"] == "section"
    assert teams_body["@type"] == "MessageCard" and teams_body["potentialAction"][0]["@type"] == "OpenUri"
    assert {r.headers["Pulumi-Webhook-Kind"] for r in (as_raw, as_slack, as_teams)} == {"deployment"}
