"""Browserless (the npm package, pinned in bench/browserless) as a peer in bench.peers.

One Browserless process on loopback, on the bench's Chromium (Debian's: `bench/browserless/
serve.mjs` links the path Browserless launches to it; nothing is downloaded), with a token. Its
own limits are set to each level's client count: CONCURRENT (sessions at once) and QUEUED
(requests that may wait), so the process is restarted when the level changes. Two ways in:

- `/function` (REST): one POST runs the session's code in a browser Browserless launches for it
  and closes after (goto, read the h1, return it);
- CDP: Playwright's `connect_over_cdp` per session (Browserless launches a browser for each
  connection and closes it when the client disconnects): new context, goto, read h1, close.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlencode

from playwright.async_api import Playwright

from bench.peer_systems import (
    AS_ROOT_ARGS,
    EXPECTED,
    SESSION_TIMEOUT_S,
    free_port,
    stop_process,
    visit,
    wait_for_port,
)
from broker.engines.chromium import SERVER_ARGS

BROWSERLESS_DIR = Path(__file__).resolve().parent / "browserless"
PACKAGE = BROWSERLESS_DIR / "node_modules" / "@browserless.io" / "browserless" / "package.json"
FUNCTION_CODE = """
export default async function ({ page, context }) {
  await page.goto(context.url, { timeout: context.timeoutMs });
  const h1 = await page.$eval('h1', (element) => element.textContent);
  return { data: h1, type: 'text/plain' };
}
"""


@runtime_checkable
class Resizable(Protocol):
    async def resize(self, clients: int) -> bool:
        """Sets the system's own limits for `clients`; True if it restarted (warm it up)."""
        ...


def browserless_version() -> str:
    if not PACKAGE.is_file():
        raise RuntimeError(f"Browserless is not installed ({PACKAGE}): run scripts/polyglot.sh")
    version: str = json.loads(PACKAGE.read_text())["version"]
    return version


def launch_args() -> list[str]:
    """The bench's Chromium flags. Browserless adds --disable-features=LocalNetworkAccessChecks
    before them, and a later --disable-features replaces an earlier one: it is kept in ours."""
    args = [*SERVER_ARGS, *AS_ROOT_ARGS]
    return [
        f"{arg},LocalNetworkAccessChecks" if arg.startswith("--disable-features=") else arg
        for arg in args
    ]


class BrowserlessServer:
    """`node bench/browserless/serve.mjs` on loopback, restarted with each level's limits."""

    def __init__(self, executable: str) -> None:
        self.version = browserless_version()
        self.executable = executable
        self.token = secrets.token_urlsafe(16)
        self.port = 0
        self.clients = 0
        self.generation = 0  # restarts so far: a system warms up again after one
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-browserless-"))

    def query(self) -> str:
        launch = {"headless": True, "args": launch_args()}
        return urlencode({"token": self.token, "launch": json.dumps(launch)})

    async def resize(self, clients: int) -> None:
        if clients != self.clients or self.proc is None or self.proc.poll() is not None:
            await asyncio.to_thread(self._restart, clients)
            self.generation += 1

    def _restart(self, clients: int) -> None:
        stop_process(self.proc)
        self.proc = None
        self.port = free_port()
        run = self.workdir / f"run-{clients}"
        for sub in ("browsers", "data", "downloads"):
            (run / sub).mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "CHROMIUM_PATH": self.executable,
            "PLAYWRIGHT_BROWSERS_PATH": str(run / "browsers"),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "TOKEN": self.token,
            "CONCURRENT": str(clients),
            "QUEUED": str(clients),
            "TIMEOUT": str(int(SESSION_TIMEOUT_S * 1000)),  # a queued session waits, too
            "DATA_DIR": str(run / "data"),
            "DOWNLOAD_DIR": str(run / "downloads"),
            "METRICS_JSON_PATH": str(run / "metrics.json"),
            "DEBUG": "browserless*:error,browserless*:warn",
        }
        with (self.workdir / "browserless.log").open("ab") as log:
            self.proc = subprocess.Popen(
                ["node", "serve.mjs"],
                cwd=BROWSERLESS_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_port(self.port, self.proc, "Browserless", 120)
        except RuntimeError as exc:
            tail = (self.workdir / "browserless.log").read_text(errors="replace")[-1500:]
            raise RuntimeError(f"{exc}; its log ends:\n{tail}") from exc
        self.clients = clients

    async def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)


class BrowserlessPeer:
    """A way into the shared Browserless process; it warms up again after a restart."""

    name = "Browserless"

    def __init__(self, server: BrowserlessServer, url: str) -> None:
        self.server = server
        self.url = url
        self.generation = 0

    async def start(self) -> None:
        await self.resize(max(1, self.server.clients))

    async def resize(self, clients: int) -> bool:
        await self.server.resize(clients)
        fresh = self.generation != self.server.generation
        self.generation = self.server.generation
        return fresh

    async def prepare(self) -> None:
        pass

    async def stop(self) -> None:
        await self.server.stop()


class BrowserlessFunction(BrowserlessPeer):
    """Browserless's REST API: one POST /function per session, each on a connection of its own
    (Browserless closes an idle keep-alive connection after 5 s)."""

    name = "Browserless /function (REST)"

    def _session(self) -> float:
        context = {"url": self.url, "timeoutMs": int(SESSION_TIMEOUT_S * 1000)}
        body = json.dumps({"code": FUNCTION_CODE, "context": context}).encode()
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=SESSION_TIMEOUT_S)
        try:
            conn.request(
                "POST",
                f"/function?{self.server.query()}",
                body=body,
                headers={"Content-Type": "application/json"},
            )
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status}: {payload[:300]!r}")
        value: Any = json.loads(payload).get("data")
        if value != EXPECTED:
            raise RuntimeError(f"{self.name} read {value!r}")
        return elapsed

    async def session(self) -> float:
        return await asyncio.to_thread(self._session)


class BrowserlessCdp(BrowserlessPeer):
    """Browserless over CDP: Playwright's connect_over_cdp per session."""

    name = "Browserless, connect_over_cdp per session"

    def __init__(self, server: BrowserlessServer, playwright: Playwright, url: str) -> None:
        super().__init__(server, url)
        self.playwright = playwright

    async def session(self) -> float:
        endpoint = f"ws://127.0.0.1:{self.server.port}?{self.server.query()}"
        started = time.perf_counter()
        browser = await self.playwright.chromium.connect_over_cdp(
            endpoint, timeout=SESSION_TIMEOUT_S * 1000
        )
        try:
            context = await browser.new_context()
            await visit(await context.new_page(), self.url, self.name)
        finally:
            await browser.close()
        return time.perf_counter() - started
