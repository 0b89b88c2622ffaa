"""The Playwright handler of each step kind, in a table by the kind's dataclass, and what a
handler is given: where the step acts, what the lease allows, how long it may take."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from playwright.async_api import BrowserContext, Frame, Page

from broker.engines.base import ResultLimits
from broker.engines.playwright.bounded_results import StepRefused
from broker.engines.playwright.pages import LeasePages
from broker.model.options import EngineName
from broker.model.steps.base import Action, StepErrorKind, StepOutcome


class CurrentPage(Protocol):
    """The session's current page, which the steps on the lease's pages read and move."""

    page: Page

    async def ensure_open(self) -> None:
        """After a page closed: the most recently opened page left becomes current, or a fresh
        one when none is left."""
        ...


@dataclass
class StepScope:
    """Where a step acts: a page of the lease, a frame of it (its main frame by default), and
    what the lease allows."""

    page: Page
    frame: Frame
    context: BrowserContext
    pages: LeasePages
    current: CurrentPage
    limits: ResultLimits
    engine: EngineName
    supports_pdf: bool
    timeout_s: float

    @property
    def timeout_ms(self) -> float:
        """The step's timeout as Playwright takes one (at least 1 ms: 0 would mean none)."""
        return max(1.0, self.timeout_s * 1000)


A = TypeVar("A", bound=Action)
Handler = Callable[[StepScope, A, StepOutcome], Awaitable[None]]

# Every step kind's handler by its dataclass. The package's __init__ imports every module
# that declares one.
HANDLERS: dict[type[Action], Handler[Any]] = {}


def handles(*action_types: type[A]) -> Callable[[Handler[A]], Handler[A]]:
    """Declares the coroutine it decorates as the handler of these kinds' steps."""

    def register(handler: Handler[A]) -> Handler[A]:
        for action_type in action_types:
            if action_type in HANDLERS:
                raise ValueError(f"two handlers for {action_type.__name__}")
            HANDLERS[action_type] = handler
        return handler

    return register


async def perform(scope: StepScope, action: Action, out: StepOutcome) -> None:
    await HANDLERS[type(action)](scope, action, out)


async def frame_of(page: Page, frame_selector: str, ms: float) -> Frame:
    """The document of the <iframe> `frame_selector` names; the page's own without one."""
    if not frame_selector:
        return page.main_frame
    element = await page.wait_for_selector(frame_selector, state="attached", timeout=ms)
    frame = await element.content_frame() if element is not None else None
    if frame is None:
        raise StepRefused(StepErrorKind.SELECTOR, f"{frame_selector!r} is not an iframe")
    return frame
