"""Secrets and credentials at the settings inputs, over real HTTP on both databases.

One server key seals every stack's secrets and viewers read the ciphertexts, so a ciphertext sent
back is accepted only by the stack whose saved settings hold it. Credentials written into a repoUrl
would be stored and shown as plain text, so they are refused there (gitAuth seals them).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from stackcascade.domain.settings import MASK, unwrap_ciphertext
from stackcascade.services.secrets import SecretBox, load_or_create_key
from stackcascade.store import stacks as stack_rows
from stackcascade.store.db import Database
from tests.support import LiveServer, assert_error

REPO = "https://example.com/infra.git"
SECRETS = {
    "sourceContext": {
        "git": {
            "repoUrl": REPO,
            "branch": "main",
            "gitAuth": {"basicAuth": {"userName": {"secret": "bot"}, "password": {"secret": "pass-of-a-61c"}}},
        }
    },
    "operationContext": {"environmentVariables": {"TOKEN": {"secret": "token-of-a-0d4"}, "REGION": "eu"}},
}
SOURCE = {"sourceContext": {"git": {"repoUrl": REPO, "branch": "main"}}}
CREDENTIALS_MESSAGE = (
    "sourceContext.git.repoUrl must not carry credentials (user:password@ or token@): put them in "
    'sourceContext.git.gitAuth.basicAuth (userName, and password as {"secret": "..."}) '
    'or in sourceContext.git.gitAuth.accessToken as {"secret": "..."}'
)


@pytest.fixture
def clients(live_server: LiveServer) -> Iterator[Any]:
    """Clients for tokens issued by the admin: ``make(org, role)``; closed after the test."""
    opened: list[httpx2.Client] = []

    def make(admin: httpx2.Client, org: str, role: str) -> httpx2.Client:
        issued = admin.post("/api/tokens", json={"org": org, "role": role})
        assert issued.status_code == 201, issued.text
        client = httpx2.Client(
            base_url=live_server.url, headers={"Authorization": f"token {issued.json()['token']}"}, timeout=30
        )
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def new_stack(admin: httpx2.Client, org: str, name: str = "dev", settings: dict[str, Any] | None = None) -> str:
    """A stack, with ``settings`` saved when given; the value is ``org/proj/name``."""
    admin.post(f"/api/stacks/{org}/proj", json={"stackName": name}).raise_for_status()
    if settings is not None:
        admin.post(f"/api/stacks/{org}/proj/{name}/deployments/settings", json=settings).raise_for_status()
    return f"{org}/proj/{name}"


def settings_of(client: httpx2.Client, stack: str) -> dict[str, Any]:
    response = client.get(f"/api/stacks/{stack}/deployments/settings")
    assert response.status_code == 200, response.text
    return dict(response.json())


def token_ciphertext(settings: dict[str, Any]) -> str:
    return str(settings["operationContext"]["environmentVariables"]["TOKEN"]["ciphertext"])


def password_ciphertext(settings: dict[str, Any]) -> str:
    return str(settings["sourceContext"]["git"]["gitAuth"]["basicAuth"]["password"]["ciphertext"])


def with_env(name: str, ciphertext: str) -> dict[str, Any]:
    return {"operationContext": {"environmentVariables": {name: {"secret": MASK, "ciphertext": ciphertext}}}}


def deployments_total(client: httpx2.Client, stack: str) -> int:
    response = client.get(f"/api/stacks/{stack}/deployments")
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def not_issued(where: str, stack: str) -> str:
    return f'{where}: this ciphertext was not issued for stack {stack}: give the value as {{"secret": "..."}}'


# --- a ciphertext counts only for the stack that holds it --------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_a_ciphertext_read_in_one_org_is_refused_by_another_orgs_settings(
    admin: httpx2.Client, clients: Any, method: str
) -> None:
    org_a, org_b = f"a-{uuid.uuid4().hex[:10]}", f"b-{uuid.uuid4().hex[:10]}"
    stack_a = new_stack(admin, org_a, settings=SECRETS)
    stack_b = new_stack(admin, org_b, settings={**SOURCE, "tag": "b"})
    viewer_a, member_b = clients(admin, org_a, "viewer"), clients(admin, org_b, "member")
    stolen = token_ciphertext(settings_of(viewer_a, stack_a))
    before = settings_of(admin, stack_b)

    response = member_b.request(method, f"/api/stacks/{stack_b}/deployments/settings", json=with_env("X", stolen))

    assert_error(response, 400, not_issued("operationContext.environmentVariables.X", stack_b))
    assert settings_of(admin, stack_b) == before  # nothing written, no version taken


def test_a_ciphertext_read_in_one_org_is_refused_by_a_deployment_in_another(admin: httpx2.Client, clients: Any) -> None:
    org_a, org_b = f"a-{uuid.uuid4().hex[:10]}", f"b-{uuid.uuid4().hex[:10]}"
    stack_a = new_stack(admin, org_a, settings=SECRETS)
    stack_b = new_stack(admin, org_b, settings=SOURCE)
    viewer_a, member_b = clients(admin, org_a, "viewer"), clients(admin, org_b, "member")
    stolen = settings_of(viewer_a, stack_a)

    for inherit in (True, False):
        for body in (
            with_env("X", token_ciphertext(stolen)),
            {
                "sourceContext": {
                    "git": {"gitAuth": {"basicAuth": {"password": {"ciphertext": password_ciphertext(stolen)}}}}
                }
            },
        ):
            response = member_b.post(
                f"/api/stacks/{stack_b}/deployments",
                json={"operation": "update", "inheritSettings": inherit, **SOURCE, **body},
            )
            assert_error(response, 400)
            assert "this ciphertext was not issued for stack " + stack_b in response.json()["message"]
    assert deployments_total(admin, stack_b) == 0


def test_a_ciphertext_copied_between_two_stacks_of_one_org_is_refused(admin: httpx2.Client, org: str) -> None:
    prod = new_stack(admin, org, "prod", settings=SECRETS)
    dev = new_stack(admin, org, "dev", settings=SOURCE)
    copied = password_ciphertext(settings_of(admin, prod))
    body = {"sourceContext": {"git": {"gitAuth": {"basicAuth": {"password": {"secret": MASK, "ciphertext": copied}}}}}}
    where = "sourceContext.git.gitAuth.basicAuth.password"

    saved = admin.post(f"/api/stacks/{dev}/deployments/settings", json=body)
    deployed = admin.post(f"/api/stacks/{dev}/deployments", json={"operation": "update", **body})

    assert_error(saved, 400, not_issued(where, dev))
    assert_error(deployed, 400, not_issued(where, dev))
    assert "gitAuth" not in settings_of(admin, dev)["sourceContext"]["git"]
    assert deployments_total(admin, dev) == 0


def test_a_ciphertext_the_stack_no_longer_holds_is_refused(admin: httpx2.Client, org: str) -> None:
    stack = new_stack(admin, org, settings=SECRETS)
    old = token_ciphertext(settings_of(admin, stack))
    url = f"/api/stacks/{stack}/deployments/settings"
    admin.post(url, json={"operationContext": {"environmentVariables": {"TOKEN": {"secret": "rotated"}}}})
    assert_error(
        admin.post(url, json=with_env("TOKEN", old)),
        400,
        not_issued("operationContext.environmentVariables.TOKEN", stack),
    )


def test_get_then_put_back_unchanged_keeps_every_secret(
    live_server: LiveServer, admin: httpx2.Client, org: str
) -> None:
    stack = new_stack(admin, org, settings=SECRETS)
    url = f"/api/stacks/{stack}/deployments/settings"
    shown = settings_of(admin, stack)
    body = {k: v for k, v in shown.items() if k not in {"version", "source"}}

    put = admin.put(url, json=body)
    merged = admin.post(url, json=with_env("AGAIN", token_ciphertext(shown)))

    assert put.status_code == 200, put.text
    assert merged.status_code == 200, merged.text
    again = settings_of(admin, stack)
    box = SecretBox(load_or_create_key(None, live_server.data_dir))
    assert box.open(unwrap_ciphertext(token_ciphertext(again))) == "token-of-a-0d4"
    assert box.open(unwrap_ciphertext(password_ciphertext(again))) == "pass-of-a-61c"
    assert (
        again["operationContext"]["environmentVariables"]["AGAIN"]
        == shown["operationContext"]["environmentVariables"]["TOKEN"]
    )


def test_a_deployment_may_send_back_its_own_stacks_ciphertext(admin: httpx2.Client, org: str) -> None:
    stack = new_stack(admin, org, settings=SECRETS)
    own = token_ciphertext(settings_of(admin, stack))
    for inherit in (True, False):
        body = {"operation": "update", "inheritSettings": inherit, **SOURCE, **with_env("COPY", own)}
        response = admin.post(f"/api/stacks/{stack}/deployments", json=body)
        assert response.status_code == 202, response.text
        shown = admin.get(f"/api/stacks/{stack}/deployments/{response.json()['id']}").json()
        assert {"name": "COPY", "secret": True} in shown["configuration"]["environmentVariables"]


# --- credentials in repoUrl ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["https://deploybot:hunter2-pass@git.example.com/x.git", "https://ghp_tokenA1B2@github.com/o/r.git"]
)
def test_credentials_in_the_repo_url_are_refused_everywhere_they_could_be_saved(
    admin: httpx2.Client, org: str, url: str
) -> None:
    stack = new_stack(admin, org, settings={**SOURCE, "tag": "kept"})
    before = settings_of(admin, stack)
    body = {"sourceContext": {"git": {"repoURL": url, "branch": "main"}}}
    for method in ("POST", "PUT"):
        assert_error(
            admin.request(method, f"/api/stacks/{stack}/deployments/settings", json=body), 400, CREDENTIALS_MESSAGE
        )
    assert_error(
        admin.post(f"/api/stacks/{stack}/deployments", json={"operation": "update", **body}), 400, CREDENTIALS_MESSAGE
    )
    assert settings_of(admin, stack) == before
    assert deployments_total(admin, stack) == 0


@pytest.mark.parametrize("url", ["ssh://git@github.com/o/r.git", "git@github.com:o/r.git"])
def test_a_user_name_in_an_ssh_url_is_kept(admin: httpx2.Client, org: str, url: str) -> None:
    stack = new_stack(admin, org, settings={"sourceContext": {"git": {"repoUrl": url, "branch": "main"}}})
    assert settings_of(admin, stack)["sourceContext"]["git"]["repoUrl"] == url


def test_credentials_go_in_git_auth_instead(admin: httpx2.Client, org: str) -> None:
    git = {"repoUrl": REPO, "gitAuth": {"basicAuth": {"userName": "deploybot", "password": {"secret": "hunter2-pass"}}}}
    stack = new_stack(admin, org, settings={"sourceContext": {"git": git}})
    response = admin.get(f"/api/stacks/{stack}/deployments/settings")
    assert response.json()["sourceContext"]["git"]["repoUrl"] == REPO
    assert "hunter2-pass" not in response.text


async def test_a_repo_url_saved_with_credentials_before_is_shown_redacted(
    live_server: LiveServer, admin: httpx2.Client, org: str
) -> None:
    stack = new_stack(admin, org, settings=SOURCE)
    legacy = {"sourceContext": {"git": {"repoUrl": "https://deploybot:hunter2-pass@git.example.com/x.git"}}}
    db = Database(live_server.database_url)
    try:
        async with db.write() as conn:
            row = await stack_rows.find(conn, org, "proj", "dev")
            assert row is not None
            await stack_rows.save_settings(conn, row.id, legacy, time.time())
    finally:
        await db.dispose()
    shown = "https://deploybot:***@git.example.com/x.git"

    settings = admin.get(f"/api/stacks/{stack}/deployments/settings")
    created = admin.post(f"/api/stacks/{stack}/deployments", json={"operation": "update"})
    assert created.status_code == 202, created.text
    deployment = admin.get(f"/api/stacks/{stack}/deployments/{created.json()['id']}")

    assert settings.json()["sourceContext"]["git"]["repoUrl"] == shown
    assert deployment.json()["configuration"]["source"]["git"]["repoURL"] == shown
    for response in (settings, deployment):
        assert "hunter2-pass" not in response.text
