"""``cascade webhook ...`` against a live server that may post to 127.0.0.1, and a receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2
import pytest
from typer.testing import Result

from stackcascade.cli.client import ApiClient
from stackcascade.cli.refs import StackRef
from tests.cli.cli_support import Cascade, details, failed, ok, rows
from tests.support import LiveServer, free_port

SECRET = "whsec-do-not-print-7f3a"


@pytest.fixture(scope="module")
def live_server(loopback_server: LiveServer) -> LiveServer:
    """The module's server may deliver webhooks to receivers on 127.0.0.1."""
    return loopback_server


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that answers ``code`` and records every request."""

    url: str
    code: int = 200
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append((dict(self.headers.items()), body))
            self.send_response(state.code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def stack(cascade: Cascade, org: str) -> str:
    ok(cascade.as_admin("stack", "create", f"{org}/net/prod"))
    return f"{org}/net/prod"


def as_json(result: Result) -> object:
    return json.loads(ok(result).stdout)


# --- create, ls, show, update, rm ---------------------------------------------------------------------


def test_a_stack_webhook_from_create_to_rm(cascade: Cascade, stack: str, receiver: Receiver) -> None:
    created = ok(
        cascade.as_admin(
            "webhook", "create", "--stack", stack, "--url", receiver.url, "--name", "ci",
            "--display-name", "CI alerts", "--event", "deployment_failed", "--group", "stacks",
        )
    )  # fmt: skip
    assert created.stdout.strip() == f"Created webhook 'ci' of stack {stack}"

    table = rows(ok(cascade.as_admin("webhook", "ls", "--stack", stack)))
    assert table[0] == ["NAME", "ACTIVE", "FORMAT", "EVENTS", "SECRET", "URL"]
    assert table[2] == ["ci", "yes", "raw", "stacks", "(group),", "deployment_failed", "no", receiver.url]

    shown = details(ok(cascade.as_admin("webhook", "show", "ci", "--stack", stack)))
    assert shown == {
        "name": "ci",
        "display name": "CI alerts",
        "owner": f"stack {stack}",
        "url": receiver.url,
        "format": "raw",
        "active": "yes",
        "events": "stacks (group), deployment_failed",
        "secret": "none",
    }

    updated = ok(
        cascade.as_admin(
            "webhook", "update", "ci", "--stack", stack, "--url", receiver.url + "/v2", "--clear-events",
            "--inactive", "--format", "slack",
        )
    )  # fmt: skip
    assert updated.stdout.strip() == f"Updated webhook 'ci' of stack {stack}"
    hook = as_json(cascade.as_admin("webhook", "show", "ci", "--stack", stack, "--json"))
    assert hook == {
        "organizationName": stack.split("/")[0],
        "projectName": "net",
        "stackName": "prod",
        "name": "ci",
        "displayName": "CI alerts",
        "payloadUrl": receiver.url + "/v2",
        "active": False,
        "format": "slack",
        "filters": [],
        "groups": ["stacks"],  # untouched: only what was given changes
        "hasSecret": False,
        "secretCiphertext": "",
    }

    renamed = ok(cascade.as_admin("webhook", "update", "ci", "--stack", stack, "--name", "alerts", "--active"))
    assert renamed.stdout.strip() == f"Updated webhook 'ci' of stack {stack}, now named 'alerts'"

    removed = ok(cascade.as_admin("webhook", "rm", "alerts", "--stack", stack))
    assert removed.stdout.strip() == f"Deleted webhook 'alerts' of stack {stack} (slack to {receiver.url}/v2)"
    empty = ok(cascade.as_admin("webhook", "ls", "--stack", stack))
    assert empty.stdout.strip() == f"No webhooks of stack {stack}."


def test_json_output_is_the_api_answer(cascade: Cascade, stack: str, receiver: Receiver) -> None:
    created = as_json(cascade.as_admin("webhook", "create", "--stack", stack, "--url", receiver.url, "--json"))
    assert isinstance(created, dict)
    name = created["name"]  # generated by the server
    assert created["active"] is True and created["filters"] == [] and created["groups"] == []

    listing = as_json(cascade.as_admin("webhook", "ls", "--stack", stack, "--json"))
    assert listing == [created]
    updated = as_json(cascade.as_admin("webhook", "update", name, "--stack", stack, "--group", "deployments", "--json"))
    assert updated == {**created, "groups": ["deployments"]}
    removed = as_json(cascade.as_admin("webhook", "rm", name, "--stack", stack, "--json"))
    assert removed == updated
    assert as_json(cascade.as_admin("webhook", "ls", "--stack", stack, "--json")) == []


def test_an_org_webhook(cascade: Cascade, org: str, stack: str, receiver: Receiver) -> None:
    created = ok(
        cascade.as_admin("webhook", "create", "--org", org, "--url", receiver.url, "--name", "audit",
                         "--event", "stack_created", "--inactive")
    )  # fmt: skip
    assert created.stdout.strip() == f"Created webhook 'audit' of organization {org}"
    listing = as_json(cascade.as_admin("webhook", "ls", "--org", org, "--json"))
    assert isinstance(listing, list)
    assert [(h["name"], h["filters"], h["active"]) for h in listing] == [("audit", ["stack_created"], False)]
    assert "projectName" not in listing[0]
    # the stack's webhooks are a list of their own
    assert ok(cascade.as_admin("webhook", "ls", "--stack", stack)).stdout.strip() == f"No webhooks of stack {stack}."

    assert details(ok(cascade.as_admin("webhook", "show", "audit", "--org", org)))["owner"] == f"organization {org}"
    removed = ok(cascade.as_admin("webhook", "rm", "audit", "--org", org))
    assert removed.stdout.strip() == f"Deleted webhook 'audit' of organization {org} (raw to {receiver.url})"


def test_a_project_stack_reference_uses_org_or_the_default_org(
    cascade: Cascade, org: str, stack: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(cascade.as_admin("webhook", "create", "--stack", "net/prod", "--org", org, "--url", receiver.url, "--name", "a"))
    monkeypatch.setenv("CASCADE_ORG", org)
    ok(cascade.as_admin("webhook", "create", "--stack", "net/prod", "--url", receiver.url, "--name", "b"))
    listing = as_json(cascade.as_admin("webhook", "ls", "--stack", stack, "--json"))
    assert isinstance(listing, list)
    assert sorted(h["name"] for h in listing) == ["a", "b"]
    # CASCADE_ORG completes a stack reference but never picks the organization's own webhooks
    failed(cascade.as_admin("webhook", "ls"), "whose webhooks? give --stack ORG/PROJECT/STACK", "--org ORG")


# --- secrets ------------------------------------------------------------------------------------------


def signed(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_secret_from_stdin_signs_deliveries_and_is_never_echoed(
    cascade: Cascade, stack: str, receiver: Receiver, live_server: LiveServer
) -> None:
    created = ok(
        cascade.as_admin("webhook", "create", "--stack", stack, "--url", receiver.url, "--name", "signed",
                         "--secret-stdin", "--json", input=SECRET + "\n")
    )  # fmt: skip
    assert SECRET not in created.output
    assert json.loads(created.stdout)["hasSecret"] is True
    for command in (("show", "signed"), ("ls",), ("ping", "signed"), ("deliveries", "signed")):
        for extra in ((), ("--json",)):
            result = ok(cascade.as_admin("webhook", *command, "--stack", stack, *extra))
            assert SECRET not in result.output
    assert details(ok(cascade.as_admin("webhook", "show", "signed", "--stack", stack)))["secret"] == "set"

    headers, body = receiver.requests[-1]
    assert headers["Pulumi-Webhook-Signature"] == signed(SECRET, body)  # the newline from stdin is not part of it

    ok(cascade.as_admin("webhook", "update", "signed", "--stack", stack, "--clear-secret"))
    assert details(ok(cascade.as_admin("webhook", "show", "signed", "--stack", stack)))["secret"] == "none"
    ok(cascade.as_admin("webhook", "ping", "signed", "--stack", stack))
    assert "Pulumi-Webhook-Signature" not in receiver.requests[-1][0]


def test_a_secret_from_an_environment_variable(
    cascade: Cascade, stack: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(cascade.as_admin("webhook", "create", "--stack", stack, "--url", receiver.url, "--name", "env"))
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    updated = ok(cascade.as_admin("webhook", "update", "env", "--stack", stack, "--secret-env", "HOOK_SECRET"))
    assert SECRET not in updated.output
    ok(cascade.as_admin("webhook", "ping", "env", "--stack", stack))
    headers, body = receiver.requests[-1]
    assert headers["Pulumi-Webhook-Signature"] == signed(SECRET, body)


def test_secret_options_are_refused_without_echoing_a_value(cascade: Cascade, stack: str, receiver: Receiver) -> None:
    create = ("webhook", "create", "--stack", stack, "--url", receiver.url)
    message = failed(cascade.as_admin(*create, "--secret-env", f"HOOK_SECRET={SECRET}"), "not KEY=VALUE")
    assert SECRET not in message
    failed(
        cascade.as_admin(*create, "--secret-env", "CASCADE_TEST_UNSET_VARIABLE"),
        "CASCADE_TEST_UNSET_VARIABLE is not set",
    )
    failed(cascade.as_admin(*create, "--secret-stdin", input="\n"), "the secret read from stdin is empty")
    failed(cascade.as_admin(*create, "--secret-stdin", "--secret-env", "X"), "give --secret-stdin or --secret-env")
    assert cascade.as_admin(*create, "--secret", SECRET).exit_code == 2  # no option takes a secret in argv
    update = ("webhook", "update", "x", "--stack", stack)
    failed(
        cascade.as_admin(*update, "--clear-secret", "--secret-stdin", input=SECRET), "--clear-secret or a new secret"
    )
    assert as_json(cascade.as_admin("webhook", "ls", "--stack", stack, "--json")) == []


# --- ping, deliveries, redeliver ----------------------------------------------------------------------


def test_ping_deliveries_and_redeliver(cascade: Cascade, stack: str, receiver: Receiver) -> None:
    ok(cascade.as_admin("webhook", "create", "--stack", stack, "--url", receiver.url, "--name", "ci"))

    pinged = ok(cascade.as_admin("webhook", "ping", "ci", "--stack", stack)).stdout.strip()
    assert pinged.startswith(f"Ping of webhook 'ci' to {receiver.url}: response 200 in ")
    (headers, body), = receiver.requests  # fmt: skip
    assert headers["Pulumi-Webhook-Kind"] == "ping"

    attempt = as_json(cascade.as_admin("webhook", "ping", "ci", "--stack", stack, "--json"))
    assert isinstance(attempt, dict)
    assert (attempt["event"], attempt["status"], attempt["responseCode"], attempt["error"]) == (
        "ping", "succeeded", 200, None,
    )  # fmt: skip
    assert attempt["requestUrl"] == receiver.url and attempt["responseBody"] == "ok"
    assert len(receiver.requests) == 2

    table = rows(ok(cascade.as_admin("webhook", "deliveries", "ci", "--stack", stack)))
    assert table[0] == ["TIME", "EVENT", "ATTEMPT", "STATUS", "CODE", "DURATION", "ID", "ERROR"]
    assert [(r[2], r[3], r[4], r[5], r[7]) for r in table[2:]] == [("ping", "1", "succeeded", "200", "ms")] * 2
    assert table[2][8] == attempt["id"]  # newest first

    redelivered = ok(cascade.as_admin("webhook", "redeliver", "ci", table[3][8], "--stack", stack)).stdout.strip()
    assert redelivered.startswith(f"Redelivery of ping by webhook 'ci' to {receiver.url}: response 200 in ")
    assert receiver.requests[2][1] == body  # the first ping's payload, unchanged

    listing = as_json(cascade.as_admin("webhook", "deliveries", "ci", "--stack", stack, "--json"))
    assert isinstance(listing, list) and len(listing) == 3
    newest = listing[0]
    assert newest["payload"] == body.decode() and newest["id"] not in {attempt["id"], table[3][8]}

    # --limit pages and says where older ones are; --before continues there
    page = ok(cascade.as_admin("webhook", "deliveries", "ci", "--stack", stack, "--limit", "2"))
    assert page.stdout.splitlines()[-1] == f"The newest 2 attempts; older ones, if any: --before {listing[1]['id']}"
    older = as_json(
        cascade.as_admin("webhook", "deliveries", "ci", "--stack", stack, "--before", listing[1]["id"], "--json")
    )
    assert older == listing[2:]


def test_a_failed_ping_exits_1_with_the_answer(cascade: Cascade, org: str, receiver: Receiver) -> None:
    ok(cascade.as_admin("webhook", "create", "--org", org, "--url", receiver.url, "--name", "ci"))
    receiver.code = 503
    failed(
        cascade.as_admin("webhook", "ping", "ci", "--org", org),
        f"error: Ping of webhook 'ci' to {receiver.url} failed: response 503 in ",
    )
    with_json = cascade.as_admin("webhook", "ping", "ci", "--org", org, "--json")
    assert with_json.exit_code == 1
    assert json.loads(with_json.stdout)["responseCode"] == 503  # stdout stays the API's JSON
    assert "failed: response 503" in with_json.stderr

    table = rows(ok(cascade.as_admin("webhook", "deliveries", "ci", "--org", org)))
    assert [(r[3], r[4], r[5]) for r in table[2:]] == [("1", "failed", "503")] * 2

    receiver.code = 200
    redelivered = ok(cascade.as_admin("webhook", "redeliver", "ci", table[2][8], "--org", org))
    assert "response 200" in redelivered.stdout


def test_a_ping_without_any_response_shows_the_error(cascade: Cascade, org: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}/hook"
    ok(cascade.as_admin("webhook", "create", "--org", org, "--url", closed, "--name", "gone"))
    message = failed(cascade.as_admin("webhook", "ping", "gone", "--org", org))
    assert f"Ping of webhook 'gone' to {closed} failed: no response in " in message
    assert "ConnectError" in message
    table = rows(ok(cascade.as_admin("webhook", "deliveries", "gone", "--org", org)))
    assert table[2][3:6] == ["1", "failed", "-"]


# --- errors -------------------------------------------------------------------------------------------


def test_commands_need_exactly_one_owner(cascade: Cascade, org: str, stack: str) -> None:
    failed(cascade.as_admin("webhook", "ls"), "whose webhooks? give --stack ORG/PROJECT/STACK")
    failed(cascade.as_admin("webhook", "create", "--url", "http://127.0.0.1/x"), "whose webhooks?")
    failed(
        cascade.as_admin("webhook", "ls", "--stack", stack, "--org", f"{org}-other"),
        f"--stack {stack} is in organization {org}, not --org {org}-other",
    )
    failed(cascade.as_admin("webhook", "ls", "--stack", "prod", "--org", org), "invalid stack 'prod'")


def test_unknown_webhooks_show_the_servers_404(cascade: Cascade, org: str, stack: str) -> None:
    for command in (
        ("show", "nope"),
        ("rm", "nope"),
        ("ping", "nope"),
        ("deliveries", "nope"),
        ("update", "nope", "--active"),
    ):
        failed(
            cascade.as_admin("webhook", *command, "--stack", stack), f"stack {stack} has no webhook named 'nope' (404)"
        )
    failed(
        cascade.as_admin("webhook", "redeliver", "nope", "some-id", "--org", org),
        f"organization {org} has no webhook named 'nope' (404)",
    )
    failed(cascade.as_admin("webhook", "ls", "--stack", f"{org}/net/missing"), "(404)")


def test_unknown_deliveries_and_bad_input_show_the_servers_message(
    cascade: Cascade, stack: str, receiver: Receiver
) -> None:
    ok(cascade.as_admin("webhook", "create", "--stack", stack, "--url", receiver.url, "--name", "ci"))
    failed(
        cascade.as_admin("webhook", "redeliver", "ci", "no-such-delivery", "--stack", stack),
        "webhook 'ci' has no delivery or attempt 'no-such-delivery' (404)",
    )
    failed(cascade.as_admin("webhook", "deliveries", "ci", "--stack", stack, "--before", "x"), "(400)")
    failed(
        cascade.as_admin("webhook", "create", "--stack", stack, "--url", receiver.url, "--event", "stack_created"),
        "can only be used on organization webhooks",
        "(400)",
    )
    failed(
        cascade.as_admin("webhook", "create", "--stack", stack, "--url", receiver.url, "--name", "ci"),
        f"stack {stack} already has a webhook named 'ci' (409)",
    )
    failed(
        cascade.as_admin("webhook", "create", "--stack", stack, "--url", "http://10.1.2.3/hook"),
        "webhook target 10.1.2.3 is refused",
    )
    failed(cascade.as_admin("webhook", "update", "ci", "--stack", stack), "nothing to change")
    failed(
        cascade.as_admin("webhook", "update", "ci", "--stack", stack, "--event", "update_failed", "--clear-events"),
        "not both",
    )


def test_a_viewer_cannot_manage_webhooks(cascade: Cascade, org: str, stack: str) -> None:
    viewer = ok(cascade.as_admin("token", "create", "--org", org, "--role", "viewer")).stdout.strip()
    failed(cascade.as_token(viewer, "webhook", "ls", "--stack", stack), f"role viewer in organization '{org}'", "(403)")


def test_a_deployment_webhook_names_a_stack_and_may_not_close_a_cycle(cascade: Cascade, org: str, stack: str) -> None:
    ok(cascade.as_admin("stack", "create", f"{org}/app/prod"))
    edge = ("--format", "pulumi_deployments", "--name", "edge")
    ok(cascade.as_admin("webhook", "create", "--stack", stack, "--url", "app/prod", *edge))
    shown = details(ok(cascade.as_admin("webhook", "show", "edge", "--stack", stack)))
    assert (shown["format"], shown["url"]) == ("pulumi_deployments", "app/prod")
    failed(
        cascade.as_admin("webhook", "create", "--stack", f"{org}/app/prod", "--url", "net/prod", *edge),
        "would close a cycle",
        "(409)",
    )


def test_a_deployment_edge_gets_its_pruning_and_gate_on_create_and_update(
    cascade: Cascade, org: str, stack: str
) -> None:
    ok(cascade.as_admin("stack", "create", f"{org}/app/prod"))
    created = as_json(
        cascade.as_admin(
            "webhook", "create", "--stack", stack, "--url", "app/prod", "--format", "pulumi_deployments",
            "--name", "edge", "--trigger-on", "outputs-changed", "--require-approval", "--json",
        )
    )  # fmt: skip
    assert isinstance(created, dict)
    assert (created["triggerOn"], created["requireApproval"]) == ("outputs-changed", True)
    shown = details(ok(cascade.as_admin("webhook", "show", "edge", "--stack", stack)))
    assert (shown["trigger on"], shown["approval"]) == ("outputs-changed", "required")
    edges = as_json(cascade.as_admin("graph", "--org", org, "--json"))
    assert isinstance(edges, dict)
    assert [(e["triggerOn"], e["requireApproval"]) for e in edges["edges"]] == [("outputs-changed", True)]

    # only what is given changes
    ok(cascade.as_admin("webhook", "update", "edge", "--stack", stack, "--no-require-approval"))
    shown = details(ok(cascade.as_admin("webhook", "show", "edge", "--stack", stack)))
    assert (shown["trigger on"], shown["approval"]) == ("outputs-changed", "not required")
    updated = as_json(
        cascade.as_admin("webhook", "update", "edge", "--stack", stack, "--trigger-on", "always", "--json")
    )
    assert updated == {**created, "triggerOn": "always", "requireApproval": False}


def test_pruning_and_gate_options_are_refused_for_webhooks_that_are_not_edges(
    cascade: Cascade, org: str, stack: str, receiver: Receiver
) -> None:
    refusal = "only apply to a deployment edge (--format pulumi_deployments)"
    create = ("webhook", "create", "--stack", stack, "--url", receiver.url, "--name", "ci")
    failed(cascade.as_admin(*create, "--trigger-on", "always"), f"--trigger-on always {refusal}, not to a raw webhook")
    failed(
        cascade.as_admin(*create, "--format", "slack", "--no-require-approval", "--trigger-on", "outputs-changed"),
        f"--trigger-on outputs-changed and --no-require-approval {refusal}, not to a slack webhook",
    )
    assert as_json(cascade.as_admin("webhook", "ls", "--stack", stack, "--json")) == []  # nothing was sent

    ok(cascade.as_admin(*create))
    failed(
        cascade.as_admin("webhook", "update", "ci", "--stack", stack, "--no-require-approval"),
        f"--no-require-approval {refusal}, not to webhook 'ci', a raw webhook",
    )
    failed(
        cascade.as_admin("webhook", "update", "ci", "--stack", stack, "--format", "ms_teams", "--require-approval"),
        f"--require-approval {refusal}, not to a ms_teams webhook",
    )
    assert as_json(cascade.as_admin("webhook", "show", "ci", "--stack", stack, "--json")) == {
        "organizationName": org,
        "projectName": "net",
        "stackName": "prod",
        "name": "ci",
        "displayName": "ci",
        "payloadUrl": receiver.url,
        "active": True,
        "format": "raw",
        "filters": [],
        "groups": [],
        "hasSecret": False,
        "secretCiphertext": "",
    }  # unchanged
    usage = cascade.as_admin(*create, "--trigger-on", "sometimes")
    assert usage.exit_code == 2 and "outputs-changed" in usage.output  # the choices are listed


# --- the client, without a server ---------------------------------------------------------------------


def test_the_client_pages_deliveries_100_at_a_time_up_to_the_limit() -> None:
    seen: list[httpx2.URL] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.url)
        size = int(request.url.params["pageSize"])
        start = int(request.url.params.get("before", "1000"))
        return httpx2.Response(200, json=[{"id": str(start - i - 1)} for i in range(min(size, start - 860))])

    with ApiClient("http://cascade.test", "t", transport=httpx2.MockTransport(handler)) as api:
        attempts = api.webhook_deliveries(StackRef("acme", "net", "prod"), "ci", limit=250, before="1000")
    assert [a["id"] for a in attempts] == [str(n) for n in range(999, 859, -1)]  # the server ran out after 140
    assert [(u.path, dict(u.params)) for u in seen] == [
        ("/api/stacks/acme/net/prod/hooks/ci/deliveries", {"pageSize": "100", "before": "1000"}),
        ("/api/stacks/acme/net/prod/hooks/ci/deliveries", {"pageSize": "100", "before": "900"}),
    ]


def test_the_client_encodes_names_into_org_webhook_paths() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={"id": "a2", "responseCode": 200})

    with ApiClient("http://cascade.test", "t", transport=httpx2.MockTransport(handler)) as api:
        api.redeliver_webhook("acme", "ci/x", "d?1")
    assert seen[0].method == "POST"
    assert seen[0].url.raw_path == b"/api/orgs/acme/hooks/ci%2Fx/deliveries/d%3F1/redeliver"
