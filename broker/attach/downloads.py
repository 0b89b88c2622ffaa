"""Downloads by attached clients, bounded as the broker's own download step is: a file over
max_download_bytes, or the lease's downloads over max_downloads_bytes in all, is cancelled
(`Browser.cancelDownload`). The hub forces `eventsEnabled` on every `Browser.setDownloadBehavior`
a client sends (rules.py) and shows this watch every `*.downloadProgress`; the lease's folder
is also measured, for downloads no event was heard of (`Page.setDownloadBehavior`).

Chromium sends a download's events to every session that asked for them, so each download is
counted once, by its guid, and every copy a client gets tells the same story: a download that
finished over a bound before its cancel reached the browser (a blob is written in milliseconds)
is removed from the folder and said to be `canceled` in each. The broker's own Playwright's
copies are not read here: its download step bounds its own files."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from broker.attach.held_folder import HeldFolder

log = logging.getLogger("broker.attach")

POLL_S = 0.25  # how often the lease's downloads folder is measured
_PROGRESS = ("Browser.downloadProgress", "Page.downloadProgress")
PARTIAL_SUFFIX = ".crdownload"


class DownloadWatch:
    def __init__(
        self, folder: str, max_file: int, max_total: int, cancel: Callable[[str], None]
    ) -> None:
        self.folder = HeldFolder(folder)
        self.max_file = max_file
        self.max_total = max_total
        self._cancel = cancel
        self.active: dict[str, int] = {}  # guid -> bytes received so far
        self.completed: set[str] = set()  # guids of the downloads kept
        self.finished = 0  # their bytes
        self.cancelled: set[str] = set()  # asked once each: later progress of theirs is ignored
        self.removed: set[str] = set()  # finished over a bound: every copy says "canceled"
        self.doomed: set[str] = set()  # their files' names, removed at the next measure

    def event(self, method: object, params: dict[str, Any]) -> None:
        if method not in _PROGRESS:
            return
        guid, state, received = params.get("guid"), params.get("state"), params.get("receivedBytes")
        if not isinstance(guid, str) or not isinstance(received, int | float):
            return
        if guid in self.removed:
            _told_canceled(params)
            return
        if guid in self.completed:
            return  # another session's copy, counted already
        if state == "inProgress":
            if guid in self.cancelled:
                return  # progress that came before the browser acted on the cancel
            self.active[guid] = int(received)
            total = self.finished + sum(self.active.values())
            if received > self.max_file or total > self.max_total:
                self._stop(guid, f"{int(received)} bytes (max {self.max_file}, lease {total})")
            return
        self.active.pop(guid, None)
        if state != "completed":
            return
        over = received > self.max_file or self.finished + int(received) > self.max_total
        if guid in self.cancelled or over:
            self._remove(guid, params)
        else:
            self.completed.add(guid)
            self.finished += int(received)

    def _remove(self, guid: str, params: dict[str, Any]) -> None:
        """It finished before its cancel reached the browser: not kept, and said so."""
        log.info("an attached client's download finished over its bound: removed")
        self.removed.add(guid)
        path = params.get("filePath")
        if isinstance(path, str) and os.path.dirname(path) == self.folder.path:
            self.doomed.add(os.path.basename(path))  # ("allow": named as the site said)
        else:
            self.doomed.add(guid)  # ("allowAndName": named by its guid)
        _told_canceled(params)

    def _stop(self, guid: str, why: str) -> None:
        log.info("an attached client's download was cancelled: %s", why)
        self.active.pop(guid, None)
        self.cancelled.add(guid)
        self._cancel(guid)

    def folder_bytes(self) -> int:
        return self.folder.total_bytes()

    def trim(self) -> bool:
        """The folder made to hold the bounds whatever the events said: the files of downloads
        removed go first, then a file over max_file, and past max_total the newest files. True
        when the folder was over max_total (downloads under way are then cancelled)."""
        doomed, self.doomed = self.doomed, set()
        kept, over_total = 0, False
        for entry in sorted(self.folder.entries(), key=lambda e: (e.mtime, e.name)):
            if entry.name in doomed:
                self.folder.remove(entry.name)
            elif entry.size > self.max_file or kept + entry.size > self.max_total:
                over_total = over_total or kept + entry.size > self.max_total
                self.folder.remove(entry.name)
            else:
                kept += entry.size  # (the oldest are kept: the first downloads)
        return over_total

    def over_total(self) -> None:
        """The folder is over the lease's total: every download under way is cancelled."""
        for guid in list(self.active):
            self._stop(guid, f"the lease's downloads are over {self.max_total} bytes")

    def remove_partial(self) -> None:
        """Partial files are removed (Chromium fails a download whose file is gone)."""
        for entry in self.folder.entries():
            if entry.name.endswith(PARTIAL_SUFFIX) or entry.name in self.cancelled:
                self.folder.remove(entry.name)

    async def poll_forever(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            if await asyncio.to_thread(self.trim):
                self.over_total()
                await asyncio.to_thread(self.remove_partial)

    def close(self) -> None:
        self.folder.close()


def _told_canceled(params: dict[str, Any]) -> None:
    params["state"] = "canceled"
    params.pop("filePath", None)  # (no file is there)
