"""Camoufox through the `camoufox` package: a fingerprint-spoofing Firefox driven over Juggler.

The package (`pip install 'browser-broker[camoufox]'`) is not enough: its browser, fingerprint
model, default addon (uBlock Origin) and GeoIP database come from `python -m camoufox fetch`.
Left to itself, the package downloads whatever is missing at launch time; the broker never lets
it. `create` checks the installation up front from files on disk only (no network, no launch)
and, when something is missing, returns an engine that is unavailable with the cause and the
fix, so Acquire answers FAILED_PRECONDITION while the daemon stays healthy.

Every dedicated browser (ISOLATION_BROWSER) is launched from fresh `camoufox.launch_options`,
so it gets a fingerprint of its own; contexts in the shared browser share its fingerprint. A
`playwright` attachable lease's browser is launched from such options too, served over
Playwright's protocol as Camoufox's own server mode serves one (camoufox_served.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Playwright

from broker.egress.proxy import EgressRoute
from broker.engines.base import Availability
from broker.engines.camoufox_served import served_options, with_camoufox_defaults
from broker.engines.firefox import EGRESS_PREFS
from broker.engines.playwright.engine import Launcher, PlaywrightEngine
from broker.engines.playwright.served import ServedBrowsers
from broker.engines.playwright.serving import ServingEngine
from broker.engines.sandbox import Sandbox
from broker.errors import EngineNotInstalled, FieldViolation, InvalidArgument, Unavailable
from broker.model.options import CamoufoxOptions, ContextOptions, EngineName

INSTALL_HINT = "pip install 'browser-broker[camoufox]'"
FETCH_HINT = "run `python -m camoufox fetch`"

UNSUPPORTED_CONTEXT = {
    "viewport": (
        "not supported by camoufox: the page takes the size of its fingerprinted window, and a "
        "viewport that differs hangs the browser; set camoufox.window instead"
    ),
}


class CamoufoxMissing(Exception):
    """Camoufox cannot run here; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class CamoufoxInstall:
    executable: str
    version: str
    ublock: bool  # the default addon is on disk (else it is left out rather than downloaded)
    geoip: bool  # the geoip extra and its database are installed


class CamoufoxEngine(ServingEngine):
    supports_pdf = False  # Juggler has no page.pdf()
    install: CamoufoxInstall | None = None
    headless = True

    async def _serve(
        self,
        served: ServedBrowsers,
        browser_options: CamoufoxOptions | None,
        options: ContextOptions,
        route: EgressRoute | None,
    ) -> Launcher:
        """A served browser's launcher: its launch options, and so its fingerprint, drawn
        for it alone from the lease's options."""
        install = self.install
        if install is None:  # (an unavailable engine is never asked to serve)
            raise Unavailable("Camoufox is not installed")
        try:
            async with asyncio.timeout(self._launch_timeout_s):
                from_options = await launch_options(
                    browser_options, options, self.headless, install
                )
        except TimeoutError as exc:
            raise Unavailable(
                f"camoufox launch preparation took over {self._launch_timeout_s:g}s"
            ) from exc
        own = served_options(from_options)

        async def launch(playwright: Playwright) -> Browser:
            browser = await served.launch(playwright, route, own)
            return with_camoufox_defaults(browser, from_options)

        return launch


def detect() -> CamoufoxInstall:
    """What `camoufox fetch` installed, from disk only; raises CamoufoxMissing with the fix."""
    try:
        import camoufox  # noqa: F401  (the package's own import checks the OS)
        from camoufox.addons import DefaultAddons, get_addon_path
        from camoufox.exceptions import CamoufoxNotInstalled, UnsupportedVersion
        from camoufox.fpgen_model import CUSTOM_MODEL_ENV, is_pinned
        from camoufox.multiversion import COMPAT_FLAG
        from camoufox.pkgman import INSTALL_DIR, camoufox_path, launch_path
        from camoufox.utils import resolve_verstr
    except ImportError as exc:
        raise CamoufoxMissing(
            f"camoufox package not installed ({exc.name or exc}): {INSTALL_HINT}"
        ) from exc
    except Exception as exc:
        raise CamoufoxMissing(
            f"camoufox package failed to load: {type(exc).__name__}: {exc}"
        ) from exc

    configured = os.environ.get("CAMOUFOX_EXECUTABLE_PATH", "").strip()
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise CamoufoxMissing(
                f"CAMOUFOX_EXECUTABLE_PATH={configured!r} is not an executable file"
            )
        executable = configured
    else:
        if INSTALL_DIR.is_dir() and any(INSTALL_DIR.iterdir()) and not COMPAT_FLAG.exists():
            # camoufox would delete this directory at launch; say so instead of doing it.
            raise CamoufoxMissing(
                f"Camoufox browser not installed: {FETCH_HINT} ({INSTALL_DIR} holds data "
                "of an older camoufox release, which fetch replaces)"
            )
        try:
            executable = launch_path(camoufox_path(download_if_missing=False))
        except CamoufoxNotInstalled as exc:
            raise CamoufoxMissing(
                f"Camoufox browser not installed: {FETCH_HINT} ({_package_detail(exc)})"
            ) from exc
        except UnsupportedVersion as exc:
            raise CamoufoxMissing(
                f"Camoufox browser too old for this camoufox package: {FETCH_HINT} "
                f"({_package_detail(exc)})"
            ) from exc
        except Exception as exc:
            raise CamoufoxMissing(
                f"Camoufox browser not usable: {FETCH_HINT} ({type(exc).__name__}: {exc})"
            ) from exc
    if not os.environ.get(CUSTOM_MODEL_ENV):
        try:
            pinned = is_pinned()
        except Exception as exc:
            raise CamoufoxMissing(
                f"Camoufox fingerprint model not usable: {FETCH_HINT} ({exc})"
            ) from exc
        if not pinned:
            raise CamoufoxMissing(f"Camoufox fingerprint model not installed: {FETCH_HINT}")
    version = "unknown version"
    with contextlib.suppress(Exception):
        version = resolve_verstr(Path(executable))
    ublock = os.path.exists(os.path.join(get_addon_path(DefaultAddons.UBO.name), "manifest.json"))
    return CamoufoxInstall(executable, version, ublock, _geoip_ready())


def _package_detail(exc: Exception) -> str:
    """The package's message without its own advice (the broker gives the full command)."""
    text = str(exc)
    for advice in ("Please run `camoufox fetch` to install.", "Please run `camoufox fetch`."):
        text = text.replace(advice, "")
    return text.strip().rstrip(".") or type(exc).__name__


def _geoip_ready() -> bool:
    try:
        from camoufox.geolocation import ALLOW_GEOIP, get_mmdb_path

        return bool(ALLOW_GEOIP) and get_mmdb_path().exists()
    except Exception:
        return False


def launch_kwargs(
    options: CamoufoxOptions | None,
    context: ContextOptions,
    headless: bool,
    install: CamoufoxInstall,
) -> dict[str, Any]:
    """Keyword arguments for `camoufox.launch_options`: nothing in them downloads anything."""
    from camoufox.addons import DefaultAddons

    kwargs: dict[str, Any] = {
        "headless": headless,
        "executable_path": install.executable,  # never resolved (or downloaded) by the package
        # Camoufox also applies these at startup (its CAMOU_PREFS), before any page or probe;
        # Playwright's own firefoxUserPrefs reach a browser only once Juggler is up.
        "firefox_user_prefs": dict(EGRESS_PREFS),
    }
    if not install.ublock:
        kwargs["exclude_addons"] = [DefaultAddons.UBO]  # else it is downloaded at launch
    if options is None:
        return kwargs
    if options.os:
        kwargs["os"] = list(options.os)
    if options.humanize:
        kwargs["humanize"] = options.humanize_max_s or True
    if options.block_images:
        kwargs["block_images"] = True
    if options.block_webrtc:
        kwargs["block_webrtc"] = True
    if options.block_webgl:
        kwargs["block_webgl"] = True
    if options.locales:
        kwargs["locale"] = list(options.locales)
    if options.window is not None:
        kwargs["window"] = (options.window.width, options.window.height)
    if options.geoip:
        kwargs["geoip"] = True
        if context.proxy is not None:
            # The public IP is looked up through the proxy, and the browser uses it too.
            proxy = {"server": context.proxy.server}
            for key in ("username", "password", "bypass"):
                if getattr(context.proxy, key):
                    proxy[key] = getattr(context.proxy, key)
            kwargs["proxy"] = proxy
    return kwargs


async def launch_options(
    options: CamoufoxOptions | None,
    context: ContextOptions,
    headless: bool,
    install: CamoufoxInstall,
) -> dict[str, Any]:
    """A fresh fingerprint and the Playwright launch options that carry it (off the loop)."""
    from camoufox import launch_options as camoufox_launch_options
    from camoufox.exceptions import InvalidIP, InvalidLocale, InvalidProxy, UnknownIPLocation

    if options is not None and options.geoip and not install.geoip:
        raise EngineNotInstalled(
            "camoufox",
            f"camoufox.geoip needs the GeoIP database: {FETCH_HINT} "
            "(and the geoip extra: pip install 'camoufox[geoip]')",
        )
    kwargs = launch_kwargs(options, context, headless, install)
    try:
        result: dict[str, Any] = await asyncio.to_thread(camoufox_launch_options, **kwargs)
    except InvalidLocale as exc:
        raise InvalidArgument([FieldViolation("camoufox.locales", str(exc))]) from exc
    except (InvalidIP, UnknownIPLocation, InvalidProxy) as exc:
        raise Unavailable(f"camoufox geoip lookup failed: {exc}") from exc
    except Exception as exc:
        raise Unavailable(
            f"camoufox could not prepare a browser: {type(exc).__name__}: {exc}"
        ) from exc
    return result


def create(headless: bool = True, sandbox: Sandbox | None = None) -> PlaywrightEngine:
    """The Camoufox engine; unavailable (never raising, never downloading) when not installed."""
    sandbox = sandbox or Sandbox(enabled=True)
    if sandbox.problem:
        return _unavailable_engine(sandbox.problem)
    try:
        install = detect()
    except CamoufoxMissing as exc:
        return _unavailable_engine(str(exc))
    except Exception as exc:  # a check must not take the daemon down
        return _unavailable_engine(f"Camoufox check failed: {type(exc).__name__}: {exc}")

    async def prepare(options: CamoufoxOptions | None, context: ContextOptions) -> Launcher:
        from camoufox import AsyncNewBrowser

        from_options = await launch_options(options, context, headless, install)
        from_options["firefox_user_prefs"] = {
            **from_options.get("firefox_user_prefs", {}),
            **EGRESS_PREFS,
        }
        if from_options.get("executable_path"):
            from_options["executable_path"] = sandbox.executable(from_options["executable_path"])

        async def launch(playwright: Playwright) -> Browser:
            async def start(extra: dict[str, Any]) -> Browser:
                options = {**from_options, **extra}
                if "env" in extra and from_options.get("env"):  # Camoufox's fingerprint
                    options["env"] = {**extra["env"], **from_options["env"]}
                # AsyncNewBrowser, not firefox.launch: it adds the defaults Camoufox needs to
                # every new context (no viewport while the window is spoofed, stock media).
                browser: Browser = await AsyncNewBrowser(playwright, from_options=options)
                return browser

            return await sandbox.launch(start)

        return launch

    async def launch_shared(playwright: Playwright) -> Browser:
        launcher = await prepare(None, ContextOptions())
        return await launcher(playwright)

    notes = []
    if not install.ublock:
        notes.append("without uBlock Origin")
    if not install.geoip:
        notes.append("no GeoIP database (camoufox.geoip unavailable)")
    detail = f"{install.executable} (Camoufox {install.version}) over juggler"
    if notes:
        detail += f"; {', '.join(notes)}: {FETCH_HINT}"
    engine = CamoufoxEngine(
        EngineName.CAMOUFOX,
        launch_shared,
        install.executable,
        Availability(True, detail),
        prepare_launcher=prepare,
        unsupported_context=UNSUPPORTED_CONTEXT,
    )
    engine.install = install
    engine.headless = headless
    # Leases attached over Playwright's protocol: a launchServer of their own (served.py), with
    # the firefox (Juggler) browser type, from launch options drawn per browser (_serve).
    executable = sandbox.executable(install.executable)
    served = ServedBrowsers("firefox", executable, {"headless": headless}, sandbox)
    engine.serve_playwright(served)
    return engine


def _unavailable_engine(detail: str) -> CamoufoxEngine:
    return CamoufoxEngine(EngineName.CAMOUFOX, _unavailable, "", Availability(False, detail))


async def _unavailable(playwright: Playwright) -> Browser:
    raise RuntimeError("Camoufox is not installed")
