"""The deployment page and its live stream over real HTTP on both databases; real runs on the pool server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx2

from tests.e2e.helpers import all_logs, cascade_yaml, git_repo, wait_for
from tests.support import LiveServer
from tests.web.console import console_client, csrf_of
from tests.web.test_stacks import SOURCE, new_stack, org_token, section, text_of

SECRET = "s3cr3t-value"
UPDATE = """
echo "token=$TOKEN layer=$LAYER"
printf '{"endpoint": "https://%s.example", "password": {"secret": "%s"}}' "$LAYER" "$TOKEN" > "$CASCADE_OUTPUTS"
"""


def events_of(client: httpx2.Client, path: str, *, until: str = "end", seconds: float = 20) -> list[tuple[str, Any]]:
    """Server-sent events of ``path`` as (event, data), up to the first ``until`` event (bounded in time)."""
    found: list[tuple[str, Any]] = []
    deadline = time.monotonic() + seconds
    with client.stream("GET", path, headers={"accept": "text/event-stream"}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                found.append((kind, json.loads(line.removeprefix("data: "))))
                if kind == until:
                    return found
            assert time.monotonic() < deadline, f"no {until!r} event in {seconds} s: {found}"
    raise AssertionError(f"the stream ended without {until!r}: {found}")


def wait_for_cascade(api: httpx2.Client, org: str, cascade_id: str, seconds: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cascade = api.get(f"/api/orgs/{org}/cascades/{cascade_id}").json()
        if cascade["status"] != "running":
            return dict(cascade)
        time.sleep(0.05)
    raise AssertionError(f"cascade {cascade_id} still running after {seconds} s")


def test_a_console_deploy_runs_for_real_and_its_page_shows_steps_log_and_masked_secrets(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=UPDATE)})
    settings = {
        "sourceContext": {"git": {"repoUrl": repo, "branch": "main"}},
        "operationContext": {"environmentVariables": {"LAYER": "net", "TOKEN": {"secret": SECRET}}},
    }
    with pool_server.client() as api:
        stack = new_stack(api, org, "net", settings=settings)
        new_stack(api, org, "app", settings=settings)
        hook = {"format": "pulumi_deployments", "payloadUrl": "app/prod", "filters": ["update_succeeded"]}
        assert api.post(f"/api/stacks/{stack}/hooks", json=hook).status_code == 201
    with console_client(pool_server.url, pool_server.admin_token) as client:
        form = {
            "csrf": csrf_of(client.get(f"/{stack}").text),
            "operation": "update",
            "branch": "main",
            "env": "FOO=bar",
            "secret_env": "EXTRA=another-secret",
            "pre_run": 'echo "pre-run says $FOO and $EXTRA"',
        }
        response = client.post(f"/{stack}/deploy", data=form)
        assert response.status_code == 303, response.text
        deployment_id = response.headers["location"].rsplit("/", 1)[1]
        with pool_server.client() as api:
            body = wait_for(api, stack, deployment_id)
            assert body["status"] == "succeeded", body
            assert body["configuration"]["source"]["git"]["branch"] == "main"
            assert {"name": "FOO", "secret": False, "value": "bar"} in body["configuration"]["environmentVariables"]
            assert {"name": "EXTRA", "secret": True} in body["configuration"]["environmentVariables"]
            log = "\n".join(line["line"] for line in all_logs(api, stack, deployment_id))
            assert "pre-run says bar and [secret]" in log  # the pre-run command of the form ran
            cascade = wait_for_cascade(api, org, body["cascadeId"])
            app_id = next(m["deploymentId"] for m in cascade["members"] if m["stack"] == "app/prod")
            assert cascade["status"] == "succeeded", cascade
        page = client.get(f"/{stack}/deployments/{deployment_id}").text
        stack_page = client.get(f"/{stack}").text
        app_page = client.get(f"/{org}/app/prod/deployments/{app_id}").text
        stream = events_of(client, f"/{stack}/deployments/{deployment_id}/live")

    for html in (page, stack_page, app_page):
        assert SECRET not in html and "another-secret" not in html
    summary = text_of(section(page, "deployment-summary"))
    assert "succeeded Succeeded in" in summary
    assert "started a cascade of the stacks downstream" in summary and f"/{org}/~/cascades/" in page
    steps = text_of(page[page.index('id="deployment-steps"') : page.index('id="log-title"')])
    for number, step in enumerate(("source", "pre-run", "operation", "outputs"), start=1):
        assert f"{number} {step} succeeded" in steps
    log_html = page[page.index('<pre class="log"') : page.index("</pre>")]
    assert "data-stream" not in log_html  # a finished deployment has nothing to follow
    assert "▸ pre-run" in log_html and "pre-run says bar and [secret]" in log_html
    assert "token=[secret] layer=net" in log_html
    assert "The complete log." in page

    outputs = text_of(section(stack_page, "stack-outputs"))
    assert "endpoint https://net.example" in outputs and "password •••••• secret" in outputs
    assert "updated" in text_of(section(stack_page, "stack-status"))

    triggered = text_of(section(app_page, "deployment-summary"))
    assert "Triggered by the deployment of net/prod" in triggered and "deployed by a cascade" in triggered
    assert f'href="/{stack}/deployments/{deployment_id}"' in app_page

    kinds = [kind for kind, _ in stream]
    assert kinds[0] == "hello" and kinds[-1] == "end" and "state" in kinds
    streamed = [line["line"] for kind, data in stream if kind == "log" for line in data["lines"]]
    assert "pre-run says bar and [secret]" in streamed
    state = next(data for kind, data in stream if kind == "state")
    assert state["status"] == "succeeded" and state["terminal"] is True
    assert "outputs" in state["regions"]["deployment-steps"]
    assert SECRET not in json.dumps(stream)


def test_a_queued_deployment_can_be_cancelled_from_its_page(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        stack = new_stack(api, org, settings=SOURCE)
        queued = api.post(f"/api/stacks/{stack}/deployments", json={"operation": "update"}).json()
    path = f"/{stack}/deployments/{queued['id']}"
    with console_client(live_server.url, live_server.admin_token) as client:
        page = client.get(path).text
        assert "Queued: it starts when a runner is free" in page
        assert "No steps yet" in page and 'data-stream="' in page
        assert f'action="{path}/cancel"' in page and 'data-confirm="Cancel deployment #1 of net/prod?"' in page
        first = events_of(client, f"{path}/live", until="state")
        assert first[-1][1]["status"] == "not-started" and first[-1][1]["terminal"] is False
        cancelled = client.post(f"{path}/cancel", data={"csrf": csrf_of(page)})
        assert cancelled.status_code == 303 and cancelled.headers["location"] == path
        after = client.get(path).text
        again = client.post(f"{path}/cancel", data={"csrf": csrf_of(page)})
        repeated = client.get(again.headers["location"]).text
        stream = events_of(client, f"{path}/live?after=0")
    assert "was cancelled before it started: it is skipped" in after
    assert "Skipped: cancelled by" in text_of(section(after, "deployment-summary"))
    assert f'action="{path}/cancel"' not in after and "data-stream" not in after
    assert again.status_code == 303 and "already finished (skipped); nothing to cancel" in repeated
    with live_server.client() as api:
        body = api.get(f"/api/stacks/{stack}/deployments/{queued['id']}").json()
    assert body["status"] == "skipped" and body["reason"].startswith("cancelled by")
    assert [kind for kind, _ in stream] == ["hello", "state", "end"]


def test_cancel_needs_the_csrf_token(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        stack = new_stack(api, org, settings=SOURCE)
        queued = api.post(f"/api/stacks/{stack}/deployments", json={"operation": "update"}).json()
    with console_client(live_server.url, live_server.admin_token) as client:
        refused = client.post(f"/{stack}/deployments/{queued['id']}/cancel", data={})
    assert refused.status_code == 403 and "security token is missing or stale" in refused.text
    with live_server.client() as api:
        assert api.get(f"/api/stacks/{stack}/deployments/{queued['id']}").json()["status"] == "not-started"


def test_a_deployment_named_by_its_version_as_webhook_payloads_link_it_redirects_to_its_page(
    live_server: LiveServer, org: str
) -> None:
    with live_server.client() as api:
        stack = new_stack(api, org, settings=SOURCE)
        queued = api.post(f"/api/stacks/{stack}/deployments", json={"operation": "update"}).json()
    with console_client(live_server.url, live_server.admin_token) as client:
        by_version = client.get(f"/{stack}/deployments/{queued['version']}")
        assert by_version.status_code == 303
        assert by_version.headers["location"] == f"/{stack}/deployments/{queued['id']}"
        assert client.get(f"/{stack}/deployments/{queued['version'] + 1}").status_code == 404
        assert client.get(f"/{stack}/deployments/{'9' * 30}").status_code == 404  # beyond any version: not a 500
        assert client.get(f"/{stack}/deployments/{'9' * 5000}").status_code == 404  # beyond what int() converts
        assert client.get(f"/{stack}/deployments/\u0661").status_code == 404  # a digit, but no ASCII one
        live = f"/{stack}/deployments/{queued['id']}/live"
        for position in ("9" * 20, "2147483648"):  # refused before the stream starts, not a broken stream
            refused = client.get(live, params={"after": position}, headers={"accept": "text/event-stream"})
            assert refused.status_code == 400, refused.text


def test_another_orgs_deployment_and_its_stream_are_not_found(live_server: LiveServer, org: str) -> None:
    other = f"{org}-other"
    with live_server.client() as api:
        mine = new_stack(api, org, settings=SOURCE)
        stack = new_stack(api, other, settings=SOURCE)
        queued = api.post(f"/api/stacks/{stack}/deployments", json={"operation": "update"}).json()
    path = f"/{stack}/deployments/{queued['id']}"
    with console_client(live_server.url, org_token(live_server, org, "admin")) as client:
        token = csrf_of(client.get(f"/{mine}").text)
        page = client.get(path)
        live = client.get(f"{path}/live", headers={"accept": "text/event-stream"})
        cancel = client.post(f"{path}/cancel", data={"csrf": token})
        unknown = client.get(f"/{mine}/deployments/{queued['id']}")
        bad_position = client.get(f"/{mine}/deployments/{queued['id']}/live", params={"after": "x"})
    assert page.status_code == 404 and live.status_code == 404 and cancel.status_code == 404
    assert live.json()["code"] == 404  # a script gets a short answer, not a page
    assert unknown.status_code == 404 and f"deployment {queued['id']} not found on stack {mine}" in unknown.text
    assert bad_position.status_code == 404  # the deployment is checked first
    with live_server.client() as api:
        assert api.get(f"/api/stacks/{stack}/deployments/{queued['id']}").json()["status"] == "not-started"


def test_the_stream_refuses_a_position_it_did_not_give_out(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        stack = new_stack(api, org, settings=SOURCE)
        queued = api.post(f"/api/stacks/{stack}/deployments", json={"operation": "update"}).json()
    with console_client(live_server.url, live_server.admin_token) as client:
        response = client.get(
            f"/{stack}/deployments/{queued['id']}/live", params={"after": "x"}, headers={"accept": "text/event-stream"}
        )
    assert response.status_code == 400 and "log position" in response.json()["message"]


def test_the_deployments_address_leads_to_the_stack_history(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        stack = new_stack(api, org, settings=SOURCE)
    with console_client(live_server.url, live_server.admin_token) as client:
        response = client.get(f"/{stack}/deployments")
    assert response.status_code == 303 and response.headers["location"] == f"/{stack}#history"


def test_a_deployments_stream_ends_when_its_token_is_revoked_and_sends_nothing_read_after(
    live_server: LiveServer, org: str
) -> None:
    with live_server.client() as api:
        stack = new_stack(api, org, settings=SOURCE)
        queued = api.post(f"/api/stacks/{stack}/deployments", json={"operation": "update"}).json()
        viewer = api.post("/api/tokens", json={"name": "v", "org": org, "role": "viewer"}).json()
        events: list[tuple[str, Any]] = []
        with (
            console_client(live_server.url, viewer["token"]) as client,
            client.stream("GET", f"/{stack}/deployments/{queued['id']}/live", timeout=20) as stream,
        ):
            kind = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line.removeprefix("data: "))))
                    if kind == "state" and len(events) == 2:  # hello, then the queued state: now revoke
                        assert api.delete(f"/api/tokens/{viewer['id']}").status_code == 204
                        assert api.post(f"/api/stacks/{stack}/deployments/{queued['id']}/cancel").status_code == 200
    assert [kind for kind, _ in events] == ["hello", "state", "end"], events
    assert events[-1][1] == {"message": "your session ended; sign in again"}
