"""Second review of each client's read budget (`broker/attach/relay.py`: 4 MiB a second, 8 MiB
at once, docs/security.md), attacked through a `playwright` lease's relay with raw frames.

Holes found, now closed (their tests were xfail, strict): the budget was charged `len(raw)`, and
websockets hands a text frame over as `str`, so a frame was charged its code points, not its
bytes (a text frame of 4-byte UTF-8 characters was charged a quarter of what was read and
parsed); and each connection had a budget of its own, so a client that reconnected got a fresh
one. A text frame is now charged its UTF-8 bytes and a lease's clients share one budget. A
binary frame (bytes) is charged in full, as is a text frame of ASCII (held).
"""

from __future__ import annotations

from typing import Any

import pytest

from broker.attach import relay as relay_module
from browserbroker import AttachProtocol
from tests.attach.playwright_support import no_browser_left, raw_playwright
from tests.conftest import BrokerFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FRAME_BYTES = 3 * 1024 * 1024  # under the default attach_max_message_bytes (4 MiB)


def _frame(ident: int, char: str) -> str:
    """A call the hub answers (its guid is unknown), about FRAME_BYTES long in UTF-8."""
    head = f'{{"id":{ident},"guid":"nobody","method":"close","params":{{"a":"'
    return head + char * (FRAME_BYTES // len(char.encode())) + '"}}'


async def _charged(
    broker_factory: BrokerFactory, monkeypatch: pytest.MonkeyPatch, frames: list[str | bytes]
) -> tuple[int, int]:
    """What the read budget was charged for `frames`, and their size in bytes."""
    charged: list[int] = []
    spend = relay_module.ReadBudget.spend

    def spy(self: Any, size: int, now: float) -> float:
        charged.append(size)
        return spend(self, size, now)

    monkeypatch.setattr(relay_module.ReadBudget, "spend", spy)
    running = await broker_factory()
    lease = await running.client.acquire(attach=AttachProtocol.PLAYWRIGHT, ttl=120)
    try:
        async with raw_playwright(lease.connect_url) as client:
            await client.initialize()
            charged.clear()
            for frame in frames:
                await client.socket.send(frame)
            answer = await client.call("nobody", "close", {})  # after every frame was read
            assert "no object 'nobody'" in answer["error"]["error"]["message"]
    finally:
        await lease.release()
    await no_browser_left()
    sent = sum(len(f.encode() if isinstance(f, str) else f) for f in frames)
    return sum(charged[: len(frames)]), sent


async def test_review2_ascii_text_and_binary_frames_are_charged_their_bytes(
    broker_factory: BrokerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames: list[str | bytes] = [_frame(100, "x"), _frame(101, "x").encode()]
    charged, sent = await _charged(broker_factory, monkeypatch, frames)
    assert charged == sent


async def test_review2_a_text_frame_of_emoji_is_charged_its_bytes(
    broker_factory: BrokerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames: list[str | bytes] = [_frame(100 + i, "\U0001f600") for i in range(3)]
    charged, sent = await _charged(broker_factory, monkeypatch, frames)
    assert charged >= sent, f"{sent} bytes read, {charged} charged"


async def test_review2_a_reconnecting_client_keeps_its_read_budget(
    broker_factory: BrokerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    budgets: list[Any] = []  # held, so that no two are ever one address
    spend = relay_module.ReadBudget.spend

    def spy(self: Any, size: int, now: float) -> float:
        budgets.append(self)
        return spend(self, size, now)

    monkeypatch.setattr(relay_module.ReadBudget, "spend", spy)
    running = await broker_factory()
    lease = await running.client.acquire(attach=AttachProtocol.PLAYWRIGHT, ttl=120)
    try:
        for _ in range(2):  # one client, connecting twice
            async with raw_playwright(lease.connect_url) as client:
                await client.initialize()
                await client.socket.send(_frame(100, "x"))
                await client.call("nobody", "close", {})
    finally:
        await lease.release()
    await no_browser_left()
    distinct = len({id(budget) for budget in budgets})
    assert distinct == 1, f"{distinct} budgets for one lease's client"
