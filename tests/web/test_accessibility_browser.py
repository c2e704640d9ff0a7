"""Every console page, checked in Chromium for the markup assistive technology relies on.

Not a full audit (no axe-core here: no third-party JavaScript), but the rules a page most often breaks:
one ``main`` landmark and one ``h1``, headings that do not skip levels, every form control labelled,
every button and link named, the page's language set, and graph nodes reachable by keyboard.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import deploy, wait_for
from tests.support import LiveServer
from tests.web.console import browser_sign_in

# Runs in the page: a list of problems, empty when the page passes.
AUDIT = """() => {
  const problems = [];
  const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const name = (el) => (el.getAttribute('aria-label') || el.getAttribute('title') || el.textContent || '').trim()
      || [...(el.getAttribute('aria-labelledby') || '').split(' ')].map(id => document.getElementById(id)?.textContent || '').join('').trim();
  if (document.documentElement.lang !== 'en') problems.push('html has no lang');
  if (document.querySelectorAll('main').length !== 1) problems.push('not exactly one main landmark');
  if (document.querySelectorAll('h1').length !== 1) problems.push('not exactly one h1');
  let last = 0;
  for (const h of document.querySelectorAll('h1, h2, h3, h4, h5, h6')) {
    const level = Number(h.tagName[1]);
    if (last && level > last + 1) problems.push(`heading jumps from h${last} to h${level}: ${h.textContent.trim()}`);
    last = level;
  }
  for (const control of document.querySelectorAll('input, select, textarea')) {
    if (control.type === 'hidden' || !visible(control)) continue;
    const labelled = control.labels?.length || control.getAttribute('aria-label') || control.getAttribute('aria-labelledby');
    if (!labelled) problems.push(`unlabelled ${control.tagName.toLowerCase()} ${control.name || control.id}`);
  }
  for (const el of document.querySelectorAll('button, a[href], [role=button]')) {
    if (!visible(el) && !el.closest('svg')) continue;
    if (!name(el)) problems.push(`unnamed ${el.tagName.toLowerCase()} ${el.outerHTML.slice(0, 80)}`);
  }
  return problems;
}"""


@pytest.fixture(scope="module")
def pages(demo_server: LiveServer) -> dict[str, str]:
    """One of each kind of page, with content: a finished cascade, a deployment, a webhook with a ping."""
    with demo_server.client() as api:
        root = deploy(api, "demo/network/prod")
        assert wait_for(api, "demo/network/prod", root)["status"] == "succeeded"
        cascade = api.get(f"/api/stacks/demo/network/prod/deployments/{root}").json()["cascadeId"]
        hook = {"name": "audit", "displayName": "Audit", "payloadUrl": "https://hooks.example/x", "format": "slack"}
        assert api.post("/api/orgs/demo/hooks", json=hook).status_code in (201, 409)
    return {
        "overview": "/demo",
        "graph": "/demo/~/graph",
        "cascades": "/demo/~/cascades",
        "cascade": f"/demo/~/cascades/{cascade}",
        "stack": "/demo/network/prod",
        "deployment": f"/demo/network/prod/deployments/{root}",
        "org webhooks": "/demo/~/webhooks",
        "webhook": "/demo/~/webhooks/audit",
        "new webhook form": "/demo/~/webhooks/new",
        "stack webhooks": "/demo/network/prod/webhooks",
        "not found": "/demo/~/cascades/no-such-cascade",
    }


def test_every_page_passes_the_markup_audit(demo_server: LiveServer, page: Page, pages: dict[str, str]) -> None:
    page.goto(f"{demo_server.url}/~/login")
    assert page.evaluate(AUDIT) == [], "the sign-in page"
    browser_sign_in(page, demo_server.url, demo_server.admin_token, "/demo")
    failures = {}
    for kind, path in pages.items():
        page.goto(demo_server.url + path)
        problems = page.evaluate(AUDIT)
        if problems:
            failures[kind] = problems
    assert failures == {}


def test_the_graph_is_usable_by_keyboard(demo_server: LiveServer, page: Page) -> None:
    browser_sign_in(page, demo_server.url, demo_server.admin_token, "/demo/~/graph")
    node = page.get_by_role("link", name="app/prod", exact=False).first
    node.focus()
    expect(node).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{demo_server.url}/demo/app/prod")


def test_the_audit_finds_what_it_looks_for(page: Page) -> None:
    page.set_content(
        "<html><body><h1>a</h1><h1>b</h1><h4>skipped</h4>"
        '<input name="q"><button></button><a href="/x"></a></body></html>'
    )
    problems = page.evaluate(AUDIT)
    assert problems[:4] == [
        "html has no lang",
        "not exactly one main landmark",
        "not exactly one h1",
        "heading jumps from h1 to h4: skipped",
    ]
    assert "unlabelled input q" in problems
    assert sum(p.startswith("unnamed ") for p in problems) == 2
