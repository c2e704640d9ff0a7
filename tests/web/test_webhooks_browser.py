"""In Chromium: create an organization webhook through the form, ping it, and read the delivery on its page."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.support import LiveServer
from tests.web.console import artifact, browser_sign_in
from tests.webhook_receiver import receiving


def test_create_a_webhook_in_the_browser_ping_it_and_see_the_delivery(
    page: Page, loopback_server: LiveServer, org: str
) -> None:
    with loopback_server.client() as api:
        api.post(f"/api/stacks/{org}/web", json={"stackName": "prod"}).raise_for_status()
    webhooks = f"/{org}/~/webhooks"
    with receiving() as receiver:
        browser_sign_in(page, loopback_server.url, loopback_server.admin_token, webhooks)
        page.get_by_role("link", name="New webhook").click()

        page.get_by_label("Display name").fill("Browser hook")
        page.get_by_label("Name", exact=True).fill("browser")
        page.get_by_label("Payload URL").fill(receiver.url)
        page.get_by_label("Secret").fill("browser-secret")
        page.get_by_label("deployment failed").check()
        page.get_by_role("button", name="Create webhook").click()

        expect(page).to_have_url(f"{loopback_server.url}{webhooks}/browser")
        expect(page.get_by_role("status").filter(has_text="Created webhook browser.")).to_be_visible()
        expect(page.get_by_role("heading", level=1)).to_contain_text("Browser hook")

        page.get_by_role("button", name="Ping").click()
        expect(page.get_by_role("status").filter(has_text="Ping delivered: answered HTTP 200")).to_be_visible()
        delivery = page.locator("li.attempt").first
        expect(delivery).to_have_attribute("data-kind", "ping")
        expect(delivery).to_have_attribute("data-code", "200")
        expect(delivery.locator("summary")).to_contain_text("HTTP 200")
        details = delivery.locator("details")
        expect(details).to_have_attribute("open", "")  # the new delivery is opened on its request and response
        expect(details.get_by_role("row", name=re.compile("Pulumi-Webhook-Kind"))).to_contain_text("ping")
        page.screenshot(path=artifact("webhook-ping.png"), full_page=True)

        [request] = receiver.wait_for(1)
    assert request.headers["Pulumi-Webhook-Kind"] == "ping"
    assert "Pulumi-Webhook-Signature" in request.headers
