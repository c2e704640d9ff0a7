"""The stack page over real HTTP on both databases: what it shows, the deploy form, pause, gate, roles."""

from __future__ import annotations

import base64
import html as htmllib
import re
from collections.abc import Mapping
from typing import Any

import httpx2

from tests.support import LiveServer
from tests.web.console import console_client, csrf_of

SECRET = "s3cr3t-value"
SOURCE = {"sourceContext": {"git": {"repoUrl": "file:///nowhere", "branch": "main"}}}


def text_of(page: str) -> str:
    """The page's visible text, blanks squeezed (for assertions that read like the page)."""
    return re.sub(r"\s+", " ", htmllib.unescape(re.sub(r"<[^>]+>", " ", page)))


def section(page: str, element_id: str) -> str:
    start = page.index(f'id="{element_id}"')
    return page[start : page.index("</section>", start)]


def new_stack(api: httpx2.Client, org: str, project: str = "net", *, settings: Mapping[str, Any] | None = None) -> str:
    created = api.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod"})
    assert created.status_code == 200, created.text
    if settings is not None:
        saved = api.post(f"/api/stacks/{org}/{project}/prod/deployments/settings", json=settings)
        assert saved.status_code == 200, saved.text
    return f"{org}/{project}/prod"


def org_token(server: LiveServer, org: str, role: str) -> str:
    with server.client() as api:
        created = api.post("/api/tokens", json={"name": f"{role}-{org}", "org": org, "role": role})
        assert created.status_code == 201, created.text
        return str(created.json()["token"])


def test_settings_show_source_and_variables_with_secrets_masked(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        settings = {
            **SOURCE,
            "operationContext": {
                "environmentVariables": {"LAYER": "net", "TOKEN": {"secret": SECRET}},
                "preRunCommands": ["make deps"],
            },
        }
        stack = new_stack(api, org, settings=settings)
        shown = api.get(f"/api/stacks/{stack}/deployments/settings").json()
    ciphertext = shown["operationContext"]["environmentVariables"]["TOKEN"]["ciphertext"]
    with console_client(live_server.url, live_server.admin_token) as client:
        page = client.get(f"/{stack}")
    assert page.status_code == 200
    assert SECRET not in page.text
    assert ciphertext not in page.text and base64.b64decode(ciphertext).decode() not in page.text
    settings_text = text_of(section(page.text, "settings"))
    assert "Repository file:///nowhere" in settings_text and "Branch main" in settings_text
    assert "LAYER = net" in settings_text
    assert "TOKEN = •••••• secret" in settings_text
    assert "make deps" in settings_text


def test_a_stack_without_settings_says_so_and_the_form_explains_why_it_cannot_deploy(
    live_server: LiveServer, org: str
) -> None:
    with live_server.client() as api:
        stack = new_stack(api, org)
    with console_client(live_server.url, live_server.admin_token) as client:
        page = client.get(f"/{stack}")
        assert "No settings saved." in page.text
        assert "No deployment yet." in page.text and "No outputs yet" in page.text
        assert "No downstream stacks" in page.text
        refused = client.post(f"/{stack}/deploy", data={"csrf": csrf_of(page.text), "operation": "update"})
    assert refused.status_code == 400
    assert f"no source for stack {stack}" in text_of(refused.text)


def test_history_edges_and_impact_plan_link_to_deployments_cascades_and_stacks(
    live_server: LiveServer, org: str
) -> None:
    with live_server.client() as api:
        for project in ("net", "db", "app"):
            new_stack(api, org, project, settings=SOURCE)
        for up, down, extra in (("net", "db", {"triggerOn": "outputs-changed"}), ("db", "app", {})):
            hook = {"format": "pulumi_deployments", "payloadUrl": f"{down}/prod", **extra}
            assert api.post(f"/api/stacks/{org}/{up}/prod/hooks", json=hook).status_code == 201
        gated = api.patch(f"/api/stacks/{org}/app/prod/cascadesettings", json={"requireApproval": True})
        assert gated.status_code == 200, gated.text
        first = api.post(f"/api/stacks/{org}/net/prod/deployments", json={"operation": "preview"}).json()
        second = api.post(f"/api/stacks/{org}/net/prod/deployments", json={"operation": "update"}).json()
        cascade_id = api.get(f"/api/stacks/{org}/net/prod/deployments/{second['id']}").json()["cascadeId"]
    assert cascade_id
    with console_client(live_server.url, live_server.admin_token) as client:
        page = client.get(f"/{org}/net/prod").text
        db_page = client.get(f"/{org}/db/prod").text
    history = section(page, "history")
    assert history.index(f"/{org}/net/prod/deployments/{second['id']}") < history.index(first["id"])  # newest first
    assert "#2 update" in text_of(history) and "#1 preview" in text_of(history)
    assert f'href="/{org}/~/cascades/{cascade_id}"' in history
    assert "queued" in text_of(history)
    status = text_of(page[page.index('id="stack-status"') :])
    assert "Last deployment queued update #2" in status
    edges = section(page, "edges")
    assert f'href="/{org}/db/prod"' in edges and "only when outputs changed" in text_of(edges)
    assert f'href="/{org}/net/prod/webhooks"' in edges
    waves = text_of(edges[edges.index("Impact of an update") :])
    assert "Wave 1 db/prod Wave 2 app/prod waits for approval" in waves
    db_edges = text_of(section(db_page, "edges"))
    assert "Upstream (their updates deploy db/prod) net/prod only when outputs changed" in db_edges


def test_history_pages_through_older_deployments(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        stack = new_stack(api, org, settings=SOURCE)
        for _ in range(23):
            assert api.post(f"/api/stacks/{stack}/deployments", json={"operation": "preview"}).status_code == 202
    with console_client(live_server.url, live_server.admin_token) as client:
        first = section(client.get(f"/{stack}").text, "history")
        second = section(client.get(f"/{stack}", params={"page": 2}).text, "history")
        beyond = client.get(f"/{stack}", params={"page": 9})
        invalid = client.get(f"/{stack}", params={"page": 0})
    assert first.count("<tr data-deployment=") == 20 and "#23 preview" in first and "#4 preview" in first
    assert "page 1 of 2" in text_of(first) and "?page=2#history" in first
    assert second.count("<tr data-deployment=") == 3 and "#3 preview" in second and "#1 preview" in second
    assert beyond.status_code == 200 and "No deployments on page 9" in beyond.text
    assert invalid.status_code == 400


def test_the_deploy_form_queues_a_deployment_with_the_one_off_overrides(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        stack = new_stack(api, org, settings={**SOURCE, "operationContext": {"environmentVariables": {"KEEP": "1"}}})
    with console_client(live_server.url, live_server.admin_token) as client:
        token = csrf_of(client.get(f"/{stack}").text)
        form = {
            "csrf": token,
            "operation": "refresh",
            "branch": "feature/x",
            "commit": "",
            "env": "FOO=bar\n\n# a comment\nEMPTY=\r\nURL=https://x.example/?a=b",
            "secret_env": f"TOKEN={SECRET}",
            "pre_run": "echo one\n  echo two  \n",
        }
        response = client.post(f"/{stack}/deploy", data=form)
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        landed = client.get(location)
    assert location.startswith(f"/{stack}/deployments/")
    assert "Deployment #1 (refresh) of net/prod queued." in landed.text
    assert SECRET not in landed.text
    deployment_id = location.rsplit("/", 1)[1]
    with live_server.client() as api:
        body = api.get(f"/api/stacks/{stack}/deployments/{deployment_id}").json()
    assert body["pulumiOperation"] == "refresh" and body["initiator"] == "console"
    assert body["configuration"]["source"]["git"] == {"repoURL": "file:///nowhere", "branch": "feature/x"}
    assert body["configuration"]["environmentVariables"] == [
        {"name": "EMPTY", "secret": False, "value": ""},
        {"name": "FOO", "secret": False, "value": "bar"},
        {"name": "KEEP", "secret": False, "value": "1"},
        {"name": "TOKEN", "secret": True},
        {"name": "URL", "secret": False, "value": "https://x.example/?a=b"},
    ]
    configuration = text_of(landed.text[landed.text.index('id="config-title"') :])
    assert (
        "Pre-run commands echo one echo two Environment" in configuration
    )  # the pre-run commands of this run, in order


def test_bad_deploy_input_is_shown_again_with_the_message_and_the_values_typed(
    live_server: LiveServer, org: str
) -> None:
    with live_server.client() as api:
        stack = new_stack(api, org, settings=SOURCE)
    cases = [
        ({"env": "FOO"}, "environment variables, line 1 ('FOO'): no '=' found; write NAME=value"),
        ({"env": "1X=2"}, "'1X' is not a variable name"),
        ({"branch": "dev", "commit": "abc123"}, "give a branch or a commit, not both"),
        ({"operation": "explode"}, "choose an operation: update, preview, refresh, destroy (got 'explode')"),
        ({"env": "A=1", "secret_env": "A=2"}, "A: give each variable once, as plain or as secret"),
        ({"secret_env": SECRET}, "secret environment variables, line 1: no '=' found"),
    ]
    with console_client(live_server.url, live_server.admin_token) as client:
        token = csrf_of(client.get(f"/{stack}").text)
        for fields, message in cases:
            form = {"csrf": token, "operation": "update", "pre_run": "echo kept", "secret_env": "S=hidden-typed"}
            response = client.post(f"/{stack}/deploy", data=form | fields)
            assert response.status_code == 400, (fields, response.text)
            shown = response.text
            assert message in htmllib.unescape(shown), (fields, text_of(section(shown, "deploy")))
            assert 'role="alert" id="deploy-error"' in shown
            assert "echo kept</textarea>" in shown  # what was typed is kept...
            for name, value in fields.items():
                if name in ("env", "branch", "commit"):
                    assert htmllib.escape(value, quote=False) in shown
            assert "hidden-typed" not in shown and SECRET not in shown  # ...but secret values never come back
            assert "Type them again" in shown
    with live_server.client() as api:
        assert api.get(f"/api/stacks/{stack}/deployments").json()["total"] == 0


def test_pause_resume_and_the_approval_gate_change_what_the_api_reports(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        stack = new_stack(api, org, settings=SOURCE)
    with console_client(live_server.url, live_server.admin_token) as client, live_server.client() as api:
        page = client.get(f"/{stack}").text
        token = csrf_of(page)
        assert f'action="/{stack}/pause"' in page and f'action="/{stack}/resume"' not in page
        paused = client.post(f"/{stack}/pause", data={"csrf": token})
        assert paused.status_code == 303 and paused.headers["location"] == f"/{stack}"
        assert api.get(f"/api/stacks/{stack}/deployments/metadata").json()["stackPaused"] is True
        page = client.get(f"/{stack}").text
        assert "is paused: queued deployments wait" in page  # the flash
        assert f'action="/{stack}/resume"' in page and "paused" in text_of(section(page, "stack-status"))
        assert client.post(f"/{stack}/resume", data={"csrf": token}).status_code == 303
        assert api.get(f"/api/stacks/{stack}/deployments/metadata").json()["stackPaused"] is False

        assert client.post(f"/{stack}/gate", data={"csrf": token, "require_approval": "on"}).status_code == 303
        assert api.get(f"/api/stacks/{stack}/cascadesettings").json() == {"requireApproval": True}
        assert "approval required" in text_of(section(client.get(f"/{stack}").text, "stack-status"))
        assert client.post(f"/{stack}/gate", data={"csrf": token, "require_approval": "off"}).status_code == 303
        assert api.get(f"/api/stacks/{stack}/cascadesettings").json() == {"requireApproval": False}
        assert client.post(f"/{stack}/gate", data={"csrf": token, "require_approval": "maybe"}).status_code == 400


def test_a_viewer_sees_no_controls_and_is_refused_every_post(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        stack = new_stack(api, org, settings=SOURCE)
        queued = api.post(f"/api/stacks/{stack}/deployments", json={"operation": "update"}).json()
    viewer = org_token(live_server, org, "viewer")
    with console_client(live_server.url, viewer) as client:
        page = client.get(f"/{stack}").text
        deployment_page = client.get(f"/{stack}/deployments/{queued['id']}").text
        token = csrf_of(page)
        posts = {
            f"/{stack}/deploy": {"operation": "update"},
            f"/{stack}/pause": {},
            f"/{stack}/resume": {},
            f"/{stack}/gate": {"require_approval": "on"},
            f"/{stack}/deployments/{queued['id']}/cancel": {},
        }
        answers = {path: client.post(path, data={"csrf": token, **fields}) for path, fields in posts.items()}
    for html in (page, deployment_page):
        assert html.count('<form method="post"') == 1  # sign out, nothing else
    assert 'id="deploy"' not in page and "Cancel" not in deployment_page
    for path, answer in answers.items():
        assert answer.status_code == 403, (path, answer.status_code)
        assert "role viewer" in answer.text
    with live_server.client() as api:
        assert api.get(f"/api/stacks/{stack}/deployments").json()["total"] == 1
        assert api.get(f"/api/stacks/{stack}/deployments/metadata").json()["stackPaused"] is False
        assert api.get(f"/api/stacks/{stack}/deployments/{queued['id']}").json()["status"] == "not-started"


def test_a_member_gets_the_controls(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        stack = new_stack(api, org, settings=SOURCE)
    with console_client(live_server.url, org_token(live_server, org, "member")) as client:
        page = client.get(f"/{stack}").text
        assert 'id="deploy"' in page and f'action="/{stack}/pause"' in page
        response = client.post(f"/{stack}/deploy", data={"csrf": csrf_of(page), "operation": "preview"})
    assert response.status_code == 303


def test_every_post_needs_the_csrf_token(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        stack = new_stack(api, org, settings=SOURCE)
    with console_client(live_server.url, live_server.admin_token) as client:
        for action, fields in (("deploy", {"operation": "update"}), ("pause", {}), ("resume", {}), ("gate", {})):
            refused = client.post(f"/{stack}/{action}", data=fields)
            assert refused.status_code == 403, action
            assert "security token is missing or stale" in refused.text
            forged = client.post(f"/{stack}/{action}", data={"csrf": "0" * 64, **fields})
            assert forged.status_code == 403, action
    with live_server.client() as api:
        assert api.get(f"/api/stacks/{stack}/deployments").json()["total"] == 0
        assert api.get(f"/api/stacks/{stack}/deployments/metadata").json()["stackPaused"] is False


def test_another_orgs_stack_is_not_found(live_server: LiveServer, org: str) -> None:
    other = f"{org}-other"
    with live_server.client() as api:
        new_stack(api, org, settings=SOURCE)
        stack = new_stack(api, other, settings=SOURCE)
    with console_client(live_server.url, org_token(live_server, org, "admin")) as client:
        page = client.get(f"/{stack}")
        token = csrf_of(client.get(f"/{org}/net/prod").text)
        posted = client.post(f"/{stack}/pause", data={"csrf": token})
        missing = client.get(f"/{org}/net/nope")
    assert page.status_code == 404 and f"stack {stack} not found" in page.text
    assert posted.status_code == 404
    assert missing.status_code == 404 and f"stack {org}/net/nope not found" in missing.text
    with live_server.client() as api:
        assert api.get(f"/api/stacks/{stack}/deployments/metadata").json()["stackPaused"] is False


def test_the_deploy_form_address_leads_back_to_the_stack_page(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        stack = new_stack(api, org, settings=SOURCE)
    with console_client(live_server.url, live_server.admin_token) as client:
        response = client.get(f"/{stack}/deploy")
    assert response.status_code == 303 and response.headers["location"] == f"/{stack}#deploy"
