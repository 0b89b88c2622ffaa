"""Attachable Chromium: a dedicated browser the broker launches itself, on a pipe only it holds.

Playwright launches a browser on a pipe of its own driver's, which nobody else can share. An
attachable lease's browser is started here instead, with `--remote-debugging-pipe`, through the
same launcher (browser user, filesystem jail) and with the same flags Playwright would pass;
its pipe goes to a `CdpHub`, and the broker's Playwright reaches it with `connect_over_cdp` on a
one-shot loopback endpoint, so Runs work on the lease as on any other. The browser's own egress
route is its `--proxy-server`, so every context it opens, whoever opens it, goes through it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from playwright.async_api import Browser, Playwright

from broker.attach.bounds import AttachLimits
from broker.attach.endpoint import TrustedEndpoint
from broker.attach.hub import CdpHub, HubError
from broker.attach.pipe import BrowserPipe
from broker.common.cleanup import TaskSet
from broker.egress.proxy import EgressRoute
from broker.engines import downloads
from broker.engines.base import Session
from broker.engines.playwright.driver import BrowserProcesses
from broker.engines.playwright.engine import Launcher, PlaywrightEngine
from broker.engines.playwright.session import PlaywrightSession
from broker.errors import InvalidArgument, Unavailable
from broker.model.attach import AttachOptions
from broker.model.options import BrowserOptions, ContextOptions, Isolation

log = logging.getLogger("broker.engines")

# What Playwright 1.62 passes to every Chromium it launches (chromiumSwitches, and its headless
# and software-rendering flags), so an attachable browser behaves like the others. Its disabled
# features are merged with the broker's own (SERVER_ARGS) into one --disable-features.
PLAYWRIGHT_SWITCHES = (
    "--disable-field-trial-config",
    "--disable-background-networking",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-back-forward-cache",
    "--disable-breakpad",
    "--disable-client-side-phishing-detection",
    "--disable-component-extensions-with-background-pages",
    "--disable-component-update",
    "--no-default-browser-check",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--enable-features=CDPScreenshotNewSurface",
    "--allow-pre-commit-input",
    "--disable-hang-monitor",
    "--disable-ipc-flooding-protection",
    "--disable-popup-blocking",
    "--disable-prompt-on-repost",
    "--disable-renderer-backgrounding",
    "--force-color-profile=srgb",
    "--metrics-recording-only",
    "--no-first-run",
    "--password-store=basic",
    "--use-mock-keychain",
    "--no-service-autorun",
    "--export-tagged-pdf",
    "--disable-search-engine-choice-screen",
    "--unsafely-disable-devtools-self-xss-warnings",
    "--disable-infobars",
    "--disable-sync",
    "--enable-unsafe-swiftshader",
)
PLAYWRIGHT_DISABLED_FEATURES = (
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "BoundaryEventDispatchTracksNodeRemoval",
    "DestroyProfileOnBrowserClose",
    "DialMediaRouteProvider",
    "GlobalMediaControls",
    "HttpsUpgrades",
    "LensOverlay",
    "MediaRouter",
    "PaintHolding",
    "ThirdPartyStoragePartitioning",
    "BlockOriginHeaderModificationOnRedirect",
    "Translate",
    "AutoDeElevate",
    "OptimizationHints",
)
HEADLESS_SWITCHES = (
    "--headless",
    "--hide-scrollbars",
    "--mute-audio",
    "--blink-settings=primaryHoverType=2,availableHoverTypes=2,primaryPointerType=4,"
    "availablePointerTypes=4",
)
# Playwright's launcher checks a profile folder's name before handing it to the browser user.
PROFILE_PREFIX = "playwright_attach_profile-"
# The shell stays as the browser's parent (no tail exec), so the browser is found below it.
_PARENT = '"$@"; exit $?'

_ATTACHING: contextvars.ContextVar[AttachOptions | None] = contextvars.ContextVar(
    "broker_attaching", default=None
)


def launch_flags(
    server_args: Sequence[str], headless: bool, sandbox: bool, route: EgressRoute | None
) -> list[str]:
    features = list(PLAYWRIGHT_DISABLED_FEATURES)
    flags = list(PLAYWRIGHT_SWITCHES)
    for arg in server_args:
        if arg.startswith("--disable-features="):
            features += [f for f in arg.partition("=")[2].split(",") if f not in features]
        else:
            flags.append(arg)
    flags.append("--disable-features=" + ",".join(features))
    if headless:
        flags += HEADLESS_SWITCHES
    if not sandbox:
        flags.append("--no-sandbox")
    if route is not None:
        # Chromium sends loopback straight out unless told not to: through the route too.
        flags += [f"--proxy-server={route.server_url}", "--proxy-bypass-list=<-loopback>"]
    return flags


class AttachedBrowsers:
    """The attachable browsers of one engine: launched on a pipe, each with its hub."""

    def __init__(
        self, executable: str, server_args: Sequence[str], headless: bool, sandbox: bool
    ) -> None:
        self._executable = executable
        self._server_args = list(server_args)
        self._headless = headless
        self._sandbox = sandbox
        self.limits = AttachLimits()
        self.processes: BrowserProcesses | None = None  # the engine's, to count these too
        self._hubs: dict[Browser, CdpHub] = {}
        self._stops = TaskSet()

    def hub_of(self, browser: Browser) -> CdpHub | None:
        return self._hubs.get(browser)

    def launcher(self, route: EgressRoute | None, traced: bool = False) -> Launcher:
        async def launch(playwright: Playwright) -> Browser:
            return await self._launch(playwright, route, traced)

        return launch

    async def _launch(
        self, playwright: Playwright, route: EgressRoute | None, traced: bool
    ) -> Browser:
        profile = downloads.new_claimed(PROFILE_PREFIX)
        (profile / "downloads").mkdir()  # attached clients' downloads (the hub's folder)
        # The broker's own Playwright's artifacts folder, where a download step's file is
        # written: made before the launch, so it is handed to the browser user with the profile
        # and is inside the jail's bind (Playwright would make one in the host's /tmp, which the
        # jailed browser cannot see). Not for a traced lease: Playwright writes a trace's files
        # there too, as the daemon's user, and a folder the browser's user owns is no place for
        # that (nor is it where the broker looks for them); its download step is not served.
        artifacts = None if traced else profile / "artifacts"
        if artifacts is not None:
            artifacts.mkdir()
        argv = [
            "/bin/sh",
            "-c",
            _PARENT,
            "sh",
            self._executable,
            *launch_flags(self._server_args, self._headless, self._sandbox, route),
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "--no-startup-window",
        ]
        pipe = await BrowserPipe.spawn(argv, dict(os.environ))
        if self.processes is not None:
            self.processes.roots.add(pipe.pid)
        hub = CdpHub(pipe, str(profile / "downloads"), self.limits)
        endpoint = TrustedEndpoint(hub, lambda: self._stops.spawn(self._stop(hub, profile)))
        try:
            await hub.start()
            browser = await playwright.chromium.connect_over_cdp(
                await endpoint.open(), artifacts_dir=artifacts
            )
        except BaseException as exc:
            endpoint.close()
            pipe.kill()
            self._stops.spawn(self._stop(hub, profile))
            if isinstance(exc, (HubError, OSError, TimeoutError)):
                log.error(
                    "attachable browser failed to start: %s; its last words: %s",
                    exc,
                    " | ".join(pipe.stderr_tail),
                )
                raise Unavailable(
                    "chromium failed to launch (the broker's log has the cause)"
                ) from exc
            raise
        self._hubs[browser] = hub

        def forget(gone: Browser) -> None:
            self._hubs.pop(gone, None)

        browser.on("disconnected", forget)
        return browser

    async def _stop(self, hub: CdpHub, profile: Path) -> None:
        """After the broker's Playwright let go of the browser (or its start failed): close it,
        kill what is left, and remove its profile."""
        try:
            await hub.shutdown()
        finally:
            if self.processes is not None:
                self.processes.roots.discard(hub.pipe.pid)
            await asyncio.to_thread(downloads.remove_claimed, profile)

    async def stopped(self) -> None:
        """Every attachable browser closed has exited (for the engine's close)."""
        await self._stops.wait()


class AttachableEngine(PlaywrightEngine):
    """A Playwright engine that can also open attachable sessions (Chromium)."""

    attached: AttachedBrowsers | None = None

    def serve_attached(self, attached: AttachedBrowsers) -> None:
        attached.processes = self._processes
        self.attached = attached

    def attach_hub(self, session: Session) -> CdpHub | None:
        """The hub of an attachable session's browser (None: not attachable, or gone)."""
        if self.attached is None or not isinstance(session, PlaywrightSession):
            return None
        return self.attached.hub_of(session.browser)

    async def open_session(
        self,
        isolation: Isolation,
        options: ContextOptions,
        browser_options: BrowserOptions | None = None,
        *,
        tenant: str = "",
        attach: AttachOptions | None = None,
    ) -> PlaywrightSession:
        if attach is None or self.attached is None:
            return await super().open_session(
                isolation, options, browser_options, tenant=tenant, attach=attach
            )
        if isolation is not Isolation.BROWSER:
            raise InvalidArgument.single("isolation", "an attachable lease needs its own browser")
        attaching = _ATTACHING.set(attach)
        try:
            return await super().open_session(isolation, options, browser_options, tenant=tenant)
        finally:
            _ATTACHING.reset(attaching)

    async def _prepare(
        self,
        browser_options: BrowserOptions | None,
        options: ContextOptions,
        route: EgressRoute | None = None,
    ) -> Launcher | None:
        if _ATTACHING.get() is not None and self.attached is not None:
            return self.attached.launcher(route, traced=options.trace)
        return await super()._prepare(browser_options, options, route)

    async def close(self) -> None:
        await super().close()
        if self.attached is not None:
            await self.attached.stopped()
