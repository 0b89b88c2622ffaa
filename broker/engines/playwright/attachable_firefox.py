"""Attachable Firefox over WebDriver BiDi: a stock Firefox the broker launches itself, whose one
BiDi session is the lease's attached client's.

Firefox serves one WebDriver BiDi session at a time: a second `session.new` is answered
"session not created: Maximum number of active sessions", and no second connection can join a
BiDi-only session (`/session/<id>` is 404). So the broker's Playwright cannot share the browser
with the tenant's client, and such a lease is attach-only: a Run on it is refused
(FAILED_PRECONDITION, `model.attach.ATTACH_ONLY`); the broker still owns the process and ends it.

The browser is started as Playwright starts a `moz-firefox` one (`--remote-debugging-port=0`,
`--headless`, `--profile` with prefs written to its `user.js`), through the same launcher
(browser user, filesystem jail) as every browser, with the lease's egress route as its proxy for
every request (prefs, loopback included), and its remote agent on loopback. The hub
(`broker/attach/bidi_hub.py`) opens the session at once, so nothing else on the host can.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from broker.attach.bidi_hub import BidiHub
from broker.attach.bounds import AttachLimits
from broker.attach.pipe import MAX_BROWSER_MESSAGE_BYTES, BrowserPipe
from broker.common.cleanup import TaskSet
from broker.egress.policy import EgressRules
from broker.egress.proxy import BlockListener, EgressGateway, EgressRoute
from broker.engines import downloads
from broker.engines.base import LostCallback, LostCause
from broker.engines.playwright.driver import BrowserProcesses
from broker.errors import AttachOnly, Unavailable
from broker.model.attach import ATTACH_ONLY, AttachProtocol
from broker.model.options import EngineName, Isolation
from broker.model.steps.base import Step, StepOutcome

log = logging.getLogger("broker.engines")

# Playwright's launcher checks a profile folder's name before handing it to the browser user.
PROFILE_PREFIX = "playwright_attach_firefox-"
LAUNCH_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 5.0
# The shell stays as the browser's parent (found below it). Nothing ends this Firefox when the
# broker dies (it has no pipe to the broker, as Chromium has), so the shell gets SIGTERM when the
# broker does (setpriv's parent-death signal) and kills the browser then.
_PARENT = 'trap \'kill -KILL "$child" 2>/dev/null; exit 143\' TERM; "$@" & child=$!; wait "$child"'
_DIES_WITH_BROKER = ["--pdeathsig", "TERM", "--"]
LOOPBACK = ("127.0.0.1", "localhost")  # where the remote agent may say it listens

# What Playwright 1.62 writes into a moz-firefox profile that matters on a server: nothing of
# the browser's own phones home, no first-run pages, no slow-script dialogs, no popup blocker.
FIREFOX_PREFS: dict[str, str | float | bool] = {
    "app.normandy.api_url": "",
    "app.update.disabledForTesting": True,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.search.update": False,
    "browser.sessionstore.resume_from_crash": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage": "about:blank",
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.newtabpage.enabled": False,
    "browser.tabs.warnOnClose": False,
    "browser.warnOnQuit": False,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.usage.uploadEnabled": False,
    "dom.disable_open_during_load": False,
    "dom.max_script_run_time": 0,
    "dom.max_chrome_script_run_time": 0,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.installDistroAddons": False,
    "media.gmp-manager.updateEnabled": False,
    "network.sntp.pools": "dummy.test",
    "privacy.trackingprotection.enabled": False,
    "remote.enabled": True,
    "signon.rememberSignons": False,
    "toolkit.startup.max_resumed_crashes": -1,
    "toolkit.telemetry.enabled": False,
    # Downloads without a behavior set land in the lease's folder too.
    "browser.download.folderList": 2,
    "browser.download.useDownloadDir": True,
}


def proxy_prefs(route: EgressRoute | None) -> dict[str, str | float | bool]:
    """Every request of every context through the lease's route (loopback too: the egress prefs
    let Firefox proxy it); no request without a proxy."""
    if route is None:
        return {}
    return {
        "network.proxy.type": 1,
        "network.proxy.http": "127.0.0.1",
        "network.proxy.http_port": route.port,
        "network.proxy.ssl": "127.0.0.1",
        "network.proxy.ssl_port": route.port,
        "network.proxy.socks": "",
        "network.proxy.no_proxies_on": "",
        "network.proxy.share_proxy_settings": False,
        "network.proxy.failover_direct": False,
    }


def write_prefs(profile: Path, prefs: Mapping[str, str | float | bool]) -> None:
    lines = [f"user_pref({json.dumps(k)}, {json.dumps(v)});" for k, v in prefs.items()]
    (profile / "user.js").write_text("\n".join(lines) + "\n")


class BidiSession:
    """An attach-only lease's Firefox: its process, its hub, its profile and its route."""

    engine = EngineName.FIREFOX
    isolation = Isolation.BROWSER

    def __init__(
        self,
        pipe: BrowserPipe,
        hub: BidiHub,
        profile: Path,
        route: EgressRoute | None,
        closed: Callable[[BidiSession], object],
        remote_port: int = 0,
    ) -> None:
        self.pipe = pipe
        self.remote_port = remote_port  # the remote agent's, on loopback
        self.hub = hub
        self._profile = profile
        self._route = route
        self._closed_callback = closed
        self._closing = False
        self._lost: LostCause | None = None
        self._on_lost: LostCallback | None = None
        self._watch = asyncio.get_running_loop().create_task(self._watch_exit())

    @property
    def alive(self) -> bool:
        return not self._closing and not self.pipe.exited.done() and not self.hub.gone.is_set()

    @property
    def lost_cause(self) -> LostCause | None:
        return self._lost

    @property
    def retiring(self) -> bool:
        return False

    def set_lost_callback(self, callback: LostCallback | None) -> None:
        self._on_lost = callback
        if callback is not None and self._lost is not None:
            callback(self, self._lost)

    async def _watch_exit(self) -> None:
        gone: asyncio.Future[Any] = asyncio.ensure_future(self.hub.gone.wait())
        exited: asyncio.Future[Any] = self.pipe.exited
        try:
            await asyncio.wait([gone, exited], return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if self._closing or self._lost is not None:
            return
        self._lost = LostCause.ENGINE_CRASHED
        log.warning("an attachable Firefox went away", extra={"pid": self.pipe.pid})
        if self._on_lost is not None:
            self._on_lost(self, self._lost)

    def bind_egress(self, rules: EgressRules, on_blocked: BlockListener | None) -> None:
        if self._route is not None:
            self._route.bind(rules, on_blocked)

    def keep_trace(self, path: str, max_bytes: int) -> None:
        return None  # the broker records nothing in a browser it does not drive

    async def execute(self, index: int, step: Step, timeout_s: float) -> StepOutcome:
        raise AttachOnly(ATTACH_ONLY[AttachProtocol.BIDI])

    async def reset_page(self) -> None:
        return None  # no work of the broker's runs in it

    async def close(self) -> None:
        """Its route forwards nothing, its process group is killed (the client's work stops
        with it), its profile and downloads are removed. Idempotent."""
        if self._closing:
            return
        self._closing = True
        try:
            if self._route is not None:
                await self._route.shut()
            await self.hub.shutdown()
            self.pipe.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.pipe.exited), CLOSE_TIMEOUT_S)
            self.pipe.close_pipes()
        finally:
            self._watch.cancel()
            with contextlib.suppress(OSError):
                await asyncio.to_thread(downloads.remove_claimed, self._profile)
            self._closed_callback(self)


class BidiBrowsers:
    """The attachable Firefoxes of one engine."""

    def __init__(
        self, executable: str, headless: bool, prefs: Mapping[str, str | float | bool]
    ) -> None:
        self._executable = executable
        self._headless = headless
        self._prefs = dict(prefs)
        self.limits = AttachLimits()
        self.processes: BrowserProcesses | None = None  # the engine's, to count these too
        self.egress: Callable[[], EgressGateway | None] = lambda: None
        self.sessions: set[BidiSession] = set()
        self._closers = TaskSet()

    async def open(self) -> BidiSession:
        gateway = self.egress()
        route = await gateway.open_route() if gateway is not None else None
        try:
            return await self._launch(route, gateway)
        except BaseException:
            if route is not None and gateway is not None:
                await asyncio.shield(gateway.close_route(route))
            raise

    async def _launch(
        self, route: EgressRoute | None, gateway: EgressGateway | None
    ) -> BidiSession:
        profile = downloads.new_claimed(PROFILE_PREFIX)
        folder = profile / "downloads"
        folder.mkdir()
        prefs = {**FIREFOX_PREFS, **self._prefs, **proxy_prefs(route)}
        prefs["browser.download.dir"] = str(folder)
        write_prefs(profile, prefs)
        setpriv = shutil.which("setpriv")
        argv = [setpriv, *_DIES_WITH_BROKER] if setpriv else []
        argv += ["/bin/sh", "-c", _PARENT, "sh", self._executable, "--remote-debugging-port=0"]
        argv += ["--headless"] if self._headless else ["--foreground"]
        argv += ["--profile", str(profile), "--no-remote"]
        env = {**os.environ, "MOZ_CRASHREPORTER_DISABLE": "1"}
        pipe = await BrowserPipe.spawn(argv, env)
        if self.processes is not None:
            self.processes.roots.add(pipe.pid)
        port = 0
        hub: BidiHub | None = None
        try:
            url, port = await self._listening(pipe, profile)
            if gateway is not None:
                gateway.policy.own_ports.add(port)  # pages never reach the remote agent
            socket = await connect(
                url + "/session",
                max_size=MAX_BROWSER_MESSAGE_BYTES,
                compression=None,
                ping_interval=None,
                open_timeout=LAUNCH_TIMEOUT_S,
            )
            hub = BidiHub(socket, str(folder), self.limits)
            await hub.start()
        except BaseException as exc:
            if hub is not None:  # (its socket, tasks and downloads folder)
                await asyncio.shield(hub.shutdown())
            pipe.kill()
            pipe.close_pipes()
            self._forget(pipe, profile)
            if gateway is not None and port:
                gateway.policy.own_ports.discard(port)
            if isinstance(exc, (OSError, TimeoutError, RuntimeError)):
                log.error(
                    "attachable Firefox failed to start: %s; its last words: %s",
                    exc,
                    " | ".join(pipe.stderr_tail),
                )
                raise Unavailable(
                    "firefox failed to launch (the broker's log has the cause)"
                ) from exc
            raise
        closed = self._closed(gateway, route, port)
        session = BidiSession(pipe, hub, profile, route, closed, port)
        self.sessions.add(session)
        return session

    async def _listening(self, pipe: BrowserPipe, profile: Path) -> tuple[str, int]:
        """The remote agent's address, from the file Firefox writes in its profile once it
        listens (its log line can scroll out of the tail kept of its stderr)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + LAUNCH_TIMEOUT_S
        found = profile / "WebDriverBiDiServer.json"
        while loop.time() < give_up and not pipe.exited.done():
            with contextlib.suppress(OSError, ValueError):
                server = json.loads(found.read_text())
                host, port = server["ws_host"], server["ws_port"]
                if host in LOOPBACK and type(port) is int and 0 < port < 65536:
                    return f"ws://{host}:{port}", port
            await asyncio.sleep(0.05)
        raise TimeoutError("Firefox's remote agent did not start listening on loopback")

    def _forget(self, pipe: BrowserPipe, profile: Path) -> None:
        if self.processes is not None:
            self.processes.roots.discard(pipe.pid)
        downloads.remove_claimed(profile)

    def _closed(
        self, gateway: EgressGateway | None, route: EgressRoute | None, port: int
    ) -> Callable[[BidiSession], object]:
        def closed(session: BidiSession) -> None:
            self.sessions.discard(session)
            if self.processes is not None:
                self.processes.roots.discard(session.pipe.pid)
            if gateway is not None:
                gateway.policy.own_ports.discard(port)
                if route is not None:
                    self._closers.spawn(gateway.close_route(route))

        return closed

    async def close(self) -> None:
        for session in list(self.sessions):
            with contextlib.suppress(Exception):
                await session.close()
        await self._closers.wait()
