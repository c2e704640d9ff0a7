"""In a real Chromium: a gated member of the demo cascade shows up live as awaiting approval, a click on
Approve lets it run, and the cascade ends succeeded without a reload."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.helpers import deploy, wait_cascade
from tests.support import LiveServer
from tests.web.console import artifact, browser_sign_in

GATE = "/api/stacks/demo/app/prod/cascadesettings"
DATABASE_GATE = "/api/stacks/demo/database/prod/cascadesettings"
CLUSTER_SETTINGS = "/api/stacks/demo/cluster/prod/deployments/settings"


def test_approving_a_gated_member_in_the_browser_finishes_the_cascade(demo_server: LiveServer, page: Page) -> None:
    browser_sign_in(page, demo_server.url, demo_server.admin_token, "/demo/~/cascades")
    with demo_server.client() as api:
        assert api.patch(GATE, json={"requireApproval": True}).status_code == 200
        try:
            root = deploy(api, "demo/network/prod")
            cascade_id = api.get(f"/api/stacks/demo/network/prod/deployments/{root}").json()["cascadeId"]
            assert cascade_id in [c["id"] for c in api.get("/api/orgs/demo/cascades").json()["cascades"]]

            page.goto(f"{demo_server.url}/demo/~/cascades/{cascade_id}")
            page.evaluate("window.sameDocument = true")  # gone if the page reloads
            app = page.locator('[data-stack="app/prod"]')
            expect(app.locator(".badge")).to_have_text("waiting")  # network still runs
            expect(app.locator(".badge")).to_have_text("awaiting approval", timeout=30_000)
            assert page.evaluate("window.sameDocument === true"), "the page reloaded instead of refreshing in place"
            expect(page.locator("#cascade-headline")).to_contain_text("Waiting for approval of app/prod")
            page.screenshot(path=artifact("cascade-awaiting-approval.png"), full_page=True)

            app.get_by_role("button", name="Approve").click()
            expect(page.get_by_role("status").filter(has_text="Approved app/prod")).to_be_visible()
            expect(page.locator("#cascade-headline .badge")).to_have_text("succeeded", timeout=30_000)
            expect(app.locator(".badge")).to_have_text("succeeded")
            expect(app).to_contain_text("approved by")
        finally:
            api.patch(GATE, json={"requireApproval": False})  # the demo server is shared by this module


def test_a_live_refresh_leaves_the_keyboard_on_the_approve_button(
    demo_server: LiveServer, page: Page, tmp_path: Path
) -> None:
    """A keyboard user on Approve keeps it while another member finishes and the members are redrawn, and
    Enter then approves: the refresh used to drop the focus to the top of the page."""
    browser_sign_in(page, demo_server.url, demo_server.admin_token, "/demo/~/cascades")
    release = tmp_path / "release-cluster"  # cluster/prod runs until the focus is on Approve (at most 60 s)
    hold = f'for i in $(seq 600); do [ -f "{release}" ] && break; sleep 0.1; done; [ -f "{release}" ]'
    with demo_server.client() as api:
        assert api.patch(DATABASE_GATE, json={"requireApproval": True}).status_code == 200
        assert api.post(CLUSTER_SETTINGS, json={"operationContext": {"preRunCommands": [hold]}}).status_code == 200
        try:
            root = deploy(api, "demo/network/prod")
            cascade_id = api.get(f"/api/stacks/demo/network/prod/deployments/{root}").json()["cascadeId"]
            page.goto(f"{demo_server.url}/demo/~/cascades/{cascade_id}")
            approve = page.get_by_role("button", name="Approve database/prod")
            expect(approve).to_be_visible(timeout=30_000)
            cluster = page.locator('[data-stack="cluster/prod"] .badge')
            approve.focus()
            expect(approve).to_be_focused()
            assert cluster.text_content() != "succeeded"  # held until released here

            release.touch()
            expect(cluster).to_have_text("succeeded", timeout=30_000)  # the members were redrawn in place
            expect(page.get_by_role("button", name="Approve database/prod")).to_be_focused()
            page.keyboard.press("Enter")
            expect(page.get_by_role("status").filter(has_text="Approved database/prod")).to_be_visible()
            expect(page.locator("#cascade-headline .badge")).to_have_text("succeeded", timeout=30_000)
        finally:
            release.touch()
            api.patch(DATABASE_GATE, json={"requireApproval": False})
            api.post(CLUSTER_SETTINGS, json={"operationContext": {"preRunCommands": None}})


NARROW = 360  # a small phone held upright

# Runs in the page: what sticks out to the right of a narrow window (the page widens and scrolls sideways).
OVERFLOW = """(width) => {
  const out = [];
  if (document.documentElement.scrollWidth > width) out.push(`the page is ${document.documentElement.scrollWidth}px wide`);
  const header = document.querySelector('header.top').getBoundingClientRect();
  for (const link of document.querySelectorAll('header.top a, header.top button')) {
    const box = link.getBoundingClientRect();
    if (box.right > header.right + 1 || box.bottom > header.bottom + 1) out.push(`${link.textContent.trim()} is outside the header`);
  }
  return out;
}"""


def test_the_cascade_pages_and_the_graph_fit_a_narrow_window(demo_server: LiveServer, page: Page) -> None:
    with demo_server.client() as api:
        root = deploy(api, "demo/network/prod")
        cascade_id = api.get(f"/api/stacks/demo/network/prod/deployments/{root}").json()["cascadeId"]
        wait_cascade(api, "demo", cascade_id, lambda c: c["status"] != "running")
    page.set_viewport_size({"width": NARROW, "height": 800})
    browser_sign_in(page, demo_server.url, demo_server.admin_token, "/demo/~/cascades")
    problems = {}
    for path in ("/demo/~/cascades", f"/demo/~/cascades/{cascade_id}", "/demo/~/graph"):
        page.goto(demo_server.url + path)
        page.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")  # the edge tables
        found = page.evaluate(OVERFLOW, NARROW)
        if found:
            problems[path] = found
    page.goto(f"{demo_server.url}/demo/~/cascades/{cascade_id}")
    page.screenshot(path=artifact("cascade-narrow.png"), full_page=True)
    assert problems == {}
