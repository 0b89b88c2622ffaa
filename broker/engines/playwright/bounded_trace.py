"""A lease's trace held to max_trace_bytes while Playwright records it, not after.

Playwright writes a trace as it goes, into its artifacts folder: the events (`<name>.trace`),
the network log (`<name>.network`) and the resources they refer to (`resources/<sha1>`), and
zips them on stop. The trace is named after the lease so its files can be found; they are
measured every WATCH_S, and a trace past its bound is stopped and discarded at once. The zip
is written only when what it would hold is within the bound, under a temporary name, and is
renamed into place only when it is within the bound too.

Resources are shared by the traces of one browser: every resource written since this trace
started counts against it, so the measure can only be too high, never too low.

Nothing stays behind: once the trace is written or dropped, its files (those of its first
chunk, named by context.py, and those named after the lease) are deleted, and the browser's
resources are swept as soon as no trace of that browser records (trace_sweep.py: a resource is
shared by sha1 between the traces of a browser, so none goes while one records). A browser in
which some trace is always recording keeps its resources until a gap, or until it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import tempfile
from pathlib import Path

from playwright.async_api import BrowserContext

from broker.common.cleanup import TaskSet, bounded
from broker.engines.playwright import trace_sweep

log = logging.getLogger("broker.traces")

WATCH_S = 0.25
FIND_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0  # within the cleanup bound of the whole close (10 s)
PARTIAL_SUFFIX = ".part"  # a zip being written; the trace store deletes leftovers on start


class BoundedTrace:
    def __init__(self, context: BrowserContext, path: str, max_bytes: int) -> None:
        self._context = context
        self._path = path
        self._max_bytes = max_bytes
        self._name = Path(path).stem
        self._first = trace_sweep.first_chunk(context)  # its files go too
        self._folder = ""  # Playwright's traces folder, once found
        self._known: set[str] = set()  # resources there before this trace started
        self._stopped = False
        self._found = asyncio.Event()  # set once the watcher has found the files, or failed
        self._tasks = TaskSet()
        self._tasks.spawn(self._watch())

    async def _watch(self) -> None:
        try:
            # Renames the trace after the lease (its first chunk, before any step, is dropped).
            await bounded(self._context.tracing.start_chunk(name=self._name), FIND_TIMEOUT_S)
            self._folder = await asyncio.to_thread(_find_folder, self._name)
            trace_sweep.found(self._context, self._folder)
            resources = os.path.join(self._folder, "resources")
            self._known = set(await asyncio.to_thread(_listing, resources))
            self._found.set()
            while not self._stopped:
                if await asyncio.to_thread(self.size) > self._max_bytes:
                    await self._drop()
                    return
                await asyncio.sleep(WATCH_S)
        except Exception as exc:  # a trace that cannot be watched is not kept
            log.warning("a lease's trace could not be watched: %s", exc)
            await self._drop()
        finally:
            self._found.set()

    def size(self) -> int:
        """What this trace has written so far (events, network log, new resources)."""
        if not self._folder:
            return 0
        total = sum(_size(p) for p in glob.glob(os.path.join(self._folder, f"{self._name}*")))
        resources = os.path.join(self._folder, "resources")
        new = [name for name in _listing(resources) if name not in self._known]
        return total + sum(_size(os.path.join(resources, name)) for name in new)

    async def _drop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        log.warning("a lease's trace was dropped", extra={"limit": self._max_bytes})
        with contextlib.suppress(Exception):
            await bounded(self._context.tracing.stop(), STOP_TIMEOUT_S)
        await self._ended()

    async def _ended(self) -> None:
        """This trace's files go; the browser's resources once none of its traces records."""
        await asyncio.to_thread(self._remove_inputs)
        trace_sweep.ended(self._context)

    def _remove_inputs(self) -> None:
        if self._folder:
            names = [self._name, self._first] if self._first else [self._name]
            for name in names:
                for path in glob.glob(os.path.join(self._folder, f"{name}*")):
                    with contextlib.suppress(OSError):
                        os.unlink(path)

    async def save(self) -> None:
        """Stop the trace into its file; one over the bound is never written in full."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._found.wait(), FIND_TIMEOUT_S)
        await self._tasks.cancel()
        if self._stopped:
            return
        if not self._folder or await asyncio.to_thread(self.size) > self._max_bytes:
            await self._drop()
            return
        self._stopped = True
        partial = self._path + PARTIAL_SUFFIX
        try:
            await bounded(self._context.tracing.stop(path=partial), STOP_TIMEOUT_S)
            await asyncio.to_thread(_keep_if_within, partial, self._path, self._max_bytes)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            await self._ended()


def _find_folder(name: str) -> str:
    pattern = os.path.join(tempfile.gettempdir(), "playwright-artifacts-*", f"{name}.trace")
    found = glob.glob(pattern)
    if len(found) != 1:
        raise RuntimeError(f"found {len(found)} trace files named {name}")
    return os.path.dirname(found[0])


def _keep_if_within(partial: str, path: str, max_bytes: int) -> None:
    size = os.path.getsize(partial)
    if size > max_bytes:
        log.warning("a lease's trace was dropped", extra={"bytes": size, "limit": max_bytes})
        return
    os.replace(partial, path)


def _listing(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
