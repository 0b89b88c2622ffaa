"""How the attach relay reads a client (`broker/attach/relay.py`): a tenant's client's reads
pause past its byte budget, and the loop runs other work between large messages even when the
next one is already buffered. Mechanisms only, with a fake socket and a fake clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker.attach import relay as relay_module
from broker.attach.clients import HubClient
from broker.attach.relay import YIELD_BYTES, ReadBudget, SocketPeer, relay


class FakeSocket:
    """Messages all buffered at once, as websockets holds frames it has read ahead."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        self.sent: list[Any] = []

    async def __aiter__(self) -> AsyncIterator[str]:
        for message in self.messages:
            yield message  # no await between: the next one is already there

    async def send(self, message: Any, text: bool | None = None) -> None:
        self.sent.append(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


class FakeHub:
    protocol = "cdp"

    def __init__(self, ticks: list[int]) -> None:
        self.gone = asyncio.Event()
        self.ticks = ticks
        self.seen: list[int] = []

    def receive(self, client: HubClient, raw: str | bytes) -> None:
        self.seen.append(self.ticks[0])

    def detach(self, client: HubClient) -> None:
        pass


def test_the_budget_pauses_for_what_was_read_past_it() -> None:
    budget = ReadBudget(rate=100.0, burst=200, now=0.0)
    assert budget.spend(150, now=0.0) == 0.0
    assert budget.spend(150, now=0.0) == pytest.approx(1.0)  # 100 bytes over, at 100/s
    assert budget.spend(10, now=1.0) == pytest.approx(0.1)  # refilled to 0, 10 over
    assert budget.spend(10, now=100.0) == 0.0  # refilled to the burst, no more


async def _relay(messages: list[str], trusted: bool, budget: ReadBudget | None) -> FakeHub:
    ticks = [0]

    async def tick() -> None:
        while True:
            ticks[0] += 1
            await asyncio.sleep(0)

    hub = FakeHub(ticks)
    socket = FakeSocket(messages)
    client = HubClient(peer=SocketPeer(socket), trusted=trusted, bucket=None)  # type: ignore[arg-type]
    ticker = asyncio.ensure_future(tick())
    await asyncio.sleep(0)
    try:
        await relay(socket, hub, client, client.peer, budget=budget)  # type: ignore[arg-type]
    finally:
        ticker.cancel()
    return hub


async def test_the_loop_runs_other_work_between_buffered_large_messages() -> None:
    large = "x" * YIELD_BYTES
    hub = await _relay([large] * 4, trusted=True, budget=None)
    assert len(set(hub.seen)) == 4, hub.seen  # another task ran before each next message


async def test_small_buffered_messages_are_read_without_a_pause() -> None:
    hub = await _relay(["x"] * 4, trusted=True, budget=None)
    assert len(set(hub.seen)) == 1, hub.seen


async def test_a_client_past_its_budget_has_its_reads_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        pauses.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    monkeypatch.setattr(time, "monotonic", lambda: 0.0)
    await _relay(["x" * 100] * 3, trusted=False, budget=ReadBudget(100.0, 150, 0.0))
    assert [round(pause, 3) for pause in pauses if pause] == [0.5, 1.5]


def test_a_tenants_client_gets_the_default_budget() -> None:
    assert relay_module.READ_BURST_BYTES >= 2 * 4 * 1024 * 1024  # two default-sized messages


async def test_a_text_frame_is_charged_its_utf8_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    charged: list[int] = []

    def spend(self: ReadBudget, size: int, now: float) -> float:
        charged.append(size)
        return 0.0

    monkeypatch.setattr(ReadBudget, "spend", spend)
    await _relay(["\U0001f600" * 10, "abc"], trusted=False, budget=ReadBudget(1.0, 1, 0.0))
    assert charged == [40, 3]


async def test_a_leases_clients_share_one_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that reconnects, or a second client of the lease, gets no fresh budget."""
    budgets: list[ReadBudget] = []
    real = ReadBudget.spend

    def spend(self: ReadBudget, size: int, now: float) -> float:
        budgets.append(self)
        return real(self, size, now)

    monkeypatch.setattr(ReadBudget, "spend", spend)
    hub = FakeHub([0])
    for _ in range(2):
        socket = FakeSocket(["x"])
        client = HubClient(peer=SocketPeer(socket), trusted=False, bucket=None)  # type: ignore[arg-type]
        await relay(socket, hub, client, client.peer)  # type: ignore[arg-type]
    assert len(budgets) == 2 and budgets[0] is budgets[1]
    other = FakeHub([0])
    socket = FakeSocket(["x"])
    client = HubClient(peer=SocketPeer(socket), trusted=False, bucket=None)  # type: ignore[arg-type]
    await relay(socket, other, client, client.peer)  # type: ignore[arg-type]
    assert budgets[2] is not budgets[0]  # another lease's
