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
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from broker.model.steps.base import StepBounds
from broker.model.steps.navigation import Goto
from browserbroker import AsyncLease, BrokerClient, Isolation, SessionCrashedError, steps
from tests.conftest import BrokerFactory, require
from tests.integration.test_engines import SDK_ENGINE, engine_of, start
from tests.support import BrokerProcess, InProcessBroker, alive

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
    _, left = psutil.wait_procs(jails, timeout=10)
    assert not [p.pid for p in left if alive(p)]


# ------------------------------------------------------------ one downloads folder per browser


def _writable_binds(pid: int) -> list[str]:
    """The folders the jail of the browser `pid` binds read-write (from its bwrap's argv)."""
    parent = psutil.Process(pid).parent()
    assert parent is not None and parent.name() == "bwrap", "the browser is not jailed"
    argv = parent.cmdline()
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word in ("--bind", "--bind-try")]


def _downloads_of(pid: int) -> str:
    """The downloads folder bound into the jail of browser `pid` (the bind that is not its
    profile)."""
    found = [path for path in _writable_binds(pid) if "playwright_" not in path]
    assert len(found) == 1, found
    return found[0]


def _visible(pid: int, path: str) -> bool:
    """`path` exists in the filesystem as the process `pid` (in its jail) sees it."""
    return os.path.exists(f"/proc/{pid}/root{path}")


async def _one_new_browser(running: InProcessBroker, engine: str, known: set[int]) -> int:
    pids = set(engine_of(running, engine).census().browser_pids) - known
    assert len(pids) == 1, pids
    return pids.pop()


@ENGINES
async def test_a_browser_cannot_see_another_browsers_downloads(
    broker_factory: BrokerFactory, engine: str
) -> None:
    """Two dedicated browsers (two tenants' leases, say): an in-flight download of browser B
    is not there for browser A, neither to a `file:` navigation (file: URLs allowed, so only
    the jail stands) nor in A's view of the filesystem."""
    require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is not installed")
    running = await start(broker_factory, engine, allow_file_urls=True)
    isolated = {"engine": SDK_ENGINE[engine], "isolation": Isolation.BROWSER, "ttl": 120}
    async with running.client.lease(**isolated) as a:  # type: ignore[arg-type]
        assert (await a.run(steps.goto("about:blank"), timeout=30)).ok
        pid_a = await _one_new_browser(running, engine, set())
        async with running.client.lease(**isolated) as b:  # type: ignore[arg-type]
            assert (await b.run(steps.goto("about:blank"), timeout=30)).ok
            pid_b = await _one_new_browser(running, engine, {pid_a})
            folder_a, folder_b = _downloads_of(pid_a), _downloads_of(pid_b)
            # B is downloading a file (as a download step's file sits there while it is read).
            in_flight = Path(folder_b) / "in-flight-download-of-b"
            in_flight.write_text(SECRET)
            try:
                # B sees its own download (the attack would work if A could reach the folder)...
                assert _visible(pid_b, str(in_flight))
                assert in_flight.name in await _shown(b, f"file://{folder_b}/")
                # ...and A sees nothing of it.
                for url in (f"file://{folder_b}/", f"file://{in_flight}", f"file://{folder_a}/.."):
                    shown = await _shown(a, url)
                    assert SECRET not in shown and in_flight.name not in shown, (url, shown)
                assert not _visible(pid_a, folder_b)
                assert folder_a != folder_b
                assert (await a.run(steps.goto("about:blank"), timeout=30)).ok
            finally:
                in_flight.unlink(missing_ok=True)


def test_no_downloads_folder_outlives_its_browser_or_the_broker(tmp_path: Path) -> None:
    """Census: each dedicated browser's downloads folder is gone once its lease ends, their
    parent once the broker stops; nothing lands in the browser user's home."""
    require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is not installed")
    home = Path(tempfile.gettempdir()) / f"browser-broker-home-{_browser_uid()}"
    before = _listing(home)
    env = {"BROKER_DATA_DIR": str(tmp_path), "BROKER_WARM_POOL_SIZE": "0"}
    process = BrokerProcess(env=env).start()
    seen: list[str] = []
    try:
        with BrokerClient(process.address) as client:
            for _ in range(2):
                with client.lease(isolation=Isolation.BROWSER, ttl=120) as lease:
                    assert lease.run(steps.goto("about:blank"), timeout=30).ok
                    assert process.proc is not None
                    browsers = _jailed_browsers(process.proc.pid)
                    folders = sorted({_downloads_of(pid) for pid in browsers})
                    assert len(folders) == 1 and os.path.isdir(folders[0]), folders
                    seen += folders
                assert _eventually(seen[-1]), seen[-1]
            parents = {os.path.dirname(folder) for folder in seen}
            assert len(set(seen)) == 2 and len(parents) == 1, seen
            assert not any(folder.startswith(f"{home}/") for folder in seen)
            assert _listing(Path(parents.pop())) == [".lock"]  # the broker's, outside jails
    finally:
        process.stop()
    assert not any(os.path.exists(os.path.dirname(folder)) for folder in seen)
    assert not [name for name in _listing(home) if name not in before and "download" in name]


def _browser_uid() -> int:
    import pwd

    try:
        return pwd.getpwnam("browser-broker").pw_uid if os.geteuid() == 0 else os.geteuid()
    except KeyError:
        return -1


def _jailed_browsers(broker_pid: int) -> list[int]:
    """The browsers below `broker_pid` that a bwrap started (the first process inside)."""
    found = []
    for process in psutil.Process(broker_pid).children(recursive=True):
        if process.name() == "bwrap":
            found += [p.pid for p in process.children() if p.name() != "bwrap"]
    return found


def _eventually(gone: str, timeout_s: float = 20) -> bool:
    """True once `gone` does not exist."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and os.path.exists(gone):
        time.sleep(0.1)
    return not os.path.exists(gone)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
