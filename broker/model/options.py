"""What a lease asks of its browser: engine, isolation, context options, launch options.

Plain values shared by the core and the engines (neither owns them), so importing them creates
no dependency between the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class EngineName(StrEnum):
    CHROMIUM = "chromium"
    FIREFOX = "firefox"
    CAMOUFOX = "camoufox"


class Isolation(StrEnum):
    CONTEXT = "context"
    BROWSER = "browser"


@dataclass(frozen=True)
class Viewport:
    width: int
    height: int


@dataclass(frozen=True)
class ProxySettings:
    server: str
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    bypass: str = ""


@dataclass(frozen=True)
class Geolocation:
    latitude: float
    longitude: float
    accuracy: float = 0.0


@dataclass(frozen=True)
class ContextOptions:
    """Browser context options; the default (all empty) may be served from the warm pool."""

    viewport: Viewport | None = None
    user_agent: str = ""
    locale: str = ""
    timezone_id: str = ""
    # Header values may hold credentials: kept out of reprs (and so out of logs).
    extra_http_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    proxy: ProxySettings | None = None
    ignore_https_errors: bool = False
    java_script_disabled: bool = False
    # Playwright storage state JSON to start from: cookies and storage are credentials.
    storage_state: bytes = field(default=b"", repr=False)
    block_resource_types: tuple[str, ...] = ()  # requests of these types are aborted
    block_url_patterns: tuple[str, ...] = ()  # URL globs whose requests are aborted
    color_scheme: str = ""  # emulated prefers-color-scheme
    media: str = ""  # emulated CSS media type ("screen", "print")
    geolocation: Geolocation | None = None
    permissions: tuple[str, ...] = ()
    trace: bool = False  # record a Playwright trace, kept for the owner after the lease ends

    @property
    def is_default(self) -> bool:
        return self == ContextOptions()


CAMOUFOX_OS_NAMES = ("windows", "macos", "linux")


@dataclass(frozen=True)
class CamoufoxOptions:
    """Launch options of a dedicated Camoufox browser (its fingerprint is drawn at launch)."""

    os: tuple[str, ...] = ()  # fingerprint OS choices, from CAMOUFOX_OS_NAMES; empty: any
    humanize: bool = False
    humanize_max_s: float = 0.0  # 0: Camoufox's default
    block_images: bool = False
    block_webrtc: bool = False
    block_webgl: bool = False
    geoip: bool = False  # geolocation, timezone and locale from the (proxy's) public IP
    locales: tuple[str, ...] = ()
    window: Viewport | None = None


# Per-lease options of a dedicated browser, passed to Engine.open_session. Only Camoufox has any.
BrowserOptions = CamoufoxOptions
