"""A broker SIGKILLed under attachable leases leaves no browser behind, whatever the protocol:
nothing of the broker runs to stop them, so each browser must end with the broker by itself.
The folders the broker made for them (profiles, a served browser's temporary directory) are
removed by the next broker to start."""

from __future__ import annotations

import asyncio
import re
import signal
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from browserbroker import AsyncBrokerClient, AttachProtocol, Engine
from tests.support import BrokerProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KINDS = [
    (Engine.CHROMIUM, AttachProtocol.CDP),
    (Engine.CHROMIUM, AttachProtocol.PLAYWRIGHT),
    (Engine.FIREFOX, AttachProtocol.PLAYWRIGHT),
    (Engine.FIREFOX, AttachProtocol.BIDI),
]
GONE_WITHIN_S = 20  # measured: under 1 s on a loaded machine


def _folders_made_for(procs: list[psutil.Process]) -> set[Path]:
    """The broker's folders in the temporary directory that these processes were started with
    (a browser's --user-data-dir or --profile, a served browser's server's TMPDIR)."""
    tmp = Path(tempfile.gettempdir())
    found = set()
    for proc in procs:
        try:
            words = [*proc.cmdline(), *(f"{k}={v}" for k, v in proc.environ().items())]
        except psutil.Error:
            continue
        for word in words:
            for path in (Path(part) for part in re.split(r"[\s=]", word) if part.startswith("/")):
                if path.parent == tmp and path.name.startswith(
                    ("playwright_attach_", "playwright_served-")
                ):
                    found.add(path)
                elif path.parent.parent == tmp and path.parent.name.startswith(
                    "playwright_served-"
                ):
                    found.add(path.parent)
    return found


def _alive(procs: list[psutil.Process]) -> list[int]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except psutil.Error:
            continue
    return alive


@pytest.mark.parametrize(("engine", "protocol"), KINDS, ids=lambda kind: kind.name.lower())
def test_a_killed_broker_leaves_no_attachable_browser(
    engine: Engine, protocol: AttachProtocol
) -> None:
    broker = BrokerProcess(
        env={"BROKER_WARM_POOL_SIZE": "0", "BROKER_ENGINES": '["chromium", "firefox"]'}
    ).start()
    try:

        async def acquire() -> None:
            async with AsyncBrokerClient(broker.address) as client:
                await client.acquire(engine=engine, attach=protocol, ttl=300, timeout=120)

        asyncio.run(acquire())
        assert broker.proc is not None
        below = psutil.Process(broker.proc.pid).children(recursive=True)
        browsers = broker.browsers()
        assert browsers, "the lease's browser was not found below the broker"
        folders = _folders_made_for(below)
        assert folders and all(folder.is_dir() for folder in folders), folders
        broker.signal(signal.SIGKILL)
        broker.wait(10)
        deadline = time.monotonic() + GONE_WITHIN_S
        while _alive(below) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = _alive(below)
        for pid in left:  # (not to leave them to the next test)
            psutil.Process(pid).kill()
        assert not left, f"processes outlived the broker: {left}"
        assert any(folder.exists() for folder in folders)  # nothing of the broker removed them
        BrokerProcess().start().stop()  # the next broker sweeps what a gone one left
        assert not [folder for folder in folders if folder.exists()]
    finally:
        broker.stop()
