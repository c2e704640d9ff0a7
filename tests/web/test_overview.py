"""The org overview: stacks with their last deployment, outputs age, tags, pause and queue; search and filter."""

from __future__ import annotations

import re

import httpx2

from tests.support import LiveServer
from tests.web.console import console_client


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _row(html: str, ref: str) -> str:
    found = re.search(rf'<tr data-stack="{re.escape(ref)}">(.*?)</tr>', html, re.S)
    assert found, f"no row for {ref}"
    return _text(found.group(1))


DEPLOY = {"operation": "update", "sourceContext": {"git": {"repoUrl": "file:///nowhere", "branch": "main"}}}


def _make_org(api: httpx2.Client, org: str) -> None:
    for project, tags in (("network", {"team": "platform"}), ("app", {"team": "web"}), ("db", {})):
        created = api.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod", "tags": tags})
        assert created.status_code in (200, 201), created.text


def test_the_overview_lists_every_stack_with_its_last_deployment_and_queue(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        _make_org(api, org)
        queued = api.post(f"/api/stacks/{org}/network/prod/deployments", json=DEPLOY)
        assert queued.status_code == 202, queued.text
        api.post(f"/api/stacks/{org}/app/prod/deployments/pause").raise_for_status()
    with console_client(live_server.url, live_server.admin_token) as client:
        page = client.get(f"/{org}")
        assert page.status_code == 200
        html = page.text
    network = _row(html, "network/prod")
    assert "queued update #1" in network
    assert "1 queued" in network
    assert "team: platform" in network
    app = _row(html, "app/prod")
    assert "paused" in app and "never deployed" in app and "team: web" in app
    assert "none yet" in _row(html, "db/prod")  # outputs age: nothing stored yet
    summary = _text(html[html.index('id="summary"') :])
    assert "3 stacks" in summary and "1 queued" in summary and "0 running" in summary
    assert f'href="/{org}/network/prod/deployments/{queued.json()["id"]}"' in html


def test_search_and_state_filters_narrow_the_list(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        _make_org(api, org)
        api.post(f"/api/stacks/{org}/app/prod/deployments/pause").raise_for_status()
    with console_client(live_server.url, live_server.admin_token) as client:
        by_tag = client.get(f"/{org}", params={"q": "team:web"}).text
        assert 'data-stack="app/prod"' in by_tag and 'data-stack="network/prod"' not in by_tag
        by_name = client.get(f"/{org}", params={"q": "NETWORK"}).text
        assert 'data-stack="network/prod"' in by_name and 'data-stack="db/prod"' not in by_name
        paused = client.get(f"/{org}", params={"state": "paused"}).text
        assert re.findall(r'data-stack="([^"]+)"', paused) == ["app/prod"]
        nothing = client.get(f"/{org}", params={"q": "no-such-stack"}).text
        assert "No stack matches this filter." in nothing
        unknown_state = client.get(f"/{org}", params={"state": "bogus"})
        assert unknown_state.status_code == 200 and len(re.findall(r"data-stack=", unknown_state.text)) == 3


def test_a_stored_output_shows_its_age(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        _make_org(api, org)
        event = api.post(
            f"/api/stacks/{org}/db/prod/events", json={"kind": "update_succeeded", "outputs": {"host": "db.local"}}
        )
        assert event.status_code == 202, event.text
    with console_client(live_server.url, live_server.admin_token) as client:
        row = _row(client.get(f"/{org}").text, "db/prod")
    assert re.search(r"updated (just now|\d+ s ago)", row), row


def test_the_live_stream_reports_a_committed_change(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        _make_org(api, org)
        with (
            console_client(live_server.url, live_server.admin_token) as client,
            client.stream("GET", f"/{org}/~/live", timeout=20) as stream,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            created = api.post(f"/api/stacks/{org}/network/prod/deployments", json=DEPLOY)
            assert created.status_code == 202
            for line in lines:  # bounded: the stream ends after a minute, the client times out at 20 s
                if line.startswith("data:") and "deployment_queued" in line:
                    assert '"stack": "network/prod"' in line
                    assert created.json()["id"] in line
                    break
            else:
                raise AssertionError("the stream ended without reporting the queued deployment")


def test_the_live_stream_of_another_org_is_not_found(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        _make_org(api, org)
        viewer = api.post("/api/tokens", json={"name": "v", "org": org, "role": "viewer"}).json()["token"]
        _make_org(api, f"{org}-b")
    with console_client(live_server.url, viewer) as client:
        assert client.get(f"/{org}-b/~/live", headers={"accept": "text/event-stream"}).status_code == 404
        assert client.get(f"/{org}-b").status_code == 404


def test_the_live_stream_of_an_org_that_does_not_exist_is_not_found(live_server: LiveServer, org: str) -> None:
    with console_client(live_server.url, live_server.admin_token) as client:  # an admin may see every org
        for name in (f"{org}-nope", "a b", "x" * 3000):
            refused = client.get(f"/{name}/~/live", headers={"accept": "text/event-stream"})
            assert refused.status_code in (400, 404), (name[:20], refused.status_code)
            assert refused.headers["content-type"].startswith("application/json")


def test_the_live_stream_ends_when_its_token_is_revoked_and_reports_nothing_after(
    live_server: LiveServer, org: str
) -> None:
    with live_server.client() as api:
        _make_org(api, org)
        viewer = api.post("/api/tokens", json={"name": "v", "org": org, "role": "viewer"}).json()
        with (
            console_client(live_server.url, viewer["token"]) as client,
            client.stream("GET", f"/{org}/~/live", timeout=20) as stream,
        ):
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            assert api.delete(f"/api/tokens/{viewer['id']}").status_code == 204
            created = api.post(f"/api/stacks/{org}/network/prod/deployments", json=DEPLOY)
            assert created.status_code == 202
            rest = list(lines)  # the stream ends: a client that kept it would get a ReadTimeout here
    assert not any(created.json()["id"] in line for line in rest), rest
