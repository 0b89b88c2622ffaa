"""Step results held to the broker's bounds, checked in the page before they are built.

The scripts here run in the page: they serialise, measure and refuse a result that is over the
byte bound (or that JSON cannot hold) before anything crosses to the broker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Frame

from broker.model.steps.base import StepErrorKind

S = TypeVar("S", str, bytes)


class StepRefused(Exception):
    """The step ends with `kind` and this message, without a browser error."""

    def __init__(self, kind: StepErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


_TOO_LARGE = "__TOO_LARGE__"

# Serialises an evaluate result in the page, refusing what JSON cannot hold (cycles, NaN,
# BigInt), nesting deeper than 64, and results over the byte bound, before anything is sent.
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
  const bytes = new TextEncoder().encode(text).length;
  if (bytes > maxBytes) throw new Error(`__TOO_LARGE__ the result is ${bytes} bytes; the limit is ${maxBytes}`);
  return text;
}"""
BOUNDED_CONTENT = """(maxBytes) => {
  let html = document.doctype ? new XMLSerializer().serializeToString(document.doctype) : "";
  if (document.documentElement) html += document.documentElement.outerHTML;
  const bytes = new TextEncoder().encode(html).length;
  if (bytes > maxBytes) throw new Error(`__TOO_LARGE__ the content is ${bytes} bytes; the limit is ${maxBytes}`);
  return html;
}"""
BOUNDED_TEXT = """(element, maxBytes) => {
  const text = element.innerText;
  const bytes = new TextEncoder().encode(text).length;
  if (bytes > maxBytes) throw new Error(`__TOO_LARGE__ the text is ${bytes} bytes; the limit is ${maxBytes}`);
  return text;
}"""
PAGE_SIZE = """() => {
  const d = document.documentElement, b = document.body || d;
  return [Math.max(d.scrollWidth, b.scrollWidth, d.clientWidth),
          Math.max(d.scrollHeight, b.scrollHeight, d.clientHeight)];
}"""


async def bounded_text(work: Awaitable[str]) -> str:
    """A string computed in the page under a size bound; over it, the step fails TOO_LARGE."""
    try:
        return await work
    except PlaywrightError as exc:
        if _TOO_LARGE in exc.message:
            detail = exc.message.split(_TOO_LARGE, 1)[1].strip().splitlines()[0]
            raise StepRefused(StepErrorKind.TOO_LARGE, detail) from None
        raise


async def bounded_json(handle: Any, limit: int) -> str:
    """The value a JS handle holds as bounded JSON; the handle is disposed of."""
    try:
        return await bounded_text(handle.evaluate(TO_BOUNDED_JSON, limit))
    finally:
        with contextlib.suppress(PlaywrightError):
            await handle.dispose()


_NOT_FOUND = "Failed to find element matching selector"


async def text_of_first(frame: Frame, selector: str, limit: int, timeout_ms: float) -> str:
    """The bounded innerText of the first element matching `selector`.

    One round trip when the element is there already (the common case right after a
    navigation); otherwise it waits for the element as a locator does, up to the step timeout.
    """
    try:
        text: str = await frame.eval_on_selector(selector, BOUNDED_TEXT, limit)
        return text
    except PlaywrightError as exc:
        if _NOT_FOUND not in exc.message:
            raise
    text = await frame.locator(selector).first.evaluate(BOUNDED_TEXT, limit, timeout=timeout_ms)
    return text


def check_size(result: S, limit: int) -> S:
    size = len(result.encode()) if isinstance(result, str) else len(result)
    if size > limit:
        raise StepRefused(
            StepErrorKind.TOO_LARGE, f"the result is {size} bytes; the limit is {limit}"
        )
    return result
