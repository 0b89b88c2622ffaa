"""Second review of how the CDP relay reads a client's command envelope now that orjson parses
it (`broker/attach/strict_json.py`) and answers are spliced by their envelope: ids that are not
plain non-negative integers (1.0, true, -1, 2**53) close the socket 1007, the largest id a
double holds comes back as sent, spliced or not, and a `sessionId` given twice is judged, and
sent, by its last value only (so a session the client does not own stays out of reach)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.attach.support import RawClient, closed_with, raw
from tests.conftest import BrokerFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LARGEST = 2**53 - 1


async def _answer(client: RawClient, ident: int) -> dict[str, Any]:
    """The answer to `ident`, past any event sent before it."""
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(client.socket.recv(), 30))
        if message.get("id") == ident:
            return message


async def test_review2_cdp_ids_and_sessions_are_read_as_chromium_reads_them(
    broker_factory: BrokerFactory,
) -> None:
    broker = await broker_factory()
    lease = await broker.client.acquire(attach="cdp", ttl=120)
    url = lease.connect_url
    try:
        for ident in ("1.0", "true", "-1", str(2**53), '"1"', "null"):
            async with raw(url) as client:
                await client.socket.send(f'{{"id":{ident},"method":"Browser.getVersion"}}')
                code, _ = await closed_with(client.socket)
                assert code == 1007, ident
        async with raw(url) as client:
            # The largest id, answered small (parsed) and large (spliced by its envelope).
            await client.socket.send(json.dumps({"id": LARGEST, "method": "Browser.getVersion"}))
            answer = await _answer(client, LARGEST)
            assert answer["id"] == LARGEST and "product" in answer["result"], answer
            big = {"expression": "'x'.repeat(300000)", "returnByValue": True}
            pages = await client.call("Target.getTargets")
            page = next(t for t in pages["result"]["targetInfos"] if t["type"] == "page")
            attached = await client.call(
                "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}
            )
            session = attached["result"]["sessionId"]
            message = {"id": LARGEST, "method": "Runtime.evaluate", "params": big}
            await client.socket.send(json.dumps({**message, "sessionId": session}))
            answer = await _answer(client, LARGEST)
            assert answer["id"] == LARGEST and answer["sessionId"] == session
            assert len(answer["result"]["result"]["value"]) == 300000
            # A sessionId given twice: its last value (a session nobody owns) is what counts.
            twice = (
                '{"id":7,"method":"Runtime.evaluate","params":{"expression":"1"},'
                f'"sessionId":"{session}","sessionId":"NOT-A-SESSION"}}'
            )
            await client.socket.send(twice)
            answer = await _answer(client, 7)
            assert answer["id"] == 7 and "error" in answer, answer
            assert "Session with given id not found" in answer["error"]["message"], answer
            # And the other way round: the client's own session, last, is served.
            twice = (
                '{"id":8,"method":"Runtime.evaluate","params":{"expression":"6*7"},'
                f'"sessionId":"NOT-A-SESSION","sessionId":"{session}"}}'
            )
            await client.socket.send(twice)
            answer = await _answer(client, 8)
            assert answer["id"] == 8 and answer["result"]["result"]["value"] == 42, answer
    finally:
        await lease.release()
