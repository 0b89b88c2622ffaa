"""One downloads folder per browser, and nothing of them left behind.

A browser writes the files a `download` step captures into the folder Playwright hands it. When
browsers run as `browser_user` or in the jail, that folder is one the broker makes for each
launch: `<tmp>/browser-broker-downloads-<random>/<random>`, owned by the browser user, mode
0700, and bound into that browser's jail alone, so no browser sees another's in-flight
downloads (all of them run as the same user: the jail is what keeps them apart). The parent
folder belongs to this process (mode 0711 as root: the browser user may pass through it, not
list it) and holds a lock file this process keeps locked while it runs.

A browser's folder is removed when it disconnects (or its launch fails), the parent when the
process exits; after a crash, the next broker to start removes every parent whose lock no live
process holds.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

log = logging.getLogger("broker.engines")

PREFIX = "browser-broker-downloads-"
LOCK = ".lock"
# A parent without its lock file yet is being made: left alone while this young.
UNLOCKED_GRACE_S = 60.0

_parent: list[Path] = []
_lock_fd: list[int] = []


def new_folder(uid: int | None, gid: int | None) -> Path:
    """A fresh, empty downloads folder for one browser (handed to `uid` when given)."""
    folder = Path(tempfile.mkdtemp(dir=_own_parent(shared=uid is not None)))  # 0700
    if uid is not None and gid is not None:
        os.chown(folder, uid, gid)
    return folder


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _own_parent(shared: bool) -> Path:
    """This process's parent folder, made (and locked) on first use."""
    if _parent and _parent[0].is_dir():
        if shared:  # (made for a browser of the daemon's own user first, in this process)
            _parent[0].chmod(0o711)
        return _parent[0]
    parent = Path(tempfile.mkdtemp(prefix=PREFIX))
    fd = os.open(parent / LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    # As root the browser user must pass through to its own folder (but not list the others).
    parent.chmod(0o711 if shared else 0o700)
    _parent[:] = [parent]
    _lock_fd[:] = [fd]
    atexit.register(shutil.rmtree, parent, True)
    return parent


def sweep_stale(root: str | None = None) -> list[str]:
    """Remove the downloads folders that brokers which are gone left in the temporary
    directory (a crash, a kill); a live broker's are left alone. Returns what was removed."""
    root = root or tempfile.gettempdir()
    removed = []
    for entry in os.scandir(root):
        if not entry.name.startswith(PREFIX) or (_parent and Path(entry.path) == _parent[0]):
            continue
        with contextlib.suppress(OSError):
            if _stale(entry.path):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.path)
    if removed:
        log.info("removed %d downloads folder(s) of brokers that are gone", len(removed))
    return removed


def _stale(path: str) -> bool:
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        return False  # not a folder of this user's: not ours to remove
    try:
        fd = os.open(os.path.join(path, LOCK), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return time.time() - info.st_mtime > UNLOCKED_GRACE_S
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its broker runs
    finally:
        os.close(fd)  # (releases the lock taken, if any)
    return True
