"""The browser's pipe read as it arrives (`broker/attach/pipe_messages.py`), without a browser:
messages handed on in the callback that read them, in order, bounded; what the hub leaves waits
for its task. Mechanisms only."""

from __future__ import annotations

import asyncio

from broker.attach.pipe_messages import (
    CHUNK_BYTES,
    MAX_QUEUED_BYTES,
    Message,
    Oversized,
    PipeMessages,
)


class Transport(asyncio.ReadTransport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def _pipe(take: bool = True) -> tuple[PipeMessages, list[Message], Transport]:
    pipe = PipeMessages()
    handled: list[Message] = []

    def inline(message: Message) -> bool:
        if take:
            handled.append(message)
        return take

    pipe.inline = inline
    transport = Transport()
    pipe.connection_made(transport)
    return pipe, handled, transport


def test_messages_are_handed_on_as_they_are_read_in_order() -> None:
    pipe, handled, _ = _pipe()
    pipe.data_received(b'{"id":1}\0{"id"')
    pipe.data_received(b':2}\0\0{"id":3}\0')
    assert handled == [b'{"id":1}', b'{"id":2}', b"", b'{"id":3}']


async def test_what_the_hub_leaves_and_all_after_it_wait_for_its_task() -> None:
    pipe, _, _ = _pipe()
    taken: list[Message] = []

    def inline(message: Message) -> bool:
        if message == b"big":
            return False
        taken.append(message)
        return True

    pipe.inline = inline
    pipe.data_received(b"a\0big\0b\0")
    assert taken == [b"a"]  # b waits behind big
    assert await pipe.next() == b"big"
    pipe.data_received(b"c\0")  # the task still holds big: c waits too
    assert taken == [b"a"]
    assert await pipe.next() == b"b"
    assert await pipe.next() == b"c"
    waiting = asyncio.ensure_future(pipe.next())
    await asyncio.sleep(0)
    pipe.data_received(b"d\0")  # the task is back for more: d is handed on at once
    assert taken == [b"a", b"d"] and not waiting.done()
    pipe.eof_received()
    assert await waiting is None


def test_a_message_over_its_bound_is_dropped_as_it_is_read() -> None:
    pipe, handled, _ = _pipe()
    pipe.bound = lambda head: CHUNK_BYTES + 10 if head.startswith(b'{"id":1,') else 0
    body = b"x" * (CHUNK_BYTES // 2)
    pipe.data_received(b'{"id":1,' + body)
    pipe.data_received(body + body + b',"sessionId":"S"}\0')
    pipe.data_received(b'{"id":2,"result":{}}\0')
    oversized = handled[0]
    assert isinstance(oversized, Oversized)
    assert oversized.head.startswith(b'{"id":1,') and oversized.tail.endswith(b'"S"}')
    assert oversized.size == 8 + 3 * len(body) + 17
    assert pipe._parts == [] and handled[1] == b'{"id":2,"result":{}}'


async def test_reads_pause_while_too_much_waits_for_the_task() -> None:
    pipe, _, transport = _pipe(take=False)
    piece = b"y" * (MAX_QUEUED_BYTES // 2)
    for _ in range(3):
        pipe.data_received(piece + b"\0")
    assert transport.paused
    await pipe.next()
    await pipe.next()
    assert not transport.paused
