"""The lease: what a client holds, and the record of how it ended."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.clock import TimerHandle
    from broker.engines.base import Session


class EngineName(StrEnum):
    CHROMIUM = "chromium"
    FIREFOX = "firefox"
    CAMOUFOX = "camoufox"


class Isolation(StrEnum):
    CONTEXT = "context"
    BROWSER = "browser"


class ReleaseReason(StrEnum):
    CLIENT_RELEASE = "client_release"
    TTL_EXPIRED = "ttl_expired"
    IDLE_TIMEOUT = "idle_timeout"
    RUN_CANCELLED = "run_cancelled"
    ENGINE_CRASHED = "engine_crashed"
    PAGE_CRASHED = "page_crashed"
    SHUTDOWN = "shutdown"
    ACQUIRE_FAILED = "acquire_failed"
    DRIFT_REPAIRED = "drift_repaired"


@dataclass(frozen=True)
class Viewport:
    width: int
    height: int


@dataclass(frozen=True)
class ProxySettings:
    server: str
    username: str = ""
    password: str = ""
    bypass: str = ""


@dataclass(frozen=True)
class ContextOptions:
    """Browser context options; the default (all empty) may be served from the warm pool."""

    viewport: Viewport | None = None
    user_agent: str = ""
    locale: str = ""
    timezone_id: str = ""
    extra_http_headers: tuple[tuple[str, str], ...] = ()
    proxy: ProxySettings | None = None
    ignore_https_errors: bool = False
    java_script_disabled: bool = False

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


@dataclass(frozen=True)
class LeaseSpec:
    engine: EngineName
    isolation: Isolation
    ttl_s: float
    idle_timeout_s: float
    context: ContextOptions = ContextOptions()
    labels: tuple[tuple[str, str], ...] = ()
    # Set only with engine camoufox and isolation browser (convert.lease_spec checks it).
    camoufox: CamoufoxOptions | None = None


@dataclass(frozen=True)
class ReleaseOutcome:
    reason: ReleaseReason
    released_at: datetime
    released_now: bool


@dataclass(eq=False)
class Lease:
    """One lease. Only the LeaseManager mutates it; `released` is set exactly once."""

    spec: LeaseSpec
    granted_at: float
    requested_at: datetime | None = None  # wall time Acquire began (before any queueing)
    id: str = field(default_factory=lambda: "lease-" + secrets.token_urlsafe(12))
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    session: Session | None = None
    warm: bool = False
    queue_wait_s: float = 0.0
    expires_at: float = 0.0
    expires_at_wall: datetime | None = None
    last_activity: float = 0.0
    runs_in_flight: int = 0
    run_count: int = 0
    step_count: int = 0
    released: ReleaseOutcome | None = None
    # One Run drives the page at a time; asyncio.Lock hands it over in FIFO order.
    run_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    run_tasks: set[asyncio.Task[None]] = field(default_factory=set)
    ttl_timer: TimerHandle | None = None
    warn_timer: TimerHandle | None = None
    idle_timer: TimerHandle | None = None

    def token_matches(self, token: str) -> bool:
        return secrets.compare_digest(self.token.encode(), token.encode())
