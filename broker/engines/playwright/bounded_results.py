"""Step results held to the broker's bounds where the page cannot move them.

A page can replace every function a script could measure with (TextEncoder, JSON.stringify,
Math.max, String.prototype.slice, even eval), so nothing here trusts one. The scripts end with
a check the page cannot reach: `typeof` of the value and the length of a primitive string (a
string of N UTF-16 units is at least N UTF-8 bytes). A result over the bound is refused in the
page, so no more than 3x the bound (UTF-8) ever crosses to the broker; the broker then measures
what arrived, in bytes, again. No handle to a result is built: a handle to a string carries the
whole string to the broker.
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

from broker.model.steps.base import StepErrorKind

S = TypeVar("S", str, bytes)

# The longest page-controlled strings the broker keeps or returns (titles, URLs); longer ones
# are cut. Console text and page errors are cut to EVENT_TEXT_CHARS in pages.py.
TITLE_CHARS = 1024
URL_CHARS = 8192
DOWNLOAD_POLL_S = 0.02  # how often a download's file is measured while it is written


class StepRefused(Exception):
    """The step ends with `kind` and this message, without a browser error."""

    def __init__(self, kind: StepErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


_TOO_LARGE = "__TOO_LARGE__"

# The lease's expression, run as Playwright's own evaluate runs it (a function value is called
# with the argument, a promise is awaited), then serialised and bounded in the same call.
# JSON is refused for what it cannot hold (cycles, NaN, BigInt) and nesting deeper than 64.
TO_BOUNDED_JSON = """(value, maxBytes) => {
  const depths = new WeakMap();
  const replacer = function (key, v) {
    if (typeof v === "number" && !Number.isFinite(v))
      throw new Error(`the result holds ${v}, which JSON cannot represent`);
    if (typeof v === "bigint") throw new Error("the result holds a BigInt, which JSON cannot represent");
    if (v !== null && typeof v === "object") {
      const depth = (depths.get(this) || 0) + 1;
      if (depth > 64) throw new Error("the result is nested deeper than 64 levels");
      depths.set(v, depth);
    }
    return v;
  };
  let text;
  try { text = JSON.stringify(value, replacer); }
  catch (e) { throw new Error("cannot return the result: " + e.message); }
  if (text === undefined) text = "null";
  if (typeof text !== "string") throw new Error("cannot return the result: it has no JSON form");
  if (text.length > maxBytes)
    throw new Error(`__TOO_LARGE__ the result is over ${maxBytes} bytes; the limit is ${maxBytes}`);
  return text;
}"""
EVALUATE_BOUNDED = f"""async ([expression, hasArg, arg, maxBytes]) => {{
  let value = globalThis.eval(expression);
  if (typeof value === "function") value = hasArg ? value(arg) : value();
  return ({TO_BOUNDED_JSON})(await value, maxBytes);
}}"""
BOUNDED_CONTENT = """(maxBytes) => {
  let html = document.doctype ? new XMLSerializer().serializeToString(document.doctype) : "";
  if (document.documentElement) html += document.documentElement.outerHTML;
  if (typeof html !== "string") throw new Error("the page's content is not text");
  if (html.length > maxBytes)
    throw new Error(`__TOO_LARGE__ the content is over ${maxBytes} bytes; the limit is ${maxBytes}`);
  return html;
}"""
BOUNDED_TEXT = """(element, maxBytes) => {
  const text = element.innerText;
  if (typeof text !== "string") throw new Error("the element's text is not text");
  if (text.length > maxBytes)
    throw new Error(`__TOO_LARGE__ the text is over ${maxBytes} bytes; the limit is ${maxBytes}`);
  return text;
}"""
BOUNDED_ATTRIBUTE = """(element, [name, maxBytes]) => {
  const value = element.getAttribute(name);
  if (value === null) return null;
  if (typeof value !== "string") throw new Error("the attribute is not text");
  if (value.length > maxBytes)
    throw new Error(`__TOO_LARGE__ the attribute is over ${maxBytes} bytes; the limit is ${maxBytes}`);
  return value;
}"""
# A page can lie here: the broker clips the capture to the size it answers, so a lie only makes
# the screenshot smaller.
PAGE_SIZE = """() => {
  const d = document.documentElement, b = document.body || d;
  return [Math.max(d.scrollWidth, b.scrollWidth, d.clientWidth),
          Math.max(d.scrollHeight, b.scrollHeight, d.clientHeight)];
}"""
BOUNDED_TITLE = """(maxChars) => {
  const title = document.title;
  if (typeof title !== "string") return "";
  if (title.length <= maxChars) return title;
  const cut = title.slice(0, maxChars);
  return typeof cut === "string" && cut.length <= maxChars ? cut : "";
}"""


def truncated(text: str, limit: int) -> str:
    """A page-controlled string cut to `limit` characters."""
    return text if len(text) <= limit else text[:limit]


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
        if _TOO_LARGE in exc.message:
            detail = exc.message.split(_TOO_LARGE, 1)[1].strip().splitlines()[0]
            raise StepRefused(StepErrorKind.TOO_LARGE, detail) from None
        raise
    if result is None and allow_none:
        return None
    if not isinstance(result, str):
        raise StepRefused(StepErrorKind.SCRIPT_ERROR, "the page answered something not text")
    return check_size(result, limit)


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
