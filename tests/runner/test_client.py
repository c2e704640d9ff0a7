"""The runner's HTTP client: what it sends again when an answer is lost."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from stackcascade.runner.client import ProtocolError, RunnerClient


class _Server:
    """Answers with ``answers`` in order; an exception in that list is raised as the transport's error."""

    def __init__(self, *answers: httpx2.Response | Exception) -> None:
        self.answers = list(answers)
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.bodies.append(json.loads(request.content))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _client(server: _Server) -> RunnerClient:
    return RunnerClient("http://cascade.test", "t", "slot-0", transport=httpx2.MockTransport(server))


JOB = {"deploymentId": "d1"}


async def test_a_retried_claim_says_so_and_carries_the_same_claim_key() -> None:
    server = _Server(httpx2.ReadError("reset"), httpx2.Response(502), httpx2.Response(200, json=JOB))
    client = _client(server)
    try:
        assert await client.claim(0) == JOB
    finally:
        await client.close()

    first, second, third = server.bodies
    assert "retry" not in first and second["retry"] is third["retry"] is True
    assert first["claimKey"] == second["claimKey"] == third["claimKey"]


async def test_each_claim_has_its_own_key() -> None:
    server = _Server(httpx2.Response(204), httpx2.Response(204))
    client = _client(server)
    try:
        assert await client.claim(0) is None
        assert await client.claim(0) is None
    finally:
        await client.close()
    assert server.bodies[0]["claimKey"] != server.bodies[1]["claimKey"]


async def test_a_finish_that_asks_for_the_next_job_keys_that_claim_and_says_when_it_is_retried() -> None:
    done = {"id": "d1", "status": "succeeded", "next": JOB}
    server = _Server(httpx2.RemoteProtocolError("closed"), httpx2.Response(200, json=done))
    client = _client(server)
    try:
        assert await client.finish("d1", {"status": "succeeded"}, next_start=[]) == JOB
    finally:
        await client.close()

    first, second = server.bodies
    assert first["next"]["claimKey"] == second["next"]["claimKey"]
    assert "retry" not in first and second["retry"] is True


async def test_a_refusal_is_not_retried() -> None:
    server = _Server(httpx2.Response(409, json={"message": "not leased"}))
    client = _client(server)
    try:
        with pytest.raises(ProtocolError, match="not leased"):
            await client.finish("d1", {"status": "succeeded"})
    finally:
        await client.close()
    assert len(server.bodies) == 1
