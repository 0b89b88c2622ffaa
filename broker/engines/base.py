"""The engine protocol every browser adapter implements, and what the broker asks of a session."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from broker.egress.policy import EgressRules
from broker.egress.proxy import BlockListener, EgressGateway
from broker.errors import FieldViolation, InvalidArgument
from broker.model.attach import AttachOptions
from broker.model.options import BrowserOptions, ContextOptions, EngineName, Isolation
from broker.model.steps.base import Step, StepOutcome


class LostCause(StrEnum):
    """Why a session died on its own (the lease table maps each to a release reason)."""

    ENGINE_CRASHED = "engine_crashed"  # its browser (or the engine's driver) went away
    PAGE_CRASHED = "page_crashed"  # its page's renderer died


# Called at most once when a session dies on its own.
LostCallback = Callable[["Session", LostCause], None]


@dataclass
class EngineCensus:
    """The engine's own view of what is open, for status and reconciliation."""

    browsers: int = 0
    contexts: int = 0
    pages: int = 0
    browser_pids: list[int] = field(default_factory=list)
    retiring: int = 0  # shared browsers draining before they are recycled
    recycled: int = 0  # shared browsers recycled since start
    unclosed: int = 0  # released sessions whose context would not close (tried again)


@dataclass(frozen=True)
class RecyclePolicy:
    """When a shared browser (the one a tenant's contexts are opened in) is replaced by a fresh
    one.

    A retired browser takes no new sessions and is closed once its last session has closed, so an
    active lease is never disturbed. A dedicated browser lives exactly as long as its lease.
    """

    after_sessions: int = 0  # sessions opened in it; 0: no limit
    above_mb: float = 0.0  # PSS of its process tree; 0: no bound


@dataclass(frozen=True)
class ResultLimits:
    """Bounds on what one step may return, checked in the browser before the result is built
    where the engine can (a too large result fails its step as TOO_LARGE)."""

    max_bytes: int = 8 * 1024 * 1024
    max_screenshot_pixels: int = 25_000_000
    max_pdf_pages: int = 200
    max_pages: int = 8  # pages open at once in one lease, counting those the site opens
    max_download_bytes: int = 8 * 1024 * 1024  # a file a download step captures


@dataclass(frozen=True)
class Availability:
    available: bool
    detail: str


class Session(Protocol):
    """One isolated browser session (a context and its page, maybe a browser of its own)."""

    engine: EngineName
    isolation: Isolation

    @property
    def alive(self) -> bool: ...

    @property
    def lost_cause(self) -> LostCause | None:
        """Why it died on its own, once it has (a loss before a callback was set is kept here)."""
        ...

    @property
    def retiring(self) -> bool:
        """Its browser is being recycled: lend it to no new lease (an existing one keeps it)."""
        ...

    def set_lost_callback(self, callback: LostCallback | None) -> None:
        """Who to tell when the session dies on its own (browser crash, page crash)."""
        ...

    def bind_egress(self, rules: EgressRules, on_blocked: BlockListener | None) -> None:
        """The session is lent to a tenant: its egress rules apply from now on, and requests the
        policy refuses are reported to `on_blocked`. A no-op where egress is not enforced."""
        ...

    def keep_trace(self, path: str, max_bytes: int) -> None:
        """When the session closes, write the trace it records (if it records one) to `path`,
        or nothing if it is over `max_bytes`."""
        ...

    async def execute(self, index: int, step: Step, timeout_s: float) -> StepOutcome:
        """Run one step; browser failures come back as a failed StepOutcome, not an exception."""
        ...

    async def reset_page(self) -> None:
        """Close the current page, which stops its navigations and scripts, and open a new one."""
        ...

    async def close(self) -> None:
        """Close everything the session owns; escalates to killing its browser if it must."""
        ...


class Engine(Protocol):
    name: EngineName
    recycling: RecyclePolicy
    result_limits: ResultLimits

    def use_egress(self, gateway: EgressGateway | None) -> None:
        """Send every session's traffic through routes of `gateway` (None: no egress policy)."""
        ...

    def availability(self) -> Availability:
        """Whether this engine can open sessions here, and if not, why."""
        ...

    async def open_session(
        self,
        isolation: Isolation,
        options: ContextOptions,
        browser_options: BrowserOptions | None = None,
        *,
        tenant: str = "",
        attach: AttachOptions | None = None,
    ) -> Session:
        """A new ready session; cleans up whatever it half-built if it fails or is cancelled.

        `attach` (with ISOLATION_BROWSER only) asks for a browser attached clients can drive; an
        engine that serves none refuses it with InvalidArgument.

        A context session opens in `tenant`'s shared browser, never in one another tenant's
        sessions use: a browser process holds state its contexts share (the clipboard).

        `browser_options` (per-lease launch options, only Camoufox has any) come only with
        ISOLATION_BROWSER; an engine that takes none rejects them with InvalidArgument, and
        rejects context options it cannot honour the same way.
        """
        ...

    def live_sessions(self) -> Sequence[Session]:
        """Sessions this engine opened that are not closed, from the browser's side."""
        ...

    def census(self) -> EngineCensus:
        """What is open now; walks the process table, so it blocks: use census_async on a
        serving loop."""
        ...

    async def census_async(self, max_age_s: float = 0.5) -> EngineCensus:
        """The census, with the process walk off the event loop (reused up to `max_age_s`)."""
        ...

    def cached_census(self) -> EngineCensus:
        """The census as of the last process walk; never blocks (metrics read it)."""
        ...

    async def reclose(self) -> int:
        """Try again to close released sessions whose close failed; how many are still open."""
        ...

    async def check_memory(self) -> None:
        """Retire each tenant's shared browser that is above `recycling.above_mb`."""
        ...

    async def close(self) -> None:
        """Close every session and browser; idempotent."""
        ...


def check_supported(
    engine: EngineName,
    unsupported_context: Mapping[str, str],
    takes_browser_options: bool,
    isolation: Isolation,
    options: ContextOptions,
    browser_options: BrowserOptions | None,
) -> None:
    """Refuse, before anything is launched, what an engine would silently ignore.

    `unsupported_context` maps a ContextOptions field to why the engine cannot honour it.
    """
    default = ContextOptions()
    violations = [
        FieldViolation(f"context.{name}", reason)
        for name, reason in unsupported_context.items()
        if getattr(options, name) != getattr(default, name)
    ]
    if browser_options is not None:
        if not takes_browser_options:
            violations.append(
                FieldViolation("camoufox", f"{engine.value} takes no camoufox options")
            )
        elif isolation is not Isolation.BROWSER:
            violations.append(FieldViolation("isolation", "browser options need ISOLATION_BROWSER"))
    if violations:
        raise InvalidArgument(violations)
