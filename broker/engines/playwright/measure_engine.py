"""The selector engine the broker measures reads with, in Playwright's utility world.

Playwright runs a selector engine registered as a content script in its utility world, which
shares the page's DOM but none of its globals or prototypes: a CDP isolated world on Chromium,
a WebDriver BiDi sandbox on stock Firefox, an isolated world over Juggler (Playwright's Firefox,
Camoufox). It is the one way Playwright gives to run the broker's own code there on every engine
(see isolated.py). It is registered when the driver starts, before any browser or context.
"""

from __future__ import annotations

import contextlib

from playwright.async_api import Playwright, async_playwright

MEASURE = "_broker_measure"  # the selector engine's name

# The UTF-8 size of a string, stopping past `limit` (a surrogate pair is 4 bytes, as in UTF-8;
# a lone surrogate counts 2, one less than its replacement: the broker measures again).
UTF8_BYTES_JS = """(value, limit) => {
  if (value.length > limit) return value.length;
  let bytes = 0;
  for (let i = 0; i < value.length && bytes <= limit; i++) {
    const c = value.charCodeAt(i);
    bytes += c < 0x80 ? 1 : c < 0x800 || (c >= 0xd800 && c < 0xe000) ? 2 : 3;
  }
  return bytes;
}"""
OVER = """(what, value, limit) => {
  const bytes = (UTF8_BYTES)(value, limit);
  if (bytes <= limit) return "";
  const size = value.length > limit ? "at least " + value.length : "" + bytes;
  return `__TOO_LARGE__ the ${what} is ${size} bytes; the limit is ${limit}`;
}""".replace("UTF8_BYTES", UTF8_BYTES_JS)

# Matches `root` (for content, the document's root element) when the value is within the
# bound; throws TOO_LARGE when it is not. Its selector is `<what>:<limit>[:<attribute name,
# percent-encoded>]`.
MEASURE_ENGINE = """({
  queryAll(root, selector) {
    const over = OVER;
    const [what, limitText, name] = selector.split(":");
    const limit = Number(limitText);
    let value, match = root;
    if (what === "content") {
      const doc = root.ownerDocument || root;
      value = doc.doctype ? new XMLSerializer().serializeToString(doc.doctype) : "";
      if (doc.documentElement) value += doc.documentElement.outerHTML;
      match = doc.documentElement;
    } else if (what === "text") value = root.innerText;
    else if (what === "attribute") value = root.getAttribute(decodeURIComponent(name));
    else throw "unknown measure " + what;
    if (typeof value === "string") {
      const refused = over(what, value, limit);
      if (refused) throw refused;
    }
    return match ? [match] : [];
  }
})""".replace("OVER", OVER, 1)


async def start_driver() -> Playwright:
    """Playwright's driver, started, with the measuring engine registered."""
    playwright = await async_playwright().start()
    try:
        await playwright.selectors.register(MEASURE, MEASURE_ENGINE, content_script=True)
    except BaseException:
        with contextlib.suppress(Exception):
            await playwright.stop()
        raise
    return playwright
