"""The systems the peer benchmark compares, each doing the same work per session.

One session everywhere: open an isolated browser session, go to the benchmark page, read its
`h1`, end the session. `session()` times exactly that; `prepare()` does any work a system does
ahead of time (the pre-opened page of `playwright-warm-page`), outside the timed region.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import grpc
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc
from playwright.async_api import Browser, BrowserContext, Page, Playwright

from broker.engines.chromium import SERVER_ARGS
from browserbroker import AsyncBrokerClient, steps
from browserbroker.v1 import broker_pb2 as pb
from browserbroker.v1 import broker_pb2_grpc
from tests.support import BrokerProcess

if TYPE_CHECKING:
    from browserbroker.v1.broker_pb2_grpc import BrowserBrokerServiceAsyncStub

PAGE_HTML = b"<!doctype html><title>bench</title><h1>hello</h1>"
# Every wait in a session (Acquire, the steps, a navigation, a connection): 50 sessions at once on
# 2 busy cores take minutes, and every system gets the same bound.
SESSION_TIMEOUT_S = 300.0
EXPECTED = "hello"
# Root cannot use Chromium's sandbox without a separate user; the peers run as the bench does.
AS_ROOT_ARGS = ["--no-sandbox"] if os.geteuid() == 0 else []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout_s:g}s")


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """Stops a process started with `start_new_session=True`, and everything it started."""
    if proc is None:
        return
    for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # children that outlived their parent


class PageServer:
    """The benchmark page over HTTP/1.1 on loopback, in a process of its own (no shared GIL)."""

    SCRIPT = """
import http.server, sys
body = sys.stdin.buffer.read()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    def handle_error(self, request, client_address):
        pass  # a browser closing its connection mid-response is not news
Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/page.html"

    def start(self) -> PageServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, str(self.port)],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(PAGE_HTML)
        self.proc.stdin.close()
        wait_for_port(self.port, self.proc, "the page server", 10)
        return self

    def stop(self) -> None:
        stop_process(self.proc)


async def visit(page: Page, url: str, who: str) -> None:
    """The Playwright peers' work: go to the page and read its h1."""
    await page.goto(url, timeout=SESSION_TIMEOUT_S * 1000)
    value = await page.text_content("h1", timeout=SESSION_TIMEOUT_S * 1000)
    if value != EXPECTED:
        raise RuntimeError(f"{who} read {value!r}")


class System(Protocol):
    name: str

    async def start(self) -> None: ...
    async def prepare(self) -> None: ...
    async def session(self) -> float: ...
    async def stop(self) -> None: ...


class BrokerSdk:
    """The broker through the Python SDK: Acquire, one Run of two steps, Release."""

    name = "broker (Python SDK)"

    def __init__(self, broker: BrokerProcess, url: str) -> None:
        self.broker = broker
        self.url = url
        self.client: AsyncBrokerClient | None = None

    async def start(self) -> None:
        self.client = AsyncBrokerClient(self.broker.address)

    async def prepare(self) -> None:
        pass

    async def session(self) -> float:
        assert self.client is not None
        started = time.perf_counter()
        lease = await self.client.acquire(timeout=SESSION_TIMEOUT_S)
        try:
            results = await lease.run(
                steps.goto(self.url, timeout_s=SESSION_TIMEOUT_S),
                steps.text("h1", timeout_s=SESSION_TIMEOUT_S),
                timeout=SESSION_TIMEOUT_S,
            )
        finally:
            await lease.release()
        elapsed = time.perf_counter() - started
        if results[-1].text != EXPECTED:
            raise RuntimeError(f"{self.name} read {results[-1].text!r}")
        return elapsed

    async def health_check(self) -> float:
        assert self.client is not None
        health = health_pb2_grpc.HealthStub(self.client.channel)
        started = time.perf_counter()
        await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        return time.perf_counter() - started

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()


class BrokerRawStub:
    """The broker through a bare generated gRPC stub, as any other language would call it."""

    name = "broker (raw gRPC stub)"

    def __init__(self, broker: BrokerProcess, url: str) -> None:
        self.broker = broker
        self.url = url
        self.channel: grpc.aio.Channel | None = None
        self.stub: BrowserBrokerServiceAsyncStub | None = None

    async def start(self) -> None:
        self.channel = grpc.aio.insecure_channel(self.broker.address)
        self.stub = broker_pb2_grpc.BrowserBrokerServiceStub(self.channel)

    async def prepare(self) -> None:
        pass

    async def session(self) -> float:
        assert self.stub is not None
        started = time.perf_counter()
        grant = await self.stub.Acquire(pb.AcquireRequest(), timeout=SESSION_TIMEOUT_S)
        step_timeout = Duration(seconds=int(SESSION_TIMEOUT_S))
        try:
            run = pb.RunRequest(
                lease_id=grant.lease_id,
                token=grant.token,
                steps=[
                    pb.Step(goto=pb.Goto(url=self.url), timeout=step_timeout),
                    pb.Step(get_text=pb.GetText(selector="h1"), timeout=step_timeout),
                ],
            )
            last = None
            async for response in self.stub.Run(run, timeout=SESSION_TIMEOUT_S):
                last = response.step
        finally:
            await self.stub.Release(
                pb.ReleaseRequest(lease_id=grant.lease_id, token=grant.token), timeout=60
            )
        elapsed = time.perf_counter() - started
        if last is None or last.text != EXPECTED:
            raise RuntimeError(f"{self.name} read {last}")
        return elapsed

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close(None)


class DirectPlaywright:
    """Playwright in this process: one browser, a new context and page per session.

    With `warm_page`, each session's context and page are opened beforehand (untimed), so the
    timed part is the navigation, the read and the context's close: the floor for a lease cycle.
    """

    def __init__(self, playwright: Playwright, executable: str, url: str, warm_page: bool) -> None:
        self.playwright = playwright
        self.executable = executable
        self.url = url
        self.warm_page = warm_page
        self.name = (
            "Playwright, warm page (opened beforehand)"
            if warm_page
            else "Playwright, new context per session"
        )
        self.browser: Browser | None = None
        self.ready: list[tuple[BrowserContext, Page]] = []

    async def start(self) -> None:
        self.browser = await self.playwright.chromium.launch(
            executable_path=self.executable, args=[*SERVER_ARGS, *AS_ROOT_ARGS]
        )

    async def _open(self) -> tuple[BrowserContext, Page]:
        assert self.browser is not None
        context = await self.browser.new_context()
        return context, await context.new_page()

    async def prepare(self) -> None:
        if self.warm_page:
            self.ready.append(await self._open())

    async def session(self) -> float:
        started = time.perf_counter()
        context, page = self.ready.pop() if self.warm_page else await self._open()
        if self.warm_page:
            started = time.perf_counter()
        try:
            await visit(page, self.url, self.name)
        finally:
            await context.close()
        return time.perf_counter() - started

    async def stop(self) -> None:
        for context, _ in self.ready:
            await context.close()
        if self.browser is not None:
            await self.browser.close()


class PlaywrightRunServer:
    """`playwright run-server`, with `connect` per session (each connection launches a browser)."""

    name = "Playwright run-server (connect per session)"

    def __init__(self, playwright: Playwright, executable: str, url: str) -> None:
        self.playwright = playwright
        self.executable = executable
        self.url = url
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        # --unsafe: lets a client name the executable and its arguments, as this bench must.
        command = [sys.executable, "-m", "playwright", "run-server", "--unsafe"]
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the wait is threaded
            [*command, "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        await asyncio.to_thread(wait_for_port, self.port, self.proc, "run-server", 30)

    async def prepare(self) -> None:
        pass

    async def session(self) -> float:
        launch = {
            "executablePath": self.executable,
            "args": [*SERVER_ARGS, *AS_ROOT_ARGS],
            "headless": True,
        }
        started = time.perf_counter()
        browser = await self.playwright.chromium.connect(
            f"ws://127.0.0.1:{self.port}/",
            headers={"x-playwright-launch-options": json.dumps(launch)},
        )
        try:
            await visit(await browser.new_page(), self.url, self.name)
        finally:
            await browser.close()
        return time.perf_counter() - started

    async def stop(self) -> None:
        stop_process(self.proc)


class SeleniumGrid:
    """Selenium Grid 4 standalone over the W3C WebDriver protocol: new session, navigate,
    find the element, read its text, delete the session. One keep-alive connection per client."""

    name = "Selenium Grid 4 standalone"

    def __init__(self, jars: Path, executable: str, url: str, max_sessions: int) -> None:
        self.jars = jars
        self.executable = executable
        self.url = url
        self.max_sessions = max_sessions
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-grid-"))
        self.connections: list[http.client.HTTPConnection] = []

    async def start(self) -> None:
        driver = shutil.which("chromedriver")
        if driver is None:
            raise RuntimeError("chromedriver not found: run scripts/selenium.sh build")
        stereotype = {"browserName": "chrome", "goog:chromeOptions": {"binary": self.executable}}
        config = self.workdir / "grid.toml"
        config.write_text(
            "[node]\n"
            "detect-drivers = false\n"
            "selenium-manager = false\n"
            "override-max-sessions = true\n"
            f"max-sessions = {self.max_sessions}\n"
            "[[node.driver-configuration]]\n"
            'display-name = "chromium"\n'
            f"stereotype = '{json.dumps(stereotype)}'\n"
            f'webdriver-executable = "{driver}"\n'
            f"max-sessions = {self.max_sessions}\n"
        )
        log = (self.workdir / "grid.log").open("wb")
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the wait is threaded
            [
                *("java", "-cp", f"{self.jars}/*", "org.openqa.selenium.grid.Main", "standalone"),
                *("--host", "127.0.0.1", "--port", str(self.port), "--config", str(config)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        await asyncio.to_thread(wait_for_port, self.port, self.proc, "Selenium Grid", 60)
        for _ in range(300):
            if (await asyncio.to_thread(self._call, None, "GET", "/status"))["ready"]:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("Selenium Grid did not become ready")

    async def prepare(self) -> None:
        pass

    def _call(
        self, conn: http.client.HTTPConnection | None, method: str, path: str, body: Any = None
    ) -> Any:
        own = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=SESSION_TIMEOUT_S)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json; charset=utf-8"}
            own.request(method, path, body=data, headers=headers)
            response = own.getresponse()
            payload = json.loads(response.read())
            if response.status != 200:
                raise RuntimeError(f"Selenium Grid {method} {path}: {payload}")
            return payload["value"]
        finally:
            if conn is None:
                own.close()

    def _session(self) -> float:
        conn = (
            self.connections.pop()
            if self.connections
            else http.client.HTTPConnection("127.0.0.1", self.port, timeout=SESSION_TIMEOUT_S)
        )
        options = {
            "binary": self.executable,
            "args": ["--headless=new", *SERVER_ARGS, *AS_ROOT_ARGS],
        }
        capabilities = {"browserName": "chrome", "goog:chromeOptions": options}
        started = time.perf_counter()
        session_id = self._call(
            conn, "POST", "/session", {"capabilities": {"alwaysMatch": capabilities}}
        )["sessionId"]
        try:
            self._call(conn, "POST", f"/session/{session_id}/url", {"url": self.url})
            found = self._call(
                conn,
                "POST",
                f"/session/{session_id}/element",
                {"using": "css selector", "value": "h1"},
            )
            element = next(iter(found.values()))
            value = self._call(conn, "GET", f"/session/{session_id}/element/{element}/text")
        finally:
            self._call(conn, "DELETE", f"/session/{session_id}")
        elapsed = time.perf_counter() - started
        self.connections.append(conn)
        if value != EXPECTED:
            raise RuntimeError(f"{self.name} read {value!r}")
        return elapsed

    async def session(self) -> float:
        return await asyncio.to_thread(self._session)

    async def stop(self) -> None:
        for conn in self.connections:
            conn.close()
        stop_process(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)
