"""Second review of the attach relays' strict parse (`broker/attach/strict_json.py`), attacked
through a `playwright` lease's relay with raw frames, since every relay parses a client's
message with the same `strict_object`.

Holes found, now closed (their tests were xfail, strict):
- a message orjson refuses for a lone surrogate is read again by the standard library's
  parser, which recurses per bracket: a lone surrogate followed by a few thousand nested
  arrays (10 KiB) raises RecursionError out of `strict_object`, past `relay()` and the attach
  server's bookkeeping: the socket is closed 1011, not 1007, and the connection's `closed` hook
  never runs, so an `on_disconnect=END` lease outlives its last client (until idle or TTL);
- an integer beyond 64 bits is read by orjson as a double (`1e+30`) and relayed, where the docs
  promise a message with an integer beyond 2^53 - 1 is refused (1007).

Held: invalid UTF-8 and UTF-8-encoded surrogates in a binary frame, a BOM, `1e400`, and a lone
surrogate in a message over 256 KiB are refused 1007; a lone surrogate in a small message is
relayed as U+FFFD (the call is answered, the socket stays up).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from browserbroker import AttachProtocol, OnDisconnect
from tests.attach.endings import count_releases, ended_once
from tests.attach.playwright_support import USER_AGENT, no_browser_left, raw_playwright
from tests.conftest import BrokerFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SURROGATE = "\\ud800"  # a lone surrogate escape, as a client writes it in JSON text


async def _outcome(url: str, frame: str | bytes) -> tuple[str, Any]:
    """Send one frame on a fresh connection (after `initialize`): ("closed", code) if the broker
    closes the socket, else ("answer", the answer to call id 1)."""
    async with websockets.connect(url, max_size=None, user_agent_header=USER_AGENT) as socket:
        init = {"id": 99, "guid": "", "method": "initialize", "params": {"sdkLanguage": "python"}}
        await socket.send(json.dumps(init))
        try:
            while True:
                message = json.loads(await asyncio.wait_for(socket.recv(), 30))
                if message.get("id") == 99:
                    break
            await socket.send(frame)
            while True:
                message = json.loads(await asyncio.wait_for(socket.recv(), 30))
                if message.get("id") == 1:
                    return "answer", message
        except websockets.ConnectionClosed:
            await asyncio.wait_for(socket.wait_closed(), 30)
            return "closed", socket.close_code


def _call(params_json: str) -> str:
    return '{"id":1,"guid":"nobody","method":"close","params":' + params_json + "}"


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def test_review2_a_lone_surrogate_before_deep_nesting_is_refused_and_ends_the_lease(
    broker_factory: BrokerFactory,
) -> None:
    running = await broker_factory()
    releases = count_releases(running)
    lease = await running.client.acquire(
        attach=AttachProtocol.PLAYWRIGHT, ttl=120, on_disconnect=OnDisconnect.END
    )
    try:
        frame = _call('{"a":"' + SURROGATE + '","b":' + _nested(5000) + "}")  # 10 KiB
        assert len(frame) < 16 * 1024
        assert await _outcome(lease.connect_url, frame) == ("closed", 1007)
        await ended_once(running, releases, lease, "client_disconnected")
    finally:
        await lease.release()
    await no_browser_left()


async def test_review2_an_integer_beyond_64_bits_is_refused(
    broker_factory: BrokerFactory,
) -> None:
    running = await broker_factory()
    lease = await running.client.acquire(attach=AttachProtocol.PLAYWRIGHT, ttl=120)
    try:
        # (2**53 + 1 is refused: that one is within 64 bits, and orjson keeps it an int.)
        assert await _outcome(lease.connect_url, _call('{"a":9007199254740993}')) == (
            "closed",
            1007,
        )
        assert await _outcome(lease.connect_url, _call('{"a":' + "9" * 30 + "}")) == (
            "closed",
            1007,
        )
    finally:
        await lease.release()
    await no_browser_left()


async def test_review2_odd_text_and_bytes_are_refused_or_judged_as_sent(
    broker_factory: BrokerFactory,
) -> None:
    running = await broker_factory()
    lease = await running.client.acquire(attach=AttachProtocol.PLAYWRIGHT, ttl=120)
    url = lease.connect_url
    try:
        refused: list[str | bytes] = [
            _call('{"a":"\xed\xa0\x80"}').encode("latin-1"),  # a surrogate, UTF-8 encoded
            _call('{"a":"\xff"}').encode("latin-1"),  # not UTF-8 at all
            "\ufeff" + _call("{}"),  # a byte order mark
            _call('{"a":1e400}'),  # not a finite double
            _call('{"a":"' + SURROGATE + '","b":"' + "x" * (300 * 1024) + '"}'),  # over 256 KiB
            _call('{"a":' + _nested(99) + "}"),  # 101 deep: one past MAX_DEPTH
            _call('{"a":"x"}') + "garbage",
        ]
        for frame in refused:
            assert await _outcome(url, frame) == ("closed", 1007), repr(frame[:40])
        # A lone surrogate in a small message is judged and relayed as U+FFFD: answered.
        kind, answer = await _outcome(url, _call('{"a":"' + SURROGATE + '"}'))
        assert kind == "answer" and "no object 'nobody'" in answer["error"]["error"]["message"]
        # Exactly MAX_DEPTH deep (the message, its params and 98 arrays) is read and answered.
        kind, answer = await _outcome(url, _call('{"a":' + _nested(98) + "}"))
        assert kind == "answer", answer
        async with raw_playwright(url) as client:  # the lease still serves a client
            await client.initialize()
    finally:
        await lease.release()
    await no_browser_left()
