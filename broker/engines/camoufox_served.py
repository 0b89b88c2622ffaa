"""Camoufox served over Playwright's own protocol: a `playwright` attachable lease's browser.

Camoufox's own server mode (`camoufox.server`) draws a browser's options with
`camoufox.launch_options` and hands them, camel-cased, to Playwright's `launchServer` with the
firefox (Juggler) browser type. A served Camoufox browser is launched the same way, through the
broker's own launch script (`playwright/served.py`): its options come from a fresh
`launch_options` (a fingerprint of its own, from the lease's CamoufoxOptions), and only what
carries the fingerprint is taken from them: the browser's arguments, its environment (the
fingerprint's CAMOU_CONFIG chunks, the prefs Camoufox applies at startup, its fontconfig) and its
Firefox prefs, with the broker's egress prefs over Camoufox's. The executable (through the
broker's launcher: browser user, jail), the proxy (the lease's egress route), the host, the
secret path and the downloads folder are the broker's (served.py puts them over these).
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser

from broker.engines.firefox import EGRESS_PREFS
from broker.errors import Unavailable

# Keys of camoufox.launch_options' answer served as they are (Python Playwright's name: Node's).
SERVED = {
    "args": "args",
    "env": "env",
    "firefox_user_prefs": "firefoxUserPrefs",
    "headless": "headless",
}
# Keys the broker sets itself: its launcher of Camoufox's executable, and the lease's route.
REPLACED = frozenset({"executable_path", "proxy"})


def served_options(from_options: dict[str, Any]) -> dict[str, Any]:
    """The launchServer options (Node's names) of one served Camoufox browser, from what
    `camoufox.launch_options` answered. A key it never answered before is refused by name
    rather than dropped: leaving part of a fingerprint out would launch a browser unlike the
    one the lease asked for."""
    unknown = sorted(set(from_options) - set(SERVED) - REPLACED)
    if unknown:
        raise Unavailable(
            f"camoufox's launch options carry {unknown[0][:64]!r}, which a browser served over "
            "Playwright's protocol cannot be given yet"
        )
    own: dict[str, Any] = {
        # As Python Playwright hands an environment to its driver: every value a string.
        "env": {
            str(name): str(value)
            for name, value in (from_options.get("env") or {}).items()
            if value is not None
        },
        "firefoxUserPrefs": {**(from_options.get("firefox_user_prefs") or {}), **EGRESS_PREFS},
    }
    if from_options.get("args"):
        own["args"] = [str(arg) for arg in from_options["args"]]
    if "headless" in from_options:
        own["headless"] = bool(from_options["headless"])
    return own


def with_camoufox_defaults(browser: Browser, from_options: dict[str, Any]) -> Browser:
    """What `camoufox.AsyncNewBrowser` adds to a browser it launches, for the contexts the
    broker opens in a served one: no viewport while the window is spoofed (Playwright's default
    viewport hangs Juggler then) and the host's own media features. A client attached over the
    protocol makes its contexts itself (docs/clients.md says what to pass)."""
    from camoufox.utils import (
        attach_no_viewport_default,
        attach_stock_media_defaults,
        spoofs_window_dimensions,
    )

    if spoofs_window_dimensions(from_options):
        attach_no_viewport_default(browser)
    attach_stock_media_defaults(browser)
    return browser
