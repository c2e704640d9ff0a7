"""The cascade pages over real HTTP with real runners, on both databases: members in waves with their
status and reason, approve / reject / retry from the console, and who may do that."""

from __future__ import annotations

import re
from pathlib import Path

import httpx2
import pytest

from stackcascade.web.cascade_view import MemberView, count_summary, headline
from stackcascade.web.pages import status_label
from tests.e2e.helpers import (
    broken_database_repo,
    cascade_of,
    cascade_yaml,
    deploy,
    diamond,
    git_repo,
    member,
    wait_cascade,
)
from tests.support import LiveServer
from tests.web.console import console_client, csrf_of


def cards(html: str) -> dict[str, tuple[str, str]]:
    """Each member card of a cascade page: stack -> (status, the card's HTML)."""
    found = re.findall(r'<li class="member [^"]*" data-stack="([^"]+)" data-status="([^"]+)">(.*?)</li>', html, re.S)
    return {stack: (status, body) for stack, status, body in found}


def waves(html: str) -> list[list[str]]:
    sections = re.split(r'<li class="wave"', html)[1:]
    return [re.findall(r'data-stack="([^"]+)"', section) for section in sections]


def text(html: str) -> str:
    """The page's words, tags and whitespace runs dropped, for asserting on sentences."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def org_token(server: LiveServer, org: str, role: str) -> str:
    with server.client() as api:
        created = api.post("/api/tokens", json={"name": f"{role}-{org}", "org": org, "role": role})
        assert created.status_code == 201, created.text
        return str(created.json()["token"])


def post(client: httpx2.Client, url: str, csrf: str | None) -> httpx2.Response:
    return client.post(url, data={} if csrf is None else {"csrf": csrf})


def member_url(org: str, cascade_id: str, project: str, action: str) -> str:
    return f"/{org}/~/cascades/{cascade_id}/members/{project}/prod/{action}"


# --- wording, without a server ------------------------------------------------------------------------


def _view(stack: str, status: str) -> MemberView:
    project, _, name = stack.partition("/")
    return MemberView(
        stack, project, name, 0, status, None, None, None, None, None, None, None, None, False, stack_exists=True
    )


def test_the_headline_says_what_waits_what_failed_and_what_is_done() -> None:
    running = [_view("network/prod", "succeeded"), _view("app/prod", "awaiting-approval"), _view("x/prod", "waiting")]
    assert headline("running", running) == "Waiting for approval of app/prod; 1 stack still to come"
    failed = [_view("network/prod", "succeeded"), _view("database/prod", "failed"), _view("app/prod", "skipped")]
    assert headline("failed", failed) == "Failed: database/prod failed; 1 stack skipped"
    done = [_view("network/prod", "succeeded"), _view("app/prod", "succeeded")]
    assert headline("succeeded", done) == "Succeeded: all 2 stacks deployed"
    assert headline("running", [_view("network/prod", "running")]) == "Running network/prod"
    # A stack name keeps its case at the start of the sentence; only the fixed phrases are capitalised.
    queued = [_view("network/prod", "succeeded"), _view("database/prod", "queued"), _view("app/prod", "waiting")]
    assert headline("running", queued) == "database/prod queued; 1 stack still to come"
    both = [_view("network/prod", "awaiting-approval"), _view("app/prod", "running")]
    assert headline("running", both) == "Waiting for approval of network/prod; running app/prod"
    counts = {"succeeded": 3, "awaiting-approval": 1, "skipped": 1}
    assert count_summary(counts, status_label) == "1 awaiting approval · 3 succeeded · 1 skipped"


# --- pages on a real server ---------------------------------------------------------------------------


def test_the_list_and_the_cascade_show_the_diamond_in_waves(pool_server: LiveServer, org: str, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update="echo ok")})
    with pool_server.client() as api:
        diamond(api, org, repo)
        root = deploy(api, f"{org}/network/prod")
        cascade_id = cascade_of(api, org, root)
        wait_cascade(api, org, cascade_id, lambda c: c["status"] != "running")
    with console_client(pool_server.url, pool_server.admin_token) as web:
        listing = web.get(f"/{org}/~/cascades")
        assert listing.status_code == 200
        assert f'href="/{org}/~/cascades/{cascade_id}"' in listing.text
        assert "4 succeeded" in text(listing.text)
        page = web.get(f"/{org}/~/cascades/{cascade_id}")
        assert page.status_code == 200
        assert waves(page.text) == [["network/prod"], ["cluster/prod", "database/prod"], ["app/prod"]]
        assert {stack: status for stack, (status, _) in cards(page.text).items()} == dict.fromkeys(
            ["network/prod", "cluster/prod", "database/prod", "app/prod"], "succeeded"
        )
        words = text(page.text)
        assert "Succeeded: all 4 stacks deployed" in words
        assert "requested by admin" in words and "its deployment started the cascade" in words
        assert f'href="/{org}/network/prod/deployments/{root}"' in page.text  # the root's deployment page
        assert f'href="/{org}/app/prod"' in page.text  # each member's stack page
        assert "data-live-refresh" in page.text
        edges = re.findall(r'<tr data-edge="([^"]+)">.*?<td class="edge-([a-z-]+)">', page.text, re.S)
        assert sorted(edges) == [
            ("cluster/prod->app/prod", "fired"),
            ("database/prod->app/prod", "fired"),
            ("network/prod->cluster/prod", "fired"),
            ("network/prod->database/prod", "fired"),
        ]
        assert "<form" not in "".join(body for _, body in cards(page.text).values())  # nothing to approve or retry


def test_a_failed_member_explains_the_skip_below_it_and_retry_resumes_it(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    repo, fixed = broken_database_repo(tmp_path)
    with pool_server.client() as api:
        diamond(api, org, repo)
        cascade_id = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        wait_cascade(api, org, cascade_id, lambda c: c["status"] != "running")
    page_url = f"/{org}/~/cascades/{cascade_id}"
    with console_client(pool_server.url, pool_server.admin_token) as web:
        page = web.get(page_url)
        found = cards(page.text)
        assert "Failed: database/prod failed; 1 stack skipped" in text(page.text)
        assert found["app/prod"][0] == "skipped" and "upstream database/prod failed" in found["app/prod"][1]
        assert found["database/prod"][0] == "failed"
        assert f'action="{member_url(org, cascade_id, "database", "retry")}"' in found["database/prod"][1]
        assert "retry" not in found["cluster/prod"][1] and "/approve" not in page.text
        csrf = csrf_of(page.text)

        assert post(web, member_url(org, cascade_id, "database", "retry"), None).status_code == 403  # no CSRF
        conflict = post(web, member_url(org, cascade_id, "app", "approve"), csrf)
        assert conflict.status_code == 409
        assert "Could not approve app/prod" in conflict.text and "only a member awaiting approval" in conflict.text
        assert f'href="{page_url}"' in conflict.text  # a way back
        assert post(web, member_url(org, cascade_id, "database", "deploy"), csrf).status_code == 404

        fixed.touch()
        retried = post(web, member_url(org, cascade_id, "database", "retry"), csrf)
        assert retried.status_code == 303 and retried.headers["location"] == page_url
        assert "Retrying database/prod" in text(web.get(page_url).text)  # the flash, once
        with pool_server.client() as api:
            wait_cascade(api, org, cascade_id, lambda c: c["status"] != "running")
        page = web.get(page_url)
        assert "Succeeded: all 4 stacks deployed" in text(page.text)
        assert "Retrying" not in page.text


def test_an_approval_gate_is_approved_or_rejected_by_a_member_never_a_viewer(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update="echo ok")})
    with pool_server.client() as api:
        diamond(api, org, repo)
        gate = api.patch(f"/api/stacks/{org}/app/prod/cascadesettings", json={"requireApproval": True})
        assert gate.status_code == 200, gate.text
        first = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        wait_cascade(api, org, first, lambda c: member(c, "app")["status"] == "awaiting-approval")
    page_url = f"/{org}/~/cascades/{first}"
    approve, reject = member_url(org, first, "app", "approve"), member_url(org, first, "app", "reject")

    with console_client(pool_server.url, org_token(pool_server, org, "viewer")) as viewer:
        page = viewer.get(page_url)
        assert page.status_code == 200
        assert "Waiting for approval of app/prod" in text(page.text)
        assert cards(page.text)["app/prod"][0] == "awaiting-approval"
        assert "a member of the organization approves or rejects it" in text(page.text)
        assert "<button" not in "".join(body for _, body in cards(page.text).values())
        assert post(viewer, approve, csrf_of(page.text)).status_code == 403

    with console_client(pool_server.url, org_token(pool_server, org, "member")) as web:
        page = web.get(page_url)
        app_card = cards(page.text)["app/prod"][1]
        assert f'action="{approve}"' in app_card and f'action="{reject}"' in app_card
        approved = post(web, approve, csrf_of(page.text))
        assert approved.status_code == 303 and approved.headers["location"] == page_url
        assert "Approved app/prod: it deploys now" in text(web.get(page_url).text)
        with pool_server.client() as api:
            done = wait_cascade(api, org, first, lambda c: c["status"] != "running")
            assert done["status"] == "succeeded"
            second = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
            wait_cascade(api, org, second, lambda c: member(c, "app")["status"] == "awaiting-approval")
        assert "approved by member-" in cards(web.get(page_url).text)["app/prod"][1]

        rejected = post(web, member_url(org, second, "app", "reject"), csrf_of(page.text))
        assert rejected.status_code == 303
        with pool_server.client() as api:
            wait_cascade(api, org, second, lambda c: c["status"] != "running")
        status, card = cards(web.get(f"/{org}/~/cascades/{second}").text)["app/prod"]
        assert status == "skipped" and f"rejected by member-{org}" in card


def test_cascades_of_another_org_or_unknown_ones_are_not_found(pool_server: LiveServer, org: str) -> None:
    other = f"{org}-other"
    with pool_server.client() as api:
        for name in (org, other):
            assert api.post(f"/api/stacks/{name}/web", json={"stackName": "prod"}).status_code == 200
    with console_client(pool_server.url, org_token(pool_server, org, "member")) as web:
        empty = web.get(f"/{org}/~/cascades")
        assert empty.status_code == 200 and "No cascade has run in" in empty.text
        assert web.get(f"/{other}/~/cascades").status_code == 404
        missing = web.get(f"/{org}/~/cascades/no-such-cascade")
        assert missing.status_code == 404 and "cascade no-such-cascade not found" in missing.text
        csrf = csrf_of(empty.text)
        assert post(web, member_url(other, "no-such-cascade", "app", "approve"), csrf).status_code == 404


@pytest.mark.parametrize("path", ["/{org}/~/cascades", "/{org}/~/cascades/x"])
def test_cascade_pages_ask_for_a_sign_in(pool_server: LiveServer, org: str, path: str) -> None:
    with httpx2.Client(base_url=pool_server.url) as client:
        response = client.get(path.format(org=org))
        assert response.status_code == 303 and response.headers["location"].startswith("/~/login?next=")


def facts(html: str) -> str:
    """The cascade's facts panel (root, who started it, ...)."""
    found = re.search(r'<dl class="facts">.*?</dl>', html, re.S)
    assert found, html
    return found.group(0)


def test_started_by_names_the_root_deployment_after_the_root_was_retried_and_the_root_once_deleted(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed"
    update = f'if [ "$CASCADE_PROJECT" = network ] && [ ! -f {fixed} ]; then echo broken; exit 3; fi\necho ok'
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)})
    with pool_server.client() as api:
        diamond(api, org, repo)
        root = deploy(api, f"{org}/network/prod")
        cascade_id = cascade_of(api, org, root)
        wait_cascade(api, org, cascade_id, lambda c: c["status"] != "running")
        first = api.get(f"/api/stacks/{org}/network/prod/deployments/{root}").json()["version"]
        fixed.touch()
        retried = api.post(f"/api/orgs/{org}/cascades/{cascade_id}/members/network/prod/retry")
        assert retried.status_code < 300, retried.text
        done = wait_cascade(api, org, cascade_id, lambda c: c["status"] != "running")
        assert done["status"] == "succeeded"
        retry_id = member(done, "network")["deploymentId"]
        assert retry_id != root
        second = api.get(f"/api/stacks/{org}/network/prod/deployments/{retry_id}").json()["version"]
        assert second != first
    page_url = f"/{org}/~/cascades/{cascade_id}"
    with console_client(pool_server.url, pool_server.admin_token) as web:
        started = facts(web.get(page_url).text)
        link = re.search(r'<a href="([^"]+)">deployment #(\d+) of network/prod</a>', started)
        assert link, started
        # The root deployment's own number, not that of the root member's retry.
        assert link.groups() == (f"/{org}/network/prod/deployments/{root}", str(first))
        assert f'<a href="/{org}/network/prod">network/prod</a>' in started
        with pool_server.client() as api:
            for project in ("app", "database", "cluster", "network"):
                deleted = api.delete(f"/api/stacks/{org}/{project}/prod")
                assert deleted.status_code == 204, deleted.text
        gone = facts(web.get(page_url).text)
        assert f'href="/{org}/network/prod' not in gone  # no link to a stack page that is gone
        assert "network/prod (stack deleted)" in text(gone)


def test_a_member_queued_behind_a_paused_stack_or_org_says_so(pool_server: LiveServer, org: str) -> None:
    with pool_server.client() as api:
        diamond(api, org, "file:///tmp/nowhere")
        for project in ("database", "cluster"):
            paused = api.post(f"/api/stacks/{org}/{project}/prod/deployments/pause")
            assert paused.status_code < 300, paused.text
        update = {"kind": "update_succeeded", "outputs": {"vpc": "v1"}}
        event = api.post(f"/api/stacks/{org}/network/prod/events", json=update)
        assert event.status_code == 202, event.text
        cascade_id = event.json()["cascadeId"]
        wait_cascade(api, org, cascade_id, lambda c: member(c, "database")["status"] == "queued")
    page_url = f"/{org}/~/cascades/{cascade_id}"
    with console_client(pool_server.url, pool_server.admin_token) as web:
        status, card = cards(web.get(page_url).text)["database/prod"]
        assert status == "queued"
        assert "the stack is paused; it runs once the stack is resumed" in text(card)
        assert "runs when a runner is free" not in card
        with pool_server.client() as api:
            assert api.post(f"/api/orgs/{org}/deployments/pause").status_code == 200
            assert api.post(f"/api/stacks/{org}/database/prod/deployments/resume").status_code < 300
        _, card = cards(web.get(page_url).text)["database/prod"]
        assert "the organization is paused; it runs once the organization is resumed" in text(card)
