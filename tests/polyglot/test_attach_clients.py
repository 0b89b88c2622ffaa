"""Attached clients nobody here wrote, each against a real broker (a subprocess) and a real
Chromium: Node Playwright's connectOverCDP, Puppeteer's connect and chromedp's remote allocator
(examples/attach/, installed and built by scripts/polyglot.sh) sign in on the fixture site,
scrape, complete an OAuth popup and download a file. The download is written in the lease's own
folder on the broker's host: the clients report its name, size and state from the browser's
events, and this test reads the bytes there. Then Release closes the client's socket with the
lease-ended close code, and no browser or profile of the lease is left.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browserbroker import AsyncBrokerClient, AsyncLease
from tests.fixture_site import FixtureSite
from tests.support import BrokerProcess, command_line

from .polyglot_helpers import ROOT, missing, need_tool, tool_env

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NODE_DIR = ROOT / "examples/attach/node"
PROFILE_PREFIX = "playwright_attach_profile-"  # broker/engines/playwright/attachable.py
REPORT = b"quarterly report\n"  # the fixture site's /file.txt
SCENARIO_TIMEOUT_S = 150.0  # a cold Chromium and a busy machine; the scenario takes ~5 s


@pytest.fixture(scope="module")
def attach_broker() -> Iterator[BrokerProcess]:
    """A broker of its own, with no warm pool: every browser below it is a lease's."""
    broker = BrokerProcess(env={"BROKER_WARM_POOL_SIZE": "0"}).start()
    yield broker
    broker.stop()


@pytest.fixture(params=["playwright", "puppeteer", "chromedp"])
def attach_client(request: pytest.FixtureRequest) -> list[str]:
    """The command of one attached client; it takes the connect URL and the site's URL."""
    if request.param == "chromedp":
        return [need_tool("browserbroker-attach-chromedp")]
    node = need_tool("node")
    package = {"playwright": "playwright-core", "puppeteer": "puppeteer-core"}[request.param]
    if not (NODE_DIR / "node_modules" / package).is_dir():
        missing(f"{NODE_DIR}/node_modules/{package} is missing: run scripts/polyglot.sh")
    return [node, str(NODE_DIR / f"{request.param}.js")]


class Client:
    """A client program running: its JSON lines, read as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def next_event(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), SCENARIO_TIMEOUT_S)
            if not line:
                raise AssertionError(await self.describe("the client exited early"))
            self.lines.append(line.decode().rstrip())
            if line.startswith(b"{"):
                event: dict[str, Any] = json.loads(line)
                if event["event"] == "error":
                    raise AssertionError(await self.describe("the client failed"))
                return event

    async def until(self, name: str) -> dict[str, dict[str, Any]]:
        """Every event up to and including `name`, by name."""
        seen: dict[str, dict[str, Any]] = {}
        while name not in seen:
            event = await self.next_event()
            seen[event["event"]] = event
        return seen

    async def describe(self, what: str) -> str:
        if self.proc.returncode is None:
            self.proc.kill()
        assert self.proc.stderr is not None
        stderr = (await self.proc.stderr.read()).decode(errors="replace")
        return f"{what}\n--- stdout\n" + "\n".join(self.lines) + f"\n--- stderr\n{stderr[-4000:]}"


def lease_profile(broker: BrokerProcess) -> Path:
    """The profile folder of the one attachable browser below the broker (its --user-data-dir)."""
    folders = set()
    for proc in broker.browsers():
        for arg in command_line(proc):
            if arg.startswith("--user-data-dir=") and PROFILE_PREFIX in arg:
                folders.add(Path(arg.partition("=")[2]))
    assert len(folders) == 1, folders
    return folders.pop()


async def test_attached_client_runs_the_scenario_and_release_closes_its_socket(
    attach_client: list[str], attach_broker: BrokerProcess, fixture_server: FixtureSite
) -> None:
    async with AsyncBrokerClient(attach_broker.address) as broker:
        lease = await broker.acquire(attach="cdp", ttl=300)
        client = await start_client(attach_client, lease.connect_url, fixture_server)
        proc = client.proc
        try:
            seen = await client.until("ready")
            profile = lease_profile(attach_broker)
            scenario_reported(seen, fixture_server)
            download = seen["download"]
            assert download["state"] == "completed"
            # Written in the lease's folder on the broker's host, whatever path the client named.
            files = {p.name: p.read_bytes() for p in (profile / "downloads").iterdir()}
            assert list(files.values()) == [REPORT], files
            if "guid" in download:  # Puppeteer and chromedp read the browser's events
                assert download["bytes"] == len(REPORT)
                assert list(files) == [download["guid"]]

            await release_closes_the_socket(lease, client)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await lease.release()
        await nothing_is_left(broker, attach_broker, profile)


async def start_client(command: list[str], connect_url: str, site: FixtureSite) -> Client:
    proc = await asyncio.create_subprocess_exec(
        *command,
        connect_url,
        site.url(""),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=tool_env(),
    )
    return Client(proc)


def scenario_reported(seen: dict[str, dict[str, Any]], site: FixtureSite) -> None:
    """The scenario's sign-in, scrape, OAuth popup and download, as every client reports them."""
    assert seen["login"]["who"] == "signed in as ada"
    assert seen["login"]["stored"] == "ada"
    assert seen["popup"]["url"] == site.url("oauth/authorize?client=app")
    assert seen["popup"]["title"] == "Authorize"
    assert seen["status"]["text"] == "connected: c0de"
    assert seen["download"]["filename"] == "report.txt"
    assert seen["download"]["url"] == site.url("file.txt")


async def release_closes_the_socket(lease: AsyncLease, client: Client) -> None:
    """Release closes the client's socket with the lease-ended code, and the client exits."""
    assert (await lease.release()).released_now
    closed = (await client.until("closed"))["closed"]
    assert closed == {"event": "closed", "code": 4001, "reason": "lease ended: client_release"}
    assert await asyncio.wait_for(client.proc.wait(), 30) == 0, await client.describe("exit")


async def nothing_is_left(broker: AsyncBrokerClient, process: BrokerProcess, profile: Path) -> None:
    """Census: the lease's browser is gone (processes and the broker's count), and its profile
    with the downloaded file."""
    for _ in range(100):
        status = await broker.status()
        counted = sum(engine.browsers for engine in status.engines)
        if not process.browsers() and not counted and not await asyncio.to_thread(profile.exists):
            break
        await asyncio.sleep(0.1)
    assert not process.browsers()
    assert counted == 0, status
    assert not await asyncio.to_thread(profile.exists)
