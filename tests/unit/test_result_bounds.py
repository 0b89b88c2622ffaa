"""Page-controlled strings the broker keeps are cut where they arrive: response URLs in the
lease's log, and error messages in step outcomes."""

from __future__ import annotations

import asyncio

from broker.engines.playwright.bounded_results import ERROR_CHARS, URL_CHARS, error_text
from broker.engines.playwright.pages import ResponseLog


async def test_the_response_log_keeps_urls_cut_and_a_cut_url_never_matches() -> None:
    log = ResponseLog()
    prefix = "http://127.0.0.1/" + "a" * (URL_CHARS - len("http://127.0.0.1/"))
    log.add(prefix + "b" * 1_000_000, 200)  # cut to exactly `prefix`
    log.add("http://127.0.0.1/short", 201)
    kept = list(log._seen)
    assert [len(seen.url) for seen in kept] == [URL_CHARS, len("http://127.0.0.1/short")]
    assert [seen.cut for seen in kept] == [True, False]
    # The cut URL equals `prefix`, and "**" matches it: neither may match it.
    assert (await asyncio.wait_for(log.wait_for("**"), 1)).status == 201
    waiting = asyncio.ensure_future(log.wait_for(prefix))
    done, _ = await asyncio.wait({waiting}, timeout=0.2)
    waiting.cancel()
    assert not done


async def test_a_whole_url_still_matches_by_equality() -> None:
    log = ResponseLog()
    url = "http://127.0.0.1/" + "a" * (URL_CHARS - len("http://127.0.0.1/"))
    log.add(url, 200)
    found = await asyncio.wait_for(log.wait_for(url), 1)
    assert (found.url, found.status, found.cut) == (url, 200, False)


def test_an_error_message_is_cut_to_its_first_line_and_its_bound() -> None:
    assert error_text("Page.evaluate: Error: boom\n    at eval") == "Page.evaluate: Error: boom"
    huge = error_text("Page.evaluate: Error: " + "x" * 10_000_000)
    assert len(huge) == ERROR_CHARS and huge.startswith("Page.evaluate: Error: xxx")
    assert error_text("\n" * 10_000_000 + "late") == "browser error"
