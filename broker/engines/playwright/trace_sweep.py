"""What the traces of one browser leave in its artifacts folder, swept once none records.

Playwright writes a trace's files into the browser's artifacts folder: its chunks' events and
network logs (`<name>.trace`, `<name>.network`, ...) and the resources they refer to
(`resources/<sha1>`), and removes the folder only when the browser closes. A resource is shared
by every trace of the browser: a trace skips writing one that exists and zips it by name when it
stops. So a trace's own files go as soon as it ends, and the resources only while no trace of
that browser records: every trace registers here before it starts (`starting`, called where the
context opens), under a name of its own for its first chunk, and ends here when it is written,
dropped, or its context closes. A trace that wants to start while a sweep runs waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import secrets
import tempfile
import weakref
from dataclasses import dataclass, field

from playwright.async_api import Browser, BrowserContext

from broker.common.cleanup import TaskSet

log = logging.getLogger("broker.traces")

PREFIX = "broker-trace-"  # the first chunk's name: <PREFIX><random>


@dataclass(eq=False)
class _BrowserTraces:
    live: set[str] = field(default_factory=set)  # first-chunk names of recording traces
    ended: set[str] = field(default_factory=set)  # of ended ones whose files may be left
    folder: str = ""  # the browser's artifacts folder, once known
    sweeping: asyncio.Task[None] | None = None


_browsers: weakref.WeakKeyDictionary[Browser, _BrowserTraces] = weakref.WeakKeyDictionary()
_contexts: weakref.WeakKeyDictionary[BrowserContext, tuple[_BrowserTraces, str]] = (
    weakref.WeakKeyDictionary()
)
_sweeps = TaskSet()


async def starting(context: BrowserContext) -> str:
    """Register the trace `context` is about to start; returns the name for its first chunk."""
    name = PREFIX + secrets.token_hex(12)
    browser = context.browser
    if browser is None:
        return name
    record = _browsers.setdefault(browser, _BrowserTraces())
    while record.sweeping is not None:  # no resource may go once this trace can record
        with contextlib.suppress(Exception):
            await asyncio.shield(record.sweeping)
    record.live.add(name)
    _contexts[context] = (record, name)
    context.on("close", ended)
    return name


def first_chunk(context: BrowserContext) -> str:
    """The name of the first chunk of the trace `context` records ("" if none is known)."""
    return _contexts[context][1] if context in _contexts else ""


def found(context: BrowserContext, folder: str) -> None:
    """The artifacts folder the trace of `context` writes into."""
    if context in _contexts:
        _contexts[context][0].folder = folder


def ended(context: BrowserContext) -> None:
    """The trace of `context` has stopped (written or dropped), or its context closed: its own
    files go now, and the resources once no other trace of the browser records (idempotent)."""
    if context not in _contexts:
        return
    record, name = _contexts.pop(context)
    record.live.discard(name)
    record.ended.add(name)
    if not record.live and record.sweeping is None:
        record.sweeping = _sweeps.spawn(_sweep(record))


async def _sweep(record: _BrowserTraces) -> None:
    try:
        names = set(record.ended)
        folder = record.folder or await asyncio.to_thread(_find_folder, names)
        if folder:
            record.folder = folder
            await asyncio.to_thread(_remove, folder, names)
        record.ended -= names
    except Exception as exc:  # left for the next sweep, or the browser's close
        log.warning("a browser's ended traces could not be swept: %s", exc)
    finally:
        record.sweeping = None


def _find_folder(names: set[str]) -> str:
    for name in names:
        pattern = os.path.join(tempfile.gettempdir(), "playwright-artifacts-*", f"{name}.network")
        found = glob.glob(pattern)
        if len(found) == 1:
            return os.path.dirname(found[0])
    return ""


def _remove(folder: str, names: set[str]) -> None:
    """The ended traces' first chunks, and every resource (no trace records)."""
    doomed = [p for name in names for p in glob.glob(os.path.join(folder, f"{name}*"))]
    resources = os.path.join(folder, "resources")
    with contextlib.suppress(OSError):
        doomed += [os.path.join(resources, entry) for entry in os.listdir(resources)]
    for path in doomed:
        with contextlib.suppress(OSError):
            os.unlink(path)
