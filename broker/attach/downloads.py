"""Downloads by attached clients, bounded as the broker's own download step is: a file over
max_download_bytes, or the lease's downloads over max_downloads_bytes in all, is cancelled
(`Browser.cancelDownload`). The hub forces `eventsEnabled` on every `Browser.setDownloadBehavior`
a client sends (rules.py) and shows this watch every `*.downloadProgress`; the lease's folder
is also measured, for downloads no event was heard of (`Page.setDownloadBehavior`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

log = logging.getLogger("broker.attach")

POLL_S = 0.25  # how often the lease's downloads folder is measured
_PROGRESS = ("Browser.downloadProgress", "Page.downloadProgress")
PARTIAL_SUFFIX = ".crdownload"


class DownloadWatch:
    def __init__(
        self, folder: str, max_file: int, max_total: int, cancel: Callable[[str], None]
    ) -> None:
        self.folder = folder
        self.max_file = max_file
        self.max_total = max_total
        self._cancel = cancel
        self.active: dict[str, int] = {}  # guid -> bytes received so far
        self.finished = 0  # bytes of completed downloads
        self.cancelled: set[str] = set()  # asked once each: later events of theirs are ignored

    def event(self, method: object, params: dict[str, Any]) -> None:
        if method not in _PROGRESS:
            return
        guid, state, received = params.get("guid"), params.get("state"), params.get("receivedBytes")
        if not isinstance(guid, str) or not isinstance(received, int | float):
            return
        if guid in self.cancelled:
            return  # progress that came before the browser acted on the cancel
        if state == "inProgress":
            self.active[guid] = int(received)
            total = self.finished + sum(self.active.values())
            if received > self.max_file or total > self.max_total:
                self._stop(guid, f"{int(received)} bytes (max {self.max_file}, lease {total})")
        else:
            self.active.pop(guid, None)
            if state != "completed":
                return
            total = self.finished + int(received)
            if received > self.max_file or total > self.max_total:
                # It finished before the cancel reached the browser (a blob is written in
                # milliseconds): the file is not kept (`trim`), and the client is told so.
                log.info("an attached client's download finished over its bound: removed")
                self.cancelled.add(guid)
                params["state"] = "canceled"
            else:
                self.finished = total

    def _stop(self, guid: str, why: str) -> None:
        log.info("an attached client's download was cancelled: %s", why)
        self.active.pop(guid, None)
        self.cancelled.add(guid)
        self._cancel(guid)

    def folder_bytes(self) -> int:
        total = 0
        with contextlib.suppress(OSError), os.scandir(self.folder) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    total += entry.stat(follow_symlinks=False).st_size
        return total

    def over_total(self) -> None:
        """The folder is over the lease's total: every download under way is cancelled."""
        for guid in list(self.active):
            self._stop(guid, f"the lease's downloads are over {self.max_total} bytes")

    def trim(self) -> bool:
        """The folder made to hold the bounds whatever the events said: a file over max_file
        is removed, and past max_total the newest finished files are too. True when the
        folder was over max_total (downloads under way are then cancelled)."""
        files: list[tuple[float, int, str]] = []
        with contextlib.suppress(OSError), os.scandir(self.folder) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    stat = entry.stat(follow_symlinks=False)
                    files.append((stat.st_mtime, stat.st_size, entry.path))
        kept, over_total = 0, False
        for _, size, path in sorted(files):  # oldest first: the first downloads are kept
            if size > self.max_file or kept + size > self.max_total:
                over_total = over_total or kept + size > self.max_total
                with contextlib.suppress(OSError):
                    os.unlink(path)
            else:
                kept += size
        return over_total

    def remove_partial(self) -> None:
        """Partial files are removed (Chromium fails a download whose file is gone)."""
        with contextlib.suppress(OSError), os.scandir(self.folder) as entries:
            for entry in entries:
                if entry.name.endswith(PARTIAL_SUFFIX) or entry.name in self.cancelled:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    async def poll_forever(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            if await asyncio.to_thread(self.trim):
                self.over_total()
                await asyncio.to_thread(self.remove_partial)
