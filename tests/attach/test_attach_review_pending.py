"""Review attack on the Playwright-protocol relay's bound on unanswered calls: it counts a
client's call ids, which the client chooses, so calls that all reused one id were counted once
and the bound (1000 unanswered calls) refused nothing. A reused id is now refused."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.attach.review_support import playwright_frame
from tests.conftest import BrokerFactory

PENDING = 1000  # AttachLimits.max_pending
SENT = 1200

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_review_calls_reusing_an_id_are_bounded(broker_factory: BrokerFactory) -> None:
    async with playwright_frame(broker_factory) as (client, frame):
        wait = {
            "id": 7,
            "guid": frame,
            "method": "waitForTimeout",
            "params": {"waitTimeout": 60_000},
        }
        text = json.dumps(wait)
        for sent in range(SENT):
            if sent == PENDING - 100:
                await asyncio.sleep(1.5)  # under the rate bound: only the pending one applies
            await client.socket.send(text)
        refusals: list[str] = []
        with pytest.raises(TimeoutError):
            while True:
                message = json.loads(await asyncio.wait_for(client.socket.recv(), 3))
                if message.get("id") == 7:
                    refusals.append(message["error"]["error"]["message"])
        rated = [r for r in refusals if "messages a second" in r]
        assert not rated, rated[:1]
    assert any("still unanswered" in r for r in refusals), (
        f"{SENT} calls sent, none refused as unanswered: {refusals[:2]}"
    )
