"""Webhook pages over real HTTP on both databases: the forms call the same services as the API, with the same
body; ping and redeliver reach a real receiver on 127.0.0.1; secrets never reach the HTML."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import httpx2
import pytest

from tests.support import LiveServer
from tests.web.console import console_client, csrf_of
from tests.webhook_receiver import receiving

SECRET = "sw0rdfish-never-shown-7c1e"


def org_url(org: str, *more: str) -> str:
    return "/".join([f"/{org}/~/webhooks", *more])


def stack_url(org: str, ref: str, *more: str) -> str:
    return "/".join([f"/{org}/{ref}/webhooks", *more])


def make_stacks(server: LiveServer, org: str, *refs: str) -> None:
    with server.client() as api:
        for ref in refs:
            project, stack = ref.split("/")
            api.post(f"/api/stacks/{org}/{project}", json={"stackName": stack}).raise_for_status()


def org_token(server: LiveServer, org: str, role: str) -> str:
    with server.client() as api:
        created = api.post("/api/tokens", json={"name": f"{role}-{org}", "org": org, "role": role})
        created.raise_for_status()
        return str(created.json()["token"])


def api_hook(server: LiveServer, path: str) -> dict[str, Any]:
    with server.client() as api:
        response = api.get(path)
        response.raise_for_status()
        return dict(response.json())


def create_hook(server: LiveServer, path: str, **body: Any) -> dict[str, Any]:
    with server.client() as api:
        response = api.post(path, json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())


def post(client: httpx2.Client, url: str, data: dict[str, Any] | None = None, *, csrf_from: str) -> httpx2.Response:
    """Submit a console form as a browser would: with the CSRF token of a page the user has open."""
    page = client.get(csrf_from)
    return client.post(url, data={"csrf": csrf_of(page.text), **(data or {})})


def follow(client: httpx2.Client, response: httpx2.Response) -> httpx2.Response:
    assert response.status_code == 303, response.text
    return client.get(response.headers["location"])


def attempts_in(html: str) -> list[dict[str, str]]:
    return [
        {"id": m.group(1), "kind": m.group(2), "code": m.group(3)}
        for m in re.finditer(r'data-attempt="([^"]+)" data-kind="([^"]+)" data-code="(\d+)"', html)
    ]


def form_fields(**fields: Any) -> dict[str, Any]:
    base = {"displayName": "", "name": "", "format": "raw", "payloadUrl": "", "secret": "", "active": "on"}
    return base | fields


# --- create, edit, delete ------------------------------------------------------------------------------


def test_a_webhook_created_through_the_form_is_what_the_api_shows(loopback_server: LiveServer, org: str) -> None:
    make_stacks(loopback_server, org, "web/prod")
    fields = form_fields(
        displayName="Team channel",
        name="team",
        format="slack",
        payloadUrl="http://127.0.0.1:9/hook",
        secret=SECRET,
        filters=["update_failed", "stack_deleted"],
        groups=["deployments"],
    )
    with console_client(loopback_server.url, loopback_server.admin_token) as client:
        form = client.get(org_url(org, "new"))
        assert form.status_code == 200
        assert 'value="stack_created"' in form.text  # org webhooks may hear of stacks being created
        created = post(client, org_url(org, "new"), fields, csrf_from=org_url(org, "new"))
        assert created.headers["location"] == org_url(org, "team")
        page = follow(client, created)
        assert "Created webhook team." in page.text
        listing = client.get(org_url(org)).text
    assert api_hook(loopback_server, f"/api/orgs/{org}/hooks/team") == {
        "organizationName": org,
        "name": "team",
        "displayName": "Team channel",
        "payloadUrl": "http://127.0.0.1:9/hook",
        "active": True,
        "format": "slack",
        "filters": ["update_failed", "stack_deleted"],
        "groups": ["deployments"],
        "hasSecret": True,
        "secretCiphertext": "",
    }
    for html in (page.text, listing):
        assert "Team channel" in html and "http://127.0.0.1:9/hook" in html and "update failed" in html
        assert "deployments (group)" in html and "signed" in html
    assert SECRET not in page.text + listing


def test_an_edit_keeps_the_secret_when_the_field_is_empty_and_removes_it_on_request(
    loopback_server: LiveServer, org: str
) -> None:
    make_stacks(loopback_server, org, "web/prod")
    with receiving() as receiver:
        create_hook(loopback_server, f"/api/orgs/{org}/hooks", name="ops", payloadUrl=receiver.url, secret=SECRET)
        with console_client(loopback_server.url, loopback_server.admin_token) as client:
            edit = client.get(org_url(org, "ops", "edit"))
            assert edit.status_code == 200 and "A secret is set" in edit.text and 'name="removeSecret"' in edit.text
            saved = post(
                client,
                org_url(org, "ops", "edit"),
                form_fields(displayName="Renamed", payloadUrl=receiver.url, groups=["stacks"]),
                csrf_from=org_url(org, "ops", "edit"),
            )
            assert "Saved webhook ops." in follow(client, saved).text
            hook = api_hook(loopback_server, f"/api/orgs/{org}/hooks/ops")
            assert (hook["displayName"], hook["groups"], hook["hasSecret"]) == ("Renamed", ["stacks"], True)

            # the kept secret is the one that was set: the ping is signed with it
            follow(client, post(client, org_url(org, "ops", "ping"), csrf_from=org_url(org, "ops")))
            [request] = receiver.wait_for(1)
            expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
            assert request.headers["Pulumi-Webhook-Signature"] == expected

            removed = post(
                client,
                org_url(org, "ops", "edit"),
                form_fields(displayName="Renamed", payloadUrl=receiver.url, removeSecret="on"),
                csrf_from=org_url(org, "ops", "edit"),
            )
            assert removed.status_code == 303
    assert api_hook(loopback_server, f"/api/orgs/{org}/hooks/ops")["hasSecret"] is False


def test_the_secret_never_appears_in_any_page(loopback_server: LiveServer, org: str) -> None:
    make_stacks(loopback_server, org, "web/prod")
    with receiving() as receiver:
        create_hook(loopback_server, f"/api/orgs/{org}/hooks", name="signed", payloadUrl=receiver.url, secret=SECRET)
        with console_client(loopback_server.url, loopback_server.admin_token) as client:
            pinged = follow(client, post(client, org_url(org, "signed", "ping"), csrf_from=org_url(org, "signed")))
            refused = post(
                client,
                org_url(org, "new"),
                form_fields(name="again", payloadUrl="http://169.254.169.254/", secret=SECRET),
                csrf_from=org_url(org, "new"),
            )
            refused_edit = post(
                client,
                org_url(org, "signed", "edit"),
                form_fields(payloadUrl="http://169.254.169.254/", secret=SECRET + "-new"),
                csrf_from=org_url(org, "signed", "edit"),
            )
            pages = [
                client.get(org_url(org)),
                client.get(org_url(org, "signed")),
                client.get(org_url(org, "signed", "edit")),
                pinged,
                refused,
                refused_edit,
            ]
    assert "Pulumi-Webhook-Signature" in pinged.text  # the signature (an HMAC) is shown, the secret is not
    assert [refused.status_code, refused_edit.status_code] == [400, 400]
    for page in pages:
        assert SECRET not in page.text, page.url


def test_a_refused_metadata_url_gives_400_with_the_message_and_keeps_what_was_typed(
    loopback_server: LiveServer, org: str
) -> None:
    fields = form_fields(
        displayName="Keep me",
        name="meta",
        payloadUrl="http://169.254.169.254/latest/meta-data",
        secret=SECRET,
        filters=["destroy_failed"],
        groups=["deployments"],
        format="ms_teams",
    )
    with console_client(loopback_server.url, loopback_server.admin_token) as client:
        response = post(client, org_url(org, "new"), fields, csrf_from=org_url(org, "new"))
        unknown = post(
            client,
            org_url(org, "new"),
            form_fields(format="carrier-pigeon", payloadUrl="http://127.0.0.1:9/"),
            csrf_from=org_url(org, "new"),
        )
    assert response.status_code == 400
    assert "webhook target 169.254.169.254 is refused" in response.text
    html = response.text
    assert 'value="Keep me"' in html and 'value="meta"' in html
    assert 'value="http://169.254.169.254/latest/meta-data" aria-describedby="payloadUrl-hint form-error"' in html
    assert 'aria-invalid="true"' in html
    assert 'value="destroy_failed" checked' in html and 'value="deployments" checked' in html
    assert 'value="ms_teams" selected' in html
    assert 'value="update_failed" checked' not in html
    assert SECRET not in html
    assert unknown.status_code == 400 and "unknown webhook format &#39;carrier-pigeon&#39;" in unknown.text
    with loopback_server.client() as api:
        assert api.get(f"/api/orgs/{org}/hooks").json() == []


def test_a_taken_name_is_a_409_on_the_form(loopback_server: LiveServer, org: str) -> None:
    make_stacks(loopback_server, org, "web/prod")
    create_hook(loopback_server, f"/api/orgs/{org}/hooks", name="dup", payloadUrl="http://127.0.0.1:9/")
    with console_client(loopback_server.url, loopback_server.admin_token) as client:
        response = post(
            client,
            org_url(org, "new"),
            form_fields(name="dup", payloadUrl="http://127.0.0.1:9/"),
            csrf_from=org_url(org),
        )
    assert response.status_code == 409
    assert "already has a webhook named &#39;dup&#39;" in response.text and 'value="dup"' in response.text


def test_delete_asks_for_confirmation_and_removes_the_webhook(loopback_server: LiveServer, org: str) -> None:
    make_stacks(loopback_server, org, "web/prod")
    create_hook(loopback_server, f"/api/orgs/{org}/hooks", name="gone", payloadUrl="http://127.0.0.1:9/")
    with console_client(loopback_server.url, loopback_server.admin_token) as client:
        page = client.get(org_url(org, "gone")).text
        assert re.search(rf'action="{re.escape(org_url(org, "gone", "delete"))}" class="inline" data-confirm="', page)
        listing = follow(client, post(client, org_url(org, "gone", "delete"), csrf_from=org_url(org, "gone")))
    assert "Deleted webhook gone." in listing.text and "No webhooks yet" in listing.text
    with loopback_server.client() as api:
        assert api.get(f"/api/orgs/{org}/hooks/gone").status_code == 404


# --- ping, history, redeliver ------------------------------------------------------------------------


def test_ping_records_a_delivery_whose_request_and_response_are_shown(loopback_server: LiveServer, org: str) -> None:
    make_stacks(loopback_server, org, "web/prod")
    with receiving() as receiver:
        create_hook(loopback_server, f"/api/orgs/{org}/hooks", name="pinged", payloadUrl=receiver.url)
        with console_client(loopback_server.url, loopback_server.admin_token) as client:
            pinged = post(client, org_url(org, "pinged", "ping"), csrf_from=org_url(org, "pinged"))
            assert pinged.headers["location"].startswith(org_url(org, "pinged") + "?open=")
            page = follow(client, pinged).text
            listing = client.get(org_url(org)).text
        [request] = receiver.wait_for(1)
    assert request.headers["Pulumi-Webhook-Kind"] == "ping"
    assert "Ping delivered: answered HTTP 200" in page
    [attempt] = attempts_in(page)
    assert attempt["kind"] == "ping" and attempt["code"] == "200"
    detail = page[page.index(f'id="attempt-{attempt["id"]}"') :]
    assert "<details open>" in detail[:400]  # the new delivery is opened
    assert f"POST {receiver.url}" in detail
    assert re.search(r"<th scope=\"row\">Pulumi-Webhook-Kind</th><td>ping</td>", detail)
    assert re.search(r"<th scope=\"row\">Pulumi-Webhook-ID</th><td>[0-9a-f-]{36}</td>", detail)
    assert "answered 200" in detail and "x-receiver" in detail.lower()  # the response's body and headers
    assert "friendly ping" in detail  # the payload, pretty-printed
    assert "HTTP 200" in listing and "succeeded" in listing  # the list shows the last delivery


def test_a_failed_ping_says_why(loopback_server: LiveServer, org: str) -> None:
    make_stacks(loopback_server, org, "web/prod")
    with receiving(then=503) as receiver:
        create_hook(loopback_server, f"/api/orgs/{org}/hooks", name="down", payloadUrl=receiver.url)
        with console_client(loopback_server.url, loopback_server.admin_token) as client:
            page = follow(client, post(client, org_url(org, "down", "ping"), csrf_from=org_url(org, "down"))).text
    assert "Ping failed: answered HTTP 503." in page
    [attempt] = attempts_in(page)
    assert attempt["code"] == "503" and "st-bad" in page


def test_redeliver_sends_the_same_body_again_as_a_new_attempt(loopback_server: LiveServer, org: str) -> None:
    make_stacks(loopback_server, org, "web/prod")
    with receiving(plan=[500]) as receiver:
        create_hook(loopback_server, f"/api/orgs/{org}/hooks", name="again", payloadUrl=receiver.url)
        with console_client(loopback_server.url, loopback_server.admin_token) as client:
            first = follow(client, post(client, org_url(org, "again", "ping"), csrf_from=org_url(org, "again"))).text
            [failed] = attempts_in(first)
            assert failed["code"] == "500"
            assert f'action="{org_url(org, "again", "deliveries", failed["id"], "redeliver")}"' in first
            again = post(
                client, org_url(org, "again", "deliveries", failed["id"], "redeliver"), csrf_from=org_url(org, "again")
            )
            page = follow(client, again).text
        requests = receiver.wait_for(2)
    assert "Redelivery delivered: answered HTTP 200" in page
    assert [a["code"] for a in attempts_in(page)] == ["200", "500"]  # newest first
    assert requests[0].body == requests[1].body
    assert requests[1].headers["Pulumi-Webhook-Kind"] == "ping"


def test_the_history_is_paged_newest_first(loopback_server: LiveServer, org: str) -> None:
    make_stacks(loopback_server, org, "web/prod")
    with receiving() as receiver:
        create_hook(loopback_server, f"/api/orgs/{org}/hooks", name="busy", payloadUrl=receiver.url)
        with loopback_server.client() as api:
            ids = [api.post(f"/api/orgs/{org}/hooks/busy/ping").json()["id"] for _ in range(22)]
        with console_client(loopback_server.url, loopback_server.admin_token) as client:
            first = client.get(org_url(org, "busy")).text
            older = re.search(r'href="([^"]+\?before=[^"]+)">Older deliveries', first)
            assert older
            second = client.get(older.group(1)).text
    assert [a["id"] for a in attempts_in(first)] == ids[::-1][:20]
    assert [a["id"] for a in attempts_in(second)] == ids[::-1][20:]
    assert "Older deliveries" not in second and ">Newest</a>" in second


# --- stack webhooks and deployment edges ---------------------------------------------------------------


def test_stack_webhooks_and_a_deployment_edge_through_the_form(loopback_server: LiveServer, org: str) -> None:
    make_stacks(loopback_server, org, "network/prod", "app/prod")
    with console_client(loopback_server.url, loopback_server.admin_token) as client:
        form = client.get(stack_url(org, "network/prod", "new")).text
        assert 'value="stack_created"' not in form  # a stack webhook never hears of stacks being created
        assert '<option value="app/prod">app/prod</option>' in form and '<option value="network/prod">' not in form
        plain = post(
            client,
            stack_url(org, "network/prod", "new"),
            form_fields(name="notify", payloadUrl="http://127.0.0.1:9/n", filters=["update_succeeded"]),
            csrf_from=stack_url(org, "network/prod"),
        )
        assert plain.headers["location"] == stack_url(org, "network/prod", "notify")
        edge = post(
            client,
            stack_url(org, "network/prod", "new"),
            form_fields(
                name="to-app",
                format="pulumi_deployments",
                payloadUrl="http://ignored.example/",
                target="app/prod",
                triggerOn="outputs-changed",
                requireApproval="on",
                filters=["update_succeeded"],
            ),
            csrf_from=stack_url(org, "network/prod"),
        )
        assert edge.status_code == 303, edge.text
        listing = client.get(stack_url(org, "network/prod")).text
        cycle = post(
            client,
            stack_url(org, "app/prod", "new"),
            form_fields(name="back", format="pulumi_deployments", target="network/prod"),
            csrf_from=stack_url(org, "app/prod"),
        )
        edge_page = client.get(stack_url(org, "network/prod", "to-app")).text
    notify = api_hook(loopback_server, f"/api/stacks/{org}/network/prod/hooks/notify")
    assert (notify["projectName"], notify["stackName"], notify["filters"]) == ("network", "prod", ["update_succeeded"])
    to_app = api_hook(loopback_server, f"/api/stacks/{org}/network/prod/hooks/to-app")
    assert (to_app["format"], to_app["payloadUrl"]) == ("pulumi_deployments", "app/prod")
    assert (to_app["triggerOn"], to_app["requireApproval"], to_app["managed"]) == ("outputs-changed", True, False)
    assert f'deploys <a href="/{org}/app/prod">app/prod</a>' in listing and "outputs changed" in listing
    assert cycle.status_code == 409
    assert "would close a cycle" in cycle.text
    assert re.search(r"(app|network)/prod -&gt; (app|network)/prod -&gt; \1/prod", cycle.text)
    assert '<option value="network/prod" selected>' in cycle.text  # the chosen target is kept
    assert "/ping" not in edge_page  # an edge deploys a stack: there is nothing to ping


def test_turning_an_edge_into_an_http_webhook_drops_its_edge_options(loopback_server: LiveServer, org: str) -> None:
    make_stacks(loopback_server, org, "network/prod", "app/prod")
    path = f"/api/stacks/{org}/network/prod/hooks"
    create_hook(
        loopback_server, path, name="e", format="pulumi_deployments", payloadUrl="app/prod", triggerOn="outputs-changed"
    )
    with console_client(loopback_server.url, loopback_server.admin_token) as client:
        edit = client.get(stack_url(org, "network/prod", "e", "edit")).text
        assert 'value="outputs-changed" checked' in edit and '<option value="app/prod" selected>' in edit
        saved = post(
            client,
            stack_url(org, "network/prod", "e", "edit"),
            form_fields(payloadUrl="http://127.0.0.1:9/x", triggerOn="outputs-changed", target="app/prod"),
            csrf_from=stack_url(org, "network/prod", "e", "edit"),
        )
    assert saved.status_code == 303, saved.text
    hook = api_hook(loopback_server, f"{path}/e")
    assert (hook["format"], hook["payloadUrl"]) == ("raw", "http://127.0.0.1:9/x")
    assert "triggerOn" not in hook


def test_webhooks_managed_by_auto_deploy_are_read_only_with_an_explanation(
    loopback_server: LiveServer, org: str
) -> None:
    make_stacks(loopback_server, org, "network/prod", "app/prod")
    with loopback_server.client() as api:
        declaration = {"stacks": [{"project": "network", "stack": "prod", "downstreamRefs": ["app/prod"]}]}
        api.put(f"/api/orgs/{org}/autodeploy", json=declaration).raise_for_status()
        [managed] = api.get(f"/api/stacks/{org}/network/prod/hooks").json()
    name = managed["name"]
    with console_client(loopback_server.url, loopback_server.admin_token) as client:
        listing = client.get(stack_url(org, "network/prod")).text
        page = client.get(stack_url(org, "network/prod", name)).text
        edit = client.get(stack_url(org, "network/prod", name, "edit"))
        posted = post(
            client,
            stack_url(org, "network/prod", name, "edit"),
            form_fields(format="pulumi_deployments", target="app/prod"),
            csrf_from=stack_url(org, "network/prod", name),
        )
        deleted = post(client, stack_url(org, "network/prod", name, "delete"), csrf_from=stack_url(org, "network/prod"))
    assert "Auto Deploy" in listing
    assert 'id="managed-note"' in page and "read-only here" in page
    assert "/edit" not in page and "/delete" not in page
    for response in (edit, posted, deleted):
        assert response.status_code == 409
        assert "Auto Deploy declaration" in response.text
    assert api_hook(loopback_server, f"/api/stacks/{org}/network/prod/hooks/{name}")["active"] is True


# --- who may do what -------------------------------------------------------------------------------


def test_a_member_may_change_webhooks(loopback_server: LiveServer, org: str) -> None:
    make_stacks(loopback_server, org, "web/prod")
    member = org_token(loopback_server, org, "member")
    with console_client(loopback_server.url, member) as client:
        listing = client.get(org_url(org)).text
        assert f'href="{org_url(org, "new")}"' in listing
        created = post(
            client, org_url(org, "new"), form_fields(name="m", payloadUrl="http://127.0.0.1:9/"), csrf_from=org_url(org)
        )
    assert created.status_code == 303


def test_a_viewer_sees_no_webhook_forms_and_is_refused_with_403(loopback_server: LiveServer, org: str) -> None:
    make_stacks(loopback_server, org, "web/prod")
    create_hook(loopback_server, f"/api/orgs/{org}/hooks", name="ops", payloadUrl="http://127.0.0.1:9/")
    viewer = org_token(loopback_server, org, "viewer")
    with console_client(loopback_server.url, viewer) as client:
        pages = [client.get(org_url(org)), client.get(org_url(org, "new")), client.get(org_url(org, "ops"))]
        overview = f"/{org}"  # a page the viewer may see, for a valid CSRF token
        posts = [
            post(
                client, org_url(org, "new"), form_fields(name="v", payloadUrl="http://127.0.0.1:9/"), csrf_from=overview
            ),
            post(
                client, org_url(org, "ops", "edit"), form_fields(payloadUrl="http://127.0.0.1:9/"), csrf_from=overview
            ),
            post(client, org_url(org, "ops", "ping"), csrf_from=overview),
            post(client, org_url(org, "ops", "delete"), csrf_from=overview),
        ]
    for page in pages:
        assert page.status_code == 403
        assert "needs member" in page.text
        assert "/webhooks/" not in page.text  # no webhook form, action or link to one
    for response in posts:
        assert response.status_code == 403, response.url
    with loopback_server.client() as api:
        assert [h["name"] for h in api.get(f"/api/orgs/{org}/hooks").json()] == ["ops"]


@pytest.mark.parametrize("action", ["new", "ops/edit", "ops/ping", "ops/delete"])
def test_a_post_without_the_csrf_token_is_refused(loopback_server: LiveServer, org: str, action: str) -> None:
    make_stacks(loopback_server, org, "web/prod")
    create_hook(loopback_server, f"/api/orgs/{org}/hooks", name="ops", payloadUrl="http://127.0.0.1:9/")
    with console_client(loopback_server.url, loopback_server.admin_token) as client:
        response = client.post(f"{org_url(org)}/{action}", data=form_fields(name="x", payloadUrl="http://127.0.0.1:9/"))
    assert response.status_code == 403
    assert "security token is missing or stale" in response.text
    with loopback_server.client() as api:
        assert [h["name"] for h in api.get(f"/api/orgs/{org}/hooks").json()] == ["ops"]
        assert api.get(f"/api/orgs/{org}/hooks/ops/deliveries").json() == []


def test_another_organization_is_404_and_a_missing_webhook_or_stack_too(loopback_server: LiveServer, org: str) -> None:
    make_stacks(loopback_server, org, "web/prod")
    make_stacks(loopback_server, f"{org}-other", "web/prod")
    create_hook(loopback_server, f"/api/orgs/{org}-other/hooks", name="theirs", payloadUrl="http://127.0.0.1:9/")
    mine = org_token(loopback_server, org, "admin")
    with console_client(loopback_server.url, mine) as client:
        other = f"{org}-other"
        responses = [
            client.get(org_url(other)),
            client.get(org_url(other, "theirs")),
            client.get(stack_url(other, "web/prod")),
            post(client, org_url(other, "theirs", "ping"), csrf_from=f"/{org}"),
            client.get(org_url(org, "nope")),
            client.get(stack_url(org, "web/nope")),
        ]
    for response in responses:
        assert response.status_code == 404, response.url
    assert "no webhook named &#39;nope&#39;" in responses[4].text
