"""Behind the edge: with the goto check removed, a browser still reads nothing of the host.

The edge refuses `file:` and internal pages (test_urls_and_policy.py). Here that check is taken
away, as a bug in it would, and a hostile tenant navigates to the host's files anyway: a file,
a directory listing, the broker's data_dir (every tenant's traces), /root. Each browser runs in
its bubblewrap jail (broker/engines/jail.py), where those paths do not exist, and its own
managed policy refuses `file:` and the internal pages. Without the jail the same attack reads
the host; with it, nothing comes back, on Chromium and on Firefox.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from broker.model.steps.base import StepBounds
from broker.model.steps.navigation import Goto
from browserbroker import AsyncLease, SessionCrashedError, steps
from tests.conftest import BrokerFactory, require
from tests.integration.test_engines import SDK_ENGINE, engine_of, start
from tests.support import InProcessBroker

pytestmark = pytest.mark.browser

ENGINES = pytest.mark.parametrize("engine", ["chromium", "firefox"])
HOSTNAME = Path("/etc/hostname").read_text().strip() or socket.gethostname()
SECRET = "another-tenant's-trace-3f9c1a"


@pytest.fixture
def no_edge_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The goto check at the edge is gone: any URL reaches the browser as sent."""

    def accept_all(self: Goto, prefix: str, bounds: StepBounds, out: list[object]) -> None:
        return None

    monkeypatch.setattr(Goto, "validate", accept_all)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data_dir the browser's user could read, holding another tenant's trace."""
    folder = Path(tempfile.mkdtemp(prefix="jail-data-"))
    folder.chmod(0o755)
    (folder / "traces").mkdir(mode=0o755)
    trace = folder / "traces" / "other-tenant.trace"
    trace.write_text(SECRET)
    trace.chmod(0o644)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


async def _shown(lease: AsyncLease, url: str) -> str:
    """What a goto to `url` shows the tenant: the page's text, or "" when it was refused."""
    for _ in range(5):
        result = await lease.run(
            steps.goto(url),
            steps.evaluate("document.body ? document.body.innerText : ''"),
            timeout=30,
        )
        # Chromium commits the error page of an earlier refused navigation late, which can
        # interrupt this one: try again.
        if "interrupted by another navigation" not in result[0].error_message:
            break
        await asyncio.sleep(0.5)
    if len(result) < 2 or not result[0].ok or not result[1].ok:
        return ""
    return str(result[1].value)


def _environ(pid: int) -> bytes:
    with open(f"/proc/{pid}/environ", "rb") as environ:
        return environ.read()


async def _still_works(lease: AsyncLease) -> None:
    """The lease navigates again after the refusals."""
    assert await _shown(lease, "data:text/html,<p>still%20here</p>") == "still here"


def _attacks(data_dir: Path) -> dict[str, str]:
    """URL -> a text that shows the attack read the host."""
    return {
        "file:///etc/hostname": HOSTNAME,
        "file:///etc/": "hostname",
        f"file://{data_dir}/traces/other-tenant.trace": SECRET,
        f"file://{data_dir}/traces/": "other-tenant.trace",
        "file:///root/": "Index of",
        "file:///proc/1/environ": "PATH",
    }


async def _jailed(running: InProcessBroker, engine: str) -> bool:
    """The engine's browsers run below a bwrap process."""
    pids = engine_of(running, engine).census().browser_pids
    assert pids, "no browser is running"
    parents = [psutil.Process(pid).parent() for pid in pids]
    return all(parent is not None and parent.name() == "bwrap" for parent in parents)


@ENGINES
async def test_without_the_jail_the_attack_reads_the_host(
    broker_factory: BrokerFactory, no_edge_check: None, data_dir: Path, engine: str
) -> None:
    """The attack as it was: no edge check and no jail, the browser reads the host's files."""
    running = await start(broker_factory, engine, browser_jail="off", data_dir=data_dir)
    async with running.client.lease(engine=SDK_ENGINE[engine], ttl=120) as lease:
        assert HOSTNAME in await _shown(lease, "file:///etc/hostname")
        assert "hostname" in await _shown(lease, "file:///etc/")
        assert not await _jailed(running, engine)


@ENGINES
async def test_with_the_jail_a_file_navigation_reads_nothing(
    broker_factory: BrokerFactory, no_edge_check: None, data_dir: Path, engine: str
) -> None:
    require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is not installed")
    running = await start(broker_factory, engine, data_dir=data_dir)
    assert running.settings.browser_jail == "auto"  # on by default
    async with running.client.lease(engine=SDK_ENGINE[engine], ttl=120) as lease:
        assert await _jailed(running, engine), "the browser does not run in its jail"
        for url, evidence in _attacks(data_dir).items():
            shown = await _shown(lease, url)
            assert evidence not in shown, (url, shown[:200])
        await _still_works(lease)


@ENGINES
async def test_the_jail_alone_hides_the_host_when_file_urls_are_allowed(
    broker_factory: BrokerFactory, data_dir: Path, engine: str
) -> None:
    """allow_file_urls lifts the edge check and the browsers' file: blocking; the jail is
    still there: only the jail's own files can be read."""
    require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is not installed")
    running = await start(broker_factory, engine, allow_file_urls=True, data_dir=data_dir)
    async with running.client.lease(engine=SDK_ENGINE[engine], ttl=120) as lease:
        # file: works, inside the jail: /usr is there, the host's private files are not.
        assert "bin" in await _shown(lease, "file:///usr/")
        for url, evidence in _attacks(data_dir).items():
            shown = await _shown(lease, url)
            assert evidence not in shown, (url, shown[:200])
        passwd = await _shown(lease, "file:///etc/passwd")
        assert "root:x:0:0" in passwd and len(passwd.splitlines()) == 2, passwd


@ENGINES
async def test_the_browsers_refuse_their_internal_pages(
    broker_factory: BrokerFactory, no_edge_check: None, engine: str
) -> None:
    require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is not installed")
    running = await start(broker_factory, engine)
    # URL -> what the page would show if it opened. Chromium judges view-source: by the URL
    # inside it (view-source:about:blank opens; view-source:file: does not).
    pages = {
        "chromium": {
            "chrome://version": "Command Line",
            "chrome://gpu": "Graphics Feature Status",
            "view-source:file:///etc/hostname": "Line wrap",
            "view-source:file:///etc/": "Line wrap",
        },
        "firefox": {
            "about:config": "",
            "about:profiles": "",
            "about:support": "",
            "view-source:file:///etc/hostname": "",
        },
    }[engine]
    for url, evidence in pages.items():
        # A refused internal page can end the attacker's own session (some of Chromium's
        # WebUI pages take the tab or the browser down on their own): nothing is shown either way.
        try:
            async with running.client.lease(engine=SDK_ENGINE[engine], ttl=120) as lease:
                shown = await _shown(lease, url)
        except SessionCrashedError:
            shown = ""
        assert (evidence not in shown) if evidence else shown == "", (url, shown[:200])
    async with running.client.lease(engine=SDK_ENGINE[engine], ttl=120) as lease:
        await _still_works(lease)


async def test_no_jail_outlives_the_broker_and_no_secret_reaches_a_browser(
    broker_factory: BrokerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is not installed")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=daemon-secret")
    running = await start(broker_factory, "firefox")
    mine = os.getpid()
    for engine in ("chromium", "firefox"):
        async with running.client.lease(engine=SDK_ENGINE[engine], ttl=120) as lease:
            assert (await lease.run(steps.goto("about:blank"), timeout=30)).ok
            for pid in engine_of(running, engine).census().browser_pids:
                environ = _environ(pid)
                assert b"daemon-secret" not in environ and b"HOME=/tmp/home" in environ
    jails = [p for p in psutil.Process(mine).children(recursive=True) if p.name() == "bwrap"]
    assert jails, "no browser ran in a jail"
    await running.shutdown()
    _, alive = psutil.wait_procs(jails, timeout=10)
    assert not [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE]
