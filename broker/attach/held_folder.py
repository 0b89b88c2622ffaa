"""A lease's downloads folder as the daemon measures and trims it. The browser's user owns the
folder (its profile is handed over whole), so a browser that turned hostile could swap it for a
symlink to a folder of the daemon's: the folder is therefore opened once, by a descriptor that
does not follow a symlink, and every entry is read and removed relative to that descriptor,
never followed. Whatever the path comes to name later, the daemon only ever touches what was
in the folder it made."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass

log = logging.getLogger("broker.attach")


@dataclass(frozen=True)
class Entry:
    name: str
    size: int
    mtime: float


class HeldFolder:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()  # measured in a thread: never closed while in use
        self._closed = False
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:  # (gone, or a link already: nothing is measured through it)
            log.warning("a lease's downloads folder could not be held: %s", exc)

    def entries(self) -> list[Entry]:
        """What the folder holds (a symlink as itself, never followed)."""
        found: list[Entry] = []
        with self._lock:
            if self._fd is not None:
                self._list(self._fd, found)
            self._close_if_asked()
        return found

    @staticmethod
    def _list(fd: int, found: list[Entry]) -> None:
        with contextlib.suppress(OSError), os.scandir(fd) as listing:
            for entry in listing:
                with contextlib.suppress(OSError):
                    stat = entry.stat(follow_symlinks=False)
                    found.append(Entry(entry.name, stat.st_size, stat.st_mtime))

    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.entries())

    def size_of(self, name: str) -> int:
        with self._lock:
            if self._fd is None or not _plain(name):
                return 0
            try:
                return os.stat(name, dir_fd=self._fd, follow_symlinks=False).st_size
            except OSError:
                return 0
            finally:
                self._close_if_asked()

    def remove(self, name: str) -> None:
        """Unlink `name` in the folder (a symlink itself, not what it names)."""
        with self._lock:
            if self._fd is not None and _plain(name):
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=self._fd)
            self._close_if_asked()

    def close(self) -> None:
        """Closed now, or by the thread measuring it once it is done: the event loop never
        waits for a measure of a folder a tenant may have filled with files."""
        self._closed = True
        if self._lock.acquire(blocking=False):
            try:
                self._close_if_asked()
            finally:
                self._lock.release()

    def _close_if_asked(self) -> None:
        if self._closed and self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _plain(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..")
