"""In Chromium, on the demo org: a deployment's log arrives live and Cancel stops it; the deploy form deploys."""

from __future__ import annotations

import re
import time

import httpx2
from playwright.sync_api import Page, expect

from tests.e2e.helpers import TERMINAL, wait_for
from tests.support import LiveServer
from tests.web.console import browser_sign_in

NETWORK = "demo/network/prod"


def settle(api: httpx2.Client, deployment_id: str | None) -> None:
    """Leave the shared demo as found: the stack resumed, nothing running or queued in the org."""
    api.post(f"/api/stacks/{NETWORK}/deployments/resume").raise_for_status()
    if deployment_id:
        status = api.get(f"/api/stacks/{NETWORK}/deployments/{deployment_id}").json()["status"]
        if status not in TERMINAL:
            api.post(f"/api/stacks/{NETWORK}/deployments/{deployment_id}/cancel")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        counts = api.get("/api/orgs/demo/deployments/metadata").json()["deploymentCounts"]
        if counts["notStarted"] + counts["accepted"] + counts["running"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError("demo deployments were still running after 90 s")


def test_the_log_arrives_live_and_cancel_ends_the_deployment_failed(demo_server: LiveServer, page: Page) -> None:
    body = {"operation": "update", "operationContext": {"preRunCommands": ["echo started-marker; sleep 60"]}}
    deployment_id = None
    with demo_server.client() as api:
        try:
            # Paused first, so the page is open before anything runs: whatever appears later came live.
            api.post(f"/api/stacks/{NETWORK}/deployments/pause").raise_for_status()
            created = api.post(f"/api/stacks/{NETWORK}/deployments", json=body)
            assert created.status_code == 202, created.text
            deployment_id = created.json()["id"]
            browser_sign_in(page, demo_server.url, demo_server.admin_token, f"/{NETWORK}/deployments/{deployment_id}")
            status = page.locator("#deployment-summary .badge.big")
            log = page.get_by_role("log")
            expect(status).to_have_text("queued")
            expect(page.locator("#deployment-summary")).to_contain_text("the stack is paused")
            expect(log).not_to_contain_text("started-marker")
            page.evaluate("window.sameDocument = true")
            api.post(f"/api/stacks/{NETWORK}/deployments/resume").raise_for_status()

            expect(log).to_contain_text("started-marker", timeout=30_000)
            expect(status).to_have_text("running")
            expect(page.locator('#deployment-steps tr[data-step="pre-run"]')).to_contain_text("running")
            assert page.evaluate("window.sameDocument") is True  # no reload: the lines were appended

            page.get_by_role("button", name="Cancel").click()  # the confirmation is accepted by the fixture
            expect(page.locator(".flash")).to_contain_text("Cancelling deployment")
            expect(status).to_have_text("failed", timeout=30_000)
            expect(page.locator("#deployment-summary")).to_contain_text("cancelled")
            expect(page.locator('#deployment-steps tr[data-step="pre-run"]')).to_contain_text("failed")
            expect(page.locator("#log-follow")).to_contain_text("complete log")
            expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
            assert wait_for(api, NETWORK, deployment_id)["reason"] == "cancelled"
        finally:
            settle(api, deployment_id)


def test_the_deploy_form_lands_on_the_new_deployment_which_succeeds(demo_server: LiveServer, page: Page) -> None:
    deployment_id = None
    with demo_server.client() as api:
        try:
            browser_sign_in(page, demo_server.url, demo_server.admin_token, f"/{NETWORK}")
            page.get_by_text("One-off overrides").click()
            page.get_by_label("Environment variables", exact=True).fill("GREETING=hello-from-the-form")
            page.get_by_label("Pre-run commands").fill('echo "greeting=$GREETING"')
            page.get_by_role("button", name="Deploy with these overrides").click()

            page.wait_for_url(re.compile(rf".*/{NETWORK}/deployments/[0-9a-f-]{{36}}$"))
            deployment_id = page.url.rsplit("/", 1)[1]
            expect(page.locator(".flash")).to_contain_text("(update) of network/prod queued")
            expect(page.locator("#deployment-summary .badge.big")).to_have_text("succeeded", timeout=60_000)
            expect(page.get_by_role("log")).to_contain_text("greeting=hello-from-the-form")
            expect(page.locator("#log-follow")).to_contain_text("complete log")
            configuration = api.get(f"/api/stacks/{NETWORK}/deployments/{deployment_id}").json()["configuration"]
            assert {"name": "GREETING", "secret": False, "value": "hello-from-the-form"} in configuration[
                "environmentVariables"
            ]
        finally:
            settle(api, deployment_id)
