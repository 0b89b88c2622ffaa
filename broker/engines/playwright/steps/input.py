"""Input on Playwright: clicks, keys, the mouse, form controls, scrolling, files to upload."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from playwright.async_api import Error as PlaywrightError

from broker.engines.playwright.steps.dispatch import StepScope, handles
from broker.model.steps.base import StepOutcome
from broker.model.steps.input import (
    Check,
    Click,
    Fill,
    Hover,
    Press,
    Scroll,
    SelectOption,
    SetInputFiles,
    Type,
    Uncheck,
)

SCROLL_BY = "([x, y]) => window.scrollBy(x, y)"


@handles(Click)
async def click(scope: StepScope, action: Click, out: StepOutcome) -> None:
    try:
        await scope.frame.click(action.selector, timeout=scope.timeout_ms)
    except PlaywrightError:
        if not scope.page.is_closed():
            raise
        # The click closed its own page (a popup that closes itself when done): done.


@handles(Fill)
async def fill(scope: StepScope, action: Fill, out: StepOutcome) -> None:
    await scope.frame.fill(action.selector, action.value, timeout=scope.timeout_ms)


@handles(Press)
async def press(scope: StepScope, action: Press, out: StepOutcome) -> None:
    await scope.frame.press(action.selector, action.key, timeout=scope.timeout_ms)


@handles(Hover)
async def hover(scope: StepScope, action: Hover, out: StepOutcome) -> None:
    await scope.frame.hover(action.selector, timeout=scope.timeout_ms)


@handles(Check)
async def check(scope: StepScope, action: Check, out: StepOutcome) -> None:
    await scope.frame.check(action.selector, timeout=scope.timeout_ms)


@handles(Uncheck)
async def uncheck(scope: StepScope, action: Uncheck, out: StepOutcome) -> None:
    await scope.frame.uncheck(action.selector, timeout=scope.timeout_ms)


@handles(SelectOption)
async def select_option(scope: StepScope, action: SelectOption, out: StepOutcome) -> None:
    values = list(action.values)
    selected = await scope.frame.select_option(action.selector, values, timeout=scope.timeout_ms)
    out.json = json.dumps(selected)


@handles(Type)
async def type_text(scope: StepScope, action: Type, out: StepOutcome) -> None:
    locator = scope.frame.locator(action.selector).first
    await locator.press_sequentially(
        action.text, delay=action.delay_s * 1000, timeout=scope.timeout_ms
    )


@handles(Scroll)
async def scroll(scope: StepScope, action: Scroll, out: StepOutcome) -> None:
    frame = scope.frame
    if action.selector:
        await frame.locator(action.selector).first.scroll_into_view_if_needed(
            timeout=scope.timeout_ms
        )
    else:
        async with asyncio.timeout(scope.timeout_s):
            await frame.evaluate(SCROLL_BY, [action.delta_x, action.delta_y])


@handles(SetInputFiles)
async def set_input_files(scope: StepScope, action: SetInputFiles, out: StepOutcome) -> None:
    payloads: Any = [
        {"name": f.name, "mimeType": f.mime_type or "application/octet-stream", "buffer": f.data}
        for f in action.files
    ]
    await scope.frame.set_input_files(action.selector, payloads, timeout=scope.timeout_ms)
