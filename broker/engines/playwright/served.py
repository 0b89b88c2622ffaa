"""Browsers served over Playwright's own protocol: a `playwright` attachable lease's browser.

Each is launched by `launch_server.js`, run with the node and the playwright-core of Python
Playwright's own driver (so a client's version is checked against the very server it reaches):
`browserType.launchServer` on a loopback port, at a 256-bit random path that is sent on the
script's stdin and never shown to anyone. The browser is started with the engine's own
executable (through the same launcher: browser user, filesystem jail), flags and downloads
folder, and with the lease's egress route as its proxy, so every context anyone opens in it
goes through the route. The broker's Runs reach it with `browser_type.connect` on that endpoint;
attached clients reach it only through a PlaywrightHub, which judges every call they make.

When the broker's Playwright lets go of the browser (the lease ended), the script is told to
stop (SIGTERM: it kills the browser's process group), then killed; the browser's exit ends the
script, and with it the hub (`gone`). The script also kills the browser when its stdin closes,
so a broker that dies leaves no browser behind.

Playwright makes the browser's profile in the script's temporary directory and removes it only
after it has told the script the browser closed, by when the script may have exited: each script
gets a temporary directory of its own (TMPDIR), removed with the browser's other folders, so no
profile (the tenant's cookies, cache, history) outlives its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright._impl._driver import compute_driver_executable
from playwright.async_api import Browser, Playwright
from playwright.async_api import Error as PlaywrightError

from broker.attach.bounds import AttachLimits
from broker.attach.playwright_hub import PlaywrightHub
from broker.common.cleanup import TaskSet
from broker.egress.proxy import EgressRoute
from broker.engines import downloads
from broker.engines.playwright.driver import BrowserProcesses
from broker.engines.sandbox import DOWNLOADS_ENV, SERVED_TMP_PREFIX, Sandbox
from broker.errors import Unavailable

log = logging.getLogger("broker.engines")

SCRIPT = Path(__file__).with_name("launch_server.js")
STOP_GRACE_S = 5.0  # after SIGTERM, before the script's process group is killed


def driver_package() -> tuple[str, Path]:
    """The node of Python Playwright's driver, and its playwright-core package."""
    node, cli = compute_driver_executable()
    return node, Path(cli).parent


def server_version() -> str:
    package = driver_package()[1] / "package.json"
    return str(json.loads(package.read_text())["version"])


@dataclass(eq=False)
class Served:
    """One browser behind a launchServer of its own."""

    process: asyncio.subprocess.Process
    hub: PlaywrightHub | None = None
    folders: list[Path] = field(default_factory=list)
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


class ServedBrowsers:
    """The browsers one engine serves over Playwright's protocol."""

    def __init__(
        self,
        browser_type: str,  # "chromium" or "firefox": the launchServer to call
        executable: str,
        launch_options: dict[str, Any],  # args, headless, channel, firefoxUserPrefs...
        sandbox: Sandbox,
    ) -> None:
        self._type = browser_type
        self._executable = executable
        self._options = launch_options
        self._sandbox = sandbox
        self.limits = AttachLimits()
        self.launch_timeout_s = 30.0
        self.processes: BrowserProcesses | None = None  # the engine's, to count these too
        self._served: dict[Browser, Served] = {}
        self._stops = TaskSet()
        self._version = ""

    def hub_of(self, browser: Browser) -> PlaywrightHub | None:
        served = self._served.get(browser)
        return served.hub if served is not None else None

    async def launch(
        self,
        playwright: Playwright,
        route: EgressRoute | None,
        own: dict[str, Any] | None = None,  # this browser's own launch options (Camoufox's)
    ) -> Browser:
        if not self._version:
            self._version = server_version()
        user = self._sandbox.user
        folder = downloads.new_folder(user.uid if user else None, user.gid if user else None)
        # Files a client uploads are written here by Playwright's server (createTempFiles) and
        # read by the browser: inside the downloads folder, the one folder its jail binds.
        artifacts = folder / "uploads"
        artifacts.mkdir()
        options: dict[str, Any] = {
            **self._options,
            **(own or {}),
            "executablePath": self._executable,
            "wsPath": "/" + secrets.token_urlsafe(32),
            "host": "127.0.0.1",
            "port": 0,
            "downloadsPath": str(folder),
            "artifactsDir": str(artifacts),
            "handleSIGINT": False,
            "handleSIGTERM": False,
            "handleSIGHUP": False,
            "timeout": self.launch_timeout_s * 1000,
        }
        if route is not None:
            options["proxy"] = {"server": route.server_url}
        if user is not None or self._sandbox.jail is not None:
            options["env"] = {**os.environ, **options.get("env", {}), DOWNLOADS_ENV: str(folder)}
        # The browser's environment is the broker's, not the script's (whose TMPDIR is below).
        options.setdefault("env", dict(os.environ))
        scratch = downloads.new_claimed(SERVED_TMP_PREFIX)  # (swept after a crash)
        os.chmod(scratch, 0o711)  # the browser user reaches its profile inside, lists nothing
        node, package = driver_package()
        try:
            process = await asyncio.create_subprocess_exec(
                node,
                str(SCRIPT),
                str(package),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "TMPDIR": str(scratch)},
                start_new_session=True,  # its own process group: killed with all it started
            )
        except BaseException:
            for made in (folder, scratch):
                downloads.remove_claimed(made)
            raise
        served = Served(process, folders=[folder, scratch])
        if self.processes is not None:
            self.processes.roots.add(process.pid)
        try:
            endpoint = await self._start(served, {"browser": self._type, "options": options})
            served.hub = PlaywrightHub(
                endpoint, route.server_url if route else "", self.limits, self._version
            )
            served.hub.watch_downloads(str(folder))
            served.tasks.append(asyncio.ensure_future(self._watch(served)))
            browser_type = getattr(playwright, self._type)
            browser: Browser = await browser_type.connect(
                endpoint, timeout=self.launch_timeout_s * 1000
            )
        except BaseException as exc:
            self._stops.spawn(self._stop(served))
            if isinstance(exc, (OSError, TimeoutError, ValueError, PlaywrightError)):
                log.error(
                    "served browser failed to start: %s; its last words: %s",
                    exc,
                    " | ".join(served.stderr_tail),
                )
                raise Unavailable(
                    f"{self._type} failed to launch (the broker's log has the cause)"
                ) from exc
            raise
        self._served[browser] = served
        browser.on("disconnected", lambda gone: self._let_go(gone))
        return browser

    async def _start(self, served: Served, config: dict[str, Any]) -> str:
        """Hand the script its configuration; the endpoint it serves at."""
        process = served.process
        assert process.stdin is not None and process.stdout is not None
        served.tasks.append(asyncio.ensure_future(self._drain(served)))
        process.stdin.write(json.dumps(config).encode() + b"\n")
        await process.stdin.drain()
        line = await asyncio.wait_for(process.stdout.readline(), self.launch_timeout_s + 5)
        answer = json.loads(line or b"{}")
        endpoint = answer.get("wsEndpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith("ws://127.0.0.1:"):
            raise ValueError(str(answer.get("error") or "the launch script said nothing")[:2000])
        return endpoint

    @staticmethod
    async def _drain(served: Served) -> None:
        assert served.process.stderr is not None
        async for line in served.process.stderr:
            served.stderr_tail.append(line.decode(errors="replace").rstrip()[:500])

    @staticmethod
    async def _watch(served: Served) -> None:
        await served.process.wait()
        if served.hub is not None:
            served.hub.gone.set()

    def _let_go(self, browser: Browser) -> None:
        served = self._served.pop(browser, None)
        if served is not None:
            self._stops.spawn(self._stop(served))

    async def _stop(self, served: Served) -> None:
        """Stop the browser and its server, kill what is left, remove its folders."""
        process = served.process
        try:
            if served.hub is not None:
                await served.hub.shutdown()
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), STOP_GRACE_S)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, signal.SIGKILL)
                    await process.wait()
        finally:
            if process.stdin is not None:
                process.stdin.close()
            for task in served.tasks:
                task.cancel()
            if served.hub is not None:
                served.hub.gone.set()
            if self.processes is not None:
                self.processes.roots.discard(process.pid)
            for folder in served.folders:
                await asyncio.to_thread(downloads.remove_claimed, folder)

    async def stopped(self) -> None:
        """Every served browser let go of has exited (for the engine's close)."""
        await self._stops.wait()
