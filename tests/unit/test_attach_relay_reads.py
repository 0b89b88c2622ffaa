"""How the attach relay reads a client (`broker/attach/relay.py`, `broker/attach/inbox.py`): each
message goes to the hub in the callback that read it, in order; a tenant's client's reads pause
past its byte budget; the loop runs other work between large messages even when the next one is
already read. Mechanisms only, with fake connections and a fake clock, and one real socket."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame, Opcode

from broker.attach import inbox as inbox_module
from broker.attach import relay as relay_module
from broker.attach.clients import HubClient
from broker.attach.inbox import MAX_EARLY_MESSAGES, Inbox, RelayConnection
from broker.attach.relay import YIELD_BYTES, ReadBudget, SocketPeer, relay
from broker.attach.rules import BadMessage


class FakeTransport:
    def __init__(self) -> None:
        self.reading = True
        self.pauses = 0

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True


class FakeConnection:
    """What the inbox and the relay use of a connection: frames are fed as websockets parses
    them, all at once, as from one read of the socket."""

    def __init__(self) -> None:
        self.transport = FakeTransport()
        self.inbox = Inbox(self)  # type: ignore[arg-type]
        self.closed = asyncio.Event()
        self.close_code: tuple[int, str] | None = None

    def feed(self, *messages: str | Frame) -> None:
        for message in messages:
            frame = message if isinstance(message, Frame) else Frame(Opcode.TEXT, message.encode())
            self.inbox.frame(frame)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.close_code = (code, reason)
        self.closed.set()

    async def wait_closed(self) -> None:
        await self.closed.wait()


class FakeHub:
    protocol = "cdp"

    def __init__(self, ticks: list[int]) -> None:
        self.gone = asyncio.Event()
        self.ticks = ticks
        self.seen: list[int] = []
        self.messages: list[str | bytes] = []
        self.tasks: list[asyncio.Task[Any] | None] = []
        self.wanted = 0
        self.all_seen = asyncio.Event()  # `wanted` messages were received

    def receive(self, client: HubClient, raw: str | bytes) -> None:
        if raw == "bad":
            raise BadMessage("not a command")
        if raw == "boom":
            raise RuntimeError("a fault of the hub's")
        self.seen.append(self.ticks[0])
        self.messages.append(raw)
        self.tasks.append(asyncio.current_task())
        if len(self.messages) >= self.wanted:
            self.all_seen.set()

    def detach(self, client: HubClient) -> None:
        pass


def test_the_budget_pauses_for_what_was_read_past_it() -> None:
    budget = ReadBudget(rate=100.0, burst=200, now=0.0)
    assert budget.spend(150, now=0.0) == 0.0
    assert budget.spend(150, now=0.0) == pytest.approx(1.0)  # 100 bytes over, at 100/s
    assert budget.spend(10, now=1.0) == pytest.approx(0.1)  # refilled to 0, 10 over
    assert budget.spend(10, now=100.0) == 0.0  # refilled to the burst, no more


async def _relay(
    messages: list[str | Frame],
    trusted: bool,
    budget: ReadBudget | None,
    hub: FakeHub | None = None,
) -> tuple[FakeHub, FakeConnection, str]:
    """Relays `messages` (all read at once, before the relay starts) until the hub has seen
    them all or the connection closed."""
    ticks = [0]

    async def tick() -> None:
        while True:
            ticks[0] += 1
            await asyncio.sleep(0)

    hub = hub or FakeHub(ticks)
    hub.ticks = ticks
    hub.wanted, hub.messages = len(messages), []
    hub.all_seen.clear()
    connection = FakeConnection()
    client = HubClient(peer=SocketPeer(connection), trusted=trusted, bucket=None)  # type: ignore[arg-type]
    ticker = asyncio.ensure_future(tick())
    await asyncio.sleep(0)
    connection.feed(*messages)
    relaying = asyncio.ensure_future(
        relay(connection, hub, client, client.peer, budget=budget)  # type: ignore[arg-type]
    )
    try:
        ends = [asyncio.ensure_future(e.wait()) for e in (hub.all_seen, connection.closed)]
        await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        for end in ends:
            end.cancel()
        connection.closed.set()
        cause = await relaying
    finally:
        ticker.cancel()
    return hub, connection, cause


async def test_the_loop_runs_other_work_between_buffered_large_messages() -> None:
    large = "x" * YIELD_BYTES
    hub, connection, _ = await _relay([large] * 4, trusted=True, budget=None)
    assert len(set(hub.seen)) == 4, hub.seen  # another task ran before each next message
    assert connection.transport.pauses >= 3 and connection.transport.reading


async def test_small_buffered_messages_are_read_without_a_pause() -> None:
    hub, connection, _ = await _relay(["x"] * 4, trusted=True, budget=None)
    assert len(set(hub.seen)) == 1, hub.seen
    assert connection.transport.pauses == 0


async def test_a_client_past_its_budget_has_its_reads_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    pauses: list[float] = []
    real_call_later = loop.call_later

    def call_later(delay: float, callback: Any, *args: Any) -> Any:
        pauses.append(delay)
        return real_call_later(0, callback, *args)

    monkeypatch.setattr(loop, "call_later", call_later)
    monkeypatch.setattr(time, "monotonic", lambda: 0.0)
    _, connection, _ = await _relay(
        ["x" * 100] * 3, trusted=False, budget=ReadBudget(100.0, 150, 0.0)
    )
    assert [round(pause, 3) for pause in pauses] == [0.5, 1.5]
    assert connection.transport.pauses == 2 and connection.transport.reading


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
        await _relay(["x"], trusted=False, budget=None, hub=hub)
    assert len(budgets) == 2 and budgets[0] is budgets[1]
    await _relay(["x"], trusted=False, budget=None, hub=FakeHub([0]))
    assert budgets[2] is not budgets[0]  # another lease's


async def test_messages_read_before_the_relay_starts_are_held_in_order() -> None:
    connection = FakeConnection()
    connection.feed(*[str(n) for n in range(MAX_EARLY_MESSAGES - 1)])
    assert connection.transport.reading
    connection.feed("last")
    assert not connection.transport.reading  # a client that sends before it is attached waits
    seen: list[str | bytes] = []
    connection.inbox.start(lambda message: seen.append(message))
    assert seen == [*(str(n) for n in range(MAX_EARLY_MESSAGES - 1)), "last"]
    assert connection.transport.reading


async def test_a_fragmented_message_is_handed_on_whole_and_binary_stays_bytes() -> None:
    connection = FakeConnection()
    seen: list[str | bytes] = []
    connection.inbox.start(lambda message: seen.append(message))
    connection.feed(
        Frame(Opcode.TEXT, "\U0001f600".encode()[:2], fin=False),
        Frame(Opcode.CONT, "\U0001f600".encode()[2:], fin=True),
        Frame(Opcode.BINARY, b"\x00\x01"),
    )
    assert seen == ["\U0001f600", b"\x00\x01"]


async def test_invalid_utf8_in_a_text_message_closes_with_1007() -> None:
    connection = FakeConnection()
    seen: list[str | bytes] = []
    connection.inbox.start(lambda message: seen.append(message))
    connection.feed(Frame(Opcode.TEXT, b"\xff"), "after")
    await asyncio.wait_for(connection.closed.wait(), 5)
    assert connection.close_code == (1007, "invalid UTF-8 in a text message")
    assert seen == []  # nothing after the refusal is handed on


async def test_a_bad_message_closes_with_its_reason_and_nothing_after_it_is_read() -> None:
    hub, connection, cause = await _relay(["ok", "bad", "after"], trusted=True, budget=None)
    assert hub.messages == ["ok"]
    assert connection.close_code == (1007, "not a command")
    assert cause == "bad message: not a command"


async def test_a_fault_in_the_hub_closes_with_1011_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub, connection, cause = await _relay(["boom", "after"], trusted=True, budget=None)
    assert hub.messages == []
    assert connection.close_code == (1011, "internal error") and cause == "internal error"
    assert "the attach hub failed" in caplog.text


async def test_a_real_sockets_messages_reach_the_hub_without_waking_a_task() -> None:
    """The mechanism that saves a turn of the loop per message: the hub is called from the
    callback that read the socket, not from a task awaiting websockets' queue."""
    hub = FakeHub([0])
    hub.wanted = 3

    async def handler(socket: ServerConnection) -> None:
        assert isinstance(socket, RelayConnection)
        client = HubClient(peer=SocketPeer(socket), trusted=True, bucket=None)
        await relay(socket, hub, client, client.peer)  # type: ignore[arg-type]

    async with serve(handler, "127.0.0.1", 0, create_connection=RelayConnection) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with websockets.connect(f"ws://127.0.0.1:{port}") as client_socket:
            for n in range(3):
                await client_socket.send(str(n))
            await asyncio.wait_for(hub.all_seen.wait(), 30)
    assert hub.messages == ["0", "1", "2"]
    assert hub.tasks == [None, None, None]


async def test_a_message_of_too_many_fragments_closes_with_1009() -> None:
    """websockets' max_size counts payload bytes: empty continuation frames would pile up."""
    connection = FakeConnection()
    seen: list[str | bytes] = []
    connection.inbox.start(lambda message: seen.append(message))
    connection.feed(Frame(Opcode.TEXT, b"", fin=False))
    for _ in range(inbox_module.MAX_FRAGMENTS):
        connection.feed(Frame(Opcode.CONT, b"", fin=False))
    await asyncio.wait_for(connection.closed.wait(), 5)
    assert connection.close_code is not None and connection.close_code[0] == 1009
    assert seen == []


async def test_a_refusal_waits_behind_the_messages_read_before_it() -> None:
    """Commands a client sent before its bad message are handed on first, then it is closed,
    and reading is not left paused (the closing handshake must be read)."""
    hub, connection, cause = await _relay(
        ["x" * YIELD_BYTES, "after the pause", Frame(Opcode.TEXT, b"\xff"), "never"],
        trusted=True,
        budget=None,
    )
    assert hub.messages == ["x" * YIELD_BYTES, "after the pause"]
    assert connection.close_code == (1007, "invalid UTF-8 in a text message")
    assert cause == "bad message: invalid UTF-8 in a text message"
    assert connection.transport.reading


async def test_a_bad_message_after_a_pause_leaves_reading_on() -> None:
    hub, connection, _ = await _relay(
        ["x" * YIELD_BYTES, "bad", "never"], trusted=True, budget=None
    )
    assert hub.messages == ["x" * YIELD_BYTES]
    assert connection.close_code == (1007, "not a command")
    assert connection.transport.reading


async def test_a_client_that_pings_and_never_reads_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """websockets answers every ping whatever the client reads: the pongs are bounded here."""
    monkeypatch.setattr(inbox_module, "MAX_UNSENT_ON_PING", -1)  # any unsent byte is too many
    hub = FakeHub([0])
    causes: list[str] = []

    async def handler(socket: ServerConnection) -> None:
        assert isinstance(socket, RelayConnection)
        client = HubClient(peer=SocketPeer(socket), trusted=True, bucket=None)
        causes.append(await relay(socket, hub, client, client.peer))  # type: ignore[arg-type]

    async with serve(handler, "127.0.0.1", 0, create_connection=RelayConnection) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with websockets.connect(f"ws://127.0.0.1:{port}", ping_interval=None) as client:
            await client.ping()
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(client.recv(), 10)
    assert causes == ["client did not read"]
