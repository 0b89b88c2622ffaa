"""Reads of the page measured in a world the page cannot reach, before anything crosses.

bounded_results.py holds a read to the bound in the page's own world, with checks a page cannot
replace (`typeof`, a primitive string's length): nothing past the bound crosses, whatever the
page does. But the page can still lie there: with its own `outerHTML` getter a page of
megabytes reads as a small one. So each read is measured first in a world of the broker's own,
which shares the page's DOM but none of its globals or prototypes:

- On Chromium, a page's content (its main frame) and its title are read in a CDP isolated world,
  made through the CDP session the page's interrupter holds (a session attached later would take
  over the page's emulation, see context.shape_page). One evaluation reads the value, measures
  it in UTF-8 bytes and returns it only within the bound: the result comes from the real DOM.
- Everything else (text and attributes, a child frame's content, Firefox and Camoufox, a
  Chromium page whose CDP session could not be attached) is measured by a selector engine
  registered as a content script, which Playwright runs in its utility world: a CDP isolated
  world on Chromium, a WebDriver BiDi sandbox on stock Firefox, an isolated world over Juggler
  (Playwright's Firefox, Camoufox; the tests run stock Firefox only). It matches the element
  when its value is within the bound and throws TOO_LARGE when it is not. The value is then
  read in the page's world as bounded_results.py reads it: that read holds the bound on its
  own, so a page that grows between the two reads is refused too, and a page that lies there
  gets its lie back, never more than the bound. (Playwright gives no way to bring a value back
  from its utility world but its own reads, which have no bound.)

The broker measures what arrives again, in bytes (bounded_results.check_size).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Awaitable
from typing import Any, TypeVar
from urllib.parse import quote

from playwright.async_api import CDPSession, Frame, Locator, Page
from playwright.async_api import Error as PlaywrightError

from broker.engines.playwright.bounded_results import (
    BOUNDED_ATTRIBUTE,
    BOUNDED_CONTENT,
    BOUNDED_TITLE,
    ERROR_CHARS,
    TITLE_CHARS,
    StepRefused,
    bounded_text,
    check_size,
    refusal,
    text_of_first,
)
from broker.engines.playwright.measure_engine import MEASURE, OVER
from broker.model.steps.base import StepErrorKind

T = TypeVar("T")

WORLD = "__broker_results__"  # the CDP isolated world's name (one per frame, made on demand)


def _in_world(script: str) -> str:
    """A Runtime.evaluate expression answering ["ok", value] or [error kind, message]."""
    return f"""(() => {{
  try {{ return ({script})(); }}
  catch (thrown) {{ return ["error", String(thrown).slice(0, {ERROR_CHARS})]; }}
}})()"""


def _content_in_world(limit: int) -> str:
    return _in_world(f"""() => {{
  let html = document.doctype ? new XMLSerializer().serializeToString(document.doctype) : "";
  if (document.documentElement) html += document.documentElement.outerHTML;
  const refused = ({OVER})("content", html, {int(limit)});
  return refused ? ["too_large", refused] : ["ok", html];
}}""")


_TITLE_IN_WORLD = _in_world(f"""() => {{
  const title = document.title;
  return ["ok", typeof title === "string" ? title.slice(0, {TITLE_CHARS}) : ""];
}}""")

# The CDP session of each Chromium page that has one, and its main frame's id.
_sessions: weakref.WeakKeyDictionary[Page, CDPSession] = weakref.WeakKeyDictionary()
_main_frames: weakref.WeakKeyDictionary[Page, str] = weakref.WeakKeyDictionary()


def use_cdp_session(page: Page, cdp: CDPSession) -> None:
    """Read `page` through `cdp` (Chromium). A closed or crashed page's session gets nothing
    more: Playwright's driver asserts on an answer for a session it has dropped."""
    _sessions[page] = cdp
    page.on("close", _forget)
    page.on("crash", _forget)


def _forget(page: Page) -> None:
    _sessions.pop(page, None)
    _main_frames.pop(page, None)


def _session_for(frame: Frame) -> CDPSession | None:
    page = frame.page
    if frame.parent_frame is not None or page.is_closed():
        return None  # a child frame's own id is not known here (and it may be another process)
    return _sessions.get(page)


async def content(frame: Frame, limit: int) -> str:
    cdp = _session_for(frame)
    if cdp is not None:
        return check_size(
            _answer(await _evaluate(frame.page, cdp, _content_in_world(limit))), limit
        )
    await _measured(frame.locator(f"{MEASURE}=content:{limit}").count())
    return await bounded_text(frame.evaluate(BOUNDED_CONTENT, limit), limit)


async def text(frame: Frame, selector: str, limit: int, timeout_ms: float) -> str:
    measure = frame.locator(selector).first.locator(f"{MEASURE}=text:{limit}")
    await _measure(measure, timeout_ms)
    return await text_of_first(frame, selector, limit, timeout_ms)


async def attribute(
    frame: Frame, selector: str, name: str, limit: int, timeout_ms: float
) -> str | None:
    first = frame.locator(selector).first
    await _measure(first.locator(f"{MEASURE}=attribute:{limit}:{quote(name, safe='')}"), timeout_ms)
    answer = first.evaluate(BOUNDED_ATTRIBUTE, [name, limit], timeout=timeout_ms)
    return await bounded_text(answer, limit, allow_none=True)


async def title(page: Page) -> str:
    """The page's title, at most TITLE_CHARS (cut in the page, before it crosses)."""
    cdp = _session_for(page.main_frame)
    if cdp is not None:
        answer = _answer(await _evaluate(page, cdp, _TITLE_IN_WORLD))
    else:
        answer = await page.evaluate(BOUNDED_TITLE, TITLE_CHARS)
    return answer[:TITLE_CHARS] if isinstance(answer, str) else ""


async def _measure(measure: Locator, timeout_ms: float) -> None:
    """Measure the element `measure` chains from, waiting for it as a locator does (up to
    `timeout_ms`) when it is not there yet: one round trip when it is (counting is a single
    query; waiting for it costs a poll on Firefox)."""
    if await _measured(measure.count()) == 0:
        await _measured(measure.wait_for(state="attached", timeout=timeout_ms))


async def _measured(check: Awaitable[T]) -> T:
    """Await a measure in the utility world; its TOO_LARGE becomes the step's."""
    try:
        return await check
    except PlaywrightError as exc:
        refused = refusal(exc)
        if refused is not None:
            raise refused from None
        raise


async def _evaluate(page: Page, cdp: CDPSession, expression: str) -> Any:
    """`expression`'s value in the broker's isolated world of the page's main frame. Making the
    world again is idempotent (the same name answers the same world) and answers the current
    document's, so a navigation between two reads needs nothing; one that lands between the
    two calls here is retried."""
    for attempt in range(3):
        frame_id = _main_frames.get(page)
        if frame_id is None:
            info = await cdp.send("Target.getTargetInfo")
            frame_id = _main_frames[page] = str(info["targetInfo"]["targetId"])
        try:
            world = await cdp.send(
                "Page.createIsolatedWorld", {"frameId": frame_id, "worldName": WORLD}
            )
            answer = await cdp.send(
                "Runtime.evaluate",
                {
                    "expression": expression,
                    "contextId": world["executionContextId"],
                    "returnByValue": True,
                },
            )
        except PlaywrightError as exc:
            if attempt == 2 or not any(m in exc.message for m in _GONE):
                raise
            with contextlib.suppress(KeyError):
                del _main_frames[page]
            continue
        if "exceptionDetails" in answer:  # an interrupted read, or one out of memory
            raise StepRefused(StepErrorKind.BROWSER, "the page could not be read")
        return answer.get("result", {}).get("value")
    raise AssertionError("unreachable")


_GONE = ("Cannot find context with specified id", "No frame for given id found")


def _answer(answer: Any) -> str:
    if isinstance(answer, list) and len(answer) == 2 and all(isinstance(a, str) for a in answer):
        kind, value = answer
        if kind == "ok":
            return str(value)
        if kind == "too_large":
            raise StepRefused(StepErrorKind.TOO_LARGE, value.split("__TOO_LARGE__", 1)[1].strip())
        raise StepRefused(StepErrorKind.SCRIPT_ERROR, f"the page could not be read: {value}")
    raise StepRefused(StepErrorKind.BROWSER, "the page answered something not text")
