"""How the attach relay writes to a client and routes the browser's messages, without a browser:
a message is written at once when nothing waits before it (no task wake-up), queued behind
what does; an answer or event the hub need not read is spliced, never parsed. Mechanisms only."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.protocol import State

from broker.attach.bounds import AttachLimits
from broker.attach.clients import HubClient, Waiting
from broker.attach.hub import CdpHub
from broker.attach.relay import SocketPeer


class Protocol:
    def __init__(self) -> None:
        self.state = State.OPEN
        self.frames: list[bytes] = []

    def send_text(self, data: bytes) -> None:
        self.frames.append(data)


class Transport:
    def __init__(self) -> None:
        self.buffered = 0

    def get_write_buffer_size(self) -> int:
        return self.buffered


class Socket:
    def __init__(self) -> None:
        self.protocol = Protocol()
        self.transport = Transport()
        self.send_in_progress: asyncio.Future[None] | None = None
        self.flushed = 0
        self.sent: list[Any] = []

    def send_data(self) -> None:
        self.flushed += 1

    async def send(self, message: Any, text: bool | None = None) -> None:
        self.sent.append(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


async def test_a_message_is_written_at_once_when_nothing_waits_before_it() -> None:
    socket = Socket()
    peer = SocketPeer(socket)  # type: ignore[arg-type]
    peer.deliver(b'{"id":1}')
    peer.deliver('{"id":2}')
    assert socket.protocol.frames == [b'{"id":1}', b'{"id":2}'] and socket.flushed == 2
    assert not peer._wake.is_set()  # the writer task was not woken


async def test_behind_a_full_socket_messages_queue_for_the_writer_in_order() -> None:
    socket = Socket()
    peer = SocketPeer(socket)  # type: ignore[arg-type]
    writer = asyncio.ensure_future(peer.write_forever())
    socket.transport.buffered = 1  # the socket has not drained
    peer.deliver(b"1")
    socket.transport.buffered = 0
    peer.deliver(b"2")  # behind 1, still queued: never overtakes it
    assert socket.protocol.frames == [] and peer._wake.is_set()
    await asyncio.sleep(0)
    assert socket.sent == [b"1", b"2"]
    peer.deliver(b"3")  # the queue is empty again: at once
    assert socket.protocol.frames == [b"3"]
    writer.cancel()


async def test_nothing_is_written_at_once_during_a_fragmented_send() -> None:
    socket = Socket()
    socket.send_in_progress = asyncio.get_running_loop().create_future()
    peer = SocketPeer(socket)  # type: ignore[arg-type]
    peer.deliver(b"1")
    assert socket.protocol.frames == [] and peer._wake.is_set()


async def test_a_closing_socket_gets_nothing_written_at_once() -> None:
    socket = Socket()
    socket.protocol.state = State.CLOSING
    peer = SocketPeer(socket)  # type: ignore[arg-type]
    peer.deliver(b"1")
    assert socket.protocol.frames == [] and peer._wake.is_set()


class Pipe:
    def write(self, message: str | bytes) -> None:
        pass


class Peer:
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def deliver(self, text: str | bytes) -> None:
        assert isinstance(text, bytes)
        self.got.append(text)


def _hub() -> tuple[CdpHub, HubClient, Peer]:
    hub = CdpHub(Pipe(), "/downloads", AttachLimits())  # type: ignore[arg-type]
    peer = Peer()
    client = HubClient(peer, False, None, root="R")
    hub._own("R", client)
    hub._own("S", client)
    hub.clients.add(client)
    return hub, client, peer


def test_answers_and_events_the_hub_need_not_read_are_spliced_unparsed(
    monkeypatch: Any,
) -> None:
    hub, client, peer = _hub()
    monkeypatch.setattr(json, "loads", None)  # a parse would fail the test
    hub._pending[7] = Waiting(client, 3, "Runtime.evaluate", 0.0, "S")
    answer = b'{"id":7,"result":{"result":{"type":"number","value":1}},"sessionId":"S"}'
    assert hub._relay_unparsed(answer)
    assert (
        peer.got[-1] == b'{"id":3,"result":{"result":{"type":"number","value":1}},"sessionId":"S"}'
    )
    hub._pending[8] = Waiting(client, 4, "Browser.getVersion", 0.0, None)
    assert hub._relay_unparsed(b'{"id":8,"result":{"product":"x"},"sessionId":"R"}')
    assert peer.got[-1] == b'{"id":4,"result":{"product":"x"}}'  # its root session unnamed
    assert hub._relay_unparsed(b'{"method":"Page.loadEventFired","params":{},"sessionId":"S"}')
    assert client.pending == -2  # both answers counted off


def test_what_the_hub_reads_is_parsed() -> None:
    hub, client, peer = _hub()
    for method in ("Target.getTargets", "Target.createTarget", "IO.resolveBlob", "Page.printToPDF"):
        hub._pending[9] = Waiting(client, 5, method, 0.0, None)
        assert not hub._relay_unparsed(b'{"id":9,"result":{},"sessionId":"R"}'), method
    for event in ("Target.targetCreated", "Page.downloadProgress", "Tracing.tracingComplete"):
        message: dict[str, Any] = {"method": event, "params": {}, "sessionId": "S"}
        assert not hub._relay_unparsed(json.dumps(message, separators=(",", ":")).encode())
    assert not hub._relay_unparsed(b'{"method":"Target.targetCreated","params":{}}')  # its own
    assert peer.got == []
