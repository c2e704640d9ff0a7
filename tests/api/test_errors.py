"""Errors: one JSON shape, a 4xx for every malformed request, never a 500 (design sections 5.1 and 7)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import psycopg.errors
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackcascade.api import errors
from tests.support import LiveServer, assert_error

LIMIT = 1024 * 1024
TOO_LARGE = f"request body is larger than {LIMIT} bytes (CASCADE_MAX_BODY_BYTES)"
SOURCE = {"sourceContext": {"git": {"repoUrl": "https://example.com/infra.git", "branch": "main"}}}


@pytest.fixture
def stack(admin: httpx2.Client, org: str) -> str:
    admin.post(f"/api/stacks/{org}/proj", json={"stackName": "dev"}).raise_for_status()
    return f"/api/stacks/{org}/proj/dev"


def write_targets(org: str, stack: str) -> list[tuple[str, str]]:
    return [
        ("POST", f"/api/stacks/{org}/proj"),
        ("POST", f"{stack}/deployments/settings"),
        ("PUT", f"{stack}/deployments/settings"),
        ("POST", f"{stack}/deployments"),
        ("POST", "/api/tokens"),
        ("PATCH", f"/api/orgs/{org}/settings"),
    ]


# --- routes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/nope", "/api/stacks", "/api", "/api/stacks/o/p/s/deployments/x/y/z"])
def test_an_unknown_route_is_a_json_404(admin: httpx2.Client, path: str) -> None:
    assert_error(admin.get(path), 404, f"no such endpoint: GET {path}")


def test_paths_outside_api_belong_to_the_web_console(admin: httpx2.Client) -> None:
    # ``/nope`` is the console page of an organization "nope": without a console session, the sign-in form.
    response = admin.get("/nope")
    assert response.status_code == 303
    assert response.headers["location"] == "/~/login?next=%2Fnope"


def test_an_unknown_route_is_a_404_even_without_a_token(anonymous: httpx2.Client) -> None:
    assert_error(anonymous.post("/api/nope", json={}), 404, "no such endpoint: POST /api/nope")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", "/api/stacks/o/p/s", {"GET", "DELETE"}),
        ("PUT", "/api/stacks/o/p", {"HEAD", "POST"}),
        ("DELETE", "/api/user/stacks", {"GET"}),
        ("GET", "/api/stacks/o/p/s/deployments/d1/cancel", {"POST"}),
        ("PATCH", "/api/stacks/o/p/s/deployments/settings", {"GET", "POST", "PUT", "DELETE"}),
    ],
)
def test_a_wrong_method_is_a_json_405(admin: httpx2.Client, method: str, path: str, allowed: set[str]) -> None:
    response = admin.request(method, path)
    assert_error(response, 405, f"method {method} is not allowed on {path}")
    # Starlette lists only the first matching route's methods (GET and DELETE are separate routes), so
    # the header is checked for truthfulness rather than completeness.
    listed = {m.strip() for m in response.headers["allow"].split(",")}
    assert listed
    assert listed <= allowed | {"HEAD"}
    assert method not in listed


# --- bodies --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"stackName": ', "malformed JSON in request body: Expecting value at line 1 column 15"),
        (
            b"{'stackName': 'dev'}",
            "malformed JSON in request body: Expecting property name enclosed in double quotes at line 1 column 2",
        ),
        (
            b'{"a": 1,}',
            "malformed JSON in request body: Expecting property name enclosed in double quotes at line 1 column 9",
        ),
        (b"stackName=dev", "malformed JSON in request body: Expecting value at line 1 column 1"),
        (b'{"a": 1}\n{"b": 2}', "malformed JSON in request body: Extra data at line 2 column 1"),
        (b'{"a": tru}', None),
    ],
)
def test_malformed_json_is_a_400_saying_where(
    admin: httpx2.Client, org: str, stack: str, raw: bytes, message: str | None
) -> None:
    for method, url in write_targets(org, stack):
        text = assert_error(
            admin.request(method, url, content=raw, headers={"Content-Type": "application/json"}), 400, message
        )
        assert text.startswith("malformed JSON in request body: ")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"tag": NaN}', "NaN is not valid JSON; send a finite number"),
        (b'{"operationContext": {"oidc": {"x": Infinity}}}', "Infinity is not valid JSON; send a finite number"),
        (b'{"operationContext": {"oidc": {"x": -Infinity}}}', "-Infinity is not valid JSON; send a finite number"),
        (
            b'{"operationContext": {"oidc": {"x": 1e400}}}',
            "a number in the request body is out of range; send a finite number",
        ),
        (
            b'{"operationContext": {"oidc": {"x": ' + b"9" * 5000 + b"}}}",
            "a number in the request body has too many digits",
        ),
    ],
)
def test_numbers_json_cannot_carry_are_a_400(
    admin: httpx2.Client, org: str, stack: str, raw: bytes, message: str
) -> None:
    """Python's parser accepts them, but neither PostgreSQL jsonb nor a JSON response can hold them."""
    for method, url in write_targets(org, stack):
        assert_error(admin.request(method, url, content=raw), 400, message)
    assert admin.get(f"{stack}/deployments/settings").status_code == 404


def test_big_but_finite_numbers_in_free_form_objects_are_kept(admin: httpx2.Client, stack: str) -> None:
    body = {"operationContext": {"oidc": {"big": 10**30, "ratio": -2.5, "zero": 0}}}
    response = admin.post(f"{stack}/deployments/settings", json=body)
    assert response.status_code == 200, response.text
    assert (
        admin.get(f"{stack}/deployments/settings").json()["operationContext"]["oidc"]
        == body["operationContext"]["oidc"]
    )


@pytest.mark.parametrize(
    ("value", "kind"),
    [([1, 2], "list"), ("dev", "str"), (42, "int"), (1.5, "float"), (True, "bool"), (None, "null")],
)
def test_a_body_that_is_not_an_object_is_a_400(
    admin: httpx2.Client, org: str, stack: str, value: object, kind: str
) -> None:
    for method, url in write_targets(org, stack):
        response = admin.request(method, url, content=json.dumps(value).encode())
        assert_error(response, 400, f"the request body must be a JSON object, not {kind}")


@pytest.mark.parametrize(
    "raw",
    [b'{"stackName": "\xff"}', b'{"stackName": "dev\xc3"}', b"\xfe\xff\x00{", b'{"tag": "\xed\xa0\x80"}'],
)
def test_invalid_utf8_is_a_400(admin: httpx2.Client, org: str, stack: str, raw: bytes) -> None:
    for method, url in write_targets(org, stack):
        response = admin.request(method, url, content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, f"{method} {url}: {response.text}"
        assert_error(response, 400)


def test_an_empty_body_where_one_is_needed_is_a_400(admin: httpx2.Client, org: str, stack: str) -> None:
    for method, url in write_targets(org, stack):
        if url == "/api/tokens":
            continue  # an empty token request is an admin token request
        assert_error(admin.request(method, url, content=b"  \n"), 400, "the request needs a JSON object body")


@pytest.mark.parametrize(
    "escaped",
    ["a\\u0000b", "\\u0000", "\\ud800", "x\\udc00y", "\\udbff"],
    ids=["nul-inside", "nul", "high-surrogate", "low-surrogate", "high-surrogate-end"],
)
def test_strings_no_database_or_response_can_hold_are_a_400(
    admin: httpx2.Client, org: str, stack: str, escaped: str
) -> None:
    """NUL is not storable in PostgreSQL text/jsonb; a lone surrogate is not Unicode and cannot be answered."""
    bodies = {
        f"/api/stacks/{org}/proj": f'{{"stackName": "s2", "tags": {{"k": "{escaped}"}}}}',
        f"{stack}/deployments/settings": f'{{"tag": "{escaped}"}}',
        f"{stack}/deployments": f'{{"operation": "update", "sourceContext": {{"git": {{"repoUrl": "{escaped}"}}}}}}',
        "/api/tokens": f'{{"org": "{org}", "role": "viewer", "name": "{escaped}"}}',
    }
    for url, body in bodies.items():
        response = admin.post(url, content=body.encode(), headers={"Content-Type": "application/json"})
        message = assert_error(response, 400)
        assert "\\u0000" in message or "surrogate" in message
    key_body = f'{{"unknownKey{escaped}": 1, "tag": "t"}}'
    assert_error(admin.post(f"{stack}/deployments/settings", content=key_body.encode()), 400)
    # Nothing was stored, and the server still answers normally.
    assert admin.get(f"/api/stacks/{org}/proj/s2").status_code == 404
    assert admin.get(f"{stack}/deployments/settings").status_code == 404
    assert admin.get(f"{stack}/deployments").json()["total"] == 0
    assert admin.get("/api/user/stacks", params={"organization": org}).status_code == 200


@pytest.mark.parametrize("depth", [65, 5_000, 200_000])
def test_deeply_nested_json_is_a_400(admin: httpx2.Client, org: str, stack: str, depth: int) -> None:
    nested = '{"tag": "t", "x": ' + "[" * depth + "]" * depth + "}"
    for method, url in write_targets(org, stack):
        response = admin.request(method, url, content=nested.encode())
        assert_error(response, 400, "the request body is nested too deeply (at most 64 levels)")
    inner = min(depth, 100_000)  # stay under the body size limit
    oidc = '{"operationContext": {"oidc": ' + '{"a": ' * inner + "1" + "}" * inner + "}}"
    assert_error(admin.post(f"{stack}/deployments/settings", content=oidc.encode()), 400)


def test_moderate_nesting_in_free_form_objects_is_accepted(admin: httpx2.Client, stack: str) -> None:
    oidc: dict[str, Any] = {"leaf": True}
    for _ in range(40):
        oidc = {"a": oidc, "dropped": None}
    response = admin.post(f"{stack}/deployments/settings", json={"operationContext": {"oidc": oidc}})
    assert response.status_code == 200, response.text


# --- size limits ---------------------------------------------------------------------------------


def padded_body(size: int) -> bytes:
    """A valid JSON object of exactly ``size`` bytes."""
    head, tail = b'{"tag": "t", "pad": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_a_body_over_the_limit_is_a_413(admin: httpx2.Client, stack: str) -> None:
    response = admin.post(f"{stack}/deployments/settings", content=padded_body(LIMIT + 1))
    assert_error(response, 413, TOO_LARGE)
    assert admin.get(f"{stack}/deployments/settings").status_code == 404


def test_a_body_of_exactly_the_limit_is_accepted(admin: httpx2.Client, stack: str) -> None:
    response = admin.post(f"{stack}/deployments/settings", content=padded_body(LIMIT))
    assert response.status_code == 200, response.text
    assert response.json()["tag"] == "t"


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    body = padded_body(total)
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_chunked_body_over_the_limit_is_a_413(live_server: LiveServer, stack: str) -> None:
    headers = {"Authorization": f"token {live_server.admin_token}", "Content-Type": "application/json"}
    with httpx2.Client(base_url=live_server.url, headers=headers, timeout=30) as client:
        request = client.build_request("POST", f"{stack}/deployments/settings", content=chunks(LIMIT + 1))
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        response = client.send(request)
        assert_error(response, 413, TOO_LARGE)
    with httpx2.Client(base_url=live_server.url, headers=headers, timeout=30) as client:
        assert client.get(f"{stack}/deployments/settings").status_code == 404


def test_a_chunked_body_within_the_limit_is_accepted(live_server: LiveServer, stack: str) -> None:
    headers = {"Authorization": f"token {live_server.admin_token}", "Content-Type": "application/json"}
    with httpx2.Client(base_url=live_server.url, headers=headers, timeout=30) as client:
        response = client.post(f"{stack}/deployments/settings", content=chunks(200_000))
    assert response.status_code == 200, response.text


# --- URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/stacks/{org}%00/proj/dev"),
        ("GET", "/api/stacks/{org}/proj/dev%00"),
        ("HEAD", "/api/stacks/{org}/proj%00"),
        ("GET", "/api/stacks/{org}/proj/dev/deployments/a%00b"),
        ("GET", "/api/user/stacks?organization={org}%00"),
        ("GET", "/api/user/stacks?organization={org}&project=p%00"),
        ("GET", "/api/user/stacks?organization={org}&tagName=t%00"),
        ("GET", "/api/orgs/{org}%00/deployments"),
        ("POST", "/api/orgs/{org}%00/deployments/pause"),
        ("DELETE", "/api/tokens/x%00"),
    ],
)
def test_a_nul_in_the_url_is_a_400(admin: httpx2.Client, org: str, method: str, path: str) -> None:
    response = admin.request(method, path.format(org=org))
    assert response.status_code == 400, response.text
    if method != "HEAD":
        assert_error(response, 400, "the URL may not contain NUL characters (%00)")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/orgs/{long}/deployments/pause", None),
        ("POST", "/api/orgs/{long}/deployments/resume", None),
        ("PATCH", "/api/orgs/{long}/settings", {"concurrency": 3}),
        ("POST", "/api/orgs/bad%20org/deployments/pause", None),
        ("PATCH", "/api/orgs/bad%20org/settings", {"concurrency": 3}),
    ],
)
def test_org_routes_that_create_an_org_check_its_name(admin: httpx2.Client, method: str, path: str, body: Any) -> None:
    response = admin.request(method, path.format(long="o" * 101), json=body)
    assert "invalid organization name" in assert_error(response, 400)


@pytest.mark.parametrize("body", [{"runner": True}, {"org": "{org}", "role": "viewer"}, {}])
def test_an_overlong_token_name_is_a_400(admin: httpx2.Client, org: str, body: dict[str, Any]) -> None:
    request = {k: (v.format(org=org) if isinstance(v, str) else v) for k, v in body.items()}
    response = admin.post("/api/tokens", json={**request, "name": "n" * 201})
    assert_error(response, 400, "'name' must be at most 200 characters")
    assert admin.post("/api/tokens", json={**request, "name": "n" * 200}).status_code == 201


# --- fuzz ----------------------------------------------------------------------------------------

KEYS = [
    "operation",
    "Operation",
    "inheritSettings",
    "sourceContext",
    "git",
    "repoUrl",
    "repoURL",
    "branch",
    "commit",
    "repoDir",
    "gitAuth",
    "accessToken",
    "basicAuth",
    "userName",
    "password",
    "sshAuth",
    "sshPrivateKey",
    "operationContext",
    "preRunCommands",
    "environmentVariables",
    "options",
    "timeout",
    "shell",
    "skipIntermediateDeployments",
    "oidc",
    "secret",
    "ciphertext",
    "plaintext",
    "stackName",
    "tags",
    "tag",
    "agentPoolID",
    "agentPoolId",
    "executorContext",
    "executorImage",
    "cacheOptions",
    "A",
    "PATH",
]
WORDS = ["update", "preview", "destroy", "detect-drift", "main", "[secret]", "", "dev", ".x", "gAAAAA", "Z0FBQUFB"]

# Strings are biased towards what databases and JSON responses choke on: NUL, lone surrogates, non-ASCII.
nasty_chars = st.sampled_from(["\x00", "\ud800", "\udfff", "é", "\u2028", "/", "."]) | st.characters()
texts = st.text(alphabet=nasty_chars, max_size=8) | st.sampled_from(WORDS)
numbers = st.integers() | st.floats(allow_nan=False) | st.integers(min_value=10**20, max_value=10**40)
leaves = st.none() | st.booleans() | numbers | texts
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | texts, inner, max_size=5),
    max_leaves=20,
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy | json_values


secret_values = maybe(st.fixed_dictionaries({}, optional={"secret": texts, "ciphertext": texts, "plaintext": texts}))
git = st.fixed_dictionaries(
    {},
    optional={
        "repoUrl": texts,
        "repoURL": texts,
        "branch": texts,
        "commit": texts,
        "repoDir": texts,
        "gitAuth": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "accessToken": secret_values,
                    "basicAuth": maybe(
                        st.fixed_dictionaries({}, optional={"userName": secret_values, "password": secret_values})
                    ),
                },
            )
        ),
    },
)
operation_context = st.fixed_dictionaries(
    {},
    optional={
        "preRunCommands": maybe(st.lists(texts, max_size=3)),
        "environmentVariables": maybe(
            st.dictionaries(st.sampled_from(["A", "PATH", "B_2"]) | texts, texts | secret_values, max_size=3)
        ),
        "options": maybe(
            st.fixed_dictionaries(
                {}, optional={"shell": texts, "timeout": numbers, "skipIntermediateDeployments": leaves}
            )
        ),
        "oidc": json_values,
        "operation": texts,
    },
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "operation": st.sampled_from(["update", "preview", "refresh", "destroy"]) | texts,
        "inheritSettings": leaves,
        "stackName": texts,
        "tags": maybe(st.dictionaries(texts, texts, max_size=3)),
        "tag": texts,
        "agentPoolId": texts,
        "sourceContext": maybe(st.fixed_dictionaries({}, optional={"git": maybe(git)})),
        "operationContext": maybe(operation_context),
        "executorContext": maybe(st.fixed_dictionaries({}, optional={"executorImage": json_values})),
    },
)
bodies = st.one_of(documents, documents, json_values)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
def test_fuzzed_json_bodies_never_cause_a_500(live_server: LiveServer, body: object) -> None:
    org = "fuzz-org"
    headers = {"Authorization": f"token {live_server.admin_token}", "Content-Type": "application/json"}
    content = json.dumps(body).encode()  # ASCII: lone surrogates and NUL travel as \u escapes
    with httpx2.Client(base_url=live_server.url, headers=headers, timeout=30) as client:
        made = client.post(f"/api/stacks/{org}/proj", json={"stackName": "dev"})
        assert made.status_code in {200, 409}
        stack = f"/api/stacks/{org}/proj/dev"
        for method, url in (
            ("POST", f"/api/stacks/{org}/proj"),
            ("POST", f"{stack}/deployments/settings"),
            ("PUT", f"{stack}/deployments/settings"),
            ("POST", f"{stack}/deployments"),
        ):
            response = client.request(method, url, content=content)
            assert response.status_code < 500, f"{method} {url} {content!r}: {response.text}"
            if response.status_code >= 400:
                assert response.json().keys() == {"code", "message"}
        # Whatever was accepted can be read back.
        for url in (
            stack,
            f"{stack}/deployments",
            f"{stack}/deployments/settings",
            f"/api/user/stacks?organization={org}",
        ):
            assert client.get(url).status_code in {200, 404}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=64))
def test_fuzzed_raw_bytes_never_cause_a_500(live_server: LiveServer, raw: bytes) -> None:
    headers = {"Authorization": f"token {live_server.admin_token}"}
    with httpx2.Client(base_url=live_server.url, headers=headers, timeout=30) as client:
        client.post("/api/stacks/fuzz-org/proj", json={"stackName": "raw"})
        for url in (
            "/api/stacks/fuzz-org/proj",
            "/api/stacks/fuzz-org/proj/raw/deployments/settings",
            "/api/stacks/fuzz-org/proj/raw/deployments",
        ):
            response = client.post(url, content=raw)
            assert response.status_code < 500, f"POST {url} {raw!r}: {response.text}"


async def test_a_write_that_lost_to_a_concurrent_one_is_a_retryable_503_other_database_errors_a_500() -> None:
    app = FastAPI()
    errors.install(app)

    @app.get("/deadlock")
    async def deadlock() -> None:
        raise sa.exc.OperationalError("UPDATE stacks ...", {}, psycopg.errors.DeadlockDetected("deadlock detected"))

    @app.get("/broken")
    async def broken() -> None:
        raise sa.exc.ProgrammingError("SELECT secret-ish ...", {}, psycopg.errors.UndefinedTable("no such table"))

    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        lost = await client.get("/deadlock")
        assert (lost.status_code, lost.headers["Retry-After"]) == (503, "1")
        assert "nothing was changed: retry it" in lost.json()["message"]
        failed = await client.get("/broken")
        assert failed.status_code == 500
        assert failed.json() == {"code": 500, "message": "internal server error; the server log has the details"}
