"""In a real browser: sign in with a token, find a stack, move by keyboard, sign out."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.support import LiveServer
from tests.web.console import browser_sign_in


def test_sign_in_search_and_sign_out_in_the_browser(demo_server: LiveServer, page: Page) -> None:
    page.goto(f"{demo_server.url}/demo")
    expect(page).to_have_url(f"{demo_server.url}/~/login?next=%2Fdemo")  # no session yet
    browser_sign_in(page, demo_server.url, demo_server.admin_token, "/demo")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Stacks")
    expect(page.locator("#live-status")).to_have_text("live")  # the SSE stream is connected
    for stack in ("network/prod", "database/prod", "cluster/prod", "app/prod"):
        expect(page.get_by_role("link", name=stack)).to_be_visible()

    page.get_by_label("Search").fill("cluster")
    page.get_by_label("Search").press("Enter")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.get_by_role("link", name="cluster/prod")).to_be_visible()

    page.keyboard.press("Tab")  # the first stop is the skip link, then the main content
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{demo_server.url}/demo?q=cluster&state=#main")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status").filter(has_text="Signed out.")).to_be_visible()
    page.goto(f"{demo_server.url}/demo")
    expect(page).to_have_url(f"{demo_server.url}/~/login?next=%2Fdemo")


def test_a_wrong_token_shows_why_in_the_form(demo_server: LiveServer, page: Page) -> None:
    page.goto(f"{demo_server.url}/~/login")
    page.get_by_label("API token").fill("csc_wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not valid (or has expired).")
    expect(page.get_by_label("API token")).to_have_attribute("aria-invalid", "true")
