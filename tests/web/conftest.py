"""Console fixtures: a real Chromium (Debian's, through Playwright) and a demo server with runners."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.support import DATABASES, LiveServer, serving
from tests.web.console import CHROMIUM_ARGS, require_chromium


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One browser per test module: Playwright's sync API keeps an event loop set on this thread while
    it is open, which would break the asyncio tests of the modules that follow."""
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies) and page per test; dialogs are accepted."""
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture(scope="module", params=DATABASES)
def demo_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real server with the demo org seeded and two local runners (one per test module and database)."""
    data_dir = tmp_path_factory.mktemp("console")
    with serving(request.param, data_dir, runners=2, demo=True) as server:
        yield server
