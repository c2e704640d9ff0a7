"""The API client's contract, with an injected transport: what it sends and how failures read."""

from __future__ import annotations

import datetime as dt
import json
import re

import httpx2
import pytest

from stackcascade.cli.client import ApiClient
from stackcascade.cli.errors import CliError
from stackcascade.cli.refs import StackRef

TOKEN = "csc_secret_value_that_must_not_leak"
REF = StackRef("acme", "net", "prod")


def client_answering(handler: httpx2.MockTransport) -> ApiClient:
    return ApiClient("http://cascade.test", TOKEN, transport=handler)


def test_requests_carry_the_token_header_and_json_body() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={"stackName": "prod"})

    with client_answering(httpx2.MockTransport(handler)) as api:
        api.create_stack(REF, {"team": "core"})
    (request,) = seen
    assert request.method == "POST"
    assert request.url.path == "/api/stacks/acme/net"
    assert request.headers["Authorization"] == f"token {TOKEN}"
    assert json.loads(request.content) == {"stackName": "prod", "tags": {"team": "core"}}


def test_a_body_json_cannot_carry_is_refused_before_anything_is_sent() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={})

    with client_answering(httpx2.MockTransport(handler)) as api:
        for body, message in [
            ({"a": [1, float("nan")]}, "a[1] is NaN or infinite"),
            ({"when": dt.date(2024, 1, 1)}, "when is a date or time"),
            ({"raw": b"x"}, "raw is a bytes, which JSON cannot carry"),
            ({(1, 2): "x"}, "has a key of type tuple"),
        ]:
            with pytest.raises(CliError, match=re.escape(message)):
                api.request("POST", "/api/anything", json=body)
        assert seen == []
        api.request("POST", "/api/anything", json={"ünïcode": 1.5, "n": None, 3: True})
    assert json.loads(seen[0].content) == {"ünïcode": 1.5, "n": None, "3": True}
    assert seen[0].headers["Content-Type"] == "application/json"


def test_api_error_reads_as_the_servers_message_and_status() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(409, json={"code": 409, "message": "stack acme/net/prod already exists"})

    with client_answering(httpx2.MockTransport(handler)) as api, pytest.raises(CliError) as caught:
        api.create_stack(REF, {})
    assert caught.value.message == "stack acme/net/prod already exists (409)"
    assert caught.value.status == 409


def test_unauthorized_error_says_how_to_fix_it_without_showing_the_token() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(401, json={"code": 401, "message": "invalid or expired token"})

    with client_answering(httpx2.MockTransport(handler)) as api, pytest.raises(CliError) as caught:
        api.list_tokens()
    assert caught.value.message.startswith("invalid or expired token (401); pass a valid --token")
    assert TOKEN not in caught.value.message
    assert TOKEN not in repr(api)


def test_a_non_api_error_page_names_the_status_and_url() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(502, text="<html>bad gateway</html>")

    with client_answering(httpx2.MockTransport(handler)) as api, pytest.raises(CliError) as caught:
        api.get_stack(REF)
    assert caught.value.message == "HTTP 502 Bad Gateway from http://cascade.test/api/stacks/acme/net/prod"


def test_a_redirect_is_reported_not_followed() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(301, headers={"Location": "https://cascade.test/api/tokens"})

    with (
        client_answering(httpx2.MockTransport(handler)) as api,
        pytest.raises(CliError, match="redirected to https://"),
    ):
        api.list_tokens()


def test_a_success_that_is_not_json_is_an_error() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, text="hello")

    with client_answering(httpx2.MockTransport(handler)) as api, pytest.raises(CliError, match="not JSON"):
        api.get_settings(REF)


def test_a_timeout_names_the_server() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    with client_answering(httpx2.MockTransport(handler)) as api, pytest.raises(CliError) as caught:
        api.list_tokens()
    assert caught.value.message == "the server at http://cascade.test did not answer within 30 seconds"


def test_stack_listing_follows_continuation_tokens() -> None:
    pages = {
        None: {"stacks": [{"stackName": "a"}], "continuationToken": "t1"},
        "t1": {"stacks": [{"stackName": "b"}], "continuationToken": "t2"},
        "t2": {"stacks": [{"stackName": "c"}]},
    }
    asked: list[str | None] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        token = request.url.params.get("continuationToken")
        asked.append(token)
        assert request.url.params["organization"] == "acme"
        return httpx2.Response(200, json=pages[token])

    with client_answering(httpx2.MockTransport(handler)) as api:
        listing = api.list_stacks(org="acme")
    assert [s["stackName"] for s in listing["stacks"]] == ["a", "b", "c"]
    assert asked == [None, "t1", "t2"]


def test_a_repeated_continuation_token_stops_the_listing() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"stacks": [{"stackName": "a"}], "continuationToken": "same"})

    with (
        client_answering(httpx2.MockTransport(handler)) as api,
        pytest.raises(CliError, match="repeated a continuationToken"),
    ):
        api.list_stacks()


def test_a_503_with_retry_after_is_sent_again_and_a_plain_503_or_a_500_is_not() -> None:
    answers = {
        "/api/stacks/acme/busy": [503, 503, 200],  # the server rolled back a colliding change twice
        "/api/stacks/acme/down": [503, 503, 503, 200],  # still busy after three tries: the 503 is shown
        "/api/stacks/acme/proxy": [503, 200],  # a 503 that says nothing about when to come back
        "/api/stacks/acme/broken": [500, 200],
    }
    sent: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request.url.path)
        status = answers[request.url.path].pop(0)
        if status == 200:
            return httpx2.Response(200, json={"stackName": "prod"})
        headers = {"Retry-After": "0"} if request.url.path != "/api/stacks/acme/proxy" else {}
        return httpx2.Response(status, json={"code": status, "message": "retry it"}, headers=headers)

    with client_answering(httpx2.MockTransport(handler)) as api:
        assert api.create_stack(StackRef("acme", "busy", "prod"), {}) == {"stackName": "prod"}
        for project in ("down", "proxy", "broken"):
            with pytest.raises(CliError, match="retry it"):
                api.create_stack(StackRef("acme", project, "prod"), {})
    assert [path.rsplit("/", 1)[1] for path in sent] == ["busy"] * 3 + ["down"] * 3 + ["proxy", "broken"]
