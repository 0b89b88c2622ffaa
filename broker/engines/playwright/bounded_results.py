"""Step results held to the broker's bounds where the page cannot move them.

A page can replace every function a script could measure with (TextEncoder, JSON.stringify,
Math.max, String.prototype.slice, even eval), so nothing here trusts one. The scripts end with
a check the page cannot reach: `typeof` of the value and the length of a primitive string (a
string of N UTF-16 units is at least N UTF-8 bytes). A result over the bound is refused in the
page, so no more than 3x the bound (UTF-8) ever crosses to the broker; the broker then measures
what arrived, in bytes, again. No handle to a result is built: a handle to a string carries the
whole string to the broker.

Errors are bounded the same way: a page can make any of these scripts throw (a getter it
defines, a `toJSON`, its own `Error`), so each catches what was thrown and throws instead a
primitive string of at most ERROR_CHARS, built by indexing and `+`, which a page cannot
replace. The scripts' own errors are thrown as strings for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
from collections.abc import Awaitable
from typing import Any, TypeVar, overload

from playwright.async_api import Download, Frame
from playwright.async_api import Error as PlaywrightError

from broker.engines.playwright.driver import first_line
from broker.model.steps.base import StepErrorKind

S = TypeVar("S", str, bytes)

# The longest page-controlled strings the broker keeps or returns (titles, URLs); longer ones
# are cut. Console text and page errors are cut to EVENT_TEXT_CHARS in pages.py.
TITLE_CHARS = 1024
URL_CHARS = 8192
# The longest error message the broker keeps or returns (the first line of a browser error).
ERROR_CHARS = 1000
DOWNLOAD_POLL_S = 0.02  # how often a download's file is measured while it is written


class StepRefused(Exception):
    """The step ends with `kind` and this message, without a browser error."""

    def __init__(self, kind: StepErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


_TOO_LARGE = "__TOO_LARGE__"

# What was thrown, as a string of at most ERROR_CHARS ("Name: message" for an error object).
# Reading `name` and `message` may run the page's getters: whatever they do, the answer is cut
# with primitive operations only.
BOUNDED_ERROR = f"""(thrown) => {{
  let text = "the script threw something that is not an error";
  try {{
    if (typeof thrown === "string") text = thrown;
    else if (thrown !== null && typeof thrown === "object") {{
      const name = thrown.name, message = thrown.message;
      if (typeof message === "string")
        text = (typeof name === "string" && name !== "" ? name + ": " : "") + message;
    }}
  }} catch (_) {{}}
  if (typeof text !== "string") return "the script failed";
  let cut = "";
  const n = text.length < {ERROR_CHARS} ? text.length : {ERROR_CHARS};
  for (let i = 0; i < n; i++) cut += text[i];
  return cut;
}}"""


def _rethrowing_bounded(script: str) -> str:
    """`script` (called with one or two arguments) throwing only a bounded string."""
    return f"""(first, second) => {{
  try {{ return ({script})(first, second); }}
  catch (thrown) {{ throw ({BOUNDED_ERROR})(thrown); }}
}}"""


# The lease's expression, run as Playwright's own evaluate runs it (a function value is called
# with the argument, a promise is awaited), then serialised and bounded in the same call.
# JSON is refused for what it cannot hold (cycles, NaN, BigInt) and nesting deeper than 64.
TO_BOUNDED_JSON = f"""(value, maxBytes) => {{
  const depths = new WeakMap();
  const replacer = function (key, v) {{
    if (typeof v === "number" && !Number.isFinite(v))
      throw `the result holds ${{v}}, which JSON cannot represent`;
    if (typeof v === "bigint") throw "the result holds a BigInt, which JSON cannot represent";
    if (v !== null && typeof v === "object") {{
      const depth = (depths.get(this) || 0) + 1;
      if (depth > 64) throw "the result is nested deeper than 64 levels";
      depths.set(v, depth);
    }}
    return v;
  }};
  let text;
  try {{ text = JSON.stringify(value, replacer); }}
  catch (thrown) {{ throw "cannot return the result: " + ({BOUNDED_ERROR})(thrown); }}
  if (text === undefined) text = "null";
  if (typeof text !== "string") throw "cannot return the result: it has no JSON form";
  if (text.length > maxBytes)
    throw `__TOO_LARGE__ the result is over ${{maxBytes}} bytes; the limit is ${{maxBytes}}`;
  return text;
}}"""
# What the expression throws, or a promise it gives rejects with, is cut in the page too.
EVALUATE_BOUNDED = f"""async ([expression, hasArg, arg, maxBytes]) => {{
  let value;
  try {{
    value = globalThis.eval(expression);
    if (typeof value === "function") value = hasArg ? value(arg) : value();
    value = await value;
  }} catch (thrown) {{ throw ({BOUNDED_ERROR})(thrown); }}
  return ({TO_BOUNDED_JSON})(value, maxBytes);
}}"""
BOUNDED_CONTENT = _rethrowing_bounded("""(maxBytes) => {
  let html = document.doctype ? new XMLSerializer().serializeToString(document.doctype) : "";
  if (document.documentElement) html += document.documentElement.outerHTML;
  if (typeof html !== "string") throw "the page's content is not text";
  if (html.length > maxBytes)
    throw `__TOO_LARGE__ the content is over ${maxBytes} bytes; the limit is ${maxBytes}`;
  return html;
}""")
BOUNDED_TEXT = _rethrowing_bounded("""(element, maxBytes) => {
  const text = element.innerText;
  if (typeof text !== "string") throw "the element's text is not text";
  if (text.length > maxBytes)
    throw `__TOO_LARGE__ the text is over ${maxBytes} bytes; the limit is ${maxBytes}`;
  return text;
}""")
BOUNDED_ATTRIBUTE = _rethrowing_bounded("""(element, [name, maxBytes]) => {
  const value = element.getAttribute(name);
  if (value === null) return null;
  if (typeof value !== "string") throw "the attribute is not text";
  if (value.length > maxBytes)
    throw `__TOO_LARGE__ the attribute is over ${maxBytes} bytes; the limit is ${maxBytes}`;
  return value;
}""")
# A page can lie here: the broker clips the capture to the size it answers, so a lie only makes
# the screenshot smaller.
PAGE_SIZE = _rethrowing_bounded("""() => {
  const d = document.documentElement, b = document.body || d;
  return [Math.max(d.scrollWidth, b.scrollWidth, d.clientWidth),
          Math.max(d.scrollHeight, b.scrollHeight, d.clientHeight)];
}""")
BOUNDED_TITLE = _rethrowing_bounded("""(maxChars) => {
  const title = document.title;
  if (typeof title !== "string") return "";
  if (title.length <= maxChars) return title;
  const cut = title.slice(0, maxChars);
  return typeof cut === "string" && cut.length <= maxChars ? cut : "";
}""")


def truncated(text: str, limit: int) -> str:
    """A page-controlled string cut to `limit` characters."""
    return text if len(text) <= limit else text[:limit]


def error_text(message: str) -> str:
    """A browser error's message as the broker keeps it: its first line, at most ERROR_CHARS.

    The scripts above throw only bounded messages, but what a page throws outside them (an
    uncaught error, a tenant's script run by another step) still crosses from the browser to
    the broker once, parsed whole by Playwright before the broker sees it; it is cut here, the
    moment it arrives, and only the cut text is looked at or kept.
    """
    return truncated(first_line(message[: 4 * ERROR_CHARS]), ERROR_CHARS)


@overload
async def bounded_text(work: Awaitable[Any], limit: int) -> str: ...
@overload
async def bounded_text(work: Awaitable[Any], limit: int, allow_none: bool) -> str | None: ...
async def bounded_text(work: Awaitable[Any], limit: int, allow_none: bool = False) -> str | None:
    """A string computed in the page under a size bound, measured again as it arrived; over
    it, the step fails TOO_LARGE."""
    try:
        result = await work
    except PlaywrightError as exc:
        refused = refusal(exc)
        if refused is not None:
            raise refused from None
        raise
    if result is None and allow_none:
        return None
    if not isinstance(result, str):
        raise StepRefused(StepErrorKind.SCRIPT_ERROR, "the page answered something not text")
    return check_size(result, limit)


def refusal(exc: PlaywrightError) -> StepRefused | None:
    """The TOO_LARGE refusal one of the broker's scripts threw, if `exc` is one."""
    message = error_text(exc.message)
    if _TOO_LARGE not in message:
        return None
    return StepRefused(StepErrorKind.TOO_LARGE, message.split(_TOO_LARGE, 1)[1].strip())


async def evaluate_bounded(
    frame: Frame, expression: str, has_arg: bool, arg: Any, limit: int
) -> str:
    """The JSON of what `expression` gives, bounded; checked again to be JSON."""
    return _json(
        await bounded_text(
            frame.evaluate(EVALUATE_BOUNDED, [expression, has_arg, arg, limit]), limit
        )
    )


async def bounded_json(handle: Any, limit: int) -> str:
    """The value a JS handle holds as bounded JSON; the handle is disposed of."""
    try:
        return _json(await bounded_text(handle.evaluate(TO_BOUNDED_JSON, limit), limit))
    finally:
        with contextlib.suppress(PlaywrightError):
            await handle.dispose()


def _json(text: str) -> str:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        raise StepRefused(StepErrorKind.SCRIPT_ERROR, "the result is not valid JSON") from None
    return text


_NOT_FOUND = "Failed to find element matching selector"


async def text_of_first(frame: Frame, selector: str, limit: int, timeout_ms: float) -> str:
    """The bounded innerText of the first element matching `selector`.

    One round trip when the element is there already (the common case right after a
    navigation); otherwise it waits for the element as a locator does, up to the step timeout.
    """
    try:
        return await bounded_text(frame.eval_on_selector(selector, BOUNDED_TEXT, limit), limit)
    except PlaywrightError as exc:
        if _NOT_FOUND not in exc.message:
            raise
    later = frame.locator(selector).first.evaluate(BOUNDED_TEXT, limit, timeout=timeout_ms)
    return await bounded_text(later, limit)


def check_size(result: S, limit: int) -> S:
    size = len(result.encode()) if isinstance(result, str) else len(result)
    if size > limit:
        raise StepRefused(
            StepErrorKind.TOO_LARGE, f"the result is {size} bytes; the limit is {limit}"
        )
    return result


async def finished_download(download: Download, limit: int) -> str:
    """The path of a finished download, measured while the browser writes it: past `limit`
    the step fails TOO_LARGE at once (the caller cancels and deletes the download)."""
    written_to = getattr(getattr(download, "_impl_obj", None), "_artifact", None)
    partial = getattr(written_to, "absolute_path", "")
    finished = asyncio.ensure_future(download.path())
    finished.add_done_callback(lambda f: f.cancelled() or f.exception())  # always retrieved
    try:
        while not finished.done():
            size = _size_of(partial)
            if size > limit:
                raise StepRefused(
                    StepErrorKind.TOO_LARGE,
                    f"the download passed {size} bytes; the limit is {limit}",
                )
            await asyncio.wait({finished}, timeout=DOWNLOAD_POLL_S)
        path = str(finished.result())
    finally:
        if not finished.done():
            finished.cancel()
    size = _size_of(path)
    if size > limit:
        raise StepRefused(
            StepErrorKind.TOO_LARGE, f"the download is {size} bytes; the limit is {limit}"
        )
    return path


def _size_of(path: str) -> int:
    """The bytes written for a download: the browser writes to a name of its own next to the
    final one (Chromium `<name>.crdownload`, Firefox `<stem>.<random><ext>.part`) and renames
    it at the end. Another download of the same name in the folder counts too: the measure can
    be too high, never too low."""
    if not path:
        return 0
    stem, ext = os.path.splitext(glob.escape(path))
    total = 0
    for found in {*glob.glob(glob.escape(path) + "*"), *glob.glob(f"{stem}.*{ext}.part")}:
        with contextlib.suppress(OSError):
            total += os.stat(found).st_size
    return total
