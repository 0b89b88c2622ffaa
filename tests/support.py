"""Running brokers for tests: in-process (to look inside) or as a subprocess (to signal it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import pytest

from broker.daemon.server import serve
from broker.egress.proxy import EgressRoute
from broker.engines.playwright.engine import PlaywrightEngine
from broker.model.attach import AttachProtocol
from broker.runtime.settings import Settings
from broker.runtime.wiring import Broker
from browserbroker import AsyncBrokerClient, steps
from browserbroker.v1 import broker_pb2 as pb
from tests.fixture_site import FixtureSite

ROOT = Path(__file__).resolve().parent.parent
# The fixture site serves on 127.0.0.1, which the default egress policy denies like any loopback
# address; tests allow that one address (and only it: 127.0.0.2 and up stay "private"), which
# for a loopback address takes egress_allow_loopback too.
TEST_EGRESS: dict[str, object] = {
    "egress_allow_cidrs": ["127.0.0.1/32"],
    "egress_allow_loopback": True,
}
# Tests and benchmarks poll GetStatus while they wait for a state; its rate limit is tested
# on its own (tests/unit/test_security_rpc.py).
TEST_STATUS_RATE = 1000.0
BROKER_BIN = Path(sys.executable).parent / "browser-broker"
# bwrap: the filesystem jail a browser runs in (broker/engines/jail.py) is part of it.
BROWSER_NAMES = (
    "chromium",
    "chrome",
    "headless_shell",
    "firefox",
    "firefox-esr",
    "camoufox",
    "bwrap",
)


def browser_descendants(pid: int) -> list[psutil.Process]:
    """Browser processes (any kind, any helper) below `pid`."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if _is_browser(p)]


def command_line(proc: psutil.Process) -> list[str]:
    """`proc`'s argv, or [] once it has exited: a child listed a moment ago may be a zombie
    (exited, not yet reaped) or gone by the time it is read, more so on a loaded machine."""
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def alive(proc: psutil.Process) -> bool:
    """Whether `proc` still runs (a zombie has exited: it only waits to be reaped). A process
    that cannot be read is counted as running, so a check of "none left" cannot pass unseen."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # (ZombieProcess is one)
        return False
    except psutil.AccessDenied:
        return True


def in_process_browsers() -> list[psutil.Process]:
    """Browser processes below this process, leaving out those of broker subprocesses (such as
    the session's `live_broker`), which are theirs to clean up."""
    theirs: set[int] = set()
    for child in psutil.Process().children():
        try:
            if any(os.path.basename(arg) == "browser-broker" for arg in child.cmdline()[:2]):
                theirs |= {p.pid for p in child.children(recursive=True)}
        except psutil.Error:
            continue
    return [p for p in browser_descendants(os.getpid()) if p.pid not in theirs]


def _is_browser(proc: psutil.Process) -> bool:
    try:
        return (
            os.path.basename(proc.exe() or proc.name()) in BROWSER_NAMES
            or proc.name() in BROWSER_NAMES
        )
    except psutil.Error:
        return False


@dataclass
class InProcessBroker:
    settings: Settings
    broker: Broker
    stop: asyncio.Event
    task: asyncio.Task[None]
    address: str
    client: AsyncBrokerClient
    # Set by tests that end on purpose with leases still lent (e.g. shutdown tests).
    allow_leases_at_teardown: bool = False

    async def check_no_leftovers(self) -> None:
        """No lease, and no context or page beyond the warm pool's, is left open."""
        leases = self.broker.leases
        await leases.wait_all_closed()
        assert leases.active_count == 0, (
            f"leases left: {[lease.id for lease in leases.active_leases()]}"
        )
        assert leases.queued_count == 0 and leases.closing_count == 0
        pooled = self.broker.warm_pool_size
        for engine in self.broker.engines.values():
            census = engine.census()
            if isinstance(engine, PlaywrightEngine):
                mine = sum(len(p) for p in self.broker.pools if p.engine is engine)
                # A pooled attachable browser connected over CDP also shows its default context
                # (one connected to its own Playwright server has none).
                defaults = sum(
                    len(p)
                    for p in self.broker.pools
                    if p.engine is engine and p.attach is AttachProtocol.CDP
                )
                assert census.contexts == mine + defaults, (
                    f"{engine.name}: {census.contexts} contexts, pool {pooled}"
                )
                assert census.pages == mine, f"{engine.name}: {census.pages} pages, pool {pooled}"

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 60)
        await self.client.close()


async def start_in_process(**overrides: object) -> InProcessBroker:
    values: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "warm_pool_size": 0,
        "log_level": "WARNING",
        "status_requests_per_s": TEST_STATUS_RATE,
        "drain_timeout_s": 0,
        **TEST_EGRESS,
    }
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]
    broker = Broker(settings)
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, stop=stop, on_ready=ready.set_result, broker=broker))
    waiting: set[asyncio.Future[Any]] = {task, ready}
    done, _ = await asyncio.wait(waiting, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    port = ready.result()
    address = f"127.0.0.1:{port}"
    return InProcessBroker(settings, broker, stop, task, address, AsyncBrokerClient(address))


@dataclass
class BrokerProcess:
    """`browser-broker serve` as a child process, on a free port."""

    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    log_path: Path | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60) -> BrokerProcess:
        workdir = Path(tempfile.mkdtemp(prefix="broker-test-"))
        port_file = workdir / "port"
        self.log_path = workdir / "broker.log"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                str(BROKER_BIN),
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--port-file",
                str(port_file),
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "BROKER_EGRESS_ALLOW_CIDRS": '["127.0.0.1/32"]',
                "BROKER_EGRESS_ALLOW_LOOPBACK": "true",
                "BROKER_STATUS_REQUESTS_PER_S": str(TEST_STATUS_RATE),
                "BROKER_DRAIN_TIMEOUT_S": "0",  # stops at once; tests of the drain set it
                **self.env,
            },
        )
        deadline = time.monotonic() + timeout_s
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"broker did not start:\n{self.log()}")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def browsers(self) -> list[psutil.Process]:
        assert self.proc is not None
        return browser_descendants(self.proc.pid)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# Browser work that keeps pinging the fixture site until the browser stops it.
# The documented stop bound (README, "Stop bound"): the browser work stops within this long after
# a Run's deadline or cancel. It keeps at least 2x headroom over the slowest stop `bench.cancel`
# measured with a core kept busy (docs/benchmarks.md#stop-latency).
STOP_BOUND_S = 1.0
# A stop test's Run deadline: long enough for a page to start its work (and ping) before it on a
# busy machine.
STOP_DEADLINE_S = 2.0

STOP_KINDS = (
    "navigation",  # a page that keeps streaming
    "timer_loop",  # setInterval pings
    "slow_script",  # a script that never yields (synchronous XHR pings)
    "page_script",  # the same loop, started by the page from a timer after load
    "evaluate_promise",  # an async evaluate that never resolves, pinging as it goes
    "iframe_script",  # a never-yielding script inside an iframe
    "popup_work",  # a popup the page opened, pinging on a timer
)


def work_for(kind: str, site: FixtureSite, ping_id: str) -> list[pb.Step]:
    forever = steps.evaluate("new Promise(() => {})")  # the Run waits while the page works
    if kind == "navigation":
        return [steps.goto(site.url(f"slow-stream?id={ping_id}"))]
    if kind == "page_script":
        return [steps.goto(site.url(f"ping-page-script.html?id={ping_id}")), forever]
    if kind == "timer_loop":
        return [steps.goto(site.url(f"ping-loop.html?id={ping_id}")), forever]
    if kind == "evaluate_promise":
        return [
            steps.goto(site.url("form.html")),
            steps.evaluate(
                "(async () => { for (;;) { await fetch('/ping?id="
                + ping_id
                + "&t=' + Date.now()).catch(() => {}); await new Promise(r => setTimeout(r, 10)); } })()"
            ),
        ]
    if kind == "iframe_script":
        inner = quote(f"/ping-script.html?id={ping_id}")
        return [steps.goto(site.url(f"iframe?src={inner}")), steps.evaluate("frames[0].spin()")]
    if kind == "popup_work":
        inner = quote(f"/ping-loop.html?id={ping_id}")
        return [steps.goto(site.url(f"popup?src={inner}")), forever]
    return [steps.goto(site.url(f"ping-script.html?id={ping_id}")), steps.evaluate("spin()")]


async def eventually(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Waits for a condition that lives outside this event loop (another thread or process)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def last_ping_after(
    site: FixtureSite, ping_id: str, quiet_s: float = 1.0, sent: bool = False
) -> float:
    """Waits until the pings have been quiet for `quiet_s`, then returns the last ping's arrival;
    with `sent`, when the page sent its last ping (the browser's side; arrival for pings that
    carry no send time, such as a streaming navigation's)."""

    def quiet() -> bool:
        times = site.pings.times(ping_id)
        return bool(times) and time.monotonic() - times[-1] >= quiet_s

    await eventually(quiet)
    sent_times = site.pings.sent_times(ping_id) if sent else []
    return max(sent_times) if sent_times else site.pings.times(ping_id)[-1]


@contextlib.asynccontextmanager
async def _forward_regardless(route: EgressRoute) -> AsyncIterator[None]:
    yield


def unhold_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Routes keep forwarding while a stop runs: what is then measured (with `sent=True`) is the
    browser's own stop, without the wall the route's hold puts in front of it."""
    monkeypatch.setattr(EgressRoute, "hold", _forward_regardless)


# Whether a stop test runs with the route's hold (the whole promise, seen at the site) or without
# it (the browser's own stop, from the pages' send times).
ROUTE_MODES = ("held", "unheld")
