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

The profile of an attachable browser, and the temporary directory of a served browser's
Playwright server (`new_claimed`), live in the temporary directory beside the parent, where the
launcher accepts a profile; each one's name is recorded in the parent's `claimed` folder until
the broker removes it, so the sweep of a crashed broker's parent removes them too.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import secrets
import stat
import tempfile
import time
from pathlib import Path

log = logging.getLogger("broker.engines")

PREFIX = "browser-broker-downloads-"
LOCK = ".lock"
# A parent without its lock file yet is being made: left alone while this young.
UNLOCKED_GRACE_S = 60.0
CLAIMED = "claimed"
# The only names a claim may give the sweep: the folders of attachable and served browsers.
CLAIMABLE_PREFIXES = ("playwright_attach_", "playwright_served-")

_parent: list[Path] = []
_lock_fd: list[int] = []


def new_folder(uid: int | None, gid: int | None) -> Path:
    """A fresh, empty downloads folder for one browser (handed to `uid` when given)."""
    folder = Path(tempfile.mkdtemp(dir=_own_parent(shared=uid is not None)))  # 0700
    if uid is not None and gid is not None:
        os.chown(folder, uid, gid)
    return folder


def remove(folder: Path) -> None:
    remove_tree(folder)


# A folder opened to be emptied: never through a link, never waiting on a FIFO or a device.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# Deeper than this, a folder is moved up into the tree's top folder and removed on a later pass
# (so descriptors and recursion stay bounded); at most MAX_PASSES passes.
MAX_DEPTH = 64
MAX_PASSES = 64


def remove_tree(path: Path | str) -> None:
    """`rm -rf path`, errors ignored. The trees the daemon removes belong to the browser's
    user, who may swap any folder in them for a link (to the daemon's files, a FIFO, a device)
    while they are removed: every entry is unlinked or opened relative to its parent's
    descriptor, and a folder is opened without following a link or blocking on what it is
    (shutil.rmtree opens each folder with neither guard, then checks)."""
    parent, name = os.path.split(os.fspath(path).rstrip(os.sep))
    if not name:
        return
    try:
        parent_fd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        for _ in range(MAX_PASSES):
            _remove_entry(parent_fd, name, 0, -1)
            try:
                os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except OSError:
                return
    finally:
        os.close(parent_fd)


def _remove_entry(dir_fd: int, name: str, depth: int, top_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)  # a file, a link, a FIFO: removed, never opened
        return
    except IsADirectoryError:
        pass
    except OSError:
        return
    if depth >= MAX_DEPTH:  # (rename moves the entry itself, never what a link names)
        with contextlib.suppress(OSError):
            fresh = f".deep-{secrets.token_hex(8)}"
            os.rename(name, fresh, src_dir_fd=dir_fd, dst_dir_fd=top_fd)
        return
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError:  # swapped for a link or a file since: not followed
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)
        return
    try:
        with os.scandir(fd) as entries:
            names = [entry.name for entry in entries]
        for entry in names:
            _remove_entry(fd, entry, depth + 1, fd if depth == 0 else top_fd)
    except OSError:
        pass
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(name, dir_fd=dir_fd)


def new_claimed(prefix: str) -> Path:
    """A fresh folder in the temporary directory, claimed in this process's parent until
    `remove_claimed`."""
    if not prefix.startswith(CLAIMABLE_PREFIXES):
        raise ValueError(f"a claimed folder's prefix is one of {CLAIMABLE_PREFIXES}: {prefix!r}")
    claims = _own_parent(shared=False) / CLAIMED
    claims.mkdir(mode=0o700, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    (claims / folder.name).touch(mode=0o600)
    return folder


def remove_claimed(folder: Path) -> None:
    remove_tree(folder)
    if os.path.lexists(folder):
        return  # (still claimed: the sweep after this broker tries again)
    if _parent:
        with contextlib.suppress(OSError):
            (_parent[0] / CLAIMED / folder.name).unlink()


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
    atexit.register(_remove_parent, str(parent))
    return parent


def _remove_parent(parent: str) -> None:
    """The parent, and what it still claims (a browser whose stop did not run)."""
    _sweep_claims(parent, os.path.dirname(parent))
    remove_tree(parent)


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
                removed += _sweep_claims(entry.path, root)
                remove_tree(entry.path)
                removed.append(entry.path)
    if removed:
        log.info("removed %d downloads folder(s) of brokers that are gone", len(removed))
    return removed


def _sweep_claims(parent: str, root: str) -> list[str]:
    """The folders a gone broker's `parent` claims, removed (a link is never followed)."""
    removed = []
    with contextlib.suppress(OSError):
        for name in os.listdir(os.path.join(parent, CLAIMED)):
            if not name.startswith(CLAIMABLE_PREFIXES) or os.sep in name:
                continue
            path = os.path.join(root, name)
            with contextlib.suppress(OSError):
                if stat.S_ISDIR(os.lstat(path).st_mode):
                    remove_tree(path)
                    removed.append(path)
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
