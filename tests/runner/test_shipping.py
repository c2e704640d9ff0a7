"""The log shipper: masked lines in batches; with protocol 2, step transitions ride along and the rest goes with finish."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2

from stackcascade.runner import shipping
from stackcascade.runner.masking import Masker
from stackcascade.runner.shipping import LogShipper


class FakeClient:
    """Records the calls a shipper makes (the parts of RunnerClient it uses)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def logs(
        self, deployment_id: str, lines: list[dict[str, Any]], steps: list[dict[str, Any]] | None = None
    ) -> None:
        self.calls.append(
            ("logs", ([line["line"] for line in lines], [(s["index"], s["status"]) for s in steps or []]))
        )

    async def steps(self, deployment_id: str, steps: list[dict[str, Any]]) -> None:
        self.calls.append(("steps", [(s["index"], s["status"]) for s in steps]))


def _step(index: int, status: str) -> dict[str, Any]:
    return {"index": index, "name": f"step-{index}", "status": status}


async def test_a_short_run_leaves_everything_for_the_finish_call() -> None:
    client = FakeClient()
    shipper = LogShipper(client, "d1", Masker(["hunter2"]), batched=True)  # type: ignore[arg-type]
    shipper.start()
    await shipper.line("password is hunter2")
    await shipper.transition(_step(0, "succeeded"), _step(1, "running"))
    shipper.step = 1
    await shipper.line("two\nlines")
    lines, steps = await shipper.close()
    assert client.calls == []
    assert [(line["step"], line["seq"], line["line"]) for line in lines] == [
        (0, 0, "password is [secret]"),
        (1, 0, "two"),
        (1, 1, "lines"),
    ]
    assert [(s["index"], s["status"]) for s in steps] == [(0, "succeeded"), (1, "running")]
    assert all(isinstance(s["at"], float) for s in steps)


async def test_pending_transitions_and_lines_are_flushed_within_the_interval(monkeypatch: Any) -> None:
    monkeypatch.setattr(shipping, "FLUSH_SECONDS", 0.01)
    client = FakeClient()
    shipper = LogShipper(client, "d1", Masker(), batched=True)  # type: ignore[arg-type]
    shipper.start()
    await shipper.transition(_step(0, "succeeded"), _step(1, "running"))
    await shipper.line("working")
    for _ in range(200):
        if client.calls:
            break
        await asyncio.sleep(0.01)
    assert client.calls == [("logs", (["working"], [(0, "succeeded"), (1, "running")]))]
    assert await shipper.close() == ([], [])


async def test_the_finish_call_carries_only_a_small_remainder(monkeypatch: Any) -> None:
    monkeypatch.setattr(shipping, "FINISH_LINE_CHARS", 10)
    client = FakeClient()
    shipper = LogShipper(client, "d1", Masker(), batched=True)  # type: ignore[arg-type]
    shipper.start()
    await shipper.line("more than ten characters")
    await shipper.transition(_step(0, "succeeded"))
    assert await shipper.close() == ([], [])
    assert client.calls == [("logs", (["more than ten characters"], [(0, "succeeded")]))]


async def test_an_older_server_gets_one_call_per_transition_and_every_line_before_finish() -> None:
    client = FakeClient()
    shipper = LogShipper(client, "d1", Masker(), batched=False)  # type: ignore[arg-type]
    shipper.start()
    await shipper.transition(_step(0, "succeeded"), _step(1, "running"))
    await shipper.line("hello")
    assert await shipper.close() == ([], [])
    assert client.calls == [("steps", [(0, "succeeded"), (1, "running")]), ("logs", (["hello"], []))]


async def test_lines_do_not_ride_along_with_large_outputs() -> None:
    client = FakeClient()
    shipper = LogShipper(client, "d1", Masker(), batched=True)  # type: ignore[arg-type]
    shipper.start()
    await shipper.line("last words")
    await shipper.transition(_step(2, "succeeded"))
    assert await shipper.close(carry_lines=False) == ([], [])
    assert client.calls == [("logs", (["last words"], [(2, "succeeded")]))]


class AwayFor(FakeClient):
    """A server that cannot be reached for the first ``failing`` log calls."""

    def __init__(self, failing: int) -> None:
        super().__init__()
        self.failing = failing
        self.tried = 0

    async def logs(
        self, deployment_id: str, lines: list[dict[str, Any]], steps: list[dict[str, Any]] | None = None
    ) -> None:
        self.tried += 1
        if self.tried <= self.failing:
            raise httpx2.ConnectError("connection refused")
        await super().logs(deployment_id, lines, steps)


async def test_lines_written_while_the_server_is_away_are_sent_once_it_is_back(monkeypatch: Any) -> None:
    monkeypatch.setattr(shipping, "FLUSH_SECONDS", 0.01)
    client = AwayFor(failing=3)
    shipper = LogShipper(client, "d1", Masker(), batched=True)  # type: ignore[arg-type]
    shipper.start()
    await shipper.line("before")
    for _ in range(500):  # the flusher retries every interval; bounded, it never depends on timing
        if client.calls:
            break
        await asyncio.sleep(0.01)
    await shipper.line("after")
    lines, _ = await shipper.close()
    sent = [line for _, (batch, _steps) in client.calls for line in batch] + [line["line"] for line in lines]
    assert client.tried > 3 and sent == ["before", "after"]


async def test_when_the_server_cannot_take_the_log_at_the_end_the_newest_lines_go_with_the_finish(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(shipping, "FLUSH_SECONDS", 3600)  # nothing is sent before close
    client = AwayFor(failing=1_000)
    shipper = LogShipper(client, "d1", Masker(), batched=True)  # type: ignore[arg-type]
    shipper.start()
    for number in range(3000):
        await shipper.line(f"line {number:04d} " + "x" * 40)
    lines, _ = await shipper.close()
    texts = [line["line"] for line in lines]
    assert texts[-2] == "line 2999 " + "x" * 40, "the newest lines are kept"
    assert texts[-1].startswith("[") and "earlier log line(s) lost: the server could not be reached" in texts[-1]
    lost = int(texts[-1][1:].split(" ")[0])
    assert lost + len(texts) - 1 == 3000
    assert sum(len(text) for text in texts) <= shipping.FINISH_LINE_CHARS
