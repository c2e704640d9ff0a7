"""The graph page in a real Chromium: the demo cascade turns every node green live, pan and zoom, find."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from tests.support import LiveServer
from tests.web.console import artifact, browser_sign_in

DEMO = ("network/prod", "database/prod", "cluster/prod", "app/prod")


def _node(page: Page, stack: str) -> Locator:
    return page.locator(f'g.node[data-stack="{stack}"]')


def _view_box(page: Page) -> list[float]:
    return [float(v) for v in (page.locator("#graph-svg").get_attribute("viewBox") or "").split()]


def test_the_demo_cascade_turns_every_node_green_without_a_reload(demo_server: LiveServer, page: Page) -> None:
    browser_sign_in(page, demo_server.url, demo_server.admin_token, "/demo/~/graph")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    for stack in DEMO:
        expect(_node(page, stack)).to_have_attribute("data-status", "never")
    page.evaluate("window.__marker = 1")

    with demo_server.client() as api:
        started = api.post("/api/stacks/demo/network/prod/deployments", json={"operation": "update"})
        assert started.status_code == 202, started.text

    for stack in DEMO:
        node = _node(page, stack)
        expect(node).to_have_attribute("data-status", "succeeded", timeout=30_000)
        expect(node).to_have_class(re.compile(r"\bst-ok\b"))
        expect(node.locator("text.label")).to_have_text("succeeded")
        expect(node.locator("a")).to_have_attribute("aria-label", f"{stack}, succeeded")
    expect(page.locator("#graph-cascades")).to_contain_text("No cascade is running", timeout=30_000)
    assert page.evaluate("window.__marker") == 1, "the page reloaded"
    database = "postgresql" if demo_server.database_url.startswith("postgresql") else "sqlite"
    page.screenshot(path=str(artifact(f"graph-{database}.png")), full_page=True)


def test_zoom_pan_and_find_change_the_view_and_a_node_opens_its_stack(demo_server: LiveServer, page: Page) -> None:
    browser_sign_in(page, demo_server.url, demo_server.admin_token, "/demo/~/graph")
    expect(page.get_by_role("toolbar", name="Graph view")).to_be_visible()
    start = _view_box(page)

    page.get_by_role("button", name="Zoom in").click()
    zoomed = _view_box(page)
    assert zoomed[2] < start[2] and zoomed[3] < start[3]
    page.get_by_role("button", name="Zoom out").click()
    page.get_by_role("button", name="Zoom out").click()
    assert _view_box(page)[2] > zoomed[2]
    page.get_by_role("button", name="Fit").click()
    assert _view_box(page) == start

    viewport = page.get_by_role("region", name=re.compile("Deployment graph"))
    viewport.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    panned = _view_box(page)
    assert panned[0] > start[0] and panned[1] > start[1] and panned[2:] == start[2:]
    page.keyboard.press("+")
    assert _view_box(page)[2] < start[2]

    box = viewport.bounding_box()
    assert box is not None
    before = _view_box(page)
    page.mouse.move(box["x"] + 40, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + 140, box["y"] + 90, steps=5)
    page.mouse.up()
    dragged = _view_box(page)
    assert dragged[0] < before[0] and dragged[1] < before[1]  # dragging right and down shows what is left and up

    page.get_by_label("Find").fill("app")
    expect(page.locator("#graph-found")).to_have_text("1 of 4 stacks match")
    expect(_node(page, "app/prod")).to_have_class(re.compile(r"\bmatch\b"))
    expect(_node(page, "network/prod")).to_have_class(re.compile(r"\bdim\b"))
    page.get_by_label("Find").fill("")
    expect(_node(page, "network/prod")).not_to_have_class(re.compile(r"\bdim\b"))

    page.get_by_role("button", name="Fit").click()
    viewport.focus()
    page.keyboard.press("Tab")  # the stacks are links, reached by keyboard
    focused = page.evaluate("document.activeElement.closest('g.node')?.dataset.stack")
    assert focused in DEMO
    page.keyboard.press("Enter")
    page.wait_for_url(f"{demo_server.url}/demo/{focused.split('/')[0]}/prod")
