"""Sign-in, the session cookie, CSRF and what a token may see, over real HTTP on both databases."""

from __future__ import annotations

import httpx2

from tests.support import LiveServer
from tests.web.console import console_client, csrf_of, sign_in


def _org_token(server: LiveServer, org: str, role: str) -> str:
    with server.client() as api:
        api.post(f"/api/stacks/{org}/web", json={"stackName": "prod"}).raise_for_status()
        created = api.post("/api/tokens", json={"name": f"{role}-{org}", "org": org, "role": role})
        created.raise_for_status()
        return str(created.json()["token"])


def test_a_page_without_a_session_redirects_to_the_sign_in_form(live_server: LiveServer) -> None:
    with httpx2.Client(base_url=live_server.url) as client:
        response = client.get("/demo")
        assert response.status_code == 303
        assert response.headers["location"] == "/~/login?next=%2Fdemo"


def test_signing_in_sets_an_httponly_samesite_strict_cookie(live_server: LiveServer) -> None:
    with httpx2.Client(base_url=live_server.url) as client:
        response = sign_in(client, live_server.admin_token)
        assert response.status_code == 303
        cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and "cascade_session=" in v)
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Max-Age=43200" in cookie
        home = client.get("/")  # signed in: the org list, or the only org; never the sign-in form again
        assert home.status_code == 200 or home.headers["location"].count("/") == 1
        assert "/~/login" not in home.headers.get("location", "")


def test_a_wrong_token_is_refused_with_a_message_and_no_cookie(live_server: LiveServer) -> None:
    with httpx2.Client(base_url=live_server.url) as client:
        response = sign_in(client, "csc_not_a_token")
        assert response.status_code == 401
        assert "That token is not valid" in response.text
        assert "cascade_session" not in response.headers.get("set-cookie", "")


def test_the_sign_in_form_refuses_a_post_without_its_own_nonce(live_server: LiveServer) -> None:
    with httpx2.Client(base_url=live_server.url) as client:
        response = client.post("/~/login", data={"token": live_server.admin_token, "login_nonce": "forged"})
        assert response.status_code == 403
        assert "expired" in response.text


def test_a_runner_token_cannot_sign_in(live_server: LiveServer) -> None:
    with live_server.client() as api:
        runner = api.post("/api/tokens", json={"name": "web-runner", "runner": True})
        assert runner.status_code == 201, runner.text
    with httpx2.Client(base_url=live_server.url) as client:
        response = sign_in(client, runner.json()["token"])
        assert response.status_code == 401
        assert "runner and deployment tokens cannot sign in" in response.text


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(live_server: LiveServer, org: str) -> None:
    _org_token(live_server, org, "viewer")
    with console_client(live_server.url, live_server.admin_token) as client:
        response = client.post("/~/logout", data={})
        assert response.status_code == 403
        assert "security token is missing or stale" in response.text
        assert client.get(f"/{org}").status_code == 200  # still signed in


def test_a_cross_site_post_is_refused_even_with_the_token(live_server: LiveServer) -> None:
    with console_client(live_server.url, live_server.admin_token) as client:
        page = client.get("/", follow_redirects=True)
        token = csrf_of(page.text)
        response = client.post("/~/logout", data={"csrf": token}, headers={"Origin": "https://evil.example"})
        assert response.status_code == 403
        assert "cross-site request from https://evil.example refused" in response.text


def test_signing_out_ends_the_session(live_server: LiveServer, org: str) -> None:
    _org_token(live_server, org, "viewer")
    with console_client(live_server.url, live_server.admin_token) as client:
        token = csrf_of(client.get(f"/{org}").text)
        response = client.post("/~/logout", data={"csrf": token})
        assert response.status_code == 303
        client.cookies.delete("cascade_session")  # the browser drops it because of the Max-Age=0 answer
        assert 'cascade_session=""' in response.headers["set-cookie"] or "Max-Age=0" in response.headers["set-cookie"]
        assert client.get(f"/{org}").status_code == 303


def test_an_org_token_sees_its_org_and_nothing_else(live_server: LiveServer, org: str) -> None:
    token = _org_token(live_server, org, "viewer")
    other = f"{org}-other"
    _org_token(live_server, other, "viewer")
    with console_client(live_server.url, token) as client:
        home = client.get("/")
        assert home.status_code == 303 and home.headers["location"] == f"/{org}"
        assert client.get(f"/{org}").status_code == 200
        hidden = client.get(f"/{other}")
        assert hidden.status_code == 404
        missing = client.get(f"/{org}-never-created")
        assert missing.status_code == 404
        # Another org's page is indistinguishable from one that does not exist.
        assert hidden.text.replace(other, "X") == missing.text.replace(f"{org}-never-created", "X")


def test_api_paths_keep_answering_in_json(live_server: LiveServer) -> None:
    with httpx2.Client(base_url=live_server.url) as client:
        missing = client.get("/api/no/such/thing")
        assert missing.status_code in (401, 404)
        assert missing.headers["content-type"].startswith("application/json")
        assert client.get("/healthz").json()["status"] == "ok"
