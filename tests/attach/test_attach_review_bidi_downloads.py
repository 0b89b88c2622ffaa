"""Review attack on the WebDriver BiDi relay's download bounds: a hostile client that tried to undo the
hub's "no more downloads" (downloadBehavior null) to fill the disk past attach_max_downloads_bytes."""

from __future__ import annotations

import asyncio
import os

import pytest

from broker.engines.firefox import FirefoxEngine
from broker.model.options import EngineName
from tests.attach.bidi_support import bidi_lease, firefox_broker, first_context
from tests.attach.support import raw
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BOUND = 300_000  # attach_max_downloads_bytes
FILE = 100_000  # each file: under max_download_bytes, so only the total bound applies

# Downloads `count` blobs of FILE bytes from the page, one every 100 ms.
_DOWNLOAD = """async (count, tag) => {
  for (let i = 0; i < count; i++) {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([new Uint8Array(SIZE)]));
    a.download = tag + i + '.bin';
    document.body.appendChild(a);
    a.click();
    await new Promise(r => setTimeout(r, 100));
  }
}""".replace("SIZE", str(FILE))


def _folder_bytes(folder: str) -> int:
    return sum(e.stat(follow_symlinks=False).st_size for e in os.scandir(folder) if e.is_file())


async def test_review_a_client_cannot_undo_the_download_denial(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    broker = await firefox_broker(
        broker_factory, attach_max_downloads_bytes=BOUND, max_download_bytes=10 * FILE
    )
    lease = await bidi_lease(broker, ttl=120)
    engine = broker.broker.engines[EngineName.FIREFOX]
    assert isinstance(engine, FirefoxEngine) and engine.bidi is not None
    (session,) = engine.bidi.sessions
    folder = session.hub.downloads_folder
    async with raw(lease.connect_url) as client:
        context = await first_context(client)
        opened = await client.call(
            "browsingContext.navigate",
            {"context": context, "url": fixture_server.url("form.html"), "wait": "complete"},
        )
        assert opened["type"] == "success", opened

        async def download(count: int, tag: str) -> None:
            answer = await client.call(
                "script.callFunction",
                {
                    "functionDeclaration": _DOWNLOAD,
                    "arguments": [
                        {"type": "number", "value": count},
                        {"type": "string", "value": tag},
                    ],
                    "target": {"context": context},
                    "awaitPromise": True,
                },
            )
            assert answer["type"] == "success", answer

        await download(5, "first")  # over the bound: the hub denies further downloads
        await asyncio.sleep(1.5)
        assert session.hub._denied
        # The attack: "default behavior" is Firefox's prefs, i.e. the same folder, allowed.
        # It is refused, and the downloads after it stay denied.
        undone = await client.call("browser.setDownloadBehavior", {"downloadBehavior": None})
        assert undone["type"] == "error" and "null" in undone["message"], undone
        await download(20, "again")
        await asyncio.sleep(2.0)
        held = _folder_bytes(folder)
    await lease.release()
    assert held <= 2 * BOUND, f"{held} bytes of downloads held on the host (bound {BOUND})"
