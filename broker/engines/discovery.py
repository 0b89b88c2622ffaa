"""Finding a browser executable: an explicit setting, then Playwright's own, then the system's."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

SYSTEM_NAMES = {
    "chromium": ["chromium", "chromium-browser", "google-chrome-stable", "google-chrome"],
    "firefox": ["firefox-esr", "firefox"],
}


@dataclass(frozen=True)
class BrowserExecutable:
    path: str
    # "setting", "playwright" (a Playwright-managed build) or "system" (an OS package)
    source: str

    def describe(self) -> str:
        return f"{self.path} ({self.source})"


class BrowserNotFound(Exception):
    pass


# Where `playwright install` puts each browser, below its browsers directory.
_MANAGED_LAYOUT = {
    "chromium": ["chromium-{rev}/chrome-linux64/chrome", "chromium-{rev}/chrome-linux/chrome"],
    "firefox": ["firefox-{rev}/firefox/firefox"],
}


def playwright_managed(kind: str) -> str | None:
    """The executable `playwright install KIND` put in place for this Playwright, if it is there."""
    import playwright

    manifest = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    try:
        browsers = json.loads(manifest.read_text())["browsers"]
        revision = next(b["revision"] for b in browsers if b["name"] == kind)
    except (OSError, ValueError, KeyError, StopIteration):
        return None
    env_dir = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
    base = Path(env_dir) if env_dir and env_dir != "0" else Path.home() / ".cache" / "ms-playwright"
    for layout in _MANAGED_LAYOUT[kind]:
        candidate = base / layout.format(rev=revision)
        if candidate.is_file():
            return str(candidate)
    return None


def find_browser(kind: str, explicit: str | None, managed: str | None) -> BrowserExecutable:
    """Resolve the executable for `kind` ("chromium" or "firefox") in the documented order."""
    if explicit:
        if not (Path(explicit).is_file() and os.access(explicit, os.X_OK)):
            raise BrowserNotFound(
                f"configured {kind} executable {explicit!r} is not an executable file"
            )
        return BrowserExecutable(explicit, "setting")
    if managed:
        return BrowserExecutable(managed, "playwright")
    for name in SYSTEM_NAMES[kind]:
        found = shutil.which(name)
        if found:
            return BrowserExecutable(found, "system")
    raise BrowserNotFound(
        f"no {kind} found: run `python -m playwright install {kind}`, install the system package "
        f"({' or '.join(SYSTEM_NAMES[kind][:2])}), or set BROKER_{kind.upper()}_PATH"
    )
