"""Helpers for console tests: a signed-in HTTP client, a real Chromium driven by Playwright, artefacts."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
from playwright.sync_api import Page

CHROMIUM = os.environ.get("CASCADE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def require_chromium() -> str:
    """Skip with a clear message locally; fail under CI=true, where `.ci/run` installs Debian's chromium."""
    if Path(CHROMIUM).exists() or shutil.which(CHROMIUM):
        return CHROMIUM
    message = f"Chromium is not installed at {CHROMIUM}: `apt-get install -y chromium` to run the browser tests"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: browser tests may not be skipped)")
    pytest.skip(message)


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


def csrf_of(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


@contextmanager
def console_client(url: str, token: str) -> Iterator[httpx2.Client]:
    """An HTTP client signed in to the console with ``token`` (through the real sign-in form)."""
    with httpx2.Client(base_url=url, timeout=30, follow_redirects=False) as client:
        sign_in(client, token)
        yield client


def sign_in(client: httpx2.Client, token: str) -> httpx2.Response:
    form = client.get("/~/login")
    nonce = re.search(r'name="login_nonce" value="([^"]+)"', form.text)
    assert nonce, "the sign-in form has no nonce"
    return client.post("/~/login", data={"token": token, "login_nonce": nonce.group(1), "next": "/"})


def browser_sign_in(page: Page, base_url: str, token: str, next_path: str = "/") -> None:
    """Sign in through the form, as a person would, and land on ``next_path``."""
    page.goto(f"{base_url}/~/login?next={next_path}")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}{next_path}")
