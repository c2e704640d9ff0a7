"""The HTTP side of webhooks: target rules after DNS resolution, pinning to the checked address, failures."""

from __future__ import annotations

import pytest

from stackcascade.domain.errors import InvalidInput
from stackcascade.domain.targets import parse_allowed_networks
from stackcascade.services.webhook_client import OutgoingRequest
from stackcascade.webhooks.sender import HttpSender
from tests.webhook_receiver import receiving

LOOPBACK = parse_allowed_networks("127.0.0.0/8")


def resolver(answers: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(f"unknown host {host}")
        return answers[host]

    return resolve


def request(url: str) -> OutgoingRequest:
    return OutgoingRequest(url=url, headers={"Content-Type": "application/json"}, body=b'{"hello": 1}')


async def test_a_name_is_resolved_checked_and_the_request_sent_to_the_checked_address() -> None:
    with receiving() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        sender = HttpSender(LOOPBACK, resolver=resolver({"hooks.example.test": ["127.0.0.1"]}))
        try:
            result = await sender.send(request(f"http://hooks.example.test:{port}/hook?x=1"))
        finally:
            await sender.close()
        [received] = receiver.wait_for(1)
    assert result.response_code == 200 and result.response_body == "answered 200" and result.error is None
    assert received.headers["Host"] == f"hooks.example.test:{port}" and received.path == "/hook?x=1"
    assert received.body == b'{"hello": 1}'


@pytest.mark.parametrize(
    ("answers", "fragment"),
    [
        (["169.254.169.254"], "169.254.169.254"),
        (["93.184.216.34", "10.1.2.3"], "10.1.2.3"),  # one refused address refuses the host
        (["::ffff:127.0.0.1"], "127.0.0.1"),
    ],
)
async def test_a_name_that_resolves_to_a_refused_address_is_refused_when_saved_and_when_sent(
    answers: list[str], fragment: str
) -> None:
    sender = HttpSender((), resolver=resolver({"evil.example.test": answers}))
    try:
        with pytest.raises(InvalidInput, match=fragment.replace(".", r"\.")):
            await sender.check_target("https://evil.example.test/hook")
        result = await sender.send(request("https://evil.example.test/hook"))
    finally:
        await sender.close()
    assert result.response_code == 0 and fragment in (result.error or "")


async def test_dns_that_changes_after_saving_is_caught_at_delivery_time() -> None:
    answers = {"rebind.example.test": ["93.184.216.34"]}
    sender = HttpSender((), resolver=resolver(answers))
    try:
        await sender.check_target("http://rebind.example.test/")  # public when saved
        answers["rebind.example.test"] = ["127.0.0.1"]  # loopback when sent
        result = await sender.send(request("http://rebind.example.test/"))
    finally:
        await sender.close()
    assert result.response_code == 0 and "CASCADE_WEBHOOK_ALLOW_NETWORKS" in (result.error or "")


async def test_an_unresolvable_host_is_accepted_when_saved_and_reported_when_sent() -> None:
    sender = HttpSender((), resolver=resolver({}))
    try:
        await sender.check_target("https://not-yet.example.test/")
        result = await sender.send(request("https://not-yet.example.test/"))
    finally:
        await sender.close()
    assert result.response_code == 0 and "could not resolve" in (result.error or "")


async def test_redirects_are_not_followed() -> None:
    with receiving(then=302) as receiver:
        sender = HttpSender(LOOPBACK)
        try:
            result = await sender.send(request(receiver.url))
        finally:
            await sender.close()
        receiver.wait_for(1)
    assert result.response_code == 302 and not result.succeeded and len(receiver.requests) == 1
