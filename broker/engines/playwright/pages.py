"""A lease's pages by id (its own and those its sites opened), the responses they received, and
the downloads a step is waiting for."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass

from playwright.async_api import ConsoleMessage, Download, Page
from playwright.async_api import Error as PlaywrightError

from broker.common.cleanup import TaskSet, bounded
from broker.engines.playwright.bounded_results import URL_CHARS, truncated
from broker.model.steps.base import PageEvent
from broker.model.steps.globs import UrlGlob, matches_any, url_glob

RESPONSES_KEPT = 256
TITLE_TIMEOUT_S = 1.0
POLL_S = 0.05
EVENTS_KEPT = 32  # page events reported per step
EVENT_TEXT_CHARS = 1000


@dataclass(frozen=True)
class SeenResponse:
    seq: int
    url: str  # at most URL_CHARS
    status: int
    cut: bool = False  # the URL was longer; a glob matches it only whole, so never a cut one


class ResponseLog:
    """The last responses the lease's pages received; each is matched at most once."""

    def __init__(self) -> None:
        self._seen: collections.deque[SeenResponse] = collections.deque(maxlen=RESPONSES_KEPT)
        self._seq = 0
        self._arrived = asyncio.Event()

    def add(self, url: str, status: int) -> None:
        self._seq += 1
        cut = len(url) > URL_CHARS
        self._seen.append(SeenResponse(self._seq, truncated(url, URL_CHARS), status, cut))
        self._arrived.set()

    async def _take(self, glob: UrlGlob, after: int) -> tuple[SeenResponse | None, int]:
        """The first response after `after` that matches, and the last one looked at."""
        last = after
        for seen in list(self._seen):
            if seen.seq <= after:
                continue
            last = seen.seq
            if not seen.cut and await matches_any([glob], seen.url) and seen in self._seen:
                self._seen.remove(seen)
                return seen, last
        return None, last

    async def wait_for(self, pattern: str) -> SeenResponse:
        """The first remembered response matching `pattern`, else the next one to arrive. Each
        response is matched once per wait, however many arrive while it waits."""
        glob, after = url_glob(pattern), 0
        while True:
            self._arrived.clear()
            found, after = await self._take(glob, after)
            if found is not None:
                return found
            await self._arrived.wait()


class LeasePages:
    """Ids for a lease's pages, in the order they opened ("p1", "p2", ...)."""

    def __init__(self) -> None:
        self._ids: dict[Page, str] = {}
        self._by_id: dict[str, Page] = {}
        self._next = 1
        self.responses = ResponseLog()
        self._download: asyncio.Future[Download] | None = None
        self._cancels = TaskSet()
        self._events: list[PageEvent] = []
        self.events_dropped = 0
        # Each page's console and page-error listeners, and whether they are all detached for
        # now: once a step has its EVENTS_KEPT events, a page's flood of either is not even sent
        # to the broker (Playwright parses every message on the event loop) until the next step.
        self._event_listeners: dict[Page, dict[str, Callable[..., None]]] = {}
        self._console_muted = False

    def known(self, page: Page) -> bool:
        return page in self._ids

    def add(self, page: Page) -> str:
        if page in self._ids:
            return self._ids[page]
        page_id = f"p{self._next}"
        self._next += 1
        self._ids[page] = page_id
        self._by_id[page_id] = page
        page.on("response", lambda response: self.responses.add(response.url, response.status))
        page.on("download", self._on_download)
        page.on("close", self._forget)
        listeners: dict[str, Callable[..., None]] = {
            "console": functools.partial(self._console, page),
            "pageerror": functools.partial(self._page_error, page),
        }
        self._event_listeners[page] = listeners
        if not self._console_muted:
            for event, listener in listeners.items():
                page.on(event, listener)  # type: ignore[call-overload]
        return page_id

    def _console(self, page: Page, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self._event(page, f"console.{message.type}", message.text)

    def _page_error(self, page: Page, error: PlaywrightError) -> None:
        # Parsed whole by Playwright before it gets here (a page can throw any size); cut now.
        self._event(page, "page.error", error.message[:EVENT_TEXT_CHARS])

    def _event(self, page: Page, kind: str, text: str) -> None:
        if len(self._events) >= EVENTS_KEPT:
            self.events_dropped += 1
            self._mute_console(True)
            return
        self._events.append(PageEvent(kind, text[:EVENT_TEXT_CHARS], self.id_of(page)))

    def take_events(self) -> list[PageEvent]:
        """The page events since the last call (at most EVENTS_KEPT of them)."""
        events, self._events = self._events, []
        self._mute_console(False)
        return events

    def _mute_console(self, muted: bool) -> None:
        if muted == self._console_muted:
            return
        self._console_muted = muted
        for page, listeners in self._event_listeners.items():
            if page.is_closed():
                continue
            for event, listener in listeners.items():
                if muted:
                    page.remove_listener(event, listener)
                else:
                    page.on(event, listener)  # type: ignore[call-overload]

    def _forget(self, page: Page) -> None:
        page_id = self._ids.pop(page, None)
        self._event_listeners.pop(page, None)
        if page_id is not None:
            self._by_id.pop(page_id, None)

    def id_of(self, page: Page) -> str:
        return self._ids.get(page, "")

    def get(self, page_id: str) -> Page | None:
        page = self._by_id.get(page_id)
        return page if page is not None and not page.is_closed() else None

    def open_pages(self) -> list[Page]:
        return [page for page in self._ids if not page.is_closed()]

    async def find(self, pattern: str) -> Page:
        """The first open page whose URL matches `pattern`, waiting for one (e.g. a popup)."""
        glob = url_glob(pattern)
        unmatched: dict[Page, str] = {}  # a page's URL is matched again only once it changes
        while True:
            for page in self.open_pages():
                url = page.url
                if unmatched.get(page) != url:
                    if await matches_any([glob], url):
                        return page
                    unmatched[page] = url
            await asyncio.sleep(POLL_S)

    # ------------------------------------------------------------- downloads

    def expect_download(self) -> asyncio.Future[Download]:
        self._download = asyncio.get_running_loop().create_future()
        return self._download

    def stop_expecting(self) -> None:
        self._download = None

    def _on_download(self, download: Download) -> None:
        """A download the step waits for is captured; any other is cancelled at once, so a
        page cannot write files on the broker's host outside a download step."""
        waiting = self._download
        if waiting is not None and not waiting.done():
            waiting.set_result(download)
            return
        self._cancels.spawn(_cancel_quietly(download))


async def _cancel_quietly(download: Download) -> None:
    with contextlib.suppress(PlaywrightError, TimeoutError):
        await bounded(download.cancel(), TITLE_TIMEOUT_S)
        await bounded(download.delete(), TITLE_TIMEOUT_S)
